// Benchmarks of the timer facility and sturdy::timeout_policy, with their
// baselines in the same binary, so every claim is a ratio from one run:
//   - arm + disarm of a timer (the success path of every timeout) against two
//     lock/unlock pairs of a std::mutex private to the calling thread, at 1
//     and 2 threads, with 10, 1,000 and 100,000 other timers armed in the
//     calling thread's shard (the cost must not grow with them);
//   - a whole timeout_policy::execute on the success path, and
//     compose(retry, timeout, breaker) on the happy path, against a bare call
//     of the same callee.
// Reported time is CPU time per iteration, per thread.
//
//   build/dev/bench/timeout_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <benchmark/benchmark.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/timeout.hpp"
#include "sturdy/timer.hpp"

namespace {

using namespace std::chrono_literals;

[[gnu::noinline]] int bare_call(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

// --- baselines ---------------------------------------------------------------

void BM_Baseline_BareCall(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = bare_call(x));
}
BENCHMARK(BM_Baseline_BareCall)->Threads(1)->Threads(2);

// Two lock/unlock pairs of a mutex only this thread uses (no contention:
// the cost of the atomic operations alone).
void BM_Baseline_TwoPrivateMutexPairs(benchmark::State& state) {
  std::mutex m;
  int x = 0;
  for (auto _ : state) {
    m.lock();
    benchmark::DoNotOptimize(++x);
    m.unlock();
    m.lock();
    benchmark::DoNotOptimize(++x);
    m.unlock();
  }
}
BENCHMARK(BM_Baseline_TwoPrivateMutexPairs)->Threads(1)->Threads(2);

// --- the timer facility ------------------------------------------------------

struct noop_entry {
  sturdy::detail::timer_entry entry{[](void*) noexcept {}, nullptr};
};

// Arm + disarm with `state.range(0)` other timers armed by this thread (so in
// its shard), far in the future, on the process-wide service.
void BM_Timer_ArmDisarm(benchmark::State& state) {
  auto& timers = sturdy::timer_service::shared();
  std::vector<std::unique_ptr<noop_entry>> background;
  const auto far = timers.now() + 1h;
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    background.push_back(std::make_unique<noop_entry>());
    timers.arm(background.back()->entry, far + std::chrono::microseconds(i * 37));
  }
  noop_entry e;
  const auto at = timers.now() + 30s;
  for (auto _ : state) {
    timers.arm(e.entry, at);
    benchmark::DoNotOptimize(timers.disarm(e.entry));
  }
  for (auto& b : background) timers.disarm(b->entry);
}
BENCHMARK(BM_Timer_ArmDisarm)->Arg(10)->Arg(1000)->Arg(100000)->Threads(1)->Threads(2);

// --- timeout_policy and compose ----------------------------------------------

void BM_Timeout_Execute_Success(benchmark::State& state) {
  static const sturdy::timeout_policy<> limit({.timeout = 30s});
  int x = 0;
  for (auto _ : state) {
    auto r = limit.execute([&] { return sturdy::result<int>(bare_call(x)); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Timeout_Execute_Success)->Threads(1)->Threads(2);

void BM_Timeout_Execute_ContextCallee(benchmark::State& state) {
  static const sturdy::timeout_policy<> limit({.timeout = 30s});
  int x = 0;
  for (auto _ : state) {
    auto r = limit.execute([&](const sturdy::call_context& ctx) {
      return sturdy::result<int>(ctx.stop_requested() ? 0 : bare_call(x));
    });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Timeout_Execute_ContextCallee)->Threads(1)->Threads(2);

// The same on a service that reads the coarse clock (4 ms resolution here):
// the clock read at the start of each call is the bulk of the cost above.
void BM_Timeout_Execute_Success_CoarseClockService(benchmark::State& state) {
  static sturdy::timer_service coarse_timers({.resolution = sturdy::coarse_steady_clock_source::resolution()},
                                             sturdy::coarse_steady_clock_source{});
  static const sturdy::timeout_policy<> limit({.timeout = 30s}, coarse_timers);
  int x = 0;
  for (auto _ : state) {
    auto r = limit.execute([&] { return sturdy::result<int>(bare_call(x)); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Timeout_Execute_Success_CoarseClockService)->Threads(1)->Threads(2);

void BM_Compose_RetryTimeoutBreaker_HappyPath(benchmark::State& state) {
  static sturdy::circuit_breaker<> breaker({});
  static const sturdy::retry_policy<> retry({.max_attempts = 3});
  static const sturdy::timeout_policy<> limit({.timeout = 30s});
  auto pipeline = sturdy::compose(retry, limit, breaker);
  int x = 0;
  for (auto _ : state) {
    auto r = pipeline.execute([&] { return sturdy::result<int>(bare_call(x)); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Compose_RetryTimeoutBreaker_HappyPath)->Threads(1)->Threads(2);

}  // namespace
