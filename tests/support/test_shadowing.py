"""A user's module named like one of our top-level packages (worker, storage, schemas,
native, embedq, bench) fails with one clear ImportError naming both paths.

The guard is _embedq_shadow_guard.py, imported at every interpreter start by
_embedq_shadow_guard.pth in site-packages (CMakeLists.txt installs both).

This project's own environment is an editable install, whose redirecting finder already
puts our packages ahead of the current directory, so shadowing happens with a regular
(wheel) install. The tests build one without compiling: a throwaway venv whose
site-packages holds copies of our packages (native with the extension built for this
environment), the guard files, and a .pth line putting this environment's site-packages
after it for the dependencies (its own .pth files, the editable redirect among them, are
not run there).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = ("worker", "storage", "schemas", "native", "gateway", "embedq", "bench")
GUARD_FILES = ("_embedq_shadow_guard.py", "_embedq_shadow_guard.pth")
ENV_SITE = Path(sysconfig.get_paths()["purelib"])  # this environment's site-packages


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "EMBEDQ_SHADOW_GUARD")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(python, args, cwd, **env):
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**_env(), **env})


def _variants(path) -> set[str]:
    return {str(path), os.path.realpath(path)}


def _assert_shadow_error(proc, name, stray, ours):
    """One clear ImportError naming the module that won and our package."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    err = proc.stderr
    assert "shadows" in err, err
    assert any(p in err for p in _variants(stray)), err
    assert any(p in err for p in _variants(ours)), err
    assert f"embedq: {name!r} resolves to" in err, err
    # One error, not an ImportError from deep inside our code.
    assert "cannot import name" not in err, err


def _make_venv(root: Path) -> tuple[Path, Path]:
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=_env())
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=_env()).stdout.strip())
    # Dependencies from this environment, after our packages (a path line: its .pth files are not run).
    (site / "zz_embedq_test_deps.pth").write_text(f"{ENV_SITE}\n")
    for name in GUARD_FILES:
        shutil.copy2(REPO / name, site / name)
    return python, site


@pytest.fixture(scope="module")
def regular_install(tmp_path_factory):
    """(python, site-packages) of a venv laid out like `pip install .` of embedq."""
    extension = glob.glob(str(ENV_SITE / "native" / "_native*.so")) + glob.glob(str(REPO / "native" / "_native*.so"))
    if not extension:
        pytest.skip("native extension not built in this environment")
    python, site = _make_venv(tmp_path_factory.mktemp("regular"))
    ignore = shutil.ignore_patterns("__pycache__", "csrc", "ctests", "*.so")
    for name in OURS:
        shutil.copytree(REPO / name, site / name, ignore=ignore)
    shutil.copy2(extension[0], site / "native")
    return python, site


@pytest.fixture
def cwd(tmp_path):
    d = tmp_path / "cwd"
    d.mkdir()
    return d


# -- the installed guard -----------------------------------------------------------------

def test_guard_installed_into_site_packages():
    """The build puts both files next to our packages, and the guard is live at startup."""
    for name in GUARD_FILES:
        assert (ENV_SITE / name).is_file(), f"{name} missing from {ENV_SITE}: reinstall embedq"
    assert (ENV_SITE / "_embedq_shadow_guard.pth").read_text().strip() == "import _embedq_shadow_guard"
    proc = _run(sys.executable, ["-c", "import sys; print([getattr(f, '__name__', '') for f in sys.meta_path])"],
                cwd=REPO)
    assert "ShadowGuard" in proc.stdout, proc.stdout + proc.stderr


def _editable() -> bool:
    return any("_editable" in p.name for p in ENV_SITE.glob("*embedq*.pth"))


