"""Reference implementations our output is checked against (tests and benchmarks).

``llama_cpp_convert`` runs llama.cpp's own ``convert_hf_to_gguf.py`` — taken from
the llama-cpp-python source distribution on PyPI, matching the installed
llama-cpp-python when there is one — so our converter can be compared with the
files llama.cpp itself writes. The converter needs torch and transformers (and
sentencepiece for Gemma); callers should skip when those are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

from schemas.home import embedq_home

# Used when llama-cpp-python is not installed; the version our build pins.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# What convert_hf_to_gguf.py needs from the source tree.
_NEEDED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


class PeerError(RuntimeError):
    pass


def llama_embed(path, texts, n_ctx: int = 512, with_ids: bool = False):
    """llama.cpp's normalized vectors for the texts, one per call (bench.llama_peer opens the
    file), and with_ids: also the ids it feeds its model for each text."""
    import numpy as np

    from bench.llama_peer import open_llama

    llm = open_llama(path, n_ctx)
    try:
        vec = np.array([llm.embed(t, normalize=True, truncate=True) for t in texts], dtype=np.float32)
        if not with_ids:
            return vec
        return vec, [llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)[:n_ctx] for t in texts]
    finally:
        llm.close()


def llama_cpp_python_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return LLAMA_CPP_PYTHON_VERSION


def llama_cpp_source(version: str | None = None) -> Path:
    """Folder holding llama.cpp's converter (convert_hf_to_gguf.py, conversion/, gguf-py/).

    Fetched once with ``pip download --no-binary :all:`` and cached under
    ``$EMBEDQ_HOME/peers/llama.cpp-<version>``.
    """
    version = version or llama_cpp_python_version()
    target = embedq_home() / "peers" / f"llama.cpp-{version}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, f"llama-cpp-python=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or len(sdists) != 1:
            raise PeerError(f"could not download the llama-cpp-python {version} sdist:\n{proc.stderr[-2000:]}")
        staging = Path(tmp) / "src"
        with tarfile.open(sdists[0]) as tf:
            for member in tf.getmembers():
                parts = member.name.split("/", 3)
                # <pkg>-<ver>/vendor/llama.cpp/<path>
                if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"]:
                    continue
                rel = parts[3]
                if not any(rel == n or rel.startswith(n) for n in _NEEDED):
                    continue
                member.name = rel
                tf.extract(member, staging, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise PeerError(f"{sdists[0].name} has no vendor/llama.cpp/convert_hf_to_gguf.py")
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        shutil.move(str(staging), partial)
        try:
            os.replace(partial, target)
        except OSError:  # another process won the race; theirs is as good as ours
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _has_dense_modules(model_dir: Path) -> bool:
    mods = model_dir / "modules.json"
    if not mods.is_file():
        return False
    return any(m.get("type", "").endswith("Dense") for m in json.loads(mods.read_text(encoding="utf-8")))


# Runs convert_hf_to_gguf.py with TextModel.get_vocab_base_pre answering argv[1]: llama.cpp names a
# BPE pre-tokenizer by hashing a real model's token ids on a fixed text, which no tokenizer trained
# in a test can reproduce, so tests that built a tokenizer with a known pre-tokenizer say which.
_PINNED_PRE = """
import runpy, sys
pre, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
runpy.run_path(script, run_name="__main__")
"""


def llama_cpp_convert(model_dir: str | os.PathLike, out_path: str | os.PathLike, out_type: str = "f32",
                      bpe_pre: str | None = None) -> Path:
    """Convert with llama.cpp's own converter; returns out_path.

    Dense projection modules (EmbeddingGemma) are included, as our converter does.
    Runs offline: the model folder is local and hub access is switched off.
    bpe_pre: the tokenizer.ggml.pre to use for a BPE tokenizer instead of the hash lookup.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    src = llama_cpp_source()
    script = [str(src / "convert_hf_to_gguf.py")]
    if bpe_pre:
        script = ["-c", _PINNED_PRE, bpe_pre, *script]
    cmd = [sys.executable, *script, str(model_dir), "--outfile", str(out_path), "--outtype", out_type]
    if _has_dense_modules(model_dir):
        cmd.append("--sentence-transformers-dense-modules")
    env = dict(os.environ)
    # Its own gguf-py, not the PyPI gguf we write with: the point is an independent writer.
    env["PYTHONPATH"] = os.pathsep.join([str(src / "gguf-py"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("NO_LOCAL_GGUF", None)  # set, it would make the script import the PyPI gguf
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=src, check=False)
    if proc.returncode != 0 or not out_path.is_file():
        raise PeerError(f"llama.cpp's converter failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return out_path



def llama_cpp_quantize(src: str | os.PathLike, recipe: str) -> Path:
    """`src` quantized by llama.cpp's own quantizer (cached by the source's hash): bench/quants.py."""
    from bench.quants import llama_cpp_quantize as quantize

    return quantize(src, recipe)
