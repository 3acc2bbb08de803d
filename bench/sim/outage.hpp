// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: bench/sim/outage.hpp
// -----------------------------------------------------------------------------
//
// Scenario "outage": a fleet of clients sends requests at a steady rate to a
// service of fixed capacity that fails completely for a window, then
// recovers. Each client is one process with its own retry loop, its own retry
// budget and its own circuit breaker (sturdy's real objects, on virtual time).
//
// The service: one FIFO queue served at `capacity` requests per second
// (deterministic service time 1 / capacity). Queue with timeout: a request
// waits in the queue; the client gives up on an attempt after `timeout`, but
// the service does not know and still spends the work on it when its turn
// comes (no deadline propagation: this is what makes overload sticky). The
// queue is bounded (`queue_limit_s` seconds of work); an arrival that finds
// it full is rejected at once (a fast failure, retryable).
//
// The outage, `mode`:
//   stall  (default) the service stops serving for the window (a hung
//          dependency, a stop-the-world pause, a lock): requests queue up to
//          the bound and time out; at the end it resumes with a full queue of
//          work whose callers have long given up.
//   error  every arrival in the window fails at once (a crashed backend
//          behind a load balancer returning 503); queued work is lost.
//
// The client's retry loop is event-driven, and every decision is sturdy's:
// each client's loop is a driver of `retry_policy`'s decision core (begin /
// on_failure / after_wait / on_success, the same calls the blocking
// `execute` and `sturdy::asio::async_retry` make), with that client's budget
// in its options; the simulator only schedules the attempt and the retry
// events the core asks for. A breaker rejection (`errc::circuit_open`)
// is handed to the core like any failure, with the breaker as the
// `retry_after_source`, as inside `compose(retry, breaker)`: neutral for the
// budget (the retry admitted for it is refunded), retried only after the
// breaker's `retry_after()` plus the backoff delay, within
// `max_server_delay` and the attempt limit; otherwise the request fails with
// circuit_open. The breaker itself is driven through `try_acquire` /
// `record`.

#ifndef STURDY_BENCH_SIM_OUTAGE_HPP_
#define STURDY_BENCH_SIM_OUTAGE_HPP_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/random/distributions.h"
#include "engine.hpp"
#include "sturdy/backoff.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"

namespace sturdy::sim {

enum class outage_mode : std::uint8_t { stall, error };

struct outage_params {
  // Client processes. Default 1000.
  std::uint32_t clients = 1000;
  // Requests per second per client (Poisson arrivals). Default 1.
  double rate_per_client = 1.0;
  // Service capacity in requests per second; 0 = 1.4 x the fleet's demand
  // (demand at 71 % utilisation). Default 0.
  double capacity_per_s = 0.0;
  // Queue bound, in seconds of work at full capacity. Default 2 s.
  double queue_limit_s = 2.0;
  // Client timeout per attempt. Default 1 s.
  vtime timeout = 1 * ns_per_s;
  // One-way network latency. Default 1 ms.
  vtime latency = 1 * ns_per_ms;
  // Simulated time. Default 10 min.
  vtime run_time = 600 * ns_per_s;
  // The outage window [outage_start, outage_end). Defaults 120 s and 150 s.
  vtime outage_start = 120 * ns_per_s;
  vtime outage_end = 150 * ns_per_s;
  outage_mode mode = outage_mode::stall;
  // Width of the time-series bins. Default 1 s.
  vtime bin = 1 * ns_per_s;

  [[nodiscard]] double demand_per_s() const noexcept { return clients * rate_per_client; }
  [[nodiscard]] double capacity() const noexcept {
    return capacity_per_s > 0 ? capacity_per_s : 1.4 * demand_per_s();
  }
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (clients < 1) return "clients must be >= 1";
    if (!(rate_per_client > 0) || !std::isfinite(rate_per_client)) return "rate must be > 0";
    if (!(capacity() > 0) || !std::isfinite(capacity())) return "capacity must be > 0";
    if (!(queue_limit_s >= 0) || !std::isfinite(queue_limit_s)) return "queue limit must be >= 0";
    if (timeout <= 0) return "timeout must be > 0";
    if (latency < 0) return "latency must be >= 0";
    if (run_time <= 0) return "run time must be > 0";
    if (outage_start < 0 || outage_end < outage_start) return "outage window must satisfy 0 <= start <= end";
    if (bin <= 0) return "bin must be > 0";
    return {};
  }
};

