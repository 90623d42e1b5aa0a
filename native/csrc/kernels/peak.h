// This machine's peak rate for each instruction family the kernels use, measured with
// independent accumulator chains (no memory traffic): the ceiling `embedq bench runtime`
// reports achieved GEMM rates against. One multiply-add counts as 2 operations.
#pragma once
#include <string>
#include <vector>

namespace embedq {

struct PeakRate {
  std::string name;  // e.g. "fp32 fma (avx512)", "int16 dot (vpdpwssd)"
  double gops;       // billions of operations per second, all threads together
};

// Families the CPU lacks are left out; `threads` threads each run the loop for `seconds`.
std::vector<PeakRate> measure_peaks(int threads, double seconds);

}  // namespace embedq
