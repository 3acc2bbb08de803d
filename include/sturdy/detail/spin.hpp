// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/spin.hpp
// -----------------------------------------------------------------------------
//
// Internal: spinning politely. `cpu_relax()` is the CPU's spin-wait hint
// (x86 PAUSE; nothing elsewhere). `backoff` is bounded exponential back-off
// for a compare-and-swap loop that lost a race: after the k-th consecutive
// failure it spins 2^k hints (at most `max_spins`), so a contended cache line
// stays with the thread that holds it for a run of successes instead of
// moving back and forth on every attempt (which makes every attempt fail).
//
// Thread safety: `backoff` is a per-call local value.

#ifndef STURDY_DETAIL_SPIN_HPP_
#define STURDY_DETAIL_SPIN_HPP_

#include <cstdint>

namespace sturdy::detail {

inline void cpu_relax() noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_ia32_pause();
#endif
}

template <std::uint32_t max_spins = 64>
class backoff {
  static_assert(max_spins >= 1 && (max_spins & (max_spins - 1)) == 0, "max_spins must be a power of two");

 public:
  // Spins 1, 2, 4, ... up to max_spins hints on successive calls.
  void pause() noexcept {
    for (std::uint32_t i = 0; i < spins_; ++i) cpu_relax();
    if (spins_ < max_spins) spins_ <<= 1;
  }

 private:
  std::uint32_t spins_ = 1;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_SPIN_HPP_
