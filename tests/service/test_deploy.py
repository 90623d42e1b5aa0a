"""The deployment files parse: docker/compose.yaml (with `docker compose config`, Compose v2),
the Procfile (honcho), and the Dockerfile's stages and build inputs exist."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_cli() -> list[str] | None:
    """Compose v2: the docker CLI plugin, or the same binary on its own (scripts/compose_cli.sh)."""
    plugin = Path.home() / ".docker" / "cli-plugins" / "docker-compose"
    if shutil.which("docker"):
        out = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if out.returncode == 0 and re.search(r"version v?2\.", out.stdout):
            return ["docker", "compose"]
    if plugin.exists():
        return [str(plugin)]
    return None


def test_compose_file_validates():
    cli = compose_cli()
    if cli is None:
        pytest.fail("no Compose v2 client; scripts/compose_cli.sh installs one (scripts/test.sh runs it)")
    env = {**os.environ, "FLOWER_BASIC_AUTH": "ops:pw"}
    unset = {k: v for k, v in env.items() if k != "FLOWER_BASIC_AUTH"}
    refused = subprocess.run([*cli, "-f", str(ROOT / "docker" / "compose.yaml"), "config"], capture_output=True,
                             text=True, timeout=60, env=unset)
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr  # Flower never runs without auth
    out = subprocess.run([*cli, "-f", str(ROOT / "docker" / "compose.yaml"), "config"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load(out.stdout)
    assert set(cfg["services"]) == {"redis", "postgres", "worker", "flower", "http"}
    # The HTTP gateway: the workers' settings, published on the host's loopback only.
    http = cfg["services"]["http"]
    assert http["environment"]["EMBEDQ_BROKER_URL"] == cfg["services"]["worker"]["environment"]["EMBEDQ_BROKER_URL"]
    assert [(p["host_ip"], str(p["published"]), p["target"]) for p in http["ports"]] == [("127.0.0.1", "8000", 8000)]
    worker = cfg["services"]["worker"]
    # --scale worker=N needs a service without a fixed container name or host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["environment"]["EMBEDQ_BROKER_URL"].startswith("redis://")
    assert worker["environment"]["EMBEDQ_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "pgvector" in cfg["services"]["postgres"]["image"]
    flower = cfg["services"]["flower"]
    assert flower["environment"]["EMBEDQ_FLOWER_BASIC_AUTH"] == "ops:pw"
    assert [(p["host_ip"], str(p["published"])) for p in flower["ports"]] == [("127.0.0.1", "5555")]
    assert cfg["services"]["redis"]["command"][1:] == ["--appendonly", "yes", "--appendfsync", "everysec"]


def test_procfile_runs_worker_and_flower():
    honcho = Path(sys.executable).with_name("honcho")
    assert honcho.exists(), "honcho is not installed (pip install -e '.[ops]')"
    out = subprocess.run([str(honcho), "-f", str(ROOT / "Procfile"), "check"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "worker, flower" in out.stderr + out.stdout


def test_dockerfile_is_multi_stage_and_its_inputs_exist():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, flags=re.M)
    assert stages == ["build", "runtime"]
    assert "COPY --from=build" in text
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M):
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is missing"
