// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/backoff.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::backoff` computes how long to wait before retry number `n` (0 for
// the first retry). It is a small copyable value (a curve, a jitter mode and
// a few durations) and a pure function of
//
//     (retry number, per-call state, random generator)  ->  delay
//
// so one `backoff` can be shared by any number of threads and calls while
// each call keeps its own `backoff::state` (the decorrelated modes remember
// the previous delay there, never in the shared value).
//
// Curves (the raw delay `t(n)` before jitter, `b` = base):
//   constant     t(n) = b
//   linear       t(n) = b * (n + 1)
//   exponential  t(n) = b * multiplier^n            (multiplier >= 1)
// Jitter modes (`c` = cap, `T = min(c, t(n))`, `U(a, b)` uniform):
//   none                 T
//   full                 U(0, T)                          (AWS "full jitter")
//   equal                T/2 + U(0, T/2)                  (AWS "equal jitter")
//   ratio                U(T * (1 - r), min(c, T * (1 + r)))   (gRPC: r = 0.2)
//   decorrelated         min(c, U(b, 3 * prev)), prev starts at b   (AWS)
//   decorrelated_smooth  x = n + U(0,1); f = 2^x * tanh(sqrt(4x));
//                        delay = (f - f_prev) * b / 1.4; f_prev = f  (Polly V2)
// The two decorrelated modes define their own growth: they ignore `curve`
// and `multiplier`.
//
// Guarantees, for every mode and every retry number up to 2^64 - 1: the
// delay lies in `[min, cap]`; jitter is drawn before the cap is enforced and
// the ratio mode narrows its range at the cap rather than piling every
// sample onto it; no step can overflow, produce infinity or NaN (growth is
// computed in floating point and saturates at the cap).
//
// Example:
//
//   sturdy::backoff b = sturdy::backoff::exponential(
//       std::chrono::milliseconds(100), std::chrono::seconds(10), sturdy::jitter::full);
//   sturdy::backoff::state st;                 // one per call / per retry loop
//   std::mt19937_64 gen(42);
//   for (std::uint64_t n = 0; n < 5; ++n) {
//     sturdy::duration d = b.next_delay(n, st, gen);   // in [0, 10 s]
//   }
//
// Your own strategy: any copyable type with a default-constructible nested
// `state` and a `next_delay(std::uint64_t n, state&, Gen&) const -> duration`
// template over uniform random bit generators satisfies
// `sturdy::backoff_strategy` and plugs into `sturdy::basic_retry_options`.
//
// Randomness: every draw comes from the generator the caller passes in
// (`std::uniform_random_bit_generator`: `std::mt19937_64`, `absl::BitGen`,
// `absl::BitGenRef`, `absl::MockingBitGen`, ...). `sturdy::thread_local_random`
// is an empty generator whose state is thread-local: safe to share, no locks,
// no allocation, seeded per thread from the clock, the thread and a counter
// (good for jitter, not for cryptography).
//
// Thread safety: `backoff` is an immutable value once built; `next_delay` is
// const. A `backoff::state` belongs to one call. A generator must not be used
// by two threads at once unless it says so (`thread_local_random` does).
//
// Testing: pass a seeded generator (`std::mt19937_64 gen(42)`) and assert on
// exact delays or on bounds.

#ifndef STURDY_BACKOFF_HPP_
#define STURDY_BACKOFF_HPP_

#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <random>
#include <string_view>
#include <type_traits>

#include "absl/random/distributions.h"
#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"

namespace sturdy {

// thread_local_random
//
// A `std::uniform_random_bit_generator` with no state of its own: each
// thread draws from its own SplitMix64 sequence, seeded on the thread's
// first draw. The default generator of `retry_policy`, so a policy shared by
// many threads never races on a generator. Copy it freely; all copies on one
// thread share that thread's sequence.
struct thread_local_random {
  using result_type = std::uint64_t;
  [[nodiscard]] static constexpr result_type min() noexcept { return 0; }
  [[nodiscard]] static constexpr result_type max() noexcept {
    return std::numeric_limits<result_type>::max();
  }

