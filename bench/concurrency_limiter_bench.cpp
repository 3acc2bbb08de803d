// Benchmarks of sturdy::concurrency_limiter with its baselines in the same
// binary, so every claim is a ratio measured in one run:
//   - std::counting_semaphore try_acquire + release (the same work: a
//     bounded counter, no queue);
//   - a counter behind one std::mutex (the obvious hand-written bulkhead).
// One acquire + release pair per iteration, on 1 and 2 threads sharing one
// object, limit 1000 (never reached: the uncontended-admission path).
// The fixed-limit limiter reads no clock; without a queue (the default) its
// release is one fetch_sub, with one a CAS (reported separately). The
// latency-recording permits (AIMD, Gradient2) read the clock twice and take
// the limiter's lock on release to feed the algorithm: reported separately.
//
//   build/dev/bench/concurrency_limiter_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true   (one command line)
#include "sturdy/concurrency_limiter.hpp"

#include <cstdint>
#include <mutex>
#include <semaphore>

#include <benchmark/benchmark.h>

namespace {

constexpr std::uint32_t kLimit = 1000;

// --- baselines ---------------------------------------------------------------

std::counting_semaphore<kLimit>& semaphore() {
  static std::counting_semaphore<kLimit> s(kLimit);
  return s;
}

void BM_Semaphore_TryAcquireRelease(benchmark::State& state) {
  auto& s = semaphore();
  for (auto _ : state) {
    const bool ok = s.try_acquire();
    benchmark::DoNotOptimize(ok);
    if (ok) s.release();
  }
}
BENCHMARK(BM_Semaphore_TryAcquireRelease)->Threads(1)->Threads(2);

struct mutex_counter {
  std::mutex mu;
  std::uint32_t in_flight = 0;
  bool try_acquire() {
    std::lock_guard lock(mu);
    if (in_flight >= kLimit) return false;
    ++in_flight;
    return true;
  }
  void release() {
    std::lock_guard lock(mu);
    --in_flight;
  }
};

mutex_counter& mutex_bulkhead() {
  static mutex_counter m;
  return m;
}

void BM_MutexCounter_TryAcquireRelease(benchmark::State& state) {
  auto& m = mutex_bulkhead();
  for (auto _ : state) {
    const bool ok = m.try_acquire();
    benchmark::DoNotOptimize(ok);
    if (ok) m.release();
  }
}
BENCHMARK(BM_MutexCounter_TryAcquireRelease)->Threads(1)->Threads(2);

// --- sturdy ------------------------------------------------------------------

template <class Limiter>
void try_acquire_release(benchmark::State& state, Limiter& l) {
  for (auto _ : state) {
    auto p = l.try_acquire();
    benchmark::DoNotOptimize(p);
    if (p) p.value().record_success();
  }
}

void BM_Limiter_Fixed_TryAcquireRelease(benchmark::State& state) {
  static sturdy::concurrency_limiter<> l({}, sturdy::fixed_limit({.limit = kLimit}));
  try_acquire_release(state, l);
}
BENCHMARK(BM_Limiter_Fixed_TryAcquireRelease)->Threads(1)->Threads(2);

// With a queue configured (nobody waits here): the release is a CAS that
// checks for waiters to hand its slot to, instead of a fetch_sub.
void BM_Limiter_FixedWithQueue_TryAcquireRelease(benchmark::State& state) {
  static sturdy::concurrency_limiter<> l({.max_queue = 100}, sturdy::fixed_limit({.limit = kLimit}));
  try_acquire_release(state, l);
}
BENCHMARK(BM_Limiter_FixedWithQueue_TryAcquireRelease)->Threads(1)->Threads(2);

void BM_Limiter_Fixed_Execute(benchmark::State& state) {
  static sturdy::concurrency_limiter<> l({}, sturdy::fixed_limit({.limit = kLimit}));
  int x = 0;
  for (auto _ : state) {
    auto r = l.execute([&] { return ++x; });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Limiter_Fixed_Execute)->Threads(1)->Threads(2);

// Refusals at the limit (one permit, held for the whole run): the limiter's
// refused admission is a fetch_add taken back by a fetch_sub, plus the
// rejected counter (null_listener: no event); libstdc++ 12's semaphore
// spins briefly before its try_acquire gives up.
void BM_Semaphore_TryAcquireRefused(benchmark::State& state) {
  static std::counting_semaphore<1> s(0);
  for (auto _ : state) {
    const bool ok = s.try_acquire();
    benchmark::DoNotOptimize(ok);
  }
}
BENCHMARK(BM_Semaphore_TryAcquireRefused)->Threads(1)->Threads(2);

void BM_Limiter_Fixed_TryAcquireRefused(benchmark::State& state) {
  static sturdy::concurrency_limiter<> l({}, sturdy::fixed_limit({.limit = 1}));
  static auto held = l.try_acquire();
  for (auto _ : state) {
    auto p = l.try_acquire();
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_Limiter_Fixed_TryAcquireRefused)->Threads(1)->Threads(2);

// The latency-recording permit: two clock reads and one lock per call.
void BM_Limiter_Aimd_TryAcquireRecordLatency(benchmark::State& state) {
  static sturdy::concurrency_limiter<sturdy::aimd_limit> l(
      {}, sturdy::aimd_limit({.initial_limit = kLimit, .min_limit = kLimit, .max_limit = kLimit}));
  try_acquire_release(state, l);
}
BENCHMARK(BM_Limiter_Aimd_TryAcquireRecordLatency)->Threads(1)->Threads(2);

void BM_Limiter_Gradient2_TryAcquireRecordLatency(benchmark::State& state) {
  static sturdy::concurrency_limiter<sturdy::gradient2_limit> l(
      {}, sturdy::gradient2_limit({.initial_limit = kLimit, .min_limit = kLimit, .max_limit = kLimit}));
  try_acquire_release(state, l);
}
BENCHMARK(BM_Limiter_Gradient2_TryAcquireRecordLatency)->Threads(1)->Threads(2);

}  // namespace
