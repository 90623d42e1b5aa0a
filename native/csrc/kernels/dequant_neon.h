// Block dequantizers of the NEON kernel set, laid out like dequant_x86.h: the
// quants of 32 consecutive elements are unpacked into a Bytes32 (two
// q-registers, elements 0..15 and 16..31) with byte-wise integer ops, then
// emit32 writes y[i] = s * q[i] (- m when kMin), with (s0, m0) for elements
// 0..15 and (s1, m1) for 16..31. Offsets are subtracted with wrapping byte
// arithmetic; every result fits a signed byte, which is how emit32 reads it.
//
// Include only inside neon.cpp's anonymous namespace (it needs <arm_neon.h>).
//
// Every product here is exact in f32 (see kernels.h), so these match the
// scalar reference bit for bit however the compiler contracts mul and sub.

struct Bytes32 {
  uint8x16_t lo, hi;
};

inline Bytes32 load32(const uint8_t* p) { return {vld1q_u8(p), vld1q_u8(p + 16)}; }
inline Bytes32 and32(Bytes32 a, uint8_t m) { return {vandq_u8(a.lo, vdupq_n_u8(m)), vandq_u8(a.hi, vdupq_n_u8(m))}; }
inline Bytes32 or32(Bytes32 a, Bytes32 b) { return {vorrq_u8(a.lo, b.lo), vorrq_u8(a.hi, b.hi)}; }
inline Bytes32 sub32(Bytes32 a, uint8_t v) { return {vsubq_u8(a.lo, vdupq_n_u8(v)), vsubq_u8(a.hi, vdupq_n_u8(v))}; }

// Byte-wise logical shift right by a run-time count (NEON has no right shift
// by register; a left shift by a negative count is one).
inline Bytes32 shr32(Bytes32 a, int n) {
  const int8x16_t c = vdupq_n_s8((int8_t)-n);
  return {vshlq_u8(a.lo, c), vshlq_u8(a.hi, c)};
}

// 0xFF in byte i where bit i of x is set.
inline uint8x16_t bits_to_bytes(uint16_t x) {
  const uint8x16_t bytes = vcombine_u8(vdup_n_u8((uint8_t)x), vdup_n_u8((uint8_t)(x >> 8)));
  const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
  return vtstq_u8(bytes, bit);
}

// 0xFF in byte l where bit j of byte l of v is set.
inline Bytes32 bit_of_bytes(Bytes32 v, int j) {
  const uint8x16_t m = vdupq_n_u8((uint8_t)(1u << j));
  return {vtstq_u8(v.lo, m), vtstq_u8(v.hi, m)};
}

// Elements 0..15 from the low nibbles of 16 bytes, 16..31 from the high ones.
inline Bytes32 nibbles32(const uint8_t* qs) {
  const uint8x16_t v = vld1q_u8(qs);
  return {vandq_u8(v, vdupq_n_u8(0x0F)), vshrq_n_u8(v, 4)};
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <bool kMin>
inline void emit16(uint8x16_t q, float* y, float s, float m) {
  const int8x16_t v = vreinterpretq_s8_u8(q);
  const int16x8_t h[2] = {vmovl_s8(vget_low_s8(v)), vmovl_s8(vget_high_s8(v))};
  const float32x4_t vs = vdupq_n_f32(s), vm = vdupq_n_f32(m);
  for (int i = 0; i < 2; ++i) {
    const int32x4_t w[2] = {vmovl_s16(vget_low_s16(h[i])), vmovl_s16(vget_high_s16(h[i]))};
    for (int k = 0; k < 2; ++k) {
      float32x4_t f = vmulq_f32(vcvtq_f32_s32(w[k]), vs);
      if constexpr (kMin) f = vsubq_f32(f, vm);
      vst1q_f32(y + 8 * i + 4 * k, f);
    }
  }
}

template <bool kMin>
inline void emit32(Bytes32 q, float* y, float s0, float s1, float m0, float m1) {
  emit16<kMin>(q.lo, y, s0, m0);
  emit16<kMin>(q.hi, y + 16, s1, m1);
}

// FCVT, which test_kernels checks against fp16_to_fp32 on every half value.
inline float h2f(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

void row_to_f32_q4_0(const void* src, float* y, size_t n) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(src);
  for (size_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float d = h2f(x[b].d);
    emit32<false>(sub32(nibbles32(x[b].qs), 8), y, d, d, 0, 0);
  }
}

void row_to_f32_q4_1(const void* src, float* y, size_t n) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(src);
  for (size_t b = 0; b < n / QK4_1; ++b, y += QK4_1) {
    const float d = h2f(x[b].d), m = -h2f(x[b].m);  // d*q - (-m) is d*q + m exactly
    emit32<true>(nibbles32(x[b].qs), y, d, d, m, m);
  }
}

inline Bytes32 q5_quants(const uint8_t* qs, const uint8_t* qh) {
  const uint32_t h = load_u32(qh);
  const uint8x16_t five = vdupq_n_u8(0x10);
  const Bytes32 high = {vandq_u8(bits_to_bytes((uint16_t)h), five), vandq_u8(bits_to_bytes((uint16_t)(h >> 16)), five)};
  return or32(nibbles32(qs), high);
}

void row_to_f32_q5_0(const void* src, float* y, size_t n) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(src);
  for (size_t b = 0; b < n / QK5_0; ++b, y += QK5_0) {
    const float d = h2f(x[b].d);
    emit32<false>(sub32(q5_quants(x[b].qs, x[b].qh), 16), y, d, d, 0, 0);
  }
}

