"""The peak microbenchmark (native._native.measure_peaks, what `embedq bench runtime` measures achieved
GEMM rates against): one figure per instruction family the CPU has, and the figures in the ratio the
instructions' widths imply, which a loop the compiler removed or a wrong operation count would break."""
from __future__ import annotations

import math
from pathlib import Path

from native import _native


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def test_one_rate_per_family_the_cpu_has_in_the_ratio_of_their_widths():
    peaks = _native.measure_peaks(1, 0.2)
    flags = cpu_flags()
    expect = {"fp32 fma (avx2)": {"avx2", "fma"}, "fp32 fma (avx512)": {"avx512f"},
              "int16 dot (avx512 vpdpwssd)": {"avx512f", "avx512_vnni"},
              "int8 dot (avx512 vpdpbusd)": {"avx512f", "avx512_vnni"},
              "bf16 dot (avx512 vdpbf16ps)": {"avx512f", "avx512_bf16"}}
    for name, need in expect.items():
        assert (name in peaks) == (need <= flags), (name, sorted(peaks))
    assert all(math.isfinite(r) and r > 0.5 for r in peaks.values()), peaks
    if "int8 dot (avx512 vpdpbusd)" in peaks:
        # vpdpbusd does 4x the multiply-adds of a 32-bit-lane FMA per instruction at the same rate on
        # every CPU that has it; a shared machine's noise stays far inside a factor of 1.5.
        assert peaks["int8 dot (avx512 vpdpbusd)"] > 1.5 * peaks["fp32 fma (avx512)"], peaks
