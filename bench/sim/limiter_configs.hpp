// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: bench/sim/limiter_configs.hpp
// -----------------------------------------------------------------------------
//
// The configurations the "limiter" scenario compares, with the parameters
// tuned for the simulated service (20 servers, 10 ms mean service time,
// capacity 2000 req/s). Each differs from the anchors' defaults only where
// stated; docs/concurrency_limiter.md lists both.

#ifndef STURDY_BENCH_SIM_LIMITER_CONFIGS_HPP_
#define STURDY_BENCH_SIM_LIMITER_CONFIGS_HPP_

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "limiter.hpp"

namespace sturdy::sim {

// `unloaded_p99_ms` feeds AIMD's latency threshold.
[[nodiscard]] inline std::vector<limiter_config> limiter_configs(double unloaded_p99_ms) {
  const auto ms = [](double v) { return duration(static_cast<duration::rep>(v * 1e6)); };
  // Netflix's WindowedLimit, with windows of 100 ms instead of 1 s (the
  // ramp's steps last 10 s).
  const windowed_limit_options window{.min_window = ms(100), .max_window = ms(100), .window_size = 10};
  return {
      {"no_limit", no_limit{}},
      {"fixed_too_high", fixed_limit_options{.limit = 200}},
      {"fixed_right", fixed_limit_options{.limit = 30}},
      // AIMD's default 5 s latency threshold never fires here (the client
      // times out at 50 ms), so only drops would cut the limit, by then at
      // 4x the unloaded latency. Tuned: threshold 1.25 x the unloaded p99.
      {"aimd", aimd_limit_options{.initial_limit = 20, .min_limit = 5, .max_limit = 200, .backoff_ratio = 0.9,
                                  .timeout = ms(1.25 * unloaded_p99_ms)}, window},
      // The same, fed every sample instead of one per window.
      {"aimd_per_sample", aimd_limit_options{.initial_limit = 20, .min_limit = 5, .max_limit = 200,
                                             .backoff_ratio = 0.9, .timeout = ms(1.25 * unloaded_p99_ms)}},
      // Vegas: Netflix's defaults.
      {"vegas", vegas_limit_options{}, window},
      {"vegas_per_sample", vegas_limit_options{}},
      {"vegas_tuned", vegas_limit_options{.alpha_factor = 6, .beta_factor = 10}, window},
      // Gradient2 with the drift fix: Netflix's defaults except min_limit
      // 5 (the default 20 is the whole service here).
      {"gradient2", gradient2_limit_options{.min_limit = 5}, window},
      // The same without the fix (Netflix's algorithm), for comparison.
      {"gradient2_netflix", gradient2_limit_options{.min_limit = 5, .fix_drift = false}, window},
      // Envoy: defaults except the minimum-concurrency floor, raised from 3
      // to 15 so the periodic minRTT measurement does not starve traffic.
      {"envoy", envoy_gradient_limit_options{.initial_limit = 15, .min_limit = 15, .max_limit = 1000}},
      // ...and tuned within Envoy's documented knobs: the interval's p99
      // (sample_aggregate_percentile, default p50) so the tail the
      // criterion judges is what the controller sees, a tighter buffer
      // (0.1; default 0.25), and 500 ms intervals
      // (concurrency_update_interval; 100 ms in Envoy's examples) so that
      // p99 is taken over ~1000 calls, not ~200. Max stays 1000.
      {"envoy_tuned", envoy_gradient_limit_options{.initial_limit = 15,
                                                   .min_limit = 15,
                                                   .update_interval = ms(500),
                                                   .sample_percentile = 0.99,
                                                   .buffer = 0.1}},
  };
}

[[nodiscard]] inline std::string describe(const limiter_config& c) {
  char buf[256];
  std::visit(
      [&](const auto& o) {
        using O = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<O, no_limit>) {
          std::snprintf(buf, sizeof buf, "(every call admitted)");
        } else if constexpr (std::is_same_v<O, fixed_limit_options>) {
          std::snprintf(buf, sizeof buf, "fixed limit %u", o.limit);
        } else if constexpr (std::is_same_v<O, aimd_limit_options>) {
          std::snprintf(buf, sizeof buf, "AIMD initial %u, [%u, %u], backoff %.2f, latency threshold %.1f ms",
                        o.initial_limit, o.min_limit, o.max_limit, o.backoff_ratio, static_cast<double>(o.timeout.count()) / 1e6);
        } else if constexpr (std::is_same_v<O, vegas_limit_options>) {
          std::snprintf(buf, sizeof buf, "Vegas initial %u, [%u, %u], smoothing %.2f", o.initial_limit, o.min_limit,
                        o.max_limit, o.smoothing);
        } else if constexpr (std::is_same_v<O, gradient2_limit_options>) {
          std::snprintf(buf, sizeof buf, "Gradient2 initial %u, [%u, %u], tolerance %.2f, queue %.0f, drift fix %s",
                        o.initial_limit, o.min_limit, o.max_limit, o.rtt_tolerance, o.queue_size,
                        o.fix_drift ? "on" : "off");
        } else {
          std::snprintf(buf, sizeof buf, "Envoy gradient initial %u, floor %u, max %u, buffer %.2f, p%.0f every %.0f ms",
                        o.initial_limit, o.min_limit, o.max_limit, o.buffer, o.sample_percentile * 100,
                        static_cast<double>(o.update_interval.count()) / 1e6);
        }
      },
      c.choice);
  std::string out = buf;
  if (c.window) {
    std::snprintf(buf, sizeof buf, "; window %.0f ms / %u samples", static_cast<double>(c.window->min_window.count()) / 1e6,
                  c.window->window_size);
    out += buf;
  }
  return out;
}

}  // namespace sturdy::sim

#endif  // STURDY_BENCH_SIM_LIMITER_CONFIGS_HPP_
