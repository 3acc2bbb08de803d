// The breaker's closed success path with Prometheus export off and on, in one
// run: "on" registers the breaker with an exporter and keeps a scraper thread
// rendering the exposition every 100 ms (150x Prometheus's usual 15 s
// interval), so a scrape overlaps the calls. The exporter reads the breaker's
// own counter stripes at scrape time: the call path is the same code.
//
//   build/dev/bench/prometheus_exporter_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
#include <atomic>
#include <chrono>
#include <thread>

#include <benchmark/benchmark.h>

#include "sturdy/prometheus/exporter.hpp"

namespace {

[[gnu::noinline]] sturdy::result<int> callee(int x) { return x + 1; }

void run(benchmark::State& state, sturdy::circuit_breaker<>& breaker) {
  int x = 0;
  for (auto _ : state) {
    auto r = breaker.execute([&] { return callee(x); });
    benchmark::DoNotOptimize(r);
    x = r.value();
  }
}

void BM_Breaker_ClosedSuccess_ExportOff(benchmark::State& state) {
  static sturdy::circuit_breaker<> breaker({});
  run(state, breaker);
}
BENCHMARK(BM_Breaker_ClosedSuccess_ExportOff)->Threads(1)->Threads(2);

struct exported {
  sturdy::circuit_breaker<> breaker{sturdy::circuit_breaker_options{}};
  sturdy::prometheus::exporter metrics;
  sturdy::prometheus::registration reg = metrics.add(breaker, {.name = "bench"});
  std::atomic<bool> stop{false};
  std::thread scraper{[this] {
    while (!stop.load(std::memory_order_relaxed)) {
      benchmark::DoNotOptimize(metrics.text());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }};
  ~exported() {
    stop = true;
    scraper.join();
  }
};

void BM_Breaker_ClosedSuccess_ExportOn(benchmark::State& state) {
  static exported e;
  run(state, e.breaker);
}
BENCHMARK(BM_Breaker_ClosedSuccess_ExportOn)->Threads(1)->Threads(2);

}  // namespace