enum class budget_kind : std::uint8_t { none, ratio, token, adaptive };

[[nodiscard]] constexpr std::string_view to_string(budget_kind b) noexcept {
  switch (b) {
    case budget_kind::none:
      return "none";
    case budget_kind::ratio:
      return "ratio";
    case budget_kind::token:
      return "token";
    case budget_kind::adaptive:
      return "adaptive";
  }
  return "unknown";
}

// One client-side configuration to compare.
struct outage_policy {
  std::string name;
  // Retry: attempts (first call included; 1 = no retry) and delays.
  retry_options retry{.max_attempts = 3};
  budget_kind budget = budget_kind::none;
  ratio_budget_options ratio{};
  token_bucket_options token{};
  adaptive_throttle_options adaptive{};
  bool use_breaker = false;
  circuit_breaker_options breaker{};

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (auto m = retry.validation_message(); !m.empty()) return m;
    if (budget == budget_kind::ratio) return ratio.validation_message();
    if (budget == budget_kind::token) return token.validation_message();
    if (budget == budget_kind::adaptive) return adaptive.validation_message();
    if (use_breaker) return breaker.validation_message();
    return {};
  }
};

// The budgets and breaker the comparison uses (per client; each client is
// one process at `rate_per_client` requests per second, so per-client
// floors must be small: see docs/fleet-simulation.md).
[[nodiscard]] inline ratio_budget_options fleet_ratio_budget() {
  return {.ratio = 0.1, .window = std::chrono::seconds(10), .min_retries_per_second = 0.1};
}
[[nodiscard]] inline circuit_breaker_options fleet_breaker() {
  return {.consecutive_failure_threshold = 5,
          .failure_rate_threshold = 0.5,
          .count_window_size = 20,
          .minimum_calls = 20,
          .open_duration = std::chrono::seconds(5),
          .half_open_probes = 1,
          .counter_stripes = 1};
}

// The named configurations of the comparison. Every retrying one makes at
// most 3 attempts; the hand-configured ones use the backoff of
// docs/retry.md's usage example (50 ms .. 2 s), `sturdy_defaults` uses
// `retry_options{}` as it comes.
[[nodiscard]] inline std::vector<outage_policy> outage_policies() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const backoff full = backoff::exponential(milliseconds(50), seconds(2), jitter::full);
  std::vector<outage_policy> v;
  v.push_back({.name = "no_retry", .retry = {.max_attempts = 1}});
  v.push_back({.name = "naive_immediate",
               .retry = {.max_attempts = 3, .backoff = backoff::constant(duration::zero())}});
  v.push_back({.name = "exponential",
               .retry = {.max_attempts = 3,
                         .backoff = backoff::exponential(milliseconds(50), seconds(2), jitter::none)}});
  v.push_back({.name = "full_jitter", .retry = {.max_attempts = 3, .backoff = full}});
  v.push_back({.name = "jitter_ratio_budget",
               .retry = {.max_attempts = 3, .backoff = full},
               .budget = budget_kind::ratio,
               .ratio = fleet_ratio_budget()});
  v.push_back({.name = "jitter_token_budget",
               .retry = {.max_attempts = 3, .backoff = full},
               .budget = budget_kind::token,
               .token = {}});
  v.push_back({.name = "jitter_budget_breaker",
               .retry = {.max_attempts = 3, .backoff = full},
               .budget = budget_kind::token,
               .token = {},
               .use_breaker = true,
               .breaker = fleet_breaker()});
  // sturdy's documented defaults: retry_options{} (3 attempts, exponential
  // 100 ms .. 10 s, full jitter) with a default token_bucket_budget shared
  // per dependency.
  v.push_back({.name = "sturdy_defaults", .retry = {}, .budget = budget_kind::token, .token = {}});
  return v;
}

// Extra presets, not in the default comparison.
[[nodiscard]] inline std::vector<outage_policy> outage_extra_policies() {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const backoff full = backoff::exponential(milliseconds(50), seconds(2), jitter::full);
  std::vector<outage_policy> v;
  v.push_back({.name = "jitter_adaptive_throttle",
               .retry = {.max_attempts = 3, .backoff = full},
               .budget = budget_kind::adaptive,
               .adaptive = {.k = 2.0, .window = std::chrono::seconds(60)}});
  // Finagle's defaults (20 %, 10 s, floor 10 retries/s) per client: the
  // floor is sized for one busy process, not for many small ones.
  v.push_back({.name = "jitter_ratio_finagle_defaults",
               .retry = {.max_attempts = 3, .backoff = full},
               .budget = budget_kind::ratio,
               .ratio = {}});
  return v;
}