void row_to_f32_q5_1(const void* src, float* y, size_t n) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(src);
  for (size_t b = 0; b < n / QK5_1; ++b, y += QK5_1) {
    const float d = h2f(x[b].d), m = -h2f(x[b].m);
    emit32<true>(q5_quants(x[b].qs, x[b].qh), y, d, d, m, m);
  }
}

void row_to_f32_q8_0(const void* src, float* y, size_t n) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(src);
  for (size_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
    const float d = h2f(x[b].d);
    emit32<false>(load32(reinterpret_cast<const uint8_t*>(x[b].qs)), y, d, d, 0, 0);
  }
}

void row_to_f32_q2_k(const void* src, float* y, size_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
    for (int h = 0; h < 2; ++h) {
      const Bytes32 v = load32(x[b].qs + 32 * h);
      for (int s = 0; s < 4; ++s, y += 32) {
        const uint8_t* sc = x[b].scales + 8 * h + 2 * s;
        emit32<true>(and32(shr32(v, 2 * s), 3), y, d * (float)(sc[0] & 0xF), d * (float)(sc[1] & 0xF),
                     dmin * (float)(sc[0] >> 4), dmin * (float)(sc[1] >> 4));
      }
    }
  }
}

void row_to_f32_q3_k(const void* src, float* y, size_t n) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d);
    int8_t sc[16];
    q3k_scales(x[b].scales, sc);
    const Bytes32 hm = load32(x[b].hmask);
    for (int h = 0; h < 2; ++h) {
      const Bytes32 v = load32(x[b].qs + 32 * h);
      for (int s = 0; s < 4; ++s, y += 32) {
        const Bytes32 lo = and32(shr32(v, 2 * s), 3);
        // 4 is subtracted where the high bit is clear.
        const Bytes32 set = bit_of_bytes(hm, 4 * h + s);
        const uint8x16_t four = vdupq_n_u8(4);
        const Bytes32 q = {vsubq_u8(lo.lo, vbicq_u8(four, set.lo)), vsubq_u8(lo.hi, vbicq_u8(four, set.hi))};
        const int i = 8 * h + 2 * s;
        emit32<false>(q, y, d * (float)sc[i], d * (float)sc[i + 1], 0, 0);
      }
    }
  }
}

// Q4_K and Q5_K: sub-block j (32 elements) is nibble j%2 of bytes 32*(j/2)...
template <bool kHigh, typename Block>
void row_to_f32_qk45(const Block* x, float* y, size_t n) {
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
    Bytes32 qh = {vdupq_n_u8(0), vdupq_n_u8(0)};
    if constexpr (kHigh) qh = load32(x[b].qh);
    for (int j2 = 0; j2 < 4; ++j2) {
      const Bytes32 v = load32(x[b].qs + 32 * j2);
      for (int half = 0; half < 2; ++half, y += 32) {
        const int j = 2 * j2 + half;
        Bytes32 q = and32(shr32(v, 4 * half), 0x0F);
        if constexpr (kHigh) q = or32(q, and32(bit_of_bytes(qh, j), 0x10));
        uint8_t sc, m;
        k4_scale_min(x[b].scales, j, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        emit32<true>(q, y, dl, dl, ml, ml);
      }
    }
  }
}

void row_to_f32_q4_k(const void* src, float* y, size_t n) {
  row_to_f32_qk45<false>(static_cast<const BlockQ4_K*>(src), y, n);
}

void row_to_f32_q5_k(const void* src, float* y, size_t n) {
  row_to_f32_qk45<true>(static_cast<const BlockQ5_K*>(src), y, n);
}

void row_to_f32_q6_k(const void* src, float* y, size_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const Bytes32 ql[2] = {load32(x[b].ql + 64 * h), load32(x[b].ql + 64 * h + 32)};
      const Bytes32 qh = load32(x[b].qh + 32 * h);
      for (int s = 0; s < 4; ++s, y += 32) {
        const Bytes32 lo = and32(shr32(ql[s % 2], 4 * (s / 2)), 0x0F);
        const Bytes32 hi = and32(shr32(qh, 2 * s), 3);
        const Bytes32 q = sub32(or32(lo, {vshlq_n_u8(hi.lo, 4), vshlq_n_u8(hi.hi, 4)}), 32);
        const int8_t* sc = x[b].scales + 8 * h + 2 * s;
        emit32<false>(q, y, d * (float)sc[0], d * (float)sc[1], 0, 0);
      }
    }
  }
}

// Fills every block type's entry of a kernel table with the functions above.
inline void set_block_dequantizers(Kernels& k) {
  RowToF32* r = k.row_to_f32;
  r[(size_t)DType::Q4_0] = row_to_f32_q4_0;
  r[(size_t)DType::Q4_1] = row_to_f32_q4_1;
  r[(size_t)DType::Q5_0] = row_to_f32_q5_0;
  r[(size_t)DType::Q5_1] = row_to_f32_q5_1;
  r[(size_t)DType::Q8_0] = row_to_f32_q8_0;
  r[(size_t)DType::Q2_K] = row_to_f32_q2_k;
  r[(size_t)DType::Q3_K] = row_to_f32_q3_k;
  r[(size_t)DType::Q4_K] = row_to_f32_q4_k;
  r[(size_t)DType::Q5_K] = row_to_f32_q5_k;
  r[(size_t)DType::Q6_K] = row_to_f32_q6_k;
}
