// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/prometheus/exporter.hpp
// -----------------------------------------------------------------------------
//
// Prometheus export for sturdy (CMake component `sturdy::prometheus`, built
// on Debian's prometheus-cpp). Register any sturdy object that has shared
// state — a breaker, a retry budget, an idempotency cache, a dead-letter
// queue, a chaos layer — under a name and labels; the exporter reads their
// own snapshots when Prometheus scrapes, so the hot path of a call does no
// extra work at all. Retry policies are copyable values with no shared
// state: their counts come through `sturdy::prometheus::event_counter`, a
// listener handle you give the policy (and any other primitive's listener
// seam), which counts events on per-thread stripes and is read at scrape
// time too.
//
// Example:
//
//   #include "sturdy/prometheus/exporter.hpp"
//
//   sturdy::prometheus::exporter metrics;                 // sturdy_* names
//   sturdy::circuit_breaker<> breaker({});
//   auto reg = metrics.add(breaker, {.name = "inventory", .labels = {{"region", "eu"}}});
//
//   sturdy::prometheus::event_counter events;             // copyable handle
//   sturdy::retry_policy<sturdy::backoff, sturdy::steady_clock_source, sturdy::thread_sleeper,
//                        sturdy::prometheus::event_counter> retry({}, {}, {}, events);
//   auto reg2 = metrics.add(events, {.name = "inventory"});
//
//   auto server = sturdy::prometheus::serve(metrics, "127.0.0.1:9464");  // GET /metrics
//   std::string text = metrics.text();                    // or render it yourself
//
// Names: `naming::sturdy` (default) follows Prometheus conventions — a
// `sturdy_` prefix, base units in names (`_seconds`), `_total` on counters.
// `naming::resilience4j` renders the names resilience4j-micrometer produces
// (`resilience4j_circuitbreaker_state`, `resilience4j_circuitbreaker_calls_seconds`,
// `resilience4j_retry_calls_total`, ...) so existing dashboards work; see
// docs/operations.md for the full list and what each preset leaves out.
//
// Lifetime: `add` returns a move-only `registration`; destroying it removes
// the object from the exporter (do it before the object dies: declare the
// registration after the object). The exporter's state is shared with the
// registrations and with `serve`'s server, so they may outlive it.
//
// Thread safety: `add`, destroying registrations, `collect` and `text` may
// run concurrently from any threads (one std::mutex, taken only by them,
// never by a protected call). `event_counter` is lock-free.

#ifndef STURDY_PROMETHEUS_EXPORTER_HPP_
#define STURDY_PROMETHEUS_EXPORTER_HPP_

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "sturdy/chaos.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/detail/breaker_word.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/registry.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"

namespace sturdy::prometheus {

// Which metric names to render.
enum class naming : std::uint8_t { sturdy, resilience4j };

using label_set = std::map<std::string, std::string>;

// How an object is registered: its name (the `name` label) and extra
// labels. Keep label values few (a host or a tenant is fine behind a
// registry's bound; a request id is not).
struct registration_options {
  std::string name;
  label_set labels{};
};

// sample_sink
//
// What a collect function writes into at scrape time: samples grouped into
// families by name. A family's type and help come from its first sample.
class sample_sink {
 public:
  explicit sample_sink(naming n) : naming_(n) {}
  [[nodiscard]] naming preset() const noexcept { return naming_; }

  void gauge(const std::string& family, std::string_view help, label_set l, double v) {
    add(family, help, ::prometheus::MetricType::Gauge, std::move(l)).gauge.value = v;
  }
  void counter(const std::string& family, std::string_view help, label_set l, double v) {
    add(family, help, ::prometheus::MetricType::Counter, std::move(l)).counter.value = v;
  }
  // A summary with only a count and a sum (no quantiles).
  void summary(const std::string& family, std::string_view help, label_set l, std::uint64_t count, double sum) {
    auto& m = add(family, help, ::prometheus::MetricType::Summary, std::move(l));
    m.summary.sample_count = count;
    m.summary.sample_sum = sum;
  }

  [[nodiscard]] std::vector<::prometheus::MetricFamily> take() {
    std::vector<::prometheus::MetricFamily> out;
    out.reserve(families_.size());
    for (auto& [name, f] : families_) out.push_back(std::move(f));
    families_.clear();
    return out;
  }

