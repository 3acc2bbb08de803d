// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/limit_algorithms.hpp
// -----------------------------------------------------------------------------
//
// The limit algorithms of `sturdy::concurrency_limiter`: how many calls may be
// in flight at once. Each is a small decision object with no clock, no thread
// and no I/O: the limiter feeds it one `limit_sample` per completed (or
// dropped) call and it answers with the new limit. Five of them, behind one
// concept, `limit_algorithm`:
//
//   fixed_limit            a static bulkhead (resilience4j, Polly, Failsafe)
//   aimd_limit             additive increase, multiplicative decrease (Netflix)
//   vegas_limit            delay-based, TCP Vegas style (Netflix's default)
//   gradient2_limit        Netflix Gradient2, with its upward drift fixed
//   envoy_gradient_limit   Envoy's adaptive-concurrency gradient controller
//   windowed_limit<A>      Netflix's WindowedLimit: feeds A one aggregated
//                          sample per window instead of every sample
//
// Every limit is clamped to [min_limit, max_limit]. Defaults are the anchors'
// (REFERENCE.md, "Concurrency limits"), listed per field. Every options struct
// has `validation_message()` ("<struct>.<field> must ...") and `validate()`.
//
// Example (the algorithm alone, as a test would drive it):
//
//   sturdy::aimd_limit aimd({.initial_limit = 20, .min_limit = 5});
//   std::uint32_t l = aimd.update({.rtt = std::chrono::milliseconds(3),
//                                  .in_flight = 20, .dropped = false, .now = {}});
//   // l == 21: in flight >= limit / 2, no drop, so +1.
//
// Thread safety: none. An algorithm is owned by one limiter, which calls it
// under its lock. `limit()` is only read there too.

#ifndef STURDY_LIMIT_ALGORITHMS_HPP_
#define STURDY_LIMIT_ALGORITHMS_HPP_

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "sturdy/clock.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"

namespace sturdy {

// limit_sample
//
// One finished call, as a limit algorithm sees it.
struct limit_sample {
  // Time from admission to completion (excludes time spent queued).
  duration rtt{};
  // Calls in flight when this one was admitted, itself included.
  std::uint32_t in_flight = 0;
  // True when the call was dropped (timed out, overload signal): congestion.
  bool dropped = false;
  // When the call finished (the limiter's clock). Only time-driven
  // algorithms (envoy_gradient_limit) read it.
  time_point now{};
};

// limit_algorithm<A>
//
// `a.limit()` is the current limit (>= 1); `a.update(sample)` takes one
// sample and returns the new limit; `A::uses_samples` says whether the
// algorithm reads samples at all (false for `fixed_limit`: the limiter then
// reads no clock and takes no lock on release); `validation_message()` is
// empty when the algorithm's options are valid.
template <class A>
concept limit_algorithm = requires(A& a, const A& ca, const limit_sample& s) {
  { ca.limit() } -> std::same_as<std::uint32_t>;
  { a.update(s) } -> std::same_as<std::uint32_t>;
  { ca.validation_message() } -> std::convertible_to<std::string_view>;
  { A::uses_samples } -> std::convertible_to<bool>;
};

namespace detail {

// The largest limit any algorithm accepts (in-flight counts are 32-bit).
inline constexpr std::uint32_t max_concurrency_limit = 1u << 30;

[[nodiscard]] inline std::uint32_t clamp_limit(double v, std::uint32_t lo, std::uint32_t hi) noexcept {
  if (!(v >= static_cast<double>(lo))) return lo;  // also NaN
  if (v >= static_cast<double>(hi)) return hi;
  return static_cast<std::uint32_t>(v);
}

[[nodiscard]] inline double rtt_ns(duration d) noexcept { return static_cast<double>(d.count()); }

// splitmix64: the algorithms' own seeded generator (probe jitter).
[[nodiscard]] inline std::uint64_t splitmix64(std::uint64_t& s) noexcept {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
[[nodiscard]] inline double uniform01(std::uint64_t& s) noexcept {
  return static_cast<double>(splitmix64(s) >> 11) * 0x1.0p-53;
}

// "min_limit <= initial_limit <= max_limit, all in [1, 2^30]" for each
// options struct; `msgs` are its three static sentences.
struct limit_range_messages {
  std::string_view min, max, initial;
};
[[nodiscard]] constexpr std::string_view check_limit_range(std::uint32_t min, std::uint32_t initial,
                                                           std::uint32_t max,
                                                           const limit_range_messages& m) noexcept {
  if (min < 1) return m.min;
  if (max < min || max > max_concurrency_limit) return m.max;
  if (initial < min || initial > max) return m.initial;
  return {};
}

}  // namespace detail

// ----------------------------------------------------------------------------
// fixed_limit
// ----------------------------------------------------------------------------

struct fixed_limit_options {
  // The limit. Default 25 (resilience4j SemaphoreBulkhead; Polly's
  // ConcurrencyLimiter defaults to 1000). Must be in [1, 2^30].
  std::uint32_t limit = 25;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (limit < 1 || limit > detail::max_concurrency_limit) return "fixed_limit_options.limit must be in [1, 2^30]";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// fixed_limit: never changes; reads no samples.
class fixed_limit {
 public:
  static constexpr bool uses_samples = false;
  constexpr fixed_limit() noexcept = default;
  constexpr explicit fixed_limit(fixed_limit_options options) noexcept : options_(options) {}
  [[nodiscard]] std::uint32_t limit() const noexcept { return options_.limit; }
  std::uint32_t update(const limit_sample&) noexcept { return options_.limit; }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    return options_.validation_message();
  }