  result_type operator()() const noexcept {
    thread_state& s = state();
    if (STURDY_UNLIKELY(!s.seeded)) seed(s);
    s.x += 0x9e3779b97f4a7c15ULL;
    return mix(s.x);
  }

 private:
  struct thread_state {
    std::uint64_t x = 0;
    bool seeded = false;
  };
  static thread_state& state() noexcept {
    static thread_local thread_state s;
    return s;
  }
  static constexpr std::uint64_t mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  static void seed(thread_state& s) noexcept {
    static std::atomic<std::uint64_t> counter{0};
    const auto ticks = static_cast<std::uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count());
    const auto addr = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&s));
    const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
    s.x = mix(ticks ^ mix(addr) ^ mix(n + 0x632be59bd9b4e019ULL));
    s.seeded = true;
  }
};

static_assert(std::uniform_random_bit_generator<thread_local_random>);

// The raw growth of the delay before jitter.
enum class backoff_curve : std::uint8_t {
  constant,     // base
  linear,       // base * (n + 1)
  exponential,  // base * multiplier^n
};

// How the raw delay is randomised (formulas in the banner).
enum class jitter : std::uint8_t {
  none,
  full,
  equal,
  ratio,
  decorrelated,
  decorrelated_smooth,
};

[[nodiscard]] constexpr std::string_view to_string(jitter j) noexcept {
  switch (j) {
    case jitter::none: return "none";
    case jitter::full: return "full";
    case jitter::equal: return "equal";
    case jitter::ratio: return "ratio";
    case jitter::decorrelated: return "decorrelated";
    case jitter::decorrelated_smooth: return "decorrelated_smooth";
  }
  return "unknown";
}

[[nodiscard]] constexpr std::string_view to_string(backoff_curve c) noexcept {
  switch (c) {
    case backoff_curve::constant: return "constant";
    case backoff_curve::linear: return "linear";
    case backoff_curve::exponential: return "exponential";
  }
  return "unknown";
}

namespace detail {

// A uniform double in [0, 1) from any URBG.
template <std::uniform_random_bit_generator Gen>
[[nodiscard]] double uniform01(Gen& gen) {
  return absl::Uniform<double>(gen, 0.0, 1.0);
}

// A URBG archetype used to check user strategies in `backoff_strategy`.
struct urbg_archetype {
  using result_type = std::uint32_t;
  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return 0xffffffffu; }
  result_type operator()() noexcept { return 0; }
};

// Non-owning URBG handle, so a retry loop can hold "the caller's generator".
template <std::uniform_random_bit_generator Gen>
class urbg_ref {
 public:
  using result_type = typename Gen::result_type;
  explicit urbg_ref(Gen& g) noexcept : g_(&g) {}
  static constexpr result_type min() noexcept { return Gen::min(); }
  static constexpr result_type max() noexcept { return Gen::max(); }
  result_type operator()() const { return (*g_)(); }

 private:
  Gen* g_;
};

}  // namespace detail

// backoff_strategy<S>
//
// What a retry loop needs from a delay strategy: a copyable value, a nested
// default-constructible per-call `state`, and
// `s.next_delay(retry_number, state, gen) -> sturdy::duration` for any
// uniform random bit generator.
template <class S>
concept backoff_strategy =
    std::copy_constructible<S> && std::default_initializable<typename S::state> &&
    requires(const S& s, typename S::state& st, std::uint64_t n, detail::urbg_archetype& g) {
      { s.next_delay(n, st, g) } -> std::same_as<duration>;
    };