 private:
  ::prometheus::ClientMetric& add(const std::string& family, std::string_view help, ::prometheus::MetricType type,
                                  label_set l) {
    auto [it, fresh] = families_.try_emplace(family);
    if (fresh) {
      it->second.name = family;
      it->second.help = std::string(help);
      it->second.type = type;
    }
    ::prometheus::ClientMetric m;
    for (auto& [k, v] : l) m.label.push_back({k, v});
    it->second.metric.push_back(std::move(m));
    return it->second.metric.back();
  }

  naming naming_;
  std::map<std::string, ::prometheus::MetricFamily> families_;
};

namespace detail {

[[nodiscard]] inline label_set with(const label_set& base, std::initializer_list<std::pair<const std::string, std::string>> extra) {
  label_set l = base;
  for (const auto& [k, v] : extra) l[k] = v;
  return l;
}

[[nodiscard]] inline double seconds(duration d) noexcept { return std::chrono::duration<double>(d).count(); }

}  // namespace detail

// -----------------------------------------------------------------------------
// event_counter: a listener handle that counts events
// -----------------------------------------------------------------------------

// What event_counter counts, one slot each.
enum class counted : std::uint8_t {
  retry_scheduled,
  retry_exhausted,
  retry_budget_denied,
  retry_deadline_exceeded,
  retry_refused,
  retry_cancelled,
  idempotency_replayed,
  idempotency_executed,
  idempotency_rejected_in_progress,
  idempotency_rejected_mismatch,
  idempotency_rejected_wait_timeout,
  idempotency_rejected_capacity,
  idempotency_rejected_store_unavailable,
  idempotency_rejected_other,
  idempotency_completion_refused,
  breaker_opened,
  limiter_rejected,
  rate_limited,
  chaos_injected,
  options_rejected,
  retry_calls_successful_without_retry,
  retry_calls_successful_with_retry,
  retry_calls_failed_without_retry,
  retry_calls_failed_with_retry,
  count_  // not a slot
};

// event_counter
//
// A copyable listener handle: pass it as a primitive's Listener and register
// it with the exporter. Copies share the counters. Counting is one relaxed
// increment on the calling thread's stripe (no shared cache line between
// threads up to 16 threads); reading sums the stripes.
class event_counter {
  static constexpr std::size_t slots = static_cast<std::size_t>(counted::count_);
  struct alignas(sturdy::detail::counter_stripe_size) stripe {
    std::array<std::atomic<std::uint64_t>, slots> v{};
  };

 public:
  // 16 stripes: up to 16 threads count without sharing a cache line; more
  // threads share stripes (still exact, only slower).
  event_counter() : state_(std::make_shared<state>(16)) {}

