// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/gcra.hpp
// -----------------------------------------------------------------------------
//
// Internal: the decision core of every rate limiter in sturdy (the local,
// lock-free `sturdy::rate_limiter` and the fleet-wide
// `sturdy::redis::rate_limiter`, whose Lua script does the same maths). It is
// pure: (state, now, n, max_wait) -> decision. No clock, no atomics, no I/O:
// drivers read the time, store the state and wait.
//
// The algorithm is GCRA (the generic cell rate algorithm, a token bucket in
// time coordinates). With the emission interval T (time per request) and the
// burst B (the most requests admitted at one instant by an idle limiter), the
// textbook state is the theoretical arrival time TAT and the tolerance is
// τ = B·T: a request of n is admitted at `now` iff
//
//     max(TAT, now) + n·T − τ <= now,   and then TAT' = max(TAT, now) + n·T.
//
// The state kept here is Z = TAT − τ instead (folly's "zero time" is the same
// coordinate): the rule becomes
//
//     base = max(Z, now − τ);  admitted iff base + n·T <= now;  Z' = base + n·T
//
// so a stored state is never later than the time at which it was stored
// (plus the wait of a reservation), and nothing overflows even with the clock
// at time_point::max(). Times are "biased" nanoseconds: the signed
// time_since_epoch() count with its top bit flipped, an unsigned number with
// the same order, so negative clock epochs need no special case. A fresh
// state is 0 (earlier than any time): "bucket full".
//
// Exactness: over any interval of decision times [a, b], the admitted
// requests of one state total at most (b − a)/T + B. (The first admitted in
// the interval leaves Z >= a − τ + n·T, every later one raises Z by at least
// its n·T, and Z never passes the decision time b.) T is the period divided
// by the rate, rounded UP to whole nanoseconds, so (b − a)/T <= rate·(b − a).
//
// Thread safety: stateless (a `gcra` is an immutable value).

#ifndef STURDY_DETAIL_GCRA_HPP_
#define STURDY_DETAIL_GCRA_HPP_

#include <cstdint>
#include <limits>

#include "sturdy/clock.hpp"

namespace sturdy::detail {

// Order-preserving maps between a signed nanosecond count and its biased
// unsigned form.
[[nodiscard]] constexpr std::uint64_t to_biased(std::int64_t ns) noexcept {
  return static_cast<std::uint64_t>(ns) ^ (std::uint64_t{1} << 63);
}
[[nodiscard]] constexpr std::int64_t from_biased(std::uint64_t b) noexcept {
  return static_cast<std::int64_t>(b ^ (std::uint64_t{1} << 63));
}
[[nodiscard]] constexpr std::uint64_t to_biased(time_point t) noexcept {
  return to_biased(t.time_since_epoch().count());
}

// A non-negative nanosecond count as a duration, saturating at
// duration::max().
[[nodiscard]] constexpr duration saturating_ns(std::uint64_t ns) noexcept {
  constexpr auto max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  return duration(static_cast<std::int64_t>(ns > max ? max : ns));
}

enum class gcra_verdict : std::uint8_t {
  admitted,       // (after `wait`, for a reservation)
  limited,        // not now (or not within max_wait); `wait` = retry_after
  exceeds_burst,  // n > B: can never be admitted
};

struct gcra_outcome {
  gcra_verdict verdict = gcra_verdict::admitted;
  // The state to store (== the old state unless admitted with n > 0).
  std::uint64_t state = 0;
  // admitted: how long the caller must wait for its turn (0 unless a
  // reservation); limited: how long until the same request would be
  // admitted immediately (duration::max() for exceeds_burst).
  duration wait{};
  // Requests of one that would still be admitted immediately, in [0, B].
  std::uint64_t remaining = 0;
  // Until the bucket is full again (the limiter equals a fresh one).
  duration reset_after{};
};

// gcra: the parameters T (interval, ns, >= 1) and B (burst, >= 1) with
// B·T <= INT64_MAX; `sturdy::rate_limiter_options::validation_message()`
// guarantees both. Constructed from invalid values it is never used.
class gcra {
 public:
  constexpr gcra() noexcept = default;
  constexpr gcra(std::uint64_t interval_ns, std::uint64_t burst) noexcept
      : interval_(interval_ns), burst_(burst), tolerance_(interval_ns * burst) {}

