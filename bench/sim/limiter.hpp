// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: bench/sim/limiter.hpp
// -----------------------------------------------------------------------------
//
// Scenario "limiter": one client process sends requests through sturdy's
// real `concurrency_limiter` (on the simulation's virtual clock) to a service
// whose latency rises with the concurrency it is given, while demand ramps
// from 0.5x to 3x the service's capacity and back.
//
// The service: `servers` workers, each serving one request at a time, FIFO
// queue in front (an M/G/c queue). Service time uniform in
// [0.8, 1.2] x `service_mean`. Capacity = servers / service_mean requests
// per second. Below `servers` in flight, latency is the service time; above,
// requests queue and latency grows with every extra one. The service does
// not know about client timeouts: a request whose client gave up is still
// served when its turn comes (wasted work, what makes overload collapse).
//
// The client: Poisson arrivals at demand(t) x capacity. Each arrival calls
// `try_acquire()` (no client-side queue): refused = a rejection. Admitted,
// the request goes to the service; the client waits at most `timeout`
// (= timeout_multiple x the mean unloaded latency). Completion in time:
// `record_success()` (the latency is a sample); otherwise at the timeout the
// client gives up: `record_dropped()` (a drop: congestion), and the call
// counts as failed with latency = timeout.
//
// Measured per ramp step, after a convergence period (the first
// `settle_fraction` of the step): goodput (completions within the timeout
// per second, relative to min(demand, 1) x capacity), p50 / p99 latency of
// admitted calls, rejection rate, mean limit. The acceptance criterion of
// issue 15: p99 <= 2 x the unloaded p99 and goodput >= 90 % of
// min(demand, capacity), at every step.

#ifndef STURDY_BENCH_SIM_LIMITER_HPP_
#define STURDY_BENCH_SIM_LIMITER_HPP_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/limit_algorithms.hpp"

namespace sturdy::sim {

struct limiter_params {
  std::uint32_t servers = 20;                // service workers
  vtime service_mean = 10 * ns_per_ms;       // mean service time (uniform +-20 %)
  double timeout_multiple = 5.0;             // client timeout = this x service_mean
  std::vector<double> ramp = {0.5, 1.0, 1.5, 2.0, 3.0, 2.0, 1.0, 0.5};  // demand / capacity per step
  vtime step = 10 * ns_per_s;                // duration of each ramp step
  double settle_fraction = 0.4;              // convergence period, excluded from the step's figures
  vtime bin = 250 * ns_per_ms;               // time-series bin width
  std::uint64_t seed = 1;