// Per-bin counters (bins of `outage_params::bin`).
struct outage_bin {
  std::uint64_t requests = 0;          // new requests (first attempts wanted)
  std::uint64_t first_attempts = 0;    // first attempts sent to the service
  std::uint64_t retries = 0;           // retries sent to the service
  std::uint64_t arrivals = 0;          // attempts arriving at the service
  std::uint64_t rejected = 0;          // arrivals rejected because the queue was full
  std::uint64_t served = 0;            // requests the service completed (useful or not)
  std::uint64_t wasted = 0;            // completed after the client had given up
  std::uint64_t succeeded = 0;         // requests that succeeded (goodput), by completion time
  std::uint64_t failed = 0;            // requests that finally failed
  std::uint64_t budget_denied = 0;     // retries denied by the budget
  std::uint64_t breaker_rejected = 0;  // attempts rejected by the breaker
};

// What a test may observe: a client's budget-relevant moments.
enum class trace_kind : std::uint8_t {
  request,        // a first attempt that reached the service is recorded with the budget
                  // (budget.on_attempt(false)): when its outcome is known, as retry_policy records it
  retry_granted,  // budget.try_retry said yes (the retry is sent after the delay)
  retry_denied,   // budget.try_retry said no
  sent,           // an attempt left the client
};
struct attempt_trace {
  std::uint32_t client;
  vtime at;
  trace_kind what;
};

struct outage_result {
  std::string policy;
  std::vector<outage_bin> bins;
  std::uint64_t requests = 0, succeeded = 0, failed = 0, in_flight_at_end = 0;
  std::uint64_t attempts_sent = 0, first_attempts = 0, retries = 0;
  std::uint64_t budget_denied = 0, breaker_rejected = 0;
  std::uint64_t failed_circuit_open = 0;  // requests that finally failed because the breaker stopped them
  std::uint64_t breaker_waits = 0;        // rejections retried after the breaker's retry_after()
  std::vector<std::uint64_t> client_successes;  // attempt successes per client (for budget checks)
  std::vector<std::uint64_t> client_retries;    // retries sent per client
  double amplification_outage = 0;              // attempts sent / requests, in the outage window
  double amplification_after = 0;               // the same over the 60 s after the outage
  double success_rate = 0;                      // succeeded / (succeeded + failed)
  double success_rate_after = 0;                // of requests started after the outage
  double recovery_s = -1;                       // end of outage -> goodput >= 95 % of demand; -1 = never
  bool recovered = false;                       // recovered and still at >= 95 % at the end
  double peak_load = 0;                         // max attempts arriving per second / capacity
  std::uint64_t events = 0;
  double wall_s = 0;
};

namespace detail_outage {

enum class kind : std::uint8_t { new_request, attempt_done, retry };
struct event {
  std::uint32_t id;
  kind what;
};
enum class result_kind : std::uint8_t { success, timeout, rejected, error };

struct request {
  std::uint32_t client = 0;
  vtime started = 0;
  result_kind outcome = result_kind::success;
  retry_state<> core{};     // the retry core's per-call state (attempt count, backoff, ticket)
  std::optional<breaker_permit> permit;
  bool rejected_by_breaker = false;  // the last attempt did not reach the service
};

// The simulator never sleeps: it schedules the retry event `delay` later.
struct scheduled_sleeper {
  bool sleep_for(duration, std::stop_token) const noexcept { return true; }
};
using sim_retry_policy = retry_policy<backoff, virtual_clock, scheduled_sleeper, null_listener, detail::urbg_ref<generator>>;

}  // namespace detail_outage

