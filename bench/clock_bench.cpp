// Benchmarks of the clock sources and of what they cost an open circuit
// breaker, with the forced-open rejection (which reads no clock) as the
// baseline in the same binary (issue 14, item 6: an open breaker on the
// coarse clock should reject within 2x of the forced-open rejection).
// Reported time is CPU time per call, per thread.
//
//   build/dev/bench/clock_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
#include <chrono>

#include <benchmark/benchmark.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/clock.hpp"

namespace {

using namespace std::chrono_literals;

void BM_Clock_Steady(benchmark::State& state) {
  sturdy::steady_clock_source c;
  for (auto _ : state) benchmark::DoNotOptimize(c.now());
}
BENCHMARK(BM_Clock_Steady)->Threads(1)->Threads(2);

void BM_Clock_Coarse(benchmark::State& state) {
  sturdy::coarse_steady_clock_source c;
  for (auto _ : state) benchmark::DoNotOptimize(c.now());
}
BENCHMARK(BM_Clock_Coarse)->Threads(1)->Threads(2);

template <class Clock>
sturdy::circuit_breaker<Clock>& open_breaker() {
  // Opened by one failure, for five minutes: every call below is rejected in the
  // open state, which reads the clock to compare with the open-until time.
  static sturdy::circuit_breaker<Clock> b({.consecutive_failure_threshold = 1,
                                           .failure_rate_threshold = 0,
                                           .count_window_size = 0,
                                           .open_duration = 5min});
  static const bool opened = [] {
    auto p = b.try_acquire();
    b.record(p.value(), sturdy::call_outcome::failure);
    return true;
  }();
  (void)opened;
  return b;
}

template <class Clock>
void rejected_open(benchmark::State& state) {
  auto& b = open_breaker<Clock>();
  for (auto _ : state) {
    auto p = b.try_acquire();
    benchmark::DoNotOptimize(p);
  }
  if (b.state() != sturdy::breaker_state::open) state.SkipWithError("breaker not open");
}

void BM_CircuitBreaker_Rejected_ForcedOpen(benchmark::State& state) {
  static sturdy::circuit_breaker<> b({});
  if (state.thread_index() == 0) b.force_open();
  for (auto _ : state) {
    auto p = b.try_acquire();
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_CircuitBreaker_Rejected_ForcedOpen)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Rejected_Open_SteadyClock(benchmark::State& state) {
  rejected_open<sturdy::steady_clock_source>(state);
}
BENCHMARK(BM_CircuitBreaker_Rejected_Open_SteadyClock)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Rejected_Open_CoarseClock(benchmark::State& state) {
  rejected_open<sturdy::coarse_steady_clock_source>(state);
}
BENCHMARK(BM_CircuitBreaker_Rejected_Open_CoarseClock)->Threads(1)->Threads(2);

}  // namespace