 private:
  fixed_limit_options options_{};
};

// ----------------------------------------------------------------------------
// aimd_limit
// ----------------------------------------------------------------------------

struct aimd_limit_options {
  // Defaults 20 / 20 / 200 (Netflix AIMDLimit). 1 <= min <= initial <= max <= 2^30.
  std::uint32_t initial_limit = 20;
  std::uint32_t min_limit = 20;
  std::uint32_t max_limit = 200;
  // A drop (or an rtt above `timeout`) multiplies the limit by this, in
  // [0.5, 1). Default 0.9.
  double backoff_ratio = 0.9;
  // A call slower than this counts as a drop. Must be > 0 (duration::max()
  // = never). Default 5 s.
  duration timeout = std::chrono::seconds(5);

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    const std::string_view m = detail::check_limit_range(
        min_limit, initial_limit, max_limit,
        {"aimd_limit_options.min_limit must be >= 1", "aimd_limit_options.max_limit must be in [min_limit, 2^30]",
         "aimd_limit_options.initial_limit must be in [min_limit, max_limit]"});
    if (!m.empty()) return m;
    if (!(backoff_ratio >= 0.5 && backoff_ratio < 1.0)) return "aimd_limit_options.backoff_ratio must be in [0.5, 1)";
    if (timeout <= duration::zero()) return "aimd_limit_options.timeout must be > 0";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// aimd_limit
//
//   drop or rtt > timeout:      L <- floor(L * backoff_ratio)
//   otherwise, in_flight*2 >= L: L <- L + 1
//   otherwise (app-limited):    L unchanged
// then clamped to [min_limit, max_limit]. Integer arithmetic, as Netflix.
class aimd_limit {
 public:
  static constexpr bool uses_samples = true;
  aimd_limit() noexcept : aimd_limit(aimd_limit_options{}) {}
  explicit aimd_limit(aimd_limit_options options) noexcept
      : options_(options), limit_(options.initial_limit) {}

  [[nodiscard]] std::uint32_t limit() const noexcept { return limit_; }
  std::uint32_t update(const limit_sample& s) noexcept {
    double next = limit_;
    if (s.dropped || s.rtt > options_.timeout) {
      next = std::floor(static_cast<double>(limit_) * options_.backoff_ratio);
    } else if (std::uint64_t{s.in_flight} * 2 >= limit_) {
      next = static_cast<double>(limit_) + 1.0;
    }
    limit_ = detail::clamp_limit(next, options_.min_limit, options_.max_limit);
    return limit_;
  }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    return options_.validation_message();
  }

