// event_counter counts on per-thread stripes while a scraper reads them: no
// count is lost, and reading never races with counting (TSan).
#include <gtest/gtest.h>

#ifdef STURDY_NO_PROMETHEUS
TEST(PrometheusExporterStressTest, NeedsPrometheusCpp) { GTEST_SKIP() << "prometheus-cpp not found"; }
#else
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "sturdy/prometheus/exporter.hpp"
#include "support/stress.hpp"

namespace {

TEST(PrometheusExporterStressTest, CountsFromManyThreadsWhileScraping) {
  const std::uint64_t per_thread = sturdy::test::stress_iterations(200000);
  sturdy::prometheus::event_counter events;
  sturdy::prometheus::exporter metrics;
  auto reg = metrics.add(events, {.name = "stress"});
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) (void)metrics.text();
  });
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&] {
      for (std::uint64_t i = 0; i < per_thread; ++i) events(sturdy::retry_scheduled{1, {}, {}, false});
    });
  }
  for (auto& th : pool) th.join();
  done = true;
  scraper.join();
  EXPECT_EQ(events.total(sturdy::prometheus::counted::retry_scheduled), 4 * per_thread);
}

}  // namespace
#endif
