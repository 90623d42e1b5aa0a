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
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};
// Per-type tables are indexed by the raw id, so they hold this many slots.
constexpr size_t kDTypeSlots = 31;

// Block layouts, byte for byte as ggml writes them (all scales are fp16 bits).
// Legacy types: 32 elements per block, x = d * (q - offset) or x = d * q + m.
constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32;
// K types: 256-element super-blocks split into sub-blocks of 16 or 32, each
// with a small integer scale (and min) multiplied by the fp16 super-scale.
constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[QK4_0 / 2];  // element i in the low nibble of byte i, i+16 in the high one
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[QK4_1 / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // fifth bit of element i is bit i of this little-endian word
  uint8_t qs[QK5_0 / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
// One Q8_0 block: 32 signed bytes sharing an fp16 scale (x = d * q).
struct BlockQ8_0 {
  uint16_t d;  // fp16 bits
  int8_t qs[QK8_0];
};
struct BlockQ2_K {
  uint8_t scales[QK_K / 16];  // per 16 elements: scale in the low nibble, min in the high one
  uint8_t qs[QK_K / 4];
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];  // 16 six-bit scales, biased by 32
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[K_SCALE_SIZE];  // 8 six-bit scales and 8 six-bit mins
  uint8_t qs[QK_K / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes to match GGUF");
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block must be 20 bytes to match GGUF");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block must be 22 bytes to match GGUF");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block must be 24 bytes to match GGUF");
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes to match GGUF");
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block must be 84 bytes to match GGUF");
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block must be 110 bytes to match GGUF");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block must be 144 bytes to match GGUF");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block must be 176 bytes to match GGUF");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must be 210 bytes to match GGUF");

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
// Weights of other types than Q8_0 (F16, BF16, the 4-6 bit types) reach the same
// integer products by being quantized once, at load, per block of 32 to
// |q| <= kI16WeightMax with an f32 scale: an absolute error of at most 1/4094 of
// the block's largest weight, about F16's own rounding of that weight and far
// below any 4-6 bit type's step. The bound is as large as int32 allows: a
// block's 32 products sum to at most 32 * 32767 * 2047 = 2146369568 < 2^31,
// so the block sums stay exact. (F32 weights keep the f32 path: they are the
// exact reference.)
constexpr float kI16WeightMax = 2047.0f;
static_assert(32.0 * 32767.0 * 2047.0 <= 2147483647.0 && kI16Max == 32767.0f,
              "a block of 32 int16 products must not overflow int32");

// What the reader, the validator and the kernels need to know of a type.
struct DTypeInfo {
  const char* name;
  uint32_t block_elems;
  uint32_t block_bytes;
  // Byte offsets of the fp16 scales in a block (the only parts of a block
  // that can be NaN or infinite); unused for F32/F16/BF16.
  uint8_t n_scales;
  uint8_t scale_offset[2];
};

// Null for an id we do not compute with.
const DTypeInfo* dtype_info(uint32_t t);
const char* dtype_name(uint32_t t);  // any ggml id, "unknown" past them
bool dtype_supported(uint32_t t);
// "F32, F16, ..., Q6_K": for error messages.
const char* dtype_supported_list();
// Elements per storage block and bytes per block for a supported type.
size_t dtype_block_elems(DType t);
size_t dtype_block_bytes(DType t);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void k4_scale_min(const uint8_t* q, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The 16 signed scales of a Q3_K block (6-bit, stored biased by 32).
inline void q3k_scales(const uint8_t* s, int8_t* out) {
  for (int i = 0; i < 16; ++i) {
    const int lo = (s[i % 8] >> (4 * (i / 8))) & 0xF;
    const int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    out[i] = (int8_t)((lo | (hi << 4)) - 32);
  }
}

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
