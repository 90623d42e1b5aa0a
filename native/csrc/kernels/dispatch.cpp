// Run-time choice of the kernel set. The SIMD files are compiled with ISA
// flags the baseline code is not, so nothing from them may run before the
// CPU (and the OS, which must save the wider registers) has been checked.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"

#if defined(EMBEDQ_X86) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

namespace embedq {

// Each accessor is defined exactly once per platform: in its ISA file when
// that file is part of the build, here otherwise.
#if !defined(EMBEDQ_X86)
const Kernels* kernels_avx2() { return nullptr; }
const Kernels* kernels_avx512() { return nullptr; }
const Kernels* kernels_avx512vnni() { return nullptr; }
#else
const Kernels* kernels_avx512vnni();  // avx512.cpp; not part of the public header
#endif
#if !defined(EMBEDQ_ARM)
const Kernels* kernels_neon() { return nullptr; }
#endif

namespace {

struct CpuFeatures {
  bool avx2 = false;       // avx2 + fma + f16c, with ymm state enabled by the OS
  bool avx512 = false;     // f + bw + vl + dq, with zmm/opmask state enabled by the OS
  bool avx512vnni = false;
  bool neon = false;
};

#if defined(EMBEDQ_X86) && (defined(__x86_64__) || defined(__i386__))
uint64_t read_xcr0() {
  uint32_t lo, hi;
  // Inline asm because _xgetbv() would need -mxsave, which this baseline file lacks.
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  // A CPU can report AVX while the OS does not save ymm/zmm registers on
  // context switch; XCR0 says what the OS actually enabled.
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;     // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17),
             avx512bw = b & (1u << 30), avx512vl = b & (1u << 31), vnni = c & (1u << 11);
  f.avx2 = os_ymm && avx2 && fma && f16c;
  // The AVX-512 file is also compiled with AVX2/FMA/F16C, so require those too.
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512bw && avx512vl && avx512dq;
  f.avx512vnni = f.avx512 && vnni;
  return f;
}
#else
CpuFeatures detect() {
  CpuFeatures f;
#if defined(EMBEDQ_ARM) && defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is mandatory in AArch64
#endif
  return f;
}
#endif

const CpuFeatures& cpu() {
  static const CpuFeatures f = detect();
  return f;
}

// Supported sets, scalar first and best last.
const std::vector<const Kernels*>& supported() {
  static const std::vector<const Kernels*> list = [] {
    std::vector<const Kernels*> v{&kernels_scalar()};
    const CpuFeatures& f = cpu();
    if (f.neon && kernels_neon()) v.push_back(kernels_neon());
    if (f.avx2 && kernels_avx2()) v.push_back(kernels_avx2());
    if (f.avx512 && kernels_avx512()) v.push_back(kernels_avx512());
    if (f.avx512vnni && kernels_avx512vnni()) v.push_back(kernels_avx512vnni());
    return v;
  }();
  return list;
}

const Kernels& choose() {
  const Kernels& best = *supported().back();
  const char* want = std::getenv("EMBEDQ_KERNELS");
  if (!want || !*want) return best;
  if (const Kernels* k = kernels_by_name(want)) return *k;
  std::fprintf(stderr, "embedq: EMBEDQ_KERNELS=%s is not supported on this CPU; using %s\n", want,
               best.name);
  return best;
}

}  // namespace

const Kernels& kernels_best() {
  static const Kernels& k = choose();
  return k;
}

const char* const* kernels_available(size_t* count) {
  static const std::vector<const char*> names = [] {
    std::vector<const char*> v;
    for (const Kernels* k : supported()) v.push_back(k->name);
    return v;
  }();
  if (count) *count = names.size();
  return names.data();
}

const Kernels* kernels_by_name(const char* name) {
  if (!name) return nullptr;
  for (const Kernels* k : supported())
    if (std::strcmp(k->name, name) == 0) return k;
  return nullptr;
}

}  // namespace embedq
