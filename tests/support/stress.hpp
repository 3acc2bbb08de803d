// Helpers for stress tests: iteration counts that shrink under
// ThreadSanitizer (which slows code 5-15x) so the TSan pass stays within the
// CI time budget while still interleaving threads millions of times in the
// normal build.
#ifndef STURDY_TESTS_SUPPORT_STRESS_HPP_
#define STURDY_TESTS_SUPPORT_STRESS_HPP_

#include <cstdint>
#include <cstdlib>

#include "sturdy/config.hpp"

namespace sturdy::test {

// `n` in a normal build, n / 10 under TSan (at least 1000). The environment
// variable STURDY_STRESS_SCALE (a positive integer) multiplies it for soak runs.
inline std::uint64_t stress_iterations(std::uint64_t n) {
  std::uint64_t scale = 1;
  if (const char* s = std::getenv("STURDY_STRESS_SCALE")) {
    const long v = std::strtol(s, nullptr, 10);
    if (v > 0) scale = static_cast<std::uint64_t>(v);
  }
  if (STURDY_TSAN) n = n / 10 < 1000 ? 1000 : n / 10;
  return n * scale;
}

}  // namespace sturdy::test

#endif  // STURDY_TESTS_SUPPORT_STRESS_HPP_
