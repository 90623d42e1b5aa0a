// Peak loops for x86 (see peak.h). Each function carries its own target attribute and runs only
// where the CPU reports the feature, so this file may be compiled for the baseline ISA.
#include "peak.h"

#include <chrono>
#include <cstdint>
#include <thread>

#if defined(EMBEDQ_X86)
#include <immintrin.h>
#endif

namespace embedq {
#if defined(EMBEDQ_X86)
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kInner = 4096;  // iterations between clock reads

// Runs `body` (returns operations done) until `seconds` pass; operations per second.
template <class Body>
double timed(double seconds, Body&& body) {
  const auto t0 = Clock::now();
  double ops = 0, elapsed = 0;
  do {
    ops += body();
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (elapsed < seconds);
  return ops / elapsed;
}

volatile float g_sink_f;
volatile int g_sink_i;

// Twelve independent chains hide the 4-cycle latency on two pipes.
#define EMBEDQ_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

__attribute__((target("avx2,fma"))) double fma_avx2() {
  __m256 acc[12];
  for (auto& a : acc) a = _mm256_set1_ps(0.0f);
  const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm256_fmadd_ps(x, acc[k], y);
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m256 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_ps(s, acc[k]);
  g_sink_f = _mm256_cvtss_f32(s);
  return 2.0 * 8 * 12 * kInner;
}

__attribute__((target("avx2"))) double madd_avx2() {  // vpmaddwd + vpaddd: the AVX2 int16 dot
  __m256i acc[12];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i x = _mm256_set1_epi16(3), y = _mm256_set1_epi16(-2);
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(x, y));
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m256i s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm256_add_epi32(s, acc[k]);
  g_sink_i = _mm256_extract_epi32(s, 0);
  return 2.0 * 16 * 12 * kInner;
}

__attribute__((target("avx512f"))) double fma_avx512() {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_set1_ps(0.0f);
  const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm512_fmadd_ps(x, acc[k], y);
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m512 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_ps(s, acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  g_sink_f = lanes[0];
  return 2.0 * 16 * 12 * kInner;
}

__attribute__((target("avx512f,avx512vnni"))) double dpwssd_avx512() {
  __m512i acc[12];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi16(3), y = _mm512_set1_epi16(-2);
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm512_dpwssd_epi32(acc[k], x, y);
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m512i s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_epi32(s, acc[k]);
  alignas(64) int lanes[16];
  _mm512_store_si512(lanes, s);
  g_sink_i = lanes[0];
  return 2.0 * 32 * 12 * kInner;
}

__attribute__((target("avx512f,avx512vnni"))) double dpbusd_avx512() {
  __m512i acc[12];
  for (auto& a : acc) a = _mm512_setzero_si512();
  const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-2);
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm512_dpbusd_epi32(acc[k], x, y);
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m512i s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_epi32(s, acc[k]);
  alignas(64) int lanes[16];
  _mm512_store_si512(lanes, s);
  g_sink_i = lanes[0];
  return 2.0 * 64 * 12 * kInner;
}

__attribute__((target("avx512f,avx512bf16"))) double dpbf16_avx512() {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_set1_ps(0.0f);
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3f00);  // 1.0, 0.5
  for (int i = 0; i < kInner; ++i) {
#define STEP(k) acc[k] = _mm512_dpbf16_ps(acc[k], x, y);
    EMBEDQ_REP12(STEP)
#undef STEP
  }
  __m512 s = acc[0];
  for (int k = 1; k < 12; ++k) s = _mm512_add_ps(s, acc[k]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  g_sink_f = lanes[0];
  return 2.0 * 32 * 12 * kInner;
}
#undef EMBEDQ_REP12

struct Family {
  const char* name;
  bool available;
  double (*loop)();
};

double on_threads(int threads, double seconds, double (*loop)()) {
  std::vector<double> rate((size_t)threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { rate[(size_t)t] = timed(seconds, loop); });
  for (auto& th : pool) th.join();
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace
#endif

std::vector<PeakRate> measure_peaks(int threads, double seconds) {
  std::vector<PeakRate> out;
  if (threads < 1) threads = 1;
#if defined(EMBEDQ_X86)
  __builtin_cpu_init();
  const Family families[] = {
      {"fp32 fma (avx2)", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), fma_avx2},
      {"int16 dot (avx2 vpmaddwd)", (bool)__builtin_cpu_supports("avx2"), madd_avx2},
      {"fp32 fma (avx512)", (bool)__builtin_cpu_supports("avx512f"), fma_avx512},
      {"int16 dot (avx512 vpdpwssd)", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"),
       dpwssd_avx512},
      {"int8 dot (avx512 vpdpbusd)", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"),
       dpbusd_avx512},
      {"bf16 dot (avx512 vdpbf16ps)", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"),
       dpbf16_avx512},
  };
  for (const Family& f : families) {
    if (f.available) out.push_back(PeakRate{f.name, on_threads(threads, seconds, f.loop) / 1e9});
  }
#else
  (void)seconds;  // only x86 loops so far; NEON's would go beside them
#endif
  return out;
}

}  // namespace embedq