// run_outage()
//
// One run of `policy` under `p`, drawing from `gen`. `trace`, when set, sees
// every attempt (for tests).
[[nodiscard]] inline outage_result run_outage(const outage_params& p, const outage_policy& policy,
                                              generator& gen,
                                              const std::function<void(const attempt_trace&)>& trace = {}) {
  using namespace detail_outage;
  outage_result res;
  res.policy = policy.name;

  event_queue<event> q;
  const virtual_clock clock(q.now_ref());
  const std::size_t nbins = static_cast<std::size_t>((p.run_time + p.bin - 1) / p.bin) + 1;
  res.bins.assign(nbins, {});
  auto bin_of = [&](vtime t) -> outage_bin& {
    const auto b = static_cast<std::size_t>(t / p.bin);
    return res.bins[b < nbins ? b : nbins - 1];
  };
  res.client_successes.assign(p.clients, 0);
  res.client_retries.assign(p.clients, 0);

  // Per-client sturdy objects (pinned types: deques never move elements).
  std::deque<ratio_budget<virtual_clock>> ratio_budgets;
  std::deque<token_bucket_budget> token_budgets;
  std::deque<adaptive_throttle<virtual_clock>> throttles;
  std::deque<circuit_breaker<virtual_clock>> breakers;
  std::vector<retry_budget_ref> budgets(p.clients);
  for (std::uint32_t c = 0; c < p.clients; ++c) {
    switch (policy.budget) {
      case budget_kind::none:
        break;
      case budget_kind::ratio:
        budgets[c] = ratio_budgets.emplace_back(policy.ratio, clock);
        break;
      case budget_kind::token:
        budgets[c] = token_budgets.emplace_back(policy.token);
        break;
      case budget_kind::adaptive:
        budgets[c] = throttles.emplace_back(policy.adaptive, clock);
        break;
    }
    if (policy.use_breaker) breakers.emplace_back(policy.breaker, clock);
  }
  // Each client's retry loop: sturdy's retry core with that client's budget.
  std::vector<sim_retry_policy> retries;
  retries.reserve(p.clients);
  for (std::uint32_t c = 0; c < p.clients; ++c) {
    retry_options o = policy.retry;
    o.budget = budgets[c];
    retries.emplace_back(std::move(o), clock, scheduled_sleeper{}, null_listener{}, detail::urbg_ref<generator>(gen));
  }
  const failure_info circuit_open_failure{.code = make_error_code(errc::circuit_open), .exception = {}};
  const failure_info attempt_failure{.code = std::make_error_code(std::errc::timed_out), .exception = {}};

  // The service.
  const double capacity = p.capacity();
  const auto service = static_cast<vtime>(1e9 / capacity);
  const auto queue_limit = static_cast<vtime>(p.queue_limit_s * 1e9);  // in ns of work
  const vtime s0 = p.outage_start, s1 = p.outage_end;
  vtime free_at = 0;  // when the queued work will be done
  bool flushed = false;

  std::vector<request> slots;
  std::vector<std::uint32_t> free_slots;
  slots.reserve(p.clients * 4);
  auto alloc = [&]() -> std::uint32_t {
    if (!free_slots.empty()) {
      const std::uint32_t i = free_slots.back();
      free_slots.pop_back();
      slots[i] = request{};
      return i;
    }
    slots.emplace_back();
    return static_cast<std::uint32_t>(slots.size() - 1);
  };
  auto release = [&](std::uint32_t i) { free_slots.push_back(i); };

  const double mean_gap_ns = 1e9 / p.rate_per_client;
  auto next_gap = [&] { return static_cast<vtime>(exponential(gen, mean_gap_ns)) + 1; };

  // The service's answer for an attempt sent now: when the client learns
  // the outcome, and what it is.
  auto serve = [&](request& rq) -> vtime {
    const vtime now = q.now();
    const vtime a = now + p.latency;  // arrival
    outage_bin& ab = bin_of(a);
    ++ab.arrivals;
    const bool in_outage = a >= s0 && a < s1;
    if (p.mode == outage_mode::error) {
      if (in_outage) {
        rq.outcome = result_kind::error;
        return a + p.latency;
      }
      if (a >= s1 && !flushed) {  // the queue was lost in the crash
        flushed = true;
        if (free_at > s0) free_at = s0;
      }
    }
    // Work queued ahead of this arrival, in ns.
    const vtime serving_from = (p.mode == outage_mode::stall && in_outage) ? s1 : a;
    const vtime queued = free_at > serving_from ? free_at - serving_from : 0;
    if (queued >= queue_limit && queue_limit > 0) {
      ++ab.rejected;
      rq.outcome = result_kind::rejected;
      return a + p.latency;
    }
    vtime start = free_at > a ? free_at : a;
    vtime done = start + service;
    if (p.mode == outage_mode::stall && start < s1 && done > s0) {
      done = start >= s0 ? s1 + service : done + (s1 - s0);  // paused by the stall
    }
    free_at = done;
    ++bin_of(done).served;
    if (p.mode == outage_mode::error && a < s0 && done > s0) {  // lost in the crash
      rq.outcome = result_kind::error;
      return s0 + p.latency;
    }
    const vtime reply = done + p.latency;
    if (reply - now <= p.timeout) {
      rq.outcome = result_kind::success;
      return reply;
    }
    ++bin_of(done).wasted;
    rq.outcome = result_kind::timeout;
    return now + p.timeout;
  };

  auto finish_failed = [&](std::uint32_t slot) {
    ++bin_of(q.now()).failed;
    ++res.failed;
    release(slot);
  };

  // A decision of the core that is not "attempt": wait (schedule the retry
  // event) or stop (the request failed).
  auto follow = [&](std::uint32_t slot, const retry_decision& d) {
    request& rq = slots[slot];
    const std::uint32_t c = rq.client;
    switch (d.what) {
      case retry_decision::kind::wait:
        if (rq.rejected_by_breaker) {
          ++res.breaker_waits;
        } else if (trace) {
          trace({c, q.now(), trace_kind::retry_granted});
        }
        q.schedule_after(from_duration(d.delay), {slot, kind::retry});
        return;
      case retry_decision::kind::fail:
        if (d.code == errc::budget_exhausted) {
          if (trace) trace({c, q.now(), trace_kind::retry_denied});
          ++bin_of(q.now()).budget_denied;
          ++res.budget_denied;
        }
        break;
      case retry_decision::kind::return_last:
        if (rq.rejected_by_breaker) ++res.failed_circuit_open;
        break;
      case retry_decision::kind::attempt:
        break;  // not reached: the callers attempt
    }
    finish_failed(slot);
  };

  // Makes attempt number rq.core.attempt (the core said attempt).
  auto start_attempt = [&](std::uint32_t slot) {
    request& rq = slots[slot];
    const std::uint32_t c = rq.client;
    const bool is_retry = rq.core.sent_any;
    rq.rejected_by_breaker = false;
    if (policy.use_breaker) {
      result<breaker_permit> permit = breakers[c].try_acquire();
      if (!permit) {
        ++bin_of(q.now()).breaker_rejected;
        ++res.breaker_rejected;
        // Did not reach the service: the core treats circuit_open as
        // neutral for the budget and waits for the breaker's retry_after().
        rq.rejected_by_breaker = true;
        follow(slot, retries[c].on_failure(rq.core, circuit_open_failure, {}, cancel_reason::none,
                                           retry_after_source(breakers[c])));
        return;
      }
      rq.permit = permit.value();
    }
    if (trace) trace({c, q.now(), trace_kind::sent});
    outage_bin& b = bin_of(q.now());
    if (is_retry) {
      ++b.retries;
      ++res.retries;
      ++res.client_retries[c];
    } else {
      ++b.first_attempts;
      ++res.first_attempts;
    }
    ++res.attempts_sent;
    q.schedule(serve(rq), {slot, kind::attempt_done});
  };

  // After an attempt's outcome is known: the core decides.
  auto attempt_done = [&](std::uint32_t slot) {
    request& rq = slots[slot];
    const std::uint32_t c = rq.client;
    const bool ok = rq.outcome == result_kind::success;
    if (policy.use_breaker && rq.permit) {
      breakers[c].record(*rq.permit, ok ? call_outcome::success : call_outcome::failure);
    }
    if (trace && !rq.core.sent_any) trace({c, q.now(), trace_kind::request});  // the core records it now
    if (ok) {
      retries[c].on_success(rq.core);
      ++res.client_successes[c];
      ++bin_of(q.now()).succeeded;
      ++res.succeeded;
      release(slot);
      return;
    }
    follow(slot, retries[c].on_failure(rq.core, attempt_failure, {}, cancel_reason::none,
                                       policy.use_breaker ? retry_after_source(breakers[c]) : retry_after_source()));
  };

  // The retry event: the wait is over; the core checks, then attempt.
  auto resume = [&](std::uint32_t slot) {
    request& rq = slots[slot];
    const retry_decision d = retries[rq.client].after_wait(
        rq.core, rq.rejected_by_breaker ? circuit_open_failure : attempt_failure, true, cancel_reason::none);
    if (d.what == retry_decision::kind::attempt) return start_attempt(slot);
    follow(slot, d);
  };

  // A new request: the core's begin (attempt 1).
  auto begin_request = [&](std::uint32_t slot) {
    request& rq = slots[slot];
    const retry_decision d = retries[rq.client].begin(rq.core, call_context{});
    if (d.what == retry_decision::kind::attempt) return start_attempt(slot);
    follow(slot, d);
  };

  q.reserve(p.clients * 4);
  for (std::uint32_t c = 0; c < p.clients; ++c) q.schedule(next_gap(), {c, kind::new_request});

  while (!q.empty() && q.next_time() < p.run_time) {
    const event e = q.pop();
    switch (e.what) {
      case kind::new_request: {
        ++res.requests;
        ++bin_of(q.now()).requests;
        const std::uint32_t slot = alloc();
        slots[slot].client = e.id;
        slots[slot].started = q.now();
        begin_request(slot);
        q.schedule_after(next_gap(), {e.id, kind::new_request});
        break;
      }
      case kind::attempt_done:
        attempt_done(e.id);
        break;
      case kind::retry:
        resume(e.id);
        break;
    }
  }
  res.events = q.processed();
  res.in_flight_at_end = res.requests - res.succeeded - res.failed;
  return res;
}

