// The C++ tests' one harness: plain programs that count checks, print one
// line per failure (the first 50, so a broken kernel does not drown the
// summary) and end with `return report();`, which prints "N passed, M failed"
// and gives exit code 1 on any failure.
//
//   CHECK(cond)                     the condition's text is the message
//   CHECK_MSG(cond, fmt, ...)       printf-style message
//   CHECK_NEAR(got, want, tol)      |got - want| <= tol, values printed
//   check::record(ok, file, line, fmt, ...)   for helpers that report their caller's line
#pragma once
#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace check {

inline int passed = 0;
inline int failed = 0;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
inline bool record(bool ok, const char* file, int line, const char* fmt, ...) {
  if (ok) {
    ++passed;
    return true;
  }
  if (++failed <= 50) {
    std::printf("FAIL %s:%d: ", file, line);
    std::va_list ap;
    va_start(ap, fmt);
    std::vprintf(fmt, ap);
    va_end(ap);
    std::fputc('\n', stdout);
  }
  return false;
}

inline int report() {
  if (failed > 50) std::printf("(%d more failures not shown)\n", failed - 50);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

}  // namespace check

using check::report;

#define CHECK(cond) ::check::record(static_cast<bool>(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_MSG(cond, ...) ::check::record(static_cast<bool>(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_NEAR(got, want, tol)                                                                        \
  do {                                                                                                    \
    const double check_got_ = (double)(got), check_want_ = (double)(want), check_tol_ = (double)(tol);   \
    ::check::record(std::fabs(check_got_ - check_want_) <= check_tol_, __FILE__, __LINE__,                \
                    "%s = %.9g, want %s = %.9g (tolerance %g)", #got, check_got_, #want, check_want_,    \
                    check_tol_);                                                                          \
  } while (0)
