// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// A Prometheus scrape of a registry copies no handle (registry::visit), so
// it never keeps an entry from eviction: a new key is not refused because a
// scrape is running. Real time: the scrape is held inside an entry's collect
// while another thread asks for a new key; that thread's answer is awaited
// up to 100 ms (with the fix it waits for the scrape's shard lock and gets
// its entry once the scrape ends). Labelled slow.
#include <gtest/gtest.h>

#ifdef STURDY_NO_PROMETHEUS
TEST(PrometheusRegistryScrapeTest, NeedsPrometheusCpp) { GTEST_SKIP() << "prometheus-cpp not found at configure time"; }
#else

#include <chrono>
#include <future>
#include <string>

#include "sturdy/prometheus/exporter.hpp"
#include "sturdy/registry.hpp"

namespace {

using namespace std::chrono_literals;

struct gate {
  std::promise<void> entered;
  std::promise<void> leave;
};
gate* scrape_gate = nullptr;

struct fake_options {};
// Always quiescent: evictable whenever no handle holds it.
class fake_primitive {
 public:
  using options_type = fake_options;
  explicit fake_primitive(fake_options) {}
  [[nodiscard]] sturdy::quiescence quiescence(sturdy::time_point) const noexcept { return sturdy::quiescence::quiescent; }
};

// Its series; the first collect of a scrape waits for the test.
void collect(sturdy::prometheus::sample_sink& out, const sturdy::prometheus::label_set& l, const fake_primitive&) {
  out.gauge("fake_up", "1", l, 1.0);
  if (gate* g = std::exchange(scrape_gate, nullptr)) {
    g->entered.set_value();
    g->leave.get_future().wait();
  }
}

TEST(PrometheusRegistryScrapeTest, AScrapeDoesNotKeepEntriesFromEviction) {
  sturdy::registry<fake_primitive> reg({.max_entries = 1});
  ASSERT_TRUE(reg.get("a"));
  sturdy::prometheus::exporter metrics;
  auto registration = metrics.add(reg, {.name = "fakes"});
  gate g;
  scrape_gate = &g;
  auto scrape = std::async(std::launch::async, [&] { return metrics.text(); });
  g.entered.get_future().wait();  // the scrape is inside "a"'s collect
  auto newcomer = std::async(std::launch::async, [&] {
    auto r = reg.get("b");
    return r ? std::string("ok") : r.error().message();
  });
  // Before the fix the scrape held a handle to "a": "b" was refused at once.
  // Now "b" waits for the scrape's shard lock: no answer yet.
  const bool answered_during_scrape = newcomer.wait_for(100ms) == std::future_status::ready;
  g.leave.set_value();
  const std::string text = scrape.get();
  EXPECT_NE(text.find("fake_up"), std::string::npos);
  EXPECT_EQ(newcomer.get(), "ok") << (answered_during_scrape ? "answered during the scrape" : "");
  EXPECT_EQ(reg.stats().evictions, 1u);
}

}  // namespace

#endif