// Derives the summary figures from the bins.
inline void summarise_outage(const outage_params& p, outage_result& r) {
  const double bin_s = to_s(p.bin);
  const auto nb = static_cast<std::int64_t>(r.bins.size());
  const auto b_of = [&](vtime t) { return static_cast<std::int64_t>(t / p.bin); };
  const auto b_end = std::min<std::int64_t>(b_of(p.run_time), nb);  // bins fully inside the run
  const auto sum = [&](std::int64_t from, std::int64_t to, auto field) {
    std::uint64_t s = 0;
    for (std::int64_t b = std::max<std::int64_t>(from, 0); b < std::min(to, b_end); ++b)
      s += r.bins[b].*field;
    return static_cast<double>(s);
  };
  const std::int64_t o0 = b_of(p.outage_start), o1 = b_of(p.outage_end);
  const double req_out = sum(o0, o1, &outage_bin::requests);
  const double att_out = sum(o0, o1, &outage_bin::first_attempts) + sum(o0, o1, &outage_bin::retries);
  r.amplification_outage = req_out > 0 ? att_out / req_out : 0;
  const std::int64_t a1 = o1 + static_cast<std::int64_t>(60.0 / bin_s);
  const double req_after = sum(o1, a1, &outage_bin::requests);
  const double att_after = sum(o1, a1, &outage_bin::first_attempts) + sum(o1, a1, &outage_bin::retries);
  r.amplification_after = req_after > 0 ? att_after / req_after : 0;
  const double done = static_cast<double>(r.succeeded + r.failed);
  r.success_rate = done > 0 ? static_cast<double>(r.succeeded) / done : 0;
  const double ok_after = sum(o1, b_end, &outage_bin::succeeded);
  const double bad_after = sum(o1, b_end, &outage_bin::failed);
  r.success_rate_after = ok_after + bad_after > 0 ? ok_after / (ok_after + bad_after) : 0;

  // Recovery: the first bin from the end of the outage whose next 5 s of
  // goodput average >= 95 % of demand; "recovered" also needs the last 30 s
  // (or what there is after the outage) to average >= 95 %.
  const double target = 0.95 * p.demand_per_s() * bin_s;
  const std::int64_t span = std::max<std::int64_t>(1, static_cast<std::int64_t>(5.0 / bin_s));
  r.recovery_s = -1;
  for (std::int64_t b = o1; b + span <= b_end; ++b) {
    if (sum(b, b + span, &outage_bin::succeeded) / static_cast<double>(span) >= target) {
      r.recovery_s = std::max(0.0, static_cast<double>(b) * bin_s - to_s(p.outage_end));
      break;
    }
  }
  const std::int64_t tail =
      std::max<std::int64_t>(o1, b_end - std::max<std::int64_t>(1, static_cast<std::int64_t>(30.0 / bin_s)));
  const double tail_rate =
      b_end > tail ? sum(tail, b_end, &outage_bin::succeeded) / static_cast<double>(b_end - tail) : 0;
  r.recovered = r.recovery_s >= 0 && tail_rate >= target;
  double peak = 0;
  for (std::int64_t b = 0; b < b_end; ++b) peak = std::max(peak, static_cast<double>(r.bins[b].arrivals));
  r.peak_load = peak / (p.capacity() * bin_s);
}

}  // namespace sturdy::sim

#endif  // STURDY_BENCH_SIM_OUTAGE_HPP_
