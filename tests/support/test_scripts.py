"""scripts/services.sh fails loudly, at once, when a server cannot be had (never loops, never
pretends): run with stand-ins for the system commands it calls."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_services(tmp_path: Path, stubs: dict[str, str]) -> subprocess.CompletedProcess:
    # A PATH with only the basic tools the script uses and stand-ins for the system commands: no
    # real redis, apt-get or PostgreSQL. A command not stubbed and not basic does not exist.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("seq", "sleep", "mkdir", "sed", "ls", "head", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name, body in stubs.items():
        f = bin_dir / name
        f.write_text("#!/bin/sh\n" + body + "\n")
        f.chmod(0o755)
    return subprocess.run([shutil.which("bash"), str(ROOT / "scripts" / "services.sh")], capture_output=True,
                          text=True, env={**os.environ, "PATH": str(bin_dir)}, timeout=60)


def test_missing_redis_that_cannot_be_installed_fails_once(tmp_path):
    stubs = {"apt-get": "exit 100", "pg_isready": "exit 0"}
    out = run_services(tmp_path, stubs)
    assert out.returncode == 1
    assert "redis-server is not installed and could not be installed" in out.stderr
    assert out.stdout.count("installing redis-server") == 1  # tried once, no loop


def test_redis_that_does_not_start_fails_with_the_reason(tmp_path):
    stubs = {"redis-server": "exit 1", "redis-cli": "exit 1", "pg_isready": "exit 0"}
    out = run_services(tmp_path, stubs)
    assert out.returncode == 1 and "redis-server did not start" in out.stderr


def test_a_running_redis_is_left_alone(tmp_path):
    stubs = {"redis-server": "echo started >> \"$0.calls\"; exit 0",
             "redis-cli": "case \"$*\" in *info*) printf 'redis_version:9.9.9\\r\\n';; esac; exit 0",
             "pg_isready": "exit 0"}
    out = run_services(tmp_path, stubs)
    assert out.returncode == 0 and "redis 9.9.9" in out.stdout
    assert not (tmp_path / "bin" / "redis-server.calls").exists()
