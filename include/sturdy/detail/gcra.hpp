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

struct gcra_step {
  gcra_verdict verdict = gcra_verdict::admitted;
  std::uint64_t base = 0;  // max(state, now - tau)
  std::uint64_t next = 0;  // the state to store (the old one unless admitted with n > 0)
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
      : interval_(interval_ns),
        burst_(burst),
        tolerance_(interval_ns * burst),
        inverse_(1.0 / static_cast<double>(interval_ns)) {}

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

  // gcra::admit()
  //
  // The admitting case of `step` alone, for drivers' hot paths: the state
  // to store when a request costing `need` = n·T (n in [1, B]) is admitted
  // at `now` from `state` without waiting (`floor` = floor_at(now)), or 0
  // when it is not (then the driver takes the general path). Never 0 when
  // admitted, since need >= 1.
  [[nodiscard]] constexpr std::uint64_t admit(std::uint64_t state, std::uint64_t floor, std::uint64_t now,
                                              std::uint64_t need) const noexcept {
    const std::uint64_t base = state > floor ? state : floor;
    return base <= now && now - base >= need ? base + need : 0;
  }

  // For an admission that stored `next` at `now` (next <= now, as `admit`
  // guarantees): the requests of one still admitted at once, and the time
  // until the bucket is full again. Equal to `describe`'s fields.
  [[nodiscard]] constexpr std::uint64_t remaining_after(std::uint64_t next, std::uint64_t now) const noexcept {
    return div_interval(now - next);
  }
  [[nodiscard]] constexpr duration reset_after(std::uint64_t next, std::uint64_t now) const noexcept {
    return until_full(next, now);
  }

  // gcra::step()
  //
  // The admission half of `decide`: the verdict and the state to store,
  // with no division (drivers call it inside their compare-and-swap loop and
  // `describe` once, after).
  [[nodiscard]] constexpr gcra_step step(std::uint64_t state, std::uint64_t now, std::uint64_t n,
                                         std::uint64_t max_wait = 0) const noexcept {
    const std::uint64_t floor = floor_at(now);
    gcra_step s;
    s.base = state > floor ? state : floor;
    s.next = state;
    if (n > burst_) {
      s.verdict = gcra_verdict::exceeds_burst;
      return s;
    }
    const std::uint64_t need = (n == 0 ? 1 : n) * interval_;  // <= tau
    const std::uint64_t horizon = now > ~std::uint64_t{0} - max_wait ? ~std::uint64_t{0} : now + max_wait;
    if (s.base > horizon || horizon - s.base < need) {
      s.verdict = gcra_verdict::limited;
      return s;
    }
    s.verdict = gcra_verdict::admitted;
    if (n != 0) s.next = s.base + need;  // <= horizon: no overflow; a peek stores nothing
    return s;
  }

  // gcra::describe()
  //
  // The rest of the decision for a `step` taken at `now` for `n`.
  [[nodiscard]] constexpr gcra_outcome describe(const gcra_step& s, std::uint64_t now,
                                                std::uint64_t n) const noexcept {
    gcra_outcome out;
    out.verdict = s.verdict;
    out.state = s.next;
    // Admitted (not a peek): the bucket after this request; otherwise before.
    const std::uint64_t at = s.verdict == gcra_verdict::admitted && n != 0 ? s.next : s.base;
    out.remaining = at <= now ? div_interval(now - at) : 0;
    out.reset_after = until_full(at, now);
    switch (s.verdict) {
      case gcra_verdict::exceeds_burst:
        out.wait = duration::max();
        break;
      case gcra_verdict::limited: {
        const std::uint64_t need = (n == 0 ? 1 : n) * interval_;
        // base + need - now, without overflow (base + need may pass 2^64).
        out.wait = s.base > now ? saturating_add(saturating_ns(s.base - now), saturating_ns(need))
                                : saturating_ns(need - (now - s.base));
        break;
      }
      case gcra_verdict::admitted:
        out.wait = n != 0 && s.next > now ? saturating_ns(s.next - now) : duration::zero();
        break;
    }
    return out;
  }

  // gcra::decide()
  //
  // The decision for a request of `n` at `now` from `state`, allowed to wait
  // up to `max_wait` ns for its turn (0: admitted only if conforming now).
  // n = 0 peeks: the decision for one request, but `state` never changes
  // (`remaining` counts before it).
  [[nodiscard]] constexpr gcra_outcome decide(std::uint64_t state, std::uint64_t now, std::uint64_t n,
                                              std::uint64_t max_wait = 0) const noexcept {
    return describe(step(state, now, n, max_wait), now, n);
  }

  // The state after giving back a reservation of `n` that left `state`
  // (used only while `state` is still the latest one stored).
  [[nodiscard]] constexpr std::uint64_t give_back(std::uint64_t state, std::uint64_t n) const noexcept {
    const std::uint64_t need = n * interval_;
    return state >= need ? state - need : 0;
  }

 private:
  // x / T. A 64-bit division costs tens of cycles; below 2^52, x * (1/T) in
  // double is within 1 of the quotient, and one comparison fixes it.
  [[nodiscard]] constexpr std::uint64_t div_interval(std::uint64_t x) const noexcept {
    if (x >= (std::uint64_t{1} << 52)) return x / interval_;
    auto q = static_cast<std::uint64_t>(
        static_cast<std::int64_t>(static_cast<double>(static_cast<std::int64_t>(x)) * inverse_));
    if (q * interval_ > x) {
      --q;
    } else if (x - q * interval_ >= interval_) {
      ++q;
    }
    return q;
  }

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
  double inverse_ = 1.0;  // 1 / interval_
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_GCRA_HPP_