  [[nodiscard]] double capacity_per_s() const { return servers * 1e9 / static_cast<double>(service_mean); }
  [[nodiscard]] vtime timeout() const { return static_cast<vtime>(timeout_multiple * static_cast<double>(service_mean)); }
};

// One configuration of the limiter (or none).
struct no_limit {};
using limiter_choice = std::variant<no_limit, fixed_limit_options, aimd_limit_options, vegas_limit_options,
                                    gradient2_limit_options, envoy_gradient_limit_options>;

struct limiter_config {
  std::string name;
  limiter_choice choice;
  // Set: the algorithm is wrapped in windowed_limit with these options.
  std::optional<windowed_limit_options> window{};
};

struct step_result {
  double demand = 0;          // x capacity
  double goodput = 0;         // successes / s / capacity
  double goodput_ratio = 0;   // goodput / min(demand, 1)
  double p50_ms = 0;
  double p99_ms = 0;
  double rejection_rate = 0;  // refused / arrivals
  double drop_rate = 0;       // timed out / admitted
  double mean_limit = 0;      // time-weighted over the measured part (0 = no limit)
};

struct bin_result {
  double t_s = 0;
  double demand = 0;
  double limit = 0;       // at the end of the bin (0 = no limit)
  double goodput = 0;     // x capacity
  double p99_ms = 0;      // admitted calls completed (or timed out) in the bin
  double rejected = 0;    // fraction of arrivals
  double in_flight = 0;
};

struct limiter_run {
  std::string name;
  std::vector<step_result> steps;
  std::vector<bin_result> bins;
  std::uint64_t arrivals = 0;
  std::uint64_t events = 0;
};

namespace detail {

[[nodiscard]] inline double percentile_ms(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const auto k = static_cast<std::size_t>(std::clamp(std::ceil(q * static_cast<double>(v.size())), 1.0,
                                                     static_cast<double>(v.size())) - 1);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// The simulation, for one limiter type (`Limiter` = void: no limiter).
template <class Algorithm>
class limiter_sim {
  using limiter_type = concurrency_limiter<Algorithm, virtual_clock>;
  using permit = typename limiter_type::permit;

 public:
  limiter_sim(const limiter_params& p, Algorithm algorithm, bool limited)
      : p_(p),
        limited_(limited),
        limiter_(concurrency_limiter_options{}, std::move(algorithm), virtual_clock(q_.now_ref())),
        gen_(make_generator(p.seed, 0)) {}

  limiter_run run(std::string name) {
    limiter_run out;
    out.name = std::move(name);
    const vtime end = p_.step * static_cast<vtime>(p_.ramp.size());
    const double capacity = p_.capacity_per_s();
    requests_.reserve(static_cast<std::size_t>(capacity * 2.0 * static_cast<double>(end) / 1e9));
    schedule_arrival();
    const auto nbins = static_cast<std::size_t>(end / p_.bin);
    bins_.assign(nbins, bin_acc{});
    steps_.assign(p_.ramp.size(), step_acc{});
    vtime last = 0;
    while (!q_.empty() && q_.next_time() < end) {
      const event e = q_.pop();
      account_limit(last, q_.now());
      last = q_.now();
      switch (e.kind) {
        case event_kind::arrival: on_arrival(); break;
        case event_kind::service_done: on_service_done(e.id); break;
        case event_kind::timeout: on_timeout(e.id); break;
      }
    }
    account_limit(last, end);
    out.arrivals = requests_.size();
    out.events = q_.processed();
    for (std::size_t s = 0; s < steps_.size(); ++s) {
      step_acc& a = steps_[s];
      step_result r;
      r.demand = p_.ramp[s];
      const double secs = static_cast<double>(p_.step) * (1.0 - p_.settle_fraction) / 1e9;
      r.goodput = static_cast<double>(a.successes) / secs / capacity;
      r.goodput_ratio = r.goodput / std::min(r.demand, 1.0);
      r.p50_ms = percentile_ms(a.latencies, 0.5);
      r.p99_ms = percentile_ms(a.latencies, 0.99);
      r.rejection_rate = a.arrivals == 0 ? 0.0 : static_cast<double>(a.rejected) / static_cast<double>(a.arrivals);
      r.drop_rate = a.admitted == 0 ? 0.0 : static_cast<double>(a.dropped) / static_cast<double>(a.admitted);
      r.mean_limit = limited_ ? a.limit_time / (static_cast<double>(p_.step) * (1.0 - p_.settle_fraction)) : 0.0;
      out.steps.push_back(r);
    }
    for (std::size_t b = 0; b < bins_.size(); ++b) {
      bin_acc& a = bins_[b];
      bin_result r;
      r.t_s = static_cast<double>(static_cast<vtime>(b) * p_.bin + p_.bin) / 1e9;
      r.demand = p_.ramp[std::min(p_.ramp.size() - 1, static_cast<std::size_t>(static_cast<vtime>(b) * p_.bin / p_.step))];
      r.limit = a.limit;
      r.goodput = static_cast<double>(a.successes) / (static_cast<double>(p_.bin) / 1e9) / capacity;
      r.p99_ms = percentile_ms(a.latencies, 0.99);
      r.rejected = a.arrivals == 0 ? 0.0 : static_cast<double>(a.rejected) / static_cast<double>(a.arrivals);
      r.in_flight = a.in_flight;
      out.bins.push_back(r);
    }
    return out;
  }

 private:
  enum class event_kind : std::uint8_t { arrival, service_done, timeout };
  struct event {
    event_kind kind;
    std::uint32_t id;
  };
  struct request {
    vtime admitted = 0;
    permit held;
    bool client_done = false;  // completed in time or timed out
  };
  struct step_acc {
    std::uint64_t arrivals = 0, rejected = 0, admitted = 0, dropped = 0, successes = 0;
    double limit_time = 0;  // integral of the limit over the measured part (ns)
    std::vector<double> latencies;
  };
  struct bin_acc {
    std::uint64_t arrivals = 0, rejected = 0, successes = 0;
    double limit = 0;
    double in_flight = 0;
    std::vector<double> latencies;
  };

  [[nodiscard]] std::size_t step_of(vtime t) const {
    return std::min(p_.ramp.size() - 1, static_cast<std::size_t>(t / p_.step));
  }
  [[nodiscard]] bool measured(vtime t) const {
    const vtime into = t - static_cast<vtime>(step_of(t)) * p_.step;
    return static_cast<double>(into) >= p_.settle_fraction * static_cast<double>(p_.step);
  }
  [[nodiscard]] bin_acc& bin_at(vtime t) {
    return bins_[std::min(bins_.size() - 1, static_cast<std::size_t>(t / p_.bin))];
  }

  void account_limit(vtime from, vtime to) {
    if (!limited_ || to <= from) return;
    const double lim = limiter_.limit();
    // Split [from, to) at step boundaries and the settle points.
    vtime t = from;
    while (t < to) {
      const std::size_t s = step_of(t);
      const vtime step_start = static_cast<vtime>(s) * p_.step;
      const vtime settle = step_start + static_cast<vtime>(p_.settle_fraction * static_cast<double>(p_.step));
      const vtime next = t < settle ? std::min(to, settle) : std::min(to, step_start + p_.step);
      if (t >= settle) steps_[s].limit_time += lim * static_cast<double>(next - t);
      t = next;
    }
    bin_at(to > 0 ? to - 1 : 0).limit = lim;
  }

  void schedule_arrival() {
    const double demand = p_.ramp[step_of(q_.now())];
    const double mean_gap_ns = 1e9 / (demand * p_.capacity_per_s());
    q_.schedule_after(std::max<vtime>(1, static_cast<vtime>(exponential(gen_, mean_gap_ns))), {event_kind::arrival, 0});
  }

  void on_arrival() {
    const vtime now = q_.now();
    schedule_arrival();
    const std::size_t s = step_of(now);
    const bool m = measured(now);
    bin_acc& b = bin_at(now);
    ++b.arrivals;
    if (m) ++steps_[s].arrivals;
    permit held;
    if (limited_) {
      auto r = limiter_.try_acquire();
      if (!r) {
        ++b.rejected;
        if (m) ++steps_[s].rejected;
        return;
      }
      held = std::move(r).value();
    }
    if (m) ++steps_[s].admitted;
    const auto id = static_cast<std::uint32_t>(requests_.size());
    requests_.push_back(request{now, std::move(held), false});
    ++client_in_flight_;
    b.in_flight = std::max(b.in_flight, static_cast<double>(client_in_flight_));
    q_.schedule_after(p_.timeout(), {event_kind::timeout, id});
    if (busy_ < p_.servers) {
      start_service(id);
    } else {
      queue_.push_back(id);
    }
  }

  void start_service(std::uint32_t id) {
    ++busy_;
    const double f = 0.8 + 0.4 * uniform01(gen_);
    q_.schedule_after(static_cast<vtime>(f * static_cast<double>(p_.service_mean)), {event_kind::service_done, id});
  }

  void on_service_done(std::uint32_t id) {
    --busy_;
    if (!queue_.empty()) {
      const std::uint32_t next = queue_.front();
      queue_.pop_front();
      start_service(next);
    }
    request& r = requests_[id];
    if (r.client_done) return;  // the client gave up: wasted work
    r.client_done = true;
    --client_in_flight_;
    const vtime now = q_.now();
    r.held.record_success();
    finish(now, now - r.admitted, true);
  }

  void on_timeout(std::uint32_t id) {
    request& r = requests_[id];
    if (r.client_done) return;
    r.client_done = true;
    --client_in_flight_;
    r.held.record_dropped();
    const vtime now = q_.now();
    finish(now, p_.timeout(), false);
    if (measured(r.admitted)) ++steps_[step_of(r.admitted)].dropped;
  }

  void finish(vtime now, vtime latency, bool ok) {
    const double ms = to_ms(latency);
    bin_acc& b = bin_at(now);
    b.latencies.push_back(ms);
    if (ok) ++b.successes;
    if (measured(now)) {
      step_acc& s = steps_[step_of(now)];
      s.latencies.push_back(ms);
      if (ok) ++s.successes;
    }
  }

  limiter_params p_;
  event_queue<event> q_;
  bool limited_;
  limiter_type limiter_;
  generator gen_;
  std::vector<request> requests_;
  std::deque<std::uint32_t> queue_;
  std::uint32_t busy_ = 0;
  std::uint32_t client_in_flight_ = 0;
  std::vector<step_acc> steps_;
  std::vector<bin_acc> bins_;
};

}  // namespace detail

template <class Algorithm>
[[nodiscard]] limiter_run run_with(const limiter_params& p, const limiter_config& c, Algorithm a) {
  if (c.window) {
    return detail::limiter_sim<windowed_limit<Algorithm>>(p, windowed_limit<Algorithm>(*c.window, std::move(a)), true)
        .run(c.name);
  }
  return detail::limiter_sim<Algorithm>(p, std::move(a), true).run(c.name);
}

// Runs one configuration.
[[nodiscard]] inline limiter_run run_limiter(const limiter_params& p, const limiter_config& c) {
  return std::visit(
      [&](const auto& o) -> limiter_run {
        using O = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<O, no_limit>) {
          return detail::limiter_sim<fixed_limit>(p, fixed_limit({.limit = 1u << 30}), false).run(c.name);
        } else if constexpr (std::is_same_v<O, fixed_limit_options>) {
          return detail::limiter_sim<fixed_limit>(p, fixed_limit(o), true).run(c.name);
        } else if constexpr (std::is_same_v<O, aimd_limit_options>) {
          return run_with(p, c, aimd_limit(o));
        } else if constexpr (std::is_same_v<O, vegas_limit_options>) {
          return run_with(p, c, vegas_limit(o));
        } else if constexpr (std::is_same_v<O, gradient2_limit_options>) {
          return run_with(p, c, gradient2_limit(o));
        } else {
          return run_with(p, c, envoy_gradient_limit(o));
        }
      },
      c.choice);
}

// The unloaded p99: the same service at 10 % demand, no limiter.
[[nodiscard]] inline double unloaded_p99_ms(limiter_params p) {
  p.ramp = {0.1};
  p.step = 20 * ns_per_s;
  p.settle_fraction = 0.1;
  return run_limiter(p, {"unloaded", no_limit{}}).steps.front().p99_ms;
}

// Issue 15's criterion for one step.
[[nodiscard]] inline bool meets_criterion(const step_result& s, double unloaded_p99) {
  return s.p99_ms <= 2.0 * unloaded_p99 && s.goodput_ratio >= 0.9;
}

}  // namespace sturdy::sim

#endif  // STURDY_BENCH_SIM_LIMITER_HPP_