  [[nodiscard]] constexpr std::uint64_t interval() const noexcept { return interval_; }
  [[nodiscard]] constexpr std::uint64_t burst() const noexcept { return burst_; }
  [[nodiscard]] constexpr std::uint64_t tolerance() const noexcept { return tolerance_; }

  // The earliest state that still matters at `now`: now − τ (or 0).
  [[nodiscard]] constexpr std::uint64_t floor_at(std::uint64_t now) const noexcept {
    return now >= tolerance_ ? now - tolerance_ : 0;
  }

  // Whether `state` at `now` equals a fresh limiter: the bucket is full.
  [[nodiscard]] constexpr bool full(std::uint64_t state, std::uint64_t now) const noexcept {
    return state <= floor_at(now);
  }

  // gcra::decide()
  //
  // The decision for a request of `n` at `now` from `state`, allowed to wait
  // up to `max_wait` ns for its turn (0: admitted only if conforming now).
  // n = 0 peeks: the decision for one request, but `state` never changes
  // (`remaining` counts before it).
  [[nodiscard]] constexpr gcra_outcome decide(std::uint64_t state, std::uint64_t now, std::uint64_t n,
                                              std::uint64_t max_wait = 0) const noexcept {
    const std::uint64_t base = state > floor_at(now) ? state : floor_at(now);
    gcra_outcome out;
    out.state = state;
    out.remaining = base <= now ? (now - base) / interval_ : 0;
    out.reset_after = until_full(base, now);
    if (n > burst_) {
      out.verdict = gcra_verdict::exceeds_burst;
      out.wait = duration::max();
      return out;
    }
    const bool peek = n == 0;
    const std::uint64_t need = (peek ? 1 : n) * interval_;  // <= τ
    const std::uint64_t horizon = now > ~std::uint64_t{0} - max_wait ? ~std::uint64_t{0} : now + max_wait;
    if (base > horizon || horizon - base < need) {
      out.verdict = gcra_verdict::limited;
      // base + need − now, without overflow (base + need may pass 2^64).
      out.wait = base > now ? saturating_add(saturating_ns(base - now), saturating_ns(need))
                            : saturating_ns(need - (now - base));
      return out;
    }
    const std::uint64_t next = base + need;  // <= horizon: no overflow
    out.wait = next > now ? saturating_ns(next - now) : duration::zero();
    if (peek) {
      out.wait = duration::zero();
      return out;
    }
    out.state = next;
    out.remaining = next <= now ? (now - next) / interval_ : 0;
    out.reset_after = until_full(next, now);
    return out;
  }

  // The state after giving back a reservation of `n` that left `state`
  // (used only while `state` is still the latest one stored).
  [[nodiscard]] constexpr std::uint64_t give_back(std::uint64_t state, std::uint64_t n) const noexcept {
    const std::uint64_t need = n * interval_;
    return state >= need ? state - need : 0;
  }

 private:
  // TAT − now = base + τ − now, saturating.
  [[nodiscard]] constexpr duration until_full(std::uint64_t base, std::uint64_t now) const noexcept {
    if (base <= now) {
      const std::uint64_t ago = now - base;
      return ago >= tolerance_ ? duration::zero() : saturating_ns(tolerance_ - ago);
    }
    return saturating_add(saturating_ns(base - now), saturating_ns(tolerance_));
  }

  std::uint64_t interval_ = 1;
  std::uint64_t burst_ = 1;
  std::uint64_t tolerance_ = 1;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_GCRA_HPP_