 private:
  aimd_limit_options options_;
  std::uint32_t limit_;
};

// ----------------------------------------------------------------------------
// vegas_limit
// ----------------------------------------------------------------------------

struct vegas_limit_options {
  // Defaults 20 / 1 / 1000 (Netflix VegasLimit). 1 <= min <= initial <= max <= 2^30.
  std::uint32_t initial_limit = 20;
  std::uint32_t min_limit = 1;
  std::uint32_t max_limit = 1000;
  // Weight of each new estimate, in (0, 1]. Default 1.0 (no smoothing).
  double smoothing = 1.0;
  // alpha = alpha_factor * f(L), beta = beta_factor * f(L): the estimated
  // queue Vegas keeps between them. Defaults 3 and 6 (Netflix);
  // 1 <= alpha_factor <= beta_factor <= 1000. Raise them for services whose
  // latency varies a lot at no load (the minimum RTT then understates the
  // typical one, and the default band reads that variance as queueing).
  double alpha_factor = 3.0;
  double beta_factor = 6.0;
  // The no-load RTT is re-probed after `U(0.5, 1) * probe_multiplier * L`
  // samples (the next sample becomes the new no-load RTT). Must be >= 1.
  // Default 30.
  std::uint32_t probe_multiplier = 30;
  // Seed of the probe jitter. Default 1 (runs are reproducible).
  std::uint64_t seed = 1;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    const std::string_view m = detail::check_limit_range(
        min_limit, initial_limit, max_limit,
        {"vegas_limit_options.min_limit must be >= 1", "vegas_limit_options.max_limit must be in [min_limit, 2^30]",
         "vegas_limit_options.initial_limit must be in [min_limit, max_limit]"});
    if (!m.empty()) return m;
    if (!(smoothing > 0.0 && smoothing <= 1.0)) return "vegas_limit_options.smoothing must be in (0, 1]";
    if (!(alpha_factor >= 1.0 && alpha_factor <= 1000.0)) return "vegas_limit_options.alpha_factor must be in [1, 1000]";
    if (!(beta_factor >= alpha_factor && beta_factor <= 1000.0))
      return "vegas_limit_options.beta_factor must be in [alpha_factor, 1000]";
    if (probe_multiplier < 1) return "vegas_limit_options.probe_multiplier must be >= 1";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// vegas_limit
//
// With f(L) = max(1, floor(log10 L)), alpha = 3f, beta = 6f (the factors are
// options), threshold = f,
// and queue = ceil(L * (1 - rtt_noload / rtt)):
//   drop:                               L - f (its rtt is not a sample)
//   probe due:                          rtt_noload <- rtt, L unchanged
//   first sample, or rtt < rtt_noload: rtt_noload <- rtt, L unchanged
//   in_flight * 2 < L:                  L unchanged (app-limited)
//   queue <= threshold:                 L + beta
//   queue < alpha:                      L + f
//   queue > beta:                       L - f
//   otherwise:                          L unchanged
// new L = (1 - smoothing) L + smoothing * clamp(candidate).
class vegas_limit {
 public:
  static constexpr bool uses_samples = true;
  vegas_limit() noexcept : vegas_limit(vegas_limit_options{}) {}
  explicit vegas_limit(vegas_limit_options options) noexcept
      : options_(options), estimate_(options.initial_limit), rng_(options.seed) {
    reset_probe();
  }

