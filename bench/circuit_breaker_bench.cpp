// Benchmarks of sturdy::circuit_breaker with its baselines in the same binary,
// so every claim is a ratio measured in one run:
//   - a bare (non-inlined) call, one atomic load, one relaxed fetch_add on an
//     uncontended (per-thread) counter;
//   - bench::mutex_breaker: the same semantics behind one std::mutex.
// Each runs on 1 and 2 threads sharing one breaker. Reported time is CPU time
// per call (per thread), so "2 threads / 1 thread" is the contention cost.
//
//   build/dev/bench/circuit_breaker_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
#include "sturdy/circuit_breaker.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

#include <benchmark/benchmark.h>

#include "mutex_breaker.hpp"

namespace {

using namespace std::chrono_literals;

// --- baselines ---------------------------------------------------------------

[[gnu::noinline]] int bare_call(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

void BM_Baseline_BareCall(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = bare_call(x));
}
BENCHMARK(BM_Baseline_BareCall)->Threads(1)->Threads(2);

std::atomic<std::uint64_t> shared_word{42};

void BM_Baseline_AtomicLoad(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(shared_word.load(std::memory_order_acquire));
}
BENCHMARK(BM_Baseline_AtomicLoad)->Threads(1)->Threads(2);

struct alignas(64) padded_counter {
  std::atomic<std::uint64_t> v{0};
};
padded_counter per_thread_counters[64];

void BM_Baseline_FetchAddUncontended(benchmark::State& state) {
  auto& c = per_thread_counters[state.thread_index() % 64].v;
  for (auto _ : state) benchmark::DoNotOptimize(c.fetch_add(1, std::memory_order_relaxed));
}
BENCHMARK(BM_Baseline_FetchAddUncontended)->Threads(1)->Threads(2);

// --- the mutex breaker -------------------------------------------------------

bench::mutex_breaker& mutex_breaker_instance() {
  static bench::mutex_breaker b({});
  return b;
}

void BM_MutexBreaker_Success(benchmark::State& state) {
  auto& b = mutex_breaker_instance();
  for (auto _ : state) {
    const std::int64_t g = b.try_acquire();
    benchmark::DoNotOptimize(g);
    b.record(g, true);
  }
}
BENCHMARK(BM_MutexBreaker_Success)->Threads(1)->Threads(2);

// --- sturdy::circuit_breaker -------------------------------------------------

using breaker = sturdy::circuit_breaker<>;

breaker& consecutive_breaker() {
  static breaker b({.consecutive_failure_threshold = 5, .failure_rate_threshold = 0, .count_window_size = 0});
  return b;
}
breaker& count_breaker() {
  static breaker b({.consecutive_failure_threshold = 5, .failure_rate_threshold = 0.5, .count_window_size = 100});
  return b;
}
breaker& time_breaker() {
  static breaker b({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0.5, .count_window_size = 0,
                    .time_window = 10s, .time_window_buckets = 10});
  return b;
}

void success_path(benchmark::State& state, breaker& b) {
  for (auto _ : state) {
    auto p = b.try_acquire();
    benchmark::DoNotOptimize(p);
    b.record(p.assume_value(), sturdy::call_outcome::success);
  }
  if (b.state() != sturdy::breaker_state::closed) state.SkipWithError("breaker left closed");
}

void BM_CircuitBreaker_Success_Consecutive(benchmark::State& state) { success_path(state, consecutive_breaker()); }
BENCHMARK(BM_CircuitBreaker_Success_Consecutive)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Success_CountWindow(benchmark::State& state) { success_path(state, count_breaker()); }
BENCHMARK(BM_CircuitBreaker_Success_CountWindow)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Success_TimeWindow(benchmark::State& state) { success_path(state, time_breaker()); }
BENCHMARK(BM_CircuitBreaker_Success_TimeWindow)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Execute_CountWindow(benchmark::State& state) {
  auto& b = count_breaker();
  int x = 0;
  for (auto _ : state) {
    auto r = b.execute([&] { return sturdy::result<int>(bare_call(x)); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_CircuitBreaker_Execute_CountWindow)->Threads(1)->Threads(2);

// The context overload (what compose calls), with a token that can fire: two
// more loads of the token's state (before and after the call).
void BM_CircuitBreaker_Execute_CountWindow_Context(benchmark::State& state) {
  auto& b = count_breaker();
  sturdy::cancel_source caller;
  const sturdy::call_context ctx{.token = caller.token()};
  int x = 0;
  for (auto _ : state) {
    auto r = b.execute([&] { return sturdy::result<int>(bare_call(x)); }, ctx);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_CircuitBreaker_Execute_CountWindow_Context)->Threads(1)->Threads(2);

// One failure in every 64 calls, count window (the failure path folds the
// successes into the window; rate 1/64 never trips at threshold 0.5).
void BM_CircuitBreaker_OneFailureIn64_CountWindow(benchmark::State& state) {
  static breaker b({.consecutive_failure_threshold = 5, .failure_rate_threshold = 0.5, .count_window_size = 100});
  std::uint32_t i = 0;
  for (auto _ : state) {
    auto p = b.try_acquire();
    benchmark::DoNotOptimize(p);
    b.record(p.assume_value(), (++i & 63) == 0 ? sturdy::call_outcome::failure : sturdy::call_outcome::success);
  }
}
BENCHMARK(BM_CircuitBreaker_OneFailureIn64_CountWindow)->Threads(1)->Threads(2);

void BM_CircuitBreaker_Rejected_ForcedOpen(benchmark::State& state) {
  static breaker b({});
  if (state.thread_index() == 0) b.force_open();
  for (auto _ : state) {
    auto p = b.try_acquire();
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_CircuitBreaker_Rejected_ForcedOpen)->Threads(1)->Threads(2);

}  // namespace
