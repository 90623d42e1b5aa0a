// Weight storage formats shared by the GGUF reader and the kernels.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace embedq {

// GGML type ids as written in GGUF tensor infos. Only the ones we compute with
// are listed; the reader rejects everything else with a clear message.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
  BF16 = 30,
};

constexpr int QK8_0 = 32;

// One Q8_0 block: 32 signed bytes sharing an fp16 scale (x = d * q).
struct BlockQ8_0 {
  uint16_t d;  // fp16 bits
  int8_t qs[QK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes to match GGUF");

// int16 activations: each block of 32 activations x becomes
// q = round(x * kI16Max / max|x|) (ties to even) with the f32 scale
// max|x| / kI16Max, so each value carries an absolute error of at most
// max|x| / 65534 (~2^-16 of its block's largest value, far below Q8_0's
// weight error of 1/254 of a block's; per block rather than per row, so an
// outlier feature does not coarsen the rest of the row).
// kI16Max is 32767, not 32768, so negating a quant never overflows and the
// integer products stay exact: with weights in [-128, 127] one pair sum of
// vpmaddwd / VPDPWSSD is at most 2 * 128 * 32767 < 2^23, and a 32-element
// block at most 2^27, far from int32's limit. Blocks whose largest magnitude
// is under kI16MinAmax quantize to zero (their reciprocal scale would overflow).
constexpr float kI16Max = 32767.0f;
constexpr float kI16MinAmax = 1e-30f;

const char* dtype_name(uint32_t t);
bool dtype_supported(uint32_t t);
// Elements per storage block and bytes per block for a supported type.
size_t dtype_block_elems(DType t);
size_t dtype_block_bytes(DType t);

inline float fp32_from_bits(uint32_t w) { float f; std::memcpy(&f, &w, 4); return f; }
inline uint32_t fp32_to_bits(float f) { uint32_t w; std::memcpy(&w, &f, 4); return w; }

// IEEE half <-> float without hardware support (the SIMD files use F16C/NEON).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0) return fp32_from_bits(sign);
    // subnormal: renormalize
    int e = -1;
    do { mant <<= 1; ++e; } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    return fp32_from_bits(sign | (uint32_t)(127 - 15 - e) << 23 | mant << 13);
  }
  if (exp == 31) return fp32_from_bits(sign | 0x7f800000u | mant << 13);
  return fp32_from_bits(sign | (exp + 112) << 23 | mant << 13);
}

inline uint16_t fp32_to_fp16(float f) {
  // round-to-nearest-even, handles overflow to inf and subnormals
  uint32_t x = fp32_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0));
  if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // overflow
  if (x < 0x38800000u) {  // subnormal or zero in half
    if (x < 0x33000000u) return (uint16_t)sign;
    const uint32_t e = x >> 23;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return (uint16_t)(sign | half);
  }
  uint32_t h = ((x >> 13) - (112u << 10));
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return (uint16_t)(sign | h);
}

inline float bf16_to_fp32(uint16_t h) { return fp32_from_bits((uint32_t)h << 16); }

}  // namespace embedq