  [[nodiscard]] std::uint32_t limit() const noexcept { return as_limit(estimate_); }
  std::uint32_t update(const limit_sample& s) noexcept {
    const double l = estimate_;
    const double f = std::max(1.0, std::floor(std::log10(std::floor(l))));
    if (s.dropped) return set(l, l - f);  // a drop's rtt is no latency sample
    const double rtt = std::max(1.0, detail::rtt_ns(s.rtt));
    ++probe_count_;
    if (probe_jitter_ * options_.probe_multiplier * estimate_ <= static_cast<double>(probe_count_)) {
      reset_probe();
      rtt_noload_ = rtt;
      return limit();
    }
    if (rtt_noload_ == 0.0 || rtt < rtt_noload_) {
      rtt_noload_ = rtt;
      return limit();
    }
    if (std::uint64_t{s.in_flight} * 2 < as_limit(l)) return limit();
    const double queue = std::ceil(l * (1.0 - rtt_noload_ / rtt));
    const double alpha = options_.alpha_factor * f;
    const double beta = options_.beta_factor * f;
    if (queue <= f) return set(l, l + beta);
    if (queue < alpha) return set(l, l + f);
    if (queue > beta) return set(l, l - f);
    return limit();
  }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    return options_.validation_message();
  }
  // The current no-load RTT estimate (0 before the first sample).
  [[nodiscard]] duration no_load_rtt() const noexcept { return duration(static_cast<duration::rep>(rtt_noload_)); }

 private:
  [[nodiscard]] std::uint32_t as_limit(double v) const noexcept {
    return detail::clamp_limit(v, options_.min_limit, options_.max_limit);
  }
  std::uint32_t set(double l, double next) noexcept {
    next = std::clamp(next, static_cast<double>(options_.min_limit), static_cast<double>(options_.max_limit));
    estimate_ = (1.0 - options_.smoothing) * l + options_.smoothing * next;
    return limit();
  }
  void reset_probe() noexcept {
    probe_jitter_ = 0.5 + 0.5 * detail::uniform01(rng_);
    probe_count_ = 0;
  }

  vegas_limit_options options_;
  double estimate_;
  double rtt_noload_ = 0.0;
  double probe_jitter_ = 1.0;
  std::uint64_t probe_count_ = 0;
  std::uint64_t rng_;
};

// ----------------------------------------------------------------------------
// gradient2_limit
// ----------------------------------------------------------------------------

struct gradient2_limit_options {
  // Defaults 20 / 20 / 200 (Netflix Gradient2Limit). 1 <= min <= initial <= max <= 2^30.
  std::uint32_t initial_limit = 20;
  std::uint32_t min_limit = 20;
  std::uint32_t max_limit = 200;
  // Weight of each new estimate, in (0, 1]. Default 0.2.
  double smoothing = 0.2;
  // How much slower than the long-term RTT a sample may be before the limit
  // shrinks, >= 1. Default 1.5.
  double rtt_tolerance = 1.5;
  // Window of the long-term RTT average (an EWMA with factor 2/(N+1) after a
  // plain average of the first 10 samples), >= 1. Default 600.
  std::uint32_t long_window = 600;
  // Headroom added to every update, >= 0. Default 4.
  double queue_size = 4.0;
  // The drift fix (see below). Default true; false reproduces Netflix's
  // Gradient2, whose limit drifts up without bound (kept for comparison).
  bool fix_drift = true;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    const std::string_view m = detail::check_limit_range(
        min_limit, initial_limit, max_limit,
        {"gradient2_limit_options.min_limit must be >= 1",
         "gradient2_limit_options.max_limit must be in [min_limit, 2^30]",
         "gradient2_limit_options.initial_limit must be in [min_limit, max_limit]"});
    if (!m.empty()) return m;
    if (!(smoothing > 0.0 && smoothing <= 1.0)) return "gradient2_limit_options.smoothing must be in (0, 1]";
    if (!(rtt_tolerance >= 1.0 && rtt_tolerance <= 1e6)) return "gradient2_limit_options.rtt_tolerance must be in [1, 1e6]";
    if (long_window < 1) return "gradient2_limit_options.long_window must be >= 1";
    if (!(queue_size >= 0.0 && queue_size <= 1e6)) return "gradient2_limit_options.queue_size must be in [0, 1e6]";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// gradient2_limit
//
// Netflix's Gradient2, per sample (short = this sample's rtt):
//   long  <- EWMA(long, rtt)            (plain mean over the first 10 samples)
//   if long / short > 2: long <- 0.95 long
//   if in_flight < L / 2: L unchanged   (app-limited)
//   g = clamp(tolerance * long / short, 0.5, 1)   (0.5 for a drop: PR #134;
//                                                  Netflix ignores drops)
//   L <- (1 - smoothing) L + smoothing (g L + queue_size), clamped
//
// The drift (Netflix PR #134). `long` is meant to be the service's normal
// latency, but it is an average of *loaded* samples: while the limit grows,
// the latency it causes flows into `long` a little later, so `short` rarely
// gets 1.5x ahead of it, g stays ~1 and the `+ queue_size` term raises the
// limit on every sample. Latency and limit then ratchet up together, to
// max_limit, with the service ever more queued.
//
// The fix (fix_drift = true), two parts:
//  1. `+ queue_size` only when g == 1 (the change PR #134 proposes): under
//     modest overload (g ~ 0.8) the headroom no longer props the limit up.
//  2. `long` learns only from samples that our own concurrency cannot have
//     inflated: taken with at most min_limit calls in flight (the least
//     concurrency the limiter ever allows), plus the very first sample; the
//     x0.95 decay stays. (Being app-limited, in_flight < L/2, is no such
//     evidence: with L far above the service's capacity, L/2 calls already
//     queue there. Feeding it every sample below `long` would bias it down
//     to the minimum.) Part 1 alone still drifts
//     when the latency climbs slowly enough for `long` to keep up; with part
//     2 a latency rise caused by the limit shows as g < 1 and pushes the
//     limit back. A genuine, lasting slowdown of the service still reaches
//     `long`: g < 1 takes the limit to its floor, where samples are trusted
//     again, `long` rises and the limit grows back (it cannot get stuck).
// Tests: LimitAlgorithmTest.Gradient2DriftFixHoldsTheLimitUnderSelfInducedQueueing,
// Gradient2FixStillFollowsAGenuineSlowdown.
class gradient2_limit {
 public:
  static constexpr bool uses_samples = true;
  gradient2_limit() noexcept : gradient2_limit(gradient2_limit_options{}) {}
  explicit gradient2_limit(gradient2_limit_options options) noexcept
      : options_(options), estimate_(options.initial_limit) {}

