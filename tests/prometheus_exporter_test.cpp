#include <gtest/gtest.h>

#ifdef STURDY_NO_PROMETHEUS
TEST(PrometheusExporterTest, NeedsPrometheusCpp) { GTEST_SKIP() << "prometheus-cpp not found at configure time"; }
#else

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "sturdy/prometheus/exporter.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_sleeper;
namespace prom = sturdy::prometheus;

// The value of the sample of `family` whose labels include all of `want`.
double sample(const std::vector<::prometheus::MetricFamily>& families, const std::string& family,
              const std::map<std::string, std::string>& want) {
  for (const auto& f : families) {
    if (f.name != family) continue;
    for (const auto& m : f.metric) {
      std::size_t matched = 0;
      for (const auto& l : m.label) {
        auto it = want.find(l.name);
        if (it != want.end() && it->second == l.value) ++matched;
      }
      if (matched != want.size()) continue;
      switch (f.type) {
        case ::prometheus::MetricType::Counter: return m.counter.value;
        case ::prometheus::MetricType::Gauge: return m.gauge.value;
        case ::prometheus::MetricType::Summary: return static_cast<double>(m.summary.sample_count);
        default: return m.untyped.value;
      }
    }
  }
  ADD_FAILURE() << "no sample " << family;
  return -1;
}

sturdy::result<int> fail() { return sturdy::errc::store_unavailable; }
sturdy::result<int> ok() { return 1; }

TEST(PrometheusExporterTest, BreakerSeriesEqualItsOwnSnapshotAfterAScriptedRun) {
  manual_clock clock;
  sturdy::circuit_breaker<manual_clock> breaker({.consecutive_failure_threshold = 3}, clock);
  prom::exporter metrics;
  auto reg = metrics.add(breaker, {.name = "inventory", .labels = {{"region", "eu"}}});
  for (int i = 0; i < 7; ++i) (void)breaker.execute(ok);
  for (int i = 0; i < 3; ++i) (void)breaker.execute(fail);  // opens
  for (int i = 0; i < 4; ++i) (void)breaker.execute(ok);    // rejected
  const auto m = breaker.metrics();
  ASSERT_EQ(m.state, sturdy::breaker_state::open);
  const auto f = metrics.collect();
  const std::map<std::string, std::string> id{{"name", "inventory"}, {"region", "eu"}};
  auto with = [&](std::string k, std::string v) {
    auto l = id;
    l[k] = v;
    return l;
  };
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_state", with("state", "open")), 1.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_state", with("state", "closed")), 0.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_calls_total", with("kind", "successful")), 7.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_calls_total", with("kind", "failed")), 3.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_calls_total", with("kind", "successful")),
            static_cast<double>(m.calls - m.failures));
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_not_permitted_calls_total", id), 4.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_not_permitted_calls_total", id), static_cast<double>(m.rejections));
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_retry_after_seconds", id),
            std::chrono::duration<double>(m.retry_after).count());
}

TEST(PrometheusExporterTest, Resilience4jPresetRendersMicrometerNames) {
  sturdy::circuit_breaker<> breaker({.consecutive_failure_threshold = 2});
  prom::exporter metrics(prom::naming::resilience4j);
  auto reg = metrics.add(breaker, {.name = "backend"});
  (void)breaker.execute(ok);
  (void)breaker.execute(fail);
  (void)breaker.execute(fail);
  (void)breaker.execute(ok);
  const auto f = metrics.collect();
  EXPECT_EQ(sample(f, "resilience4j_circuitbreaker_state", {{"name", "backend"}, {"state", "open"}}), 1.0);
  EXPECT_EQ(sample(f, "resilience4j_circuitbreaker_calls_seconds", {{"name", "backend"}, {"kind", "successful"}}), 1.0);
  EXPECT_EQ(sample(f, "resilience4j_circuitbreaker_calls_seconds", {{"name", "backend"}, {"kind", "failed"}}), 2.0);
  EXPECT_EQ(sample(f, "resilience4j_circuitbreaker_not_permitted_calls_total", {{"name", "backend"}}), 1.0);
  const std::string text = metrics.text();
  EXPECT_NE(text.find("resilience4j_circuitbreaker_calls_seconds_count{kind=\"failed\",name=\"backend\"} 2"),
            std::string::npos)
      << text;
}