// backoff
//
// Aggregate; fill with designated initializers or the named constructors
// below. Check values read from configuration with `validate()`: a retry
// policy built from invalid options refuses to run (`errc::invalid_options`)
// rather than clamp silently.
struct backoff {
  // The growth of the raw delay. Default exponential.
  backoff_curve curve = backoff_curve::exponential;
  // The jitter mode. Default full (AWS's recommendation: spreads retries
  // of many clients best).
  sturdy::jitter jitter = sturdy::jitter::full;
  // The first raw delay (and the lower end of the decorrelated range).
  // Default 100 ms. Must be >= 0 and <= cap.
  duration base = std::chrono::milliseconds(100);
  // The largest delay ever returned. Default 10 s. Must be >= min.
  duration cap = std::chrono::seconds(10);
  // The smallest delay ever returned (applied after jitter). Default 0.
  duration min = duration::zero();
  // Growth factor per retry of the exponential curve. Default 2. Must be
  // finite and >= 1.
  double multiplier = 2.0;
  // Half-width of the ratio jitter, as a fraction of the delay. Default 0.2
  // (gRPC's 0.8x..1.2x). Must be in [0, 1].
  double ratio = 0.2;

  // Per-call state: created fresh for every call (value-initialised), never
  // shared between calls or threads.
  struct state {
    double prev = -1;  // previous delay (decorrelated) or f_prev (smooth); < 0: none yet
  };

  // Named constructors for the common shapes.
  [[nodiscard]] static constexpr backoff constant(duration delay, sturdy::jitter j = sturdy::jitter::none) {
    // The cap only bounds the ratio jitter's upper end here: leave room.
    return {.curve = backoff_curve::constant, .jitter = j, .base = delay, .cap = duration::max()};
  }
  [[nodiscard]] static constexpr backoff linear(duration base, duration cap,
                                                sturdy::jitter j = sturdy::jitter::full) {
    return {.curve = backoff_curve::linear, .jitter = j, .base = base, .cap = cap};
  }
  [[nodiscard]] static constexpr backoff exponential(duration base, duration cap,
                                                     sturdy::jitter j = sturdy::jitter::full,
                                                     double multiplier = 2.0) {
    return {.curve = backoff_curve::exponential, .jitter = j, .base = base, .cap = cap,
            .multiplier = multiplier};
  }
  [[nodiscard]] static constexpr backoff decorrelated(duration base, duration cap) {
    return {.curve = backoff_curve::exponential, .jitter = sturdy::jitter::decorrelated, .base = base,
            .cap = cap};
  }
  [[nodiscard]] static constexpr backoff decorrelated_smooth(duration median_first, duration cap) {
    return {.curve = backoff_curve::exponential, .jitter = sturdy::jitter::decorrelated_smooth,
            .base = median_first, .cap = cap};
  }