  [[nodiscard]] std::uint32_t limit() const noexcept { return as_limit(estimate_); }
  std::uint32_t update(const limit_sample& s) noexcept {
    const double shortr = std::max(1.0, detail::rtt_ns(s.rtt));
    const double l = estimate_;
    if (!s.dropped) {
      const bool trusted = s.in_flight <= options_.min_limit;  // as unloaded as the limit allows
      if (!options_.fix_drift || samples_ == 0 || trusted) add_long(shortr);
      if (long_ / shortr > 2.0) long_ *= 0.95;
    }
    if (double(s.in_flight) < l / 2) return limit();
    const double g = s.dropped ? 0.5 : std::clamp(options_.rtt_tolerance * long_ / shortr, 0.5, 1.0);
    const double candidate = l * g + (!options_.fix_drift || g == 1.0 ? options_.queue_size : 0.0);
    const double next = (1.0 - options_.smoothing) * l + options_.smoothing * candidate;
    estimate_ = std::clamp(next, static_cast<double>(options_.min_limit), static_cast<double>(options_.max_limit));
    return limit();
  }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    return options_.validation_message();
  }
  // The long-term RTT (0 before the first sample) and the exact estimate.
  [[nodiscard]] double long_rtt_ns() const noexcept { return long_; }
  [[nodiscard]] double estimate() const noexcept { return estimate_; }

 private:
  static constexpr std::uint32_t warmup = 10;
  [[nodiscard]] std::uint32_t as_limit(double v) const noexcept {
    return detail::clamp_limit(v, options_.min_limit, options_.max_limit);
  }
  void add_long(double v) noexcept {
    if (samples_ < warmup) {
      ++samples_;
      long_ += (v - long_) / samples_;
    } else {
      const double factor = 2.0 / (static_cast<double>(options_.long_window) + 1.0);
      long_ = long_ * (1.0 - factor) + v * factor;
    }
  }

