"""llama.cpp (through llama-cpp-python) opened as a peer: the one place benchmarks and tests do it.

llama.cpp moves quantized weights at load into "extra" buffer types where the CPU has a faster
layout for them (repacked blocks; AMX tiles on Sapphire Rapids and later). On a Sapphire Rapids
machine with AMX, llama-cpp-python 0.3.36 segfaults encoding with a Q8_0 BERT file in those
buffers (an F32 file, which stays in plain buffers, runs), and the same file runs without them.
A segfault takes the whole process, pytest included, so where the CPU reports AMX the peer is
opened without extra buffers: llama.cpp's best configuration that runs there. Elsewhere it keeps
them (its repacked layouts are its fastest on AVX2/AVX-512).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_PATCH = threading.Lock()


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports AMX (int8 tiles), which llama.cpp's AMX buffer type uses."""
    try:
        text = Path(cpuinfo).read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and " amx_int8" in line for line in text.splitlines())


def extra_buffers_default() -> bool:
    """Whether open_llama keeps llama.cpp's extra buffer types by default: not where AMX is."""
    return not cpu_has_amx()


def open_llama(path: str | os.PathLike, n_ctx: int, *, threads: int = 2, mean_pooling: bool = True,
               extra_buffers: bool | None = None, **kwargs):
    """A llama_cpp.Llama for embeddings with n_ctx = n_batch = n_ubatch, quiet, on `threads` threads.

    mean_pooling: force mean pooling (our files say so too; llama.cpp's own files may not).
    extra_buffers: llama.cpp's repacked/AMX weight buffers (None: extra_buffers_default()).
    """
    import llama_cpp
    from llama_cpp import llama as llama_module

    args = dict(model_path=str(path), embedding=True, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    if mean_pooling:
        args["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    args.update(kwargs)
    if extra_buffers is None:
        extra_buffers = extra_buffers_default()
    if extra_buffers:
        return llama_cpp.Llama(**args)
    # Llama() takes no argument for it: it fills its model parameters from the bindings'
    # llama_model_default_params(), so that is what is swapped for the length of the call.
    bindings = llama_module.llama_cpp
    default = bindings.llama_model_default_params

    def without_extra_buffers():
        params = default()
        params.use_extra_bufts = False
        return params

    with _PATCH:
        bindings.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(**args)
        finally:
            bindings.llama_model_default_params = default