  // backoff::validation_message()
  //
  // Empty when valid, otherwise a sentence naming the offending field.
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (base < duration::zero()) return "backoff.base must be >= 0";
    if (min < duration::zero()) return "backoff.min must be >= 0";
    if (cap < min) return "backoff.cap must be >= backoff.min";
    if (base > cap) return "backoff.base must be <= backoff.cap";
    // NaN fails both comparisons.
    if (!(multiplier >= 1.0) || multiplier > 1e300) return "backoff.multiplier must be finite and >= 1";
    if (!(ratio >= 0.0 && ratio <= 1.0)) return "backoff.ratio must be in [0, 1]";
    switch (jitter) {
      case sturdy::jitter::none:
      case sturdy::jitter::full:
      case sturdy::jitter::equal:
      case sturdy::jitter::ratio:
      case sturdy::jitter::decorrelated:
      case sturdy::jitter::decorrelated_smooth:
        break;
      default:
        return "backoff.jitter is not a known mode";
    }
    switch (curve) {
      case backoff_curve::constant:
      case backoff_curve::linear:
      case backoff_curve::exponential:
        break;
      default:
        return "backoff.curve is not a known curve";
    }
    return {};
  }

  // backoff::validate()
  //
  // `errc::invalid_options` when `validation_message()` is not empty.
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }

  // backoff::capped_raw_ns()
  //
  // The curve's value for retry `n`, capped, without jitter, in nanoseconds
  // (a double so that growth saturates instead of overflowing).
  [[nodiscard]] double capped_raw_ns(std::uint64_t n) const noexcept {
    const double b = static_cast<double>(base.count());
    const double c = static_cast<double>(cap.count());
    double t = b;
    switch (curve) {
      case backoff_curve::constant:
        break;
      case backoff_curve::linear:
        t = b * (static_cast<double>(n) + 1.0);  // <= 1.9e19 * 2^64: finite
        break;
      case backoff_curve::exponential:
        if (b > 0.0 && multiplier > 1.0) {
          if (multiplier == 2.0) {
            t = std::ldexp(b, n > 4096 ? 4096 : static_cast<int>(n));  // +inf past DBL_MAX
          } else {
            t = b * std::pow(multiplier, static_cast<double>(n));  // +inf, never NaN
          }
        }
        break;
    }
    return t < c ? t : c;
  }

  // backoff::next_delay()
  //
  // The delay before retry number `n` (0 for the first retry). `st` is this
  // call's state; `gen` supplies the randomness. The result lies in
  // `[min, cap]`. Precondition: `validate()` succeeds; otherwise (e.g.
  // min > cap) the result is still within `[0, max(cap, 0)]`, never UB:
  // the cap wins.
  template <std::uniform_random_bit_generator Gen>
  [[nodiscard]] duration next_delay(std::uint64_t n, state& st, Gen& gen) const {
    const double c = static_cast<double>(cap.count());
    const double b = static_cast<double>(base.count());
    double d = 0.0;
    switch (jitter) {
      case sturdy::jitter::none:
        d = capped_raw_ns(n);
        break;
      case sturdy::jitter::full:
        d = capped_raw_ns(n) * detail::uniform01(gen);
        break;
      case sturdy::jitter::equal: {
        const double t = capped_raw_ns(n);
        d = t / 2 + (t / 2) * detail::uniform01(gen);
        break;
      }
      case sturdy::jitter::ratio: {
        const double t = capped_raw_ns(n);
        const double lo = t * (1.0 - ratio);
        double hi = t * (1.0 + ratio);
        if (hi > c) hi = c;  // narrow the range at the cap: still jittered, never above it
        d = lo + (hi - lo) * detail::uniform01(gen);
        break;
      }
      case sturdy::jitter::decorrelated: {
        const double prev = st.prev < b ? b : st.prev;  // starts at base
        const double hi = prev * 3.0;                      // prev <= cap: finite
        d = b + (hi - b) * detail::uniform01(gen);
        if (d > c) d = c;
        st.prev = d;
        break;
      }
      case sturdy::jitter::decorrelated_smooth: {
        constexpr double kScale = 1.0 / 1.4;
        const double x = static_cast<double>(n) + detail::uniform01(gen);
        const double prev = st.prev < 0 ? 0.0 : st.prev;
        // 2^x overflows a double past x ~ 1024; long before that the delay
        // is far beyond any cap, so saturate.
        if (x > 1000.0) {
          st.prev = std::numeric_limits<double>::max();
          d = c;
          break;
        }
        const double f = std::exp2(x) * std::tanh(std::sqrt(4.0 * x));
        st.prev = f;
        d = (f - prev) * kScale * b;  // f, prev finite: no NaN
        break;
      }
    }
    // Enforce [min, cap] last; `!(d >= lo)` also catches NaN.
    // Clamped ends return the exact durations (a double near 2^63 must not
    // be converted back to an integer).
    // With invalid options (min > cap, negative values) the result still
    // lies in [0, max(cap, 0)]: the cap wins over min.
    if (!(d > static_cast<double>(min.count()))) {
      const duration lo = min < duration::zero() ? duration::zero() : min;
      return lo > cap ? (cap < duration::zero() ? duration::zero() : cap) : lo;
    }
    if (d >= c) return cap < duration::zero() ? duration::zero() : cap;
    return duration(static_cast<duration::rep>(d));
  }

  friend constexpr bool operator==(const backoff&, const backoff&) = default;
};

static_assert(backoff_strategy<backoff>);

}  // namespace sturdy

#endif  // STURDY_BACKOFF_HPP_