  gradient2_limit_options options_;
  double estimate_;
  double long_ = 0.0;
  std::uint32_t samples_ = 0;
};

// ----------------------------------------------------------------------------
// envoy_gradient_limit
// ----------------------------------------------------------------------------

struct envoy_gradient_limit_options {
  // The limit starts here after the first minRTT measurement. Default 3.
  std::uint32_t initial_limit = 3;
  // The minimum-concurrency floor: the limit never goes below it, and the
  // minRTT measurement runs at this concurrency (Envoy pinned it to
  // `min_concurrency` = 3, which caused 503 bursts under live traffic; raise
  // this floor to measure with live traffic flowing). Default 3.
  std::uint32_t min_limit = 3;
  // Default 1000 (Envoy max_concurrency_limit).
  std::uint32_t max_limit = 1000;
  // The limit is recomputed once per interval, from the samples of that
  // interval, on the first sample after it ends (no timer). Must be > 0.
  // Default 100 ms (Envoy concurrency_update_interval).
  duration update_interval = std::chrono::milliseconds(100);
  // Which percentile of an interval's samples is its RTT, in (0, 1].
  // Default 0.5 (p50).
  double sample_percentile = 0.5;
  // Tolerated latency above minRTT, >= 0: g = minRTT (1 + buffer) / rtt.
  // Default 0.25.
  double buffer = 0.25;
  // minRTT is measured over this many samples, >= 1. Default 50.
  std::uint32_t min_rtt_request_count = 50;
  // ...every interval (> 0), jittered by up to +jitter (in [0, 1]).
  // Defaults 60 s and 0.15.
  duration min_rtt_interval = std::chrono::seconds(60);
  double min_rtt_jitter = 0.15;
  // At most this many samples per interval are kept for the percentile
  // (the first ones; storage is allocated once, at construction), in
  // [1, 65536]. Default 1024.
  std::uint32_t max_samples_per_interval = 1024;
  // Seed of the jitter. Default 1.
  std::uint64_t seed = 1;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    const std::string_view m = detail::check_limit_range(
        min_limit, initial_limit, max_limit,
        {"envoy_gradient_limit_options.min_limit must be >= 1",
         "envoy_gradient_limit_options.max_limit must be in [min_limit, 2^30]",
         "envoy_gradient_limit_options.initial_limit must be in [min_limit, max_limit]"});
    if (!m.empty()) return m;
    if (update_interval <= duration::zero()) return "envoy_gradient_limit_options.update_interval must be > 0";
    if (!(sample_percentile > 0.0 && sample_percentile <= 1.0))
      return "envoy_gradient_limit_options.sample_percentile must be in (0, 1]";
    if (!(buffer >= 0.0 && buffer <= 1e6)) return "envoy_gradient_limit_options.buffer must be in [0, 1e6]";
    if (min_rtt_request_count < 1) return "envoy_gradient_limit_options.min_rtt_request_count must be >= 1";
    if (min_rtt_interval <= duration::zero()) return "envoy_gradient_limit_options.min_rtt_interval must be > 0";
    if (!(min_rtt_jitter >= 0.0 && min_rtt_jitter <= 1.0))
      return "envoy_gradient_limit_options.min_rtt_jitter must be in [0, 1]";
    if (max_samples_per_interval < 1 || max_samples_per_interval > 65536)
      return "envoy_gradient_limit_options.max_samples_per_interval must be in [1, 65536]";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// envoy_gradient_limit
//
// Two phases, driven only by samples and their `now`:
//   measuring: the limit is min_limit; after min_rtt_request_count samples,
//     minRTT = their sample_percentile; the limit returns to where it was
//     (initial_limit the first time) and the next measurement is due after
//     min_rtt_interval * (1 + U(0, jitter)).
//   adapting: samples collect for update_interval; on the first sample
//     after it ends, rtt = their percentile (a drop counts as infinitely
//     slow), g = clamp(minRTT (1 + buffer) / rtt, 0.5, 2) and, as Envoy's
//     calculateNewLimit, L <- clamp(floor(g L + sqrt(g L))): the burst
//     headroom is the root of the scaled limit, and the limit is whole.
// The interval's own samples are kept in storage allocated at construction.
class envoy_gradient_limit {
 public:
  static constexpr bool uses_samples = true;
  envoy_gradient_limit() : envoy_gradient_limit(envoy_gradient_limit_options{}) {}
  explicit envoy_gradient_limit(envoy_gradient_limit_options options)
      : options_(options),
        estimate_(options.initial_limit),
        cap_(std::clamp<std::uint32_t>(options.max_samples_per_interval, 1, 65536)),
        rng_(options.seed) {
    window_.reserve(cap_);
  }