  void count(counted c) const noexcept {
    state& s = *state_;
    s.stripes[sturdy::detail::thread_index() & s.mask].v[static_cast<std::size_t>(c)].fetch_add(
        1, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t total(counted c) const noexcept {
    std::uint64_t sum = 0;
    for (std::uint32_t i = 0; i <= state_->mask; ++i) {
      sum += state_->stripes[i].v[static_cast<std::size_t>(c)].load(std::memory_order_relaxed);
    }
    return sum;
  }

  // The listener: every event sturdy emits is accepted; the ones above are
  // counted.
  void operator()(const retry_scheduled&) const noexcept { count(counted::retry_scheduled); }
  void operator()(const retries_exhausted&) const noexcept { count(counted::retry_exhausted); }
  void operator()(const retry_budget_denied&) const noexcept { count(counted::retry_budget_denied); }
  void operator()(const retry_deadline_exceeded&) const noexcept { count(counted::retry_deadline_exceeded); }
  void operator()(const retry_refused_by_server&) const noexcept { count(counted::retry_refused); }
  void operator()(const retry_cancelled&) const noexcept { count(counted::retry_cancelled); }
  void operator()(const idempotency_replayed&) const noexcept { count(counted::idempotency_replayed); }
  void operator()(const idempotency_executed&) const noexcept { count(counted::idempotency_executed); }
  void operator()(const idempotency_rejected& e) const noexcept {
    if (e.reason == errc::in_progress) {
      count(counted::idempotency_rejected_in_progress);
    } else if (e.reason == errc::key_mismatch) {
      count(counted::idempotency_rejected_mismatch);
    } else if (e.reason == errc::wait_timeout) {
      count(counted::idempotency_rejected_wait_timeout);
    } else if (e.reason == errc::capacity_exceeded) {
      count(counted::idempotency_rejected_capacity);
    } else if (e.reason == errc::store_unavailable) {
      count(counted::idempotency_rejected_store_unavailable);
    } else {
      count(counted::idempotency_rejected_other);
    }
  }
  void operator()(const idempotency_completion_refused&) const noexcept {
    count(counted::idempotency_completion_refused);
  }
  void operator()(const breaker_state_changed& e) const noexcept {
    if (e.to == breaker_state::open) count(counted::breaker_opened);
  }
  void operator()(const limiter_rejected&) const noexcept { count(counted::limiter_rejected); }
  void operator()(const rate_limit_rejected&) const noexcept { count(counted::rate_limited); }
  void operator()(const chaos_injected&) const noexcept { count(counted::chaos_injected); }
  void operator()(const sturdy::options_rejected&) const noexcept { count(counted::options_rejected); }
  // Retry calls by kind (resilience4j's retry_calls_total): opted in.
  static constexpr bool wants_retry_call_completed = true;
  void operator()(const retry_call_completed& e) const noexcept {
    const bool retried = e.attempts > 1;
    count(e.succeeded ? (retried ? counted::retry_calls_successful_with_retry
                                 : counted::retry_calls_successful_without_retry)
                      : (retried ? counted::retry_calls_failed_with_retry : counted::retry_calls_failed_without_retry));
  }
  template <class Event>
  void operator()(const Event&) const noexcept {}

 private:
  struct state {
    explicit state(std::uint32_t n) : mask(n - 1), stripes(std::make_unique<stripe[]>(n)) {}
    std::uint32_t mask;
    std::unique_ptr<stripe[]> stripes;
  };
  std::shared_ptr<state> state_;
};

// -----------------------------------------------------------------------------
// collect(): one overload per primitive
// -----------------------------------------------------------------------------

template <clock_source C, class L>
void collect(sample_sink& out, const label_set& base, const circuit_breaker<C, L>& b) {
  const breaker_metrics m = b.metrics();
  const breaker_window_stats& w = m.count_window.calls != 0 || m.time_window.calls == 0 ? m.count_window : m.time_window;
  constexpr breaker_state states[] = {breaker_state::closed,      breaker_state::open,
                                      breaker_state::half_open,   breaker_state::forced_open,
                                      breaker_state::disabled,    breaker_state::metrics_only};
  const bool r4j = out.preset() == naming::resilience4j;
  const std::string p = r4j ? "resilience4j_circuitbreaker_" : "sturdy_circuit_breaker_";
  for (breaker_state s : states) {
    out.gauge(p + "state", "The breaker's state: 1 for the current one, 0 for the others",
              detail::with(base, {{"state", std::string(to_string(s))}}), m.state == s ? 1.0 : 0.0);
  }
  const std::uint64_t successes = m.calls - m.failures;
  if (r4j) {
    // micrometer's Timer: sturdy does not time calls in the breaker, so the
    // sum is NaN (latency panels stay empty rather than show zero).
    const double nan = std::numeric_limits<double>::quiet_NaN();
    out.summary(p + "calls_seconds", "Total number of calls by kind", detail::with(base, {{"kind", "successful"}}),
                successes, nan);
    out.summary(p + "calls_seconds", "Total number of calls by kind", detail::with(base, {{"kind", "failed"}}),
                m.failures, nan);
    out.summary(p + "calls_seconds", "Total number of calls by kind", detail::with(base, {{"kind", "ignored"}}),
                m.ignored, nan);
    out.counter(p + "not_permitted_calls_total", "Total number of not permitted calls",
                detail::with(base, {{"kind", "not_permitted"}}), static_cast<double>(m.rejections));
    out.gauge(p + "failure_rate", "The failure rate of the circuit breaker", base,
              w.calls == 0 ? -1.0 : 100.0 * w.failure_rate());
    out.gauge(p + "slow_call_rate", "The slow call rate of the circuit breaker", base,
              w.calls == 0 ? -1.0 : 100.0 * w.slow_call_rate());
    out.gauge(p + "buffered_calls", "The number of buffered calls", detail::with(base, {{"kind", "successful"}}),
              static_cast<double>(w.calls - w.failures));
    out.gauge(p + "buffered_calls", "The number of buffered calls", detail::with(base, {{"kind", "failed"}}),
              static_cast<double>(w.failures));
    out.gauge(p + "slow_calls", "The number of slow calls", detail::with(base, {{"kind", "slow"}}),
              static_cast<double>(w.slow_calls));
    return;
  }
  out.counter(p + "calls_total", "Calls whose outcome the breaker counted, by kind",
              detail::with(base, {{"kind", "successful"}}), static_cast<double>(successes));
  out.counter(p + "calls_total", "Calls whose outcome the breaker counted, by kind",
              detail::with(base, {{"kind", "failed"}}), static_cast<double>(m.failures));
  out.counter(p + "calls_total", "Calls whose outcome the breaker counted, by kind",
              detail::with(base, {{"kind", "ignored"}}), static_cast<double>(m.ignored));
  out.counter(p + "slow_calls_total", "Calls slower than slow_call_duration", base, static_cast<double>(m.slow_calls));
  out.counter(p + "not_permitted_calls_total", "Calls rejected without running (errc::circuit_open)", base,
              static_cast<double>(m.rejections));
  out.gauge(p + "window_calls", "Calls in the breaker's window", base, static_cast<double>(w.calls));
  out.gauge(p + "window_failure_ratio", "Failed share of the calls in the window (0 when empty)", base,
            w.failure_rate());
  out.gauge(p + "window_slow_call_ratio", "Slow share of the calls in the window (0 when empty)", base,
            w.slow_call_rate());
  out.gauge(p + "consecutive_failures", "Failures in a row in the closed state", base,
            static_cast<double>(m.consecutive_failures));
  out.gauge(p + "retry_after_seconds", "Time until the breaker admits a probe (0 when closed)", base,
            detail::seconds(m.retry_after));
  out.gauge(p + "state_seconds", "Time since the last state change", base, detail::seconds(m.time_in_state));
  out.counter(p + "transitions_total", "State changes since construction", base, static_cast<double>(m.generation));
}

inline void collect(sample_sink& out, const label_set& base, const token_bucket_budget& b) {
  const std::string p = out.preset() == naming::resilience4j ? "resilience4j_retry_budget_" : "sturdy_retry_budget_";
  out.gauge(p + "tokens", "Tokens in the retry budget's bucket", base, b.tokens());
  out.gauge(p + "allows_retry", "1 when the budget allows a retry now", base, b.allows_retry() ? 1.0 : 0.0);
}

template <clock_source C>
void collect(sample_sink& out, const label_set& base, const ratio_budget<C>& b) {
  const std::string p = out.preset() == naming::resilience4j ? "resilience4j_retry_budget_" : "sturdy_retry_budget_";
  const std::uint64_t requests = b.requests_in_window();
  const std::uint64_t retries = b.retries_in_window();
  out.gauge(p + "window_requests", "First attempts in the budget's window", base, static_cast<double>(requests));
  out.gauge(p + "window_retries", "Retries in the budget's window", base, static_cast<double>(retries));
  out.gauge(p + "window_allowance", "Retries the window allows", base, b.allowance(requests));
}

template <clock_source C>
void collect(sample_sink& out, const label_set& base, const adaptive_throttle<C>& t) {
  const std::string p =
      out.preset() == naming::resilience4j ? "resilience4j_adaptive_throttle_" : "sturdy_adaptive_throttle_";
  out.gauge(p + "rejection_probability", "Probability that the throttle rejects a request now", base,
            t.rejection_probability());
}

template <class T, clock_source C, sleeper S, class L, class Store>
void collect(sample_sink& out, const label_set& base, const idempotency_cache<T, C, S, L, Store>& c) {
  const idempotency_stats s = c.stats();
  const std::string p = out.preset() == naming::resilience4j ? "resilience4j_idempotency_" : "sturdy_idempotency_";
  out.counter(p + "replays_total", "Calls answered with a stored outcome", base, static_cast<double>(s.hits));
  out.counter(p + "executions_total", "Keys acquired: the work ran", base, static_cast<double>(s.misses));
  out.counter(p + "waits_total", "Calls that waited for an in-flight duplicate", base, static_cast<double>(s.waits));
  out.counter(p + "rejections_total", "Calls refused", detail::with(base, {{"reason", "in_progress"}}),
              static_cast<double>(s.rejections));
  out.counter(p + "rejections_total", "Calls refused", detail::with(base, {{"reason", "wait_timeout"}}),
              static_cast<double>(s.wait_timeouts));
  out.counter(p + "rejections_total", "Calls refused", detail::with(base, {{"reason", "key_mismatch"}}),
              static_cast<double>(s.mismatches));
  out.counter(p + "evictions_total", "Entries evicted for room", base, static_cast<double>(s.evictions));
  out.counter(p + "takeovers_total", "Expired leases taken over", base, static_cast<double>(s.takeovers));
  out.gauge(p + "entries", "Entries held", base, static_cast<double>(s.entries));
  out.gauge(p + "bytes", "Bytes charged for entries", base, static_cast<double>(s.bytes));
}

inline void collect(sample_sink& out, const label_set& base, const dead_letter_queue& q) {
  const std::string p =
      out.preset() == naming::resilience4j ? "resilience4j_dead_letter_queue_" : "sturdy_dead_letter_queue_";
  out.gauge(p + "depth", "Dead letters waiting for an operator", base, static_cast<double>(q.size()));
  out.counter(p + "dropped_total", "Dead letters dropped because the queue was full", base,
              static_cast<double>(q.dropped()));
}

template <limit_algorithm A, clock_source C, class L>
void collect(sample_sink& out, const label_set& base, const concurrency_limiter<A, C, L>& l) {
  const concurrency_limiter_metrics m = l.metrics();
  if (out.preset() == naming::resilience4j) {
    const std::string p = "resilience4j_bulkhead_";
    out.gauge(p + "available_concurrent_calls", "The number of available permissions", base,
              m.in_flight >= m.limit ? 0.0 : static_cast<double>(m.limit - m.in_flight));
    out.gauge(p + "max_allowed_concurrent_calls", "The maximum number of available permissions", base,
              static_cast<double>(m.limit));
    return;
  }
  const std::string p = "sturdy_concurrency_limiter_";
  out.gauge(p + "limit", "The current concurrency limit", base, static_cast<double>(m.limit));
  out.gauge(p + "in_flight", "Permits held now", base, static_cast<double>(m.in_flight));
  out.gauge(p + "queued", "Callers waiting for a permit", base, static_cast<double>(m.queued));
  out.counter(p + "rejected_total", "Calls refused (limit_exceeded, deadline_exceeded, cancelled)", base,
              static_cast<double>(m.rejected));
  out.counter(p + "timed_out_total", "Waiters whose max_wait or deadline ran out", base,
              static_cast<double>(m.timed_out));
  out.counter(p + "cancelled_total", "Waiters or callers that stopped", base, static_cast<double>(m.cancelled));
  out.counter(p + "dropped_total", "Permits reported dropped (timeouts, overload)", base,
              static_cast<double>(m.dropped));
  out.counter(p + "completed_total", "Permits reported success or dropped (calls that ran to an answer)", base,
              static_cast<double>(m.completed));
  out.counter(p + "ignored_total", "Permits reported ignored or released unreported (cancelled, exceptions)", base,
              static_cast<double>(m.ignored));
}

template <clock_source C, sleeper S, class L>
void collect(sample_sink& out, const label_set& base, const rate_limiter<C, S, L>& r) {
  const rate_limit_decision d = r.peek();
  if (out.preset() == naming::resilience4j) {
    out.gauge("resilience4j_ratelimiter_available_permissions", "The number of available permissions", base,
              static_cast<double>(d.remaining));
    return;
  }
  const std::string p = "sturdy_rate_limiter_";
  out.gauge(p + "available_permits", "Requests admitted at once if they came now", base,
            static_cast<double>(d.remaining));
  out.gauge(p + "reset_seconds", "Time until the bucket is full again", base, detail::seconds(d.reset_after));
}

template <class Fault, clock_source C, sleeper S, class L>
void collect(sample_sink& out, const label_set& base, const chaos_policy<Fault, C, S, L>& c) {
  const std::string p = "sturdy_chaos_";  // no resilience4j counterpart
  out.counter(p + "calls_total", "Calls that reached the chaos layer while it was enabled", base,
              static_cast<double>(c.calls()));
  out.counter(p + "injected_total", "Faults injected", base, static_cast<double>(c.injected()));
  out.gauge(p + "enabled", "1 when the layer's switch is on", base, c.options().enabled.enabled() ? 1.0 : 0.0);
}

inline void collect(sample_sink& out, const label_set& base, const event_counter& e) {
  auto n = [&](counted c) { return static_cast<double>(e.total(c)); };
  {
    // Calls by kind (resilience4j's retry_calls_total), from retry_call_completed.
    const std::string f = out.preset() == naming::resilience4j ? "resilience4j_retry_calls_total" : "sturdy_retry_calls_total";
    const std::pair<const char*, counted> kinds[] = {
        {"successful_without_retry", counted::retry_calls_successful_without_retry},
        {"successful_with_retry", counted::retry_calls_successful_with_retry},
        {"failed_without_retry", counted::retry_calls_failed_without_retry},
        {"failed_with_retry", counted::retry_calls_failed_with_retry}};
    for (const auto& [kind, c] : kinds) {
      out.counter(f, "Retried calls by kind (with_retry: more than one attempt)", detail::with(base, {{"kind", kind}}),
                  n(c));
    }
  }
  const std::string p = "sturdy_";
  out.counter(p + "retry_retries_total", "Retries scheduled (failed attempts that will be tried again)", base,
              n(counted::retry_scheduled));
  const std::pair<const char*, counted> stops[] = {{"exhausted", counted::retry_exhausted},
                                                   {"budget_exhausted", counted::retry_budget_denied},
                                                   {"deadline_exceeded", counted::retry_deadline_exceeded},
                                                   {"refused_by_server", counted::retry_refused},
                                                   {"cancelled", counted::retry_cancelled}};
  for (const auto& [reason, c] : stops) {
    out.counter(p + "retry_gave_up_total", "Retry loops that stopped on a failure, by reason",
                detail::with(base, {{"reason", reason}}), n(c));
  }
  const std::pair<const char*, counted> rejections[] = {
      {"in_progress", counted::idempotency_rejected_in_progress},
      {"key_mismatch", counted::idempotency_rejected_mismatch},
      {"wait_timeout", counted::idempotency_rejected_wait_timeout},
      {"capacity_exceeded", counted::idempotency_rejected_capacity},
      {"store_unavailable", counted::idempotency_rejected_store_unavailable},
      {"other", counted::idempotency_rejected_other}};
  for (const auto& [reason, c] : rejections) {
    out.counter(p + "idempotency_rejected_total", "Idempotent calls refused without running, by reason",
                detail::with(base, {{"reason", reason}}), n(c));
  }
  out.counter(p + "idempotency_completion_refused_total", "Outcomes that could not be stored after the work ran",
              base, n(counted::idempotency_completion_refused));
  out.counter(p + "circuit_breaker_opened_total", "Transitions to open", base, n(counted::breaker_opened));
  out.counter(p + "rate_limiter_rejected_total", "Requests a rate limiter refused (from rate_limit_rejected events)", base,
              n(counted::rate_limited));
  out.counter(p + "chaos_injected_events_total", "Faults injected (from chaos_injected events)", base,
              n(counted::chaos_injected));
  out.counter(p + "options_rejected_total", "Primitives that refused a call because their options are invalid", base,
              n(counted::options_rejected));
}

// A registry: its own counts, then every entry's series with a `key` label
// (the registry's bound is the cardinality bound). Entries are read with
// `registry::visit`, each shard under its read lock: the registry's writers
// of that shard wait for its entries' collection.
template <class P, clock_source C, class O>
void collect(sample_sink& out, const label_set& base, const registry<P, C, O>& r) {
  const registry_stats s = r.stats();
  const std::string p = "sturdy_registry_";
  out.gauge(p + "entries", "Entries held", base, static_cast<double>(s.entries));
  out.gauge(p + "bytes", "Bytes charged for entries", base, static_cast<double>(s.bytes));
  out.counter(p + "hits_total", "Lookups of an existing key", base, static_cast<double>(s.hits));
  out.counter(p + "creations_total", "Entries built on first use", base, static_cast<double>(s.creations));
  out.counter(p + "evictions_total", "Quiescent or idle entries evicted for room", base,
              static_cast<double>(s.evictions));
  out.counter(p + "refusals_total", "Lookups refused with capacity_exceeded", base, static_cast<double>(s.refusals));
  out.counter(p + "overflows_total", "Lookups answered with the shared overflow entry", base,
              static_cast<double>(s.overflows));
  if constexpr (requires(sample_sink& sk, const label_set& l, const P& x) { collect(sk, l, x); }) {
    // visit, not snapshot(): a scrape copies no handle, so it never keeps an
    // entry from eviction (a new key is not refused during a scrape).
    r.visit([&](std::string_view key, const P& entry) {
      label_set l = base;
      l["key"] = std::string(key);
      collect(out, l, entry);
    });
  }
}

// collectable<T>: a type the exporter can register (a `collect(sink,
// labels, object)` overload is found here or by ADL: add one for your own
// types).
template <class T>
concept collectable = requires(sample_sink& s, const label_set& l, const T& t) { collect(s, l, t); };

namespace detail {
template <class T>
void collect_object(sample_sink& s, const label_set& l, const T& t) {
  collect(s, l, t);
}
}  // namespace detail

// -----------------------------------------------------------------------------
// exporter
// -----------------------------------------------------------------------------

class exporter;

// registration: removes its object from the exporter when destroyed.
class [[nodiscard]] registration {
 public:
  registration() = default;
  registration(registration&& o) noexcept : state_(std::move(o.state_)), id_(o.id_) {}
  registration& operator=(registration&& o) noexcept {
    if (this != &o) {
      reset();
      state_ = std::move(o.state_);
      id_ = o.id_;
    }
    return *this;
  }
  ~registration() { reset(); }
  void reset() noexcept;

 private:
  friend class exporter;
  struct exporter_state;
  registration(std::shared_ptr<exporter_state> s, std::uint64_t id) : state_(std::move(s)), id_(id) {}
  std::shared_ptr<exporter_state> state_;
  std::uint64_t id_ = 0;
};

struct registration::exporter_state final : ::prometheus::Collectable {
  explicit exporter_state(naming n) : preset(n) {}
  struct entry {
    std::uint64_t id;
    std::function<void(sample_sink&)> collect;
  };
  std::vector<::prometheus::MetricFamily> Collect() const override {
    sample_sink sink(preset);
    std::lock_guard lock(mu);
    for (const entry& e : entries) e.collect(sink);
    return sink.take();
  }
  const naming preset;
  mutable std::mutex mu;
  std::vector<entry> entries;
  std::uint64_t next_id = 1;
};

inline void registration::reset() noexcept {
  if (!state_) return;
  {
    std::lock_guard lock(state_->mu);
    auto& v = state_->entries;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it->id == id_) {
        v.erase(it);
        break;
      }
    }
  }
  state_.reset();
}

// exporter: see the banner.
class exporter {
 public:
  explicit exporter(naming n = naming::sturdy) : state_(std::make_shared<registration::exporter_state>(n)) {}