@pytest.mark.skipif(not _editable(), reason="needs the editable install (scripts/setup_env.sh)")
@pytest.mark.parametrize("name", OURS)
def test_editable_install_is_not_shadowed_nor_refused(cwd, name):
    """In this (editable) environment our package wins over a stray file (scikit-build-core's
    redirecting finder answers first), and the guard accepts it."""
    (cwd / f"{name}.py").write_text("STRAY = True\n")
    proc = _run(sys.executable, ["-c", f"import {name}; print({name}.__file__)"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == (REPO / name / "__init__.py").resolve()


# -- a regular install -------------------------------------------------------------------

@pytest.mark.parametrize("stray", ["schemas", "worker", "storage", "native"])
def test_stray_module_shadows_first_import(regular_install, cwd, stray):
    """`from worker.tasks import embed` with a stray <name>.py in the current directory:
    worker itself (the first name imported, before any code of ours runs), or schemas,
    storage, native as imported by worker.tasks."""
    python, site = regular_install
    (cwd / f"{stray}.py").write_text("STRAY = True\n")
    proc = _run(python, ["-c", "from worker.tasks import embed"], cwd=cwd)
    _assert_shadow_error(proc, stray, Path(os.path.realpath(cwd)) / f"{stray}.py", site / stray)


@pytest.mark.parametrize("name", OURS)
def test_stray_module_shadows_direct_import(regular_install, cwd, name):
    python, site = regular_install
    (cwd / f"{name}.py").write_text("STRAY = True\n")
    proc = _run(python, ["-c", f"import {name}"], cwd=cwd)
    _assert_shadow_error(proc, name, Path(os.path.realpath(cwd)) / f"{name}.py", site / name)


def test_stray_package_shadows(regular_install, cwd):
    """A directory package of the same name is refused too."""
    python, site = regular_install
    (cwd / "storage").mkdir()
    (cwd / "storage" / "__init__.py").write_text("")
    proc = _run(python, ["-c", "import storage"], cwd=cwd)
    _assert_shadow_error(proc, "storage", Path(os.path.realpath(cwd)) / "storage", site / "storage")


@pytest.mark.parametrize("code, name", [
    ("from worker.tasks import embed; print(embed.name)", "worker"),
    ("import storage; print(storage.__file__)", "storage"),
    ("import native; print(native.__file__)", "native"),
    ("import schemas; print(schemas.__file__)", "schemas"),
])
def test_clean_directory_imports_ours(regular_install, cwd, code, name):
    """Control: without a stray file the same imports succeed, from the installed copy."""
    python, site = regular_install
    proc = _run(python, ["-c", code + f"; import {name}; print({name}.__file__)"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert os.path.realpath(proc.stdout.strip().splitlines()[-1]) == os.path.realpath(site / name / "__init__.py")


def test_celery_with_stray_worker_module(regular_install, cwd):
    python, site = regular_install
    (cwd / "worker.py").write_text("STRAY = True\n")
    proc = _run(python, ["-m", "celery", "-A", "worker.app", "inspect", "--help"], cwd=cwd)
    _assert_shadow_error(proc, "worker", Path(os.path.realpath(cwd)) / "worker.py", site / "worker")


def test_other_names_untouched(regular_install, cwd):
    """Submodules named like ours (mylib.worker) and other top-level names are not the guard's business."""
    python, _ = regular_install
    (cwd / "mylib").mkdir()
    (cwd / "mylib" / "__init__.py").write_text("")
    (cwd / "mylib" / "worker.py").write_text("VALUE = 42\n")
    (cwd / "jobs.py").write_text("VALUE = 7\n")
    proc = _run(python, ["-c", "import mylib.worker, jobs; print(mylib.worker.VALUE + jobs.VALUE)"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "49"


def test_guard_can_be_turned_off(regular_install, cwd):
    python, _ = regular_install
    (cwd / "schemas.py").write_text("STRAY = True\n")
    proc = _run(python, ["-c", "import schemas; print(schemas.STRAY)"], cwd=cwd, EMBEDQ_SHADOW_GUARD="0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


# -- an editable install found through sys.path (no redirecting finder) ------------------

def test_editable_source_root_from_direct_url(tmp_path, cwd):
    """With an editable install that puts the source root on sys.path, our packages are found
    there: the guard takes that root from direct_url.json, accepts it, and refuses a stray."""
    python, site = _make_venv(tmp_path)
    dist_info = site / "embedq-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "direct_url.json").write_text(
        '{"dir_info": {"editable": true}, "url": "%s"}' % REPO.as_uri())
    (site / "embedq_source.pth").write_text(f"{REPO}\n")
    ok = _run(python, ["-c", "import schemas; print(schemas.__file__)"], cwd=cwd)
    assert ok.returncode == 0, ok.stderr
    assert os.path.realpath(ok.stdout.strip()) == os.path.realpath(REPO / "schemas" / "__init__.py")
    (cwd / "schemas.py").write_text("STRAY = True\n")
    bad = _run(python, ["-c", "import schemas"], cwd=cwd)
    _assert_shadow_error(bad, "schemas", Path(os.path.realpath(cwd)) / "schemas.py", REPO / "schemas")