  [[nodiscard]] std::uint32_t limit() const noexcept {
    return measuring_ ? options_.min_limit : detail::clamp_limit(estimate_, options_.min_limit, options_.max_limit);
  }
  std::uint32_t update(const limit_sample& s) {
    const double rtt = s.dropped ? std::numeric_limits<double>::infinity() : std::max(1.0, detail::rtt_ns(s.rtt));
    if (measuring_) {
      add(rtt);
      if (window_.size() >= std::min(options_.min_rtt_request_count, cap_)) {
        min_rtt_ = percentile();
        window_.clear();
        measuring_ = false;
        window_start_ = s.now;
        const double jitter = 1.0 + options_.min_rtt_jitter * detail::uniform01(rng_);
        const double ns = static_cast<double>(options_.min_rtt_interval.count()) * jitter;
        next_measurement_ = detail::saturating_add(
            s.now, ns >= 9.2e18 ? duration::max() : duration(static_cast<duration::rep>(ns)));
      }
      return limit();
    }
    if (next_measurement_ != time_point::max() && s.now >= next_measurement_) {
      measuring_ = true;
      window_.clear();
      add(rtt);
      return limit();
    }
    add(rtt);
    if (detail::time_between(window_start_, s.now) < options_.update_interval) return limit();
    const double p = percentile();
    window_.clear();
    window_start_ = s.now;
    const double g = std::isfinite(min_rtt_) && std::isfinite(p)
                         ? std::clamp(min_rtt_ * (1.0 + options_.buffer) / p, 0.5, 2.0)
                         : 0.5;
    const double scaled = g * static_cast<double>(limit());
    estimate_ = std::floor(std::clamp(scaled + std::sqrt(scaled), static_cast<double>(options_.min_limit),
                                      static_cast<double>(options_.max_limit)));
    return limit();
  }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    return options_.validation_message();
  }
  [[nodiscard]] bool measuring_min_rtt() const noexcept { return measuring_; }
  // The measured minRTT in ns (infinity when every measured call dropped).
  [[nodiscard]] double min_rtt_ns() const noexcept { return min_rtt_; }

 private:
  void add(double rtt) {
    if (window_.size() < cap_) window_.push_back(rtt);
  }
  // The sample_percentile of the window (nearest rank); the window is
  // reordered.
  [[nodiscard]] double percentile() noexcept {
    if (window_.empty()) return min_rtt_;
    const double rank = std::ceil(options_.sample_percentile * static_cast<double>(window_.size()));
    const std::size_t k = std::clamp<std::size_t>(static_cast<std::size_t>(rank), 1, window_.size()) - 1;
    std::nth_element(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(k), window_.end());
    return window_[k];
  }

