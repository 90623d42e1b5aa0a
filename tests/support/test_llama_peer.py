"""bench.llama_peer: the one way benchmarks and tests open llama.cpp."""
from __future__ import annotations

import pytest

from bench.llama_peer import cpu_has_amx, extra_buffers_default, open_llama


def test_amx_is_read_from_the_cpu_flags(tmp_path):
    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8 avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert cpu_has_amx(str(with_amx)) and not cpu_has_amx(str(without))
    assert not cpu_has_amx(str(tmp_path / "missing"))
    assert extra_buffers_default() == (not cpu_has_amx())


@pytest.mark.peers
@pytest.mark.parametrize("extra", [False, None])
def test_open_llama_sets_the_weight_buffers_as_asked(minilm_gguf_q8, extra):
    pytest.importorskip("llama_cpp")
    import llama_cpp

    llm = open_llama(minilm_gguf_q8, 64, extra_buffers=extra)
    try:
        want = extra_buffers_default() if extra is None else extra
        assert bool(llm.model_params.use_extra_bufts) == want
        # The swap is undone: a plain Llama() gets llama.cpp's own default again.
        assert llama_cpp.llama_model_default_params().use_extra_bufts
        vec = llm.embed("a short sentence", normalize=True)
        assert len(vec) == 384 and abs(sum(v * v for v in vec) - 1.0) < 1e-4
    finally:
        llm.close()