TEST(PrometheusExporterTest, RetryCountsComeThroughTheSharedListenerHandle) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  prom::event_counter events;
  sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper, prom::event_counter> retry(
      {.max_attempts = 3}, clock, sleeper, events);
  auto copy = retry;  // copies of the policy share the handle
  (void)retry.execute(fail);  // 2 retries, then exhausted
  (void)copy.execute(fail);   // 2 more
  int n = 0;
  (void)copy.execute([&]() -> sturdy::result<int> {
    if (++n < 2) return sturdy::errc::store_unavailable;
    return 1;
  });  // 1 retry, then success
  prom::exporter metrics;
  auto reg = metrics.add(events, {.name = "payments"});
  const auto f = metrics.collect();
  EXPECT_EQ(sample(f, "sturdy_retry_retries_total", {{"name", "payments"}}), 5.0);
  EXPECT_EQ(sample(f, "sturdy_retry_gave_up_total", {{"name", "payments"}, {"reason", "exhausted"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_retry_gave_up_total", {{"name", "payments"}, {"reason", "cancelled"}}), 0.0);
  EXPECT_EQ(events.total(prom::counted::retry_scheduled), 5u);
  EXPECT_EQ(sample(f, "sturdy_retry_calls_total", {{"name", "payments"}, {"kind", "failed_with_retry"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_retry_calls_total", {{"name", "payments"}, {"kind", "successful_with_retry"}}), 1.0);
  (void)retry.execute([] { return sturdy::result<int>(1); });
  prom::exporter r4j(prom::naming::resilience4j);
  auto reg4j = r4j.add(events, {.name = "payments"});
  const auto g = r4j.collect();
  EXPECT_EQ(sample(g, "resilience4j_retry_calls_total", {{"name", "payments"}, {"kind", "successful_without_retry"}}),
            1.0);
  EXPECT_EQ(sample(g, "resilience4j_retry_calls_total", {{"name", "payments"}, {"kind", "failed_with_retry"}}), 2.0);
  EXPECT_EQ(sample(g, "resilience4j_retry_calls_total", {{"name", "payments"}, {"kind", "failed_without_retry"}}), 0.0);
}

TEST(PrometheusExporterTest, IdempotencyAndDeadLetterSeriesEqualTheirSnapshots) {
  sturdy::idempotency_cache<int> cache(sturdy::idempotency_options{});
  sturdy::dead_letter_queue dlq({.capacity = 2});
  prom::exporter metrics;
  auto r1 = metrics.add(cache, {.name = "signup"});
  auto r2 = metrics.add(dlq, {.name = "onboarding"});
  for (int i = 0; i < 3; ++i) (void)cache.execute("key-1", 1, [] { return 5; });
  (void)cache.execute("key-2", 2, [] { return 6; });
  for (int i = 0; i < 3; ++i) (void)dlq.push(sturdy::dead_letter_entry{});
  const auto s = cache.stats();
  const auto f = metrics.collect();
  EXPECT_EQ(sample(f, "sturdy_idempotency_replays_total", {{"name", "signup"}}), static_cast<double>(s.hits));
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(sample(f, "sturdy_idempotency_executions_total", {{"name", "signup"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_idempotency_entries", {{"name", "signup"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_dead_letter_queue_depth", {{"name", "onboarding"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_dead_letter_queue_dropped_total", {{"name", "onboarding"}}), 1.0);
}

TEST(PrometheusExporterTest, LimiterAndRateLimiterSeriesEqualTheirSnapshots) {
  sturdy::concurrency_limiter<sturdy::fixed_limit> limiter({}, sturdy::fixed_limit({.limit = 2}));
  manual_clock clock;
  sturdy::rate_limiter<manual_clock> rate({.rate = 10, .period = 1s, .burst = 5}, clock);
  prom::event_counter events;
  prom::exporter metrics;
  auto r1 = metrics.add(limiter, {.name = "db"});
  auto r2 = metrics.add(rate, {.name = "partner"});
  auto a = limiter.try_acquire();
  auto b = limiter.try_acquire();
  auto c = limiter.try_acquire();  // refused: the limit is 2
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  ASSERT_FALSE(c);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rate.try_acquire().allowed);
  const auto m = limiter.metrics();
  auto f = metrics.collect();
  EXPECT_EQ(sample(f, "sturdy_concurrency_limiter_limit", {{"name", "db"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_concurrency_limiter_in_flight", {{"name", "db"}}), static_cast<double>(m.in_flight));
  EXPECT_EQ(sample(f, "sturdy_concurrency_limiter_in_flight", {{"name", "db"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_concurrency_limiter_rejected_total", {{"name", "db"}}), 1.0);
  EXPECT_EQ(sample(f, "sturdy_rate_limiter_available_permits", {{"name", "partner"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_rate_limiter_available_permits", {{"name", "partner"}}),
            static_cast<double>(rate.peek().remaining));
  clock.advance(1s);  // refilled
  f = metrics.collect();
  EXPECT_EQ(sample(f, "sturdy_rate_limiter_available_permits", {{"name", "partner"}}), 5.0);
  prom::exporter r4j(prom::naming::resilience4j);
  auto r3 = r4j.add(limiter, {.name = "db"});
  EXPECT_EQ(sample(r4j.collect(), "resilience4j_bulkhead_available_concurrent_calls", {{"name", "db"}}), 0.0);
}

TEST(PrometheusExporterTest, RegistrySeriesCarryOneKeyLabelPerEntry) {
  sturdy::registry<sturdy::circuit_breaker<>> hosts({.max_entries = 8});
  prom::exporter metrics;
  auto reg = metrics.add(hosts, {.name = "per-host"});
  for (const char* host : {"a.internal", "b.internal"}) {
    auto b = hosts.get(host);
    ASSERT_TRUE(b);
    (void)b.value()->execute(ok);
  }
  (void)hosts.get("a.internal");
  const auto f = metrics.collect();
  EXPECT_EQ(sample(f, "sturdy_registry_entries", {{"name", "per-host"}}), 2.0);
  EXPECT_EQ(sample(f, "sturdy_registry_hits_total", {{"name", "per-host"}}), 1.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_calls_total",
                   {{"name", "per-host"}, {"key", "b.internal"}, {"kind", "successful"}}),
            1.0);
  EXPECT_EQ(sample(f, "sturdy_circuit_breaker_state", {{"key", "a.internal"}, {"state", "closed"}}), 1.0);
}

TEST(PrometheusExporterTest, DestroyingTheRegistrationRemovesTheSeries) {
  prom::exporter metrics;
  {
    sturdy::circuit_breaker<> breaker({});
    auto reg = metrics.add(breaker, {.name = "short-lived"});
    EXPECT_NE(metrics.text().find("short-lived"), std::string::npos);
  }
  EXPECT_EQ(metrics.text().find("short-lived"), std::string::npos);
  // A registration may outlive its exporter.
  sturdy::circuit_breaker<> b2({});
  prom::registration late;
  {
    prom::exporter gone;
    late = gone.add(b2, {.name = "x"});
  }
  late.reset();
  SUCCEED();
}

TEST(PrometheusExporterTest, ExpositionPassesPromtoolCheckMetrics) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_FAIL() << "promtool not found: install the Debian package 'prometheus' (scripts/deps.sh does)";
  }
  manual_clock clock;
  sturdy::circuit_breaker<manual_clock> breaker({}, clock);
  sturdy::token_bucket_budget bucket;
  sturdy::ratio_budget<manual_clock> ratio({}, clock);
  sturdy::adaptive_throttle<manual_clock> throttle({}, clock);
  sturdy::idempotency_cache<int> cache(sturdy::idempotency_options{});
  sturdy::dead_letter_queue dlq;
  prom::event_counter events;
  sturdy::chaos_policy chaos({}, sturdy::chaos_error{sturdy::errc::store_unavailable});
  sturdy::concurrency_limiter<> limiter;
  sturdy::rate_limiter<> rate;
  sturdy::registry<sturdy::circuit_breaker<>> hosts({.max_entries = 4});
  (void)hosts.get("h1");
  for (const auto preset : {prom::naming::sturdy, prom::naming::resilience4j}) {
    prom::exporter metrics(preset);
    std::vector<prom::registration> regs;
    regs.push_back(metrics.add(breaker, {.name = "b"}));
    regs.push_back(metrics.add(bucket, {.name = "tb"}));
    regs.push_back(metrics.add(ratio, {.name = "rb"}));
    regs.push_back(metrics.add(throttle, {.name = "th"}));
    regs.push_back(metrics.add(cache, {.name = "c"}));
    regs.push_back(metrics.add(dlq, {.name = "q"}));
    regs.push_back(metrics.add(events, {.name = "e"}));
    regs.push_back(metrics.add(chaos, {.name = "chaos"}));
    regs.push_back(metrics.add(limiter, {.name = "l"}));
    regs.push_back(metrics.add(rate, {.name = "r"}));
    regs.push_back(metrics.add(hosts, {.name = "hosts"}));
    const std::string path = ::testing::TempDir() + "/sturdy_metrics.txt";
    std::ofstream(path) << metrics.text();
    const std::string cmd = "promtool check metrics < " + path + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int rc = pclose(p);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "") << out;
  }
}

}  // namespace

#endif  // STURDY_NO_PROMETHEUS