  envoy_gradient_limit_options options_;
  double estimate_;
  double min_rtt_ = 0.0;
  bool measuring_ = true;
  time_point window_start_{};
  time_point next_measurement_{};
  std::uint32_t cap_;
  std::vector<double> window_;
  std::uint64_t rng_;
};

// ----------------------------------------------------------------------------
// windowed_limit<Algorithm>
// ----------------------------------------------------------------------------

struct windowed_limit_options {
  // A window closes on the first sample at least
  // clamp(2 x its smallest rtt, min_window, max_window) after it opened,
  // provided it holds window_size samples (drops included); otherwise it
  // stays open. Defaults 1 s, 1 s, 10 (Netflix WindowedLimit). Windows > 0,
  // min_window <= max_window, window_size >= 1.
  duration min_window = std::chrono::seconds(1);
  duration max_window = std::chrono::seconds(1);
  std::uint32_t window_size = 10;
  // Samples faster than this are ignored (cache hits, errors returned
  // before any work). Default 100 us. Must be >= 0.
  duration min_rtt_threshold = std::chrono::microseconds(100);

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (min_window <= duration::zero()) return "windowed_limit_options.min_window must be > 0";
    if (max_window < min_window) return "windowed_limit_options.max_window must be >= min_window";
    if (window_size < 1) return "windowed_limit_options.window_size must be >= 1";
    if (min_rtt_threshold < duration::zero()) return "windowed_limit_options.min_rtt_threshold must be >= 0";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// windowed_limit<Algorithm>
//
// Netflix's WindowedLimit: aggregates samples over a window and feeds the
// wrapped algorithm one sample per window: the mean rtt of its completed
// calls, the largest in-flight count, and `dropped` if any call dropped. The
// per-sample algorithms then react to the service's latency rather than to
// one call's noise, and at a rate that does not grow with throughput.
template <limit_algorithm Algorithm>
class windowed_limit {
 public:
  static constexpr bool uses_samples = true;
  windowed_limit() = default;
  explicit windowed_limit(windowed_limit_options options, Algorithm inner = Algorithm())
      : options_(options), inner_(std::move(inner)) {}

  [[nodiscard]] std::uint32_t limit() const noexcept { return inner_.limit(); }
  std::uint32_t update(const limit_sample& s) {
    if (!s.dropped && s.rtt < options_.min_rtt_threshold) return limit();
    if (count_ == 0) start_ = s.now;
    ++count_;
    max_in_flight_ = std::max(max_in_flight_, s.in_flight);
    if (s.dropped) {
      dropped_ = true;
    } else {
      ++completed_;
      sum_ns_ += static_cast<double>(s.rtt.count());
      min_rtt_ = std::min(min_rtt_, s.rtt);
    }
    const duration span = std::clamp(min_rtt_ == duration::max() ? options_.min_window : 2 * std::min(min_rtt_, duration::max() / 2),
                                     options_.min_window, options_.max_window);
    if (count_ < options_.window_size || detail::time_between(start_, s.now) < span) return limit();
    const limit_sample window{.rtt = completed_ == 0 ? duration::zero()
                                                     : duration(static_cast<duration::rep>(sum_ns_ / static_cast<double>(completed_))),
                              .in_flight = max_in_flight_,
                              .dropped = dropped_,
                              .now = s.now};
    count_ = completed_ = 0;
    max_in_flight_ = 0;
    dropped_ = false;
    sum_ns_ = 0.0;
    min_rtt_ = duration::max();
    return inner_.update(window);
  }
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    const std::string_view m = options_.validation_message();
    return m.empty() ? std::string_view(inner_.validation_message()) : m;
  }
  [[nodiscard]] const Algorithm& inner() const noexcept { return inner_; }

 private:
  windowed_limit_options options_{};
  Algorithm inner_{};
  time_point start_{};
  std::uint32_t count_ = 0;
  std::uint32_t completed_ = 0;
  std::uint32_t max_in_flight_ = 0;
  bool dropped_ = false;
  double sum_ns_ = 0.0;
  duration min_rtt_ = duration::max();
};

static_assert(limit_algorithm<fixed_limit>);
static_assert(limit_algorithm<aimd_limit>);
static_assert(limit_algorithm<vegas_limit>);
static_assert(limit_algorithm<gradient2_limit>);
static_assert(limit_algorithm<envoy_gradient_limit>);
static_assert(limit_algorithm<windowed_limit<aimd_limit>>);

}  // namespace sturdy

#endif  // STURDY_LIMIT_ALGORITHMS_HPP_