  // exporter::add()
  //
  // Registers `object` (held by reference: keep the registration no longer
  // than the object) with a `name` label plus `options.labels`.
  template <collectable T>
  registration add(const T& object, registration_options options) {
    label_set base = std::move(options.labels);
    base["name"] = std::move(options.name);
    std::lock_guard lock(state_->mu);
    const std::uint64_t id = state_->next_id++;
    state_->entries.push_back(
        {id, [obj = &object, base = std::move(base)](sample_sink& sink) { detail::collect_object(sink, base, *obj); }});
    return registration(state_, id);
  }
  // Refuses temporaries: the exporter would keep a reference to them.
  template <collectable T>
    requires(!std::is_lvalue_reference_v<T>)
  registration add(T&& object, registration_options options) = delete;

  // exporter::collect(): the metric families, read now.
  [[nodiscard]] std::vector<::prometheus::MetricFamily> collect() const { return state_->Collect(); }
  // exporter::text(): the Prometheus text exposition format.
  [[nodiscard]] std::string text() const { return ::prometheus::TextSerializer().Serialize(collect()); }
  // The collectable to register with a prometheus::Registry's owner or an
  // Exposer (shared: it outlives the exporter while in use).
  [[nodiscard]] std::shared_ptr<::prometheus::Collectable> collectable() const { return state_; }

 private:
  std::shared_ptr<registration::exporter_state> state_;
};

// serve(exporter, "127.0.0.1:9464"): an HTTP server (civetweb, in
// prometheus-cpp-pull) answering GET /metrics until destroyed. Throws what
// prometheus::Exposer throws when the address cannot be bound (this is the
// one sturdy call that can throw: it is start-up code).
[[nodiscard]] inline std::unique_ptr<::prometheus::Exposer> serve(const exporter& e, const std::string& address,
                                                                  const std::string& uri = "/metrics") {
  auto server = std::make_unique<::prometheus::Exposer>(address, 2);
  server->RegisterCollectable(e.collectable(), uri);
  return server;
}

}  // namespace sturdy::prometheus

#endif  // STURDY_PROMETHEUS_EXPORTER_HPP_
