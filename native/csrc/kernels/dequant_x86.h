// Block dequantizers shared by the AVX2 and AVX-512 kernel files. The quants
// of 32 consecutive elements are unpacked into one ymm of signed bytes with
// AVX2 integer ops (both files have them); the including file supplies
//   template <bool kMin> void emit32(__m256i q, float* y, float s0, float s1, float m0, float m1)
// which writes y[i] = s * q[i] (- m when kMin), with (s0, m0) for elements
// 0..15 and (s1, m1) for 16..31, at its own vector width.
//
// Include only inside an anonymous namespace: each ISA file must get its own
// copy, compiled with its own flags (one shared inline copy could run AVX-512
// code on an AVX2 machine).
//
// Every product here is exact in f32 (see kernels.h), so these match the
// scalar reference bit for bit however the compiler contracts mul and sub.

inline __m256i bytes_set1(int v) { return _mm256_set1_epi8((char)v); }

inline __m256i srl16(__m256i v, int n) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n)); }

// 0xFF in byte i where bit i of x is set.
inline __m256i bits_to_bytes(uint32_t x) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

// 0xFF in byte l where bit j of byte l of v is set.
inline __m256i bit_of_bytes(__m256i v, int j) {
  const __m256i m = bytes_set1(1 << j);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, m), m);
}

// Elements 0..15 from the low nibbles of 16 bytes, 16..31 from the high ones.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

void row_to_f32_q4_0(const void* src, float* y, size_t n) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(src);
  for (size_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float d = h2f(x[b].d);
    emit32<false>(_mm256_sub_epi8(nibbles32(x[b].qs), bytes_set1(8)), y, d, d, 0, 0);
  }
}

void row_to_f32_q4_1(const void* src, float* y, size_t n) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(src);
  for (size_t b = 0; b < n / QK4_1; ++b, y += QK4_1) {
    const float d = h2f(x[b].d), m = -h2f(x[b].m);  // d*q - (-m) is d*q + m exactly
    emit32<true>(nibbles32(x[b].qs), y, d, d, m, m);
  }
}

inline __m256i q5_quants(const uint8_t* qs, const uint8_t* qh) {
  return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bits_to_bytes(load_u32(qh)), bytes_set1(0x10)));
}

void row_to_f32_q5_0(const void* src, float* y, size_t n) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(src);
  for (size_t b = 0; b < n / QK5_0; ++b, y += QK5_0) {
    const float d = h2f(x[b].d);
    emit32<false>(_mm256_sub_epi8(q5_quants(x[b].qs, x[b].qh), bytes_set1(16)), y, d, d, 0, 0);
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
    emit32<false>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)), y, d, d, 0, 0);
  }
}

void row_to_f32_q2_k(const void* src, float* y, size_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(src);
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
      for (int s = 0; s < 4; ++s, y += 32) {
        const uint8_t* sc = x[b].scales + 8 * h + 2 * s;
        emit32<true>(_mm256_and_si256(srl16(v, 2 * s), bytes_set1(3)), y, d * (float)(sc[0] & 0xF),
                     d * (float)(sc[1] & 0xF), dmin * (float)(sc[0] >> 4), dmin * (float)(sc[1] >> 4));
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
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].hmask));
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
      for (int s = 0; s < 4; ++s, y += 32) {
        const __m256i lo = _mm256_and_si256(srl16(v, 2 * s), bytes_set1(3));
        // 4 is subtracted where the high bit is clear.
        const __m256i off = _mm256_andnot_si256(bit_of_bytes(hm, 4 * h + s), bytes_set1(4));
        const int i = 8 * h + 2 * s;
        emit32<false>(_mm256_sub_epi8(lo, off), y, d * (float)sc[i], d * (float)sc[i + 1], 0, 0);
      }
    }
  }
}

// Q4_K and Q5_K: sub-block j (32 elements) is nibble j%2 of bytes 32*(j/2)...
template <bool kHigh, typename Block>
void row_to_f32_qk45(const Block* x, float* y, size_t n) {
  for (size_t b = 0; b < n / QK_K; ++b) {
    const float d = h2f(x[b].d), dmin = h2f(x[b].dmin);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kHigh) qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh));
    for (int j2 = 0; j2 < 4; ++j2) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j2));
      for (int half = 0; half < 2; ++half, y += 32) {
        const int j = 2 * j2 + half;
        __m256i q = _mm256_and_si256(srl16(v, 4 * half), bytes_set1(0x0F));
        if constexpr (kHigh) q = _mm256_or_si256(q, _mm256_and_si256(bit_of_bytes(qh, j), bytes_set1(0x10)));
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
      const __m256i ql[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h + 32))};
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh + 32 * h));
      for (int s = 0; s < 4; ++s, y += 32) {
        const __m256i lo = _mm256_and_si256(srl16(ql[s % 2], 4 * (s / 2)), bytes_set1(0x0F));
        // Two bits below 4 cannot carry into the next byte when shifted up by 4.
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(srl16(qh, 2 * s), bytes_set1(3)), 4);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, hi), bytes_set1(32));
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
