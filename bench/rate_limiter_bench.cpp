// Benchmarks of sturdy::rate_limiter::try_acquire on the admitting path (the
// limiter is configured so every call is admitted and every call writes the
// state word), next to two baselines in the same binary:
//
//   BM_Baseline_FetchAdd              a bare fetch_add on one shared atomic:
//                                     the floor of any shared counter
//   BM_MutexBucket_CallerTime         a std::mutex token bucket (double
//                                     tokens, refill from the time passed in)
//   BM_Baseline_CasLoop_CallerTime    the same GCRA step in a plain CAS loop
//                                     (retry at once, no back-off): the
//                                     limiter's loop before the back-off
//   BM_RateLimiter_CallerTime         try_acquire_at(now): time from the caller
//   BM_MutexBucket_SteadyClock        the mutex bucket reading steady_clock
//   BM_RateLimiter_SteadyClock        try_acquire() with the default clock
//   BM_RateLimiter_CoarseClock        try_acquire() with CLOCK_MONOTONIC_COARSE
//   BM_Clock_Steady / BM_Clock_Coarse one clock read alone (the clock's share)
//
// each at 1 and 2 threads sharing one limiter. Caller time: each thread
// passes a time that advances 1 ns per call (the limiter admits 1 per ns with
// a burst of 1e9, so all calls are admitted). Counter `admitted` is the
// fraction admitted (1.0 means every call took the CAS path); `on_cpu` says
// whether the threads really ran at the same time (see there). On a machine
// shared with other work, run it under `chrt -f 1` for the 2-thread rows to
// mean contention (the docs say when they were).
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

#include <benchmark/benchmark.h>

#include "sturdy/rate_limiter.hpp"

namespace {

using namespace std::chrono_literals;

// CLOCK_MONOTONIC_COARSE as a sturdy clock_source (the library's coarse
// clock is not on this branch yet): a vDSO read of the last tick, no TSC.
struct coarse_clock {
  [[nodiscard]] sturdy::time_point now() const noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return sturdy::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};

// glibc runs std::mutex without atomic instructions while the process has
// never had a second thread (__libc_single_threaded): the 1-thread mutex
// bucket would then cost 3.5 ns instead of 15 ns when its row runs first. A
// server is multi-threaded; so is this binary, from the start.
const bool multi_threaded = [] {
  std::thread([] {}).join();
  return true;
}();

constexpr sturdy::rate_limiter_options always_admits{
    .rate = 1'000'000'000, .period = 1s, .burst = 1'000'000'000};

// A classic token bucket behind a mutex (what the lock-free limiter replaces).
class mutex_bucket {
 public:
  mutex_bucket(double rate_per_ns, double burst) : rate_(rate_per_ns), burst_(burst), tokens_(burst) {}
  bool try_acquire_at(std::int64_t now_ns) {
    std::lock_guard lock(mu_);
    if (now_ns > last_) {
      tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_ns - last_) * rate_);
      last_ = now_ns;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  std::mutex mu_;
  const double rate_;
  const double burst_;
  double tokens_;
  std::int64_t last_ = 0;
};

// One limiter per benchmark (Tag), shared by its threads.
template <class Limiter, int Tag>
Limiter& shared() {
  static Limiter l(always_admits);
  return l;
}
template <int Tag>
mutex_bucket& shared_bucket() {
  static mutex_bucket b(1.0, 1e9);
  return b;
}

void report(benchmark::State& state, std::int64_t admitted) {
  state.counters["admitted"] = benchmark::Counter(
      static_cast<double>(admitted) / static_cast<double>(state.iterations() == 0 ? 1 : state.iterations()),
      benchmark::Counter::kAvgThreads);
}

// on_cpu: the fraction of the run's wall time each thread spent on a CPU
// (averaged over threads). At 2 threads, ~1.0 means both really ran at the
// same time (the shared word was contended); ~0.5 means the scheduler
// time-sliced them (nothing was contended: the machine was busy). A mutex
// waiter that parks lowers it too.
class on_cpu {
 public:
  on_cpu() : wall_(std::chrono::steady_clock::now()), cpu_(thread_cpu()) {}
  void report(benchmark::State& state) const {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_).count();
    state.counters["on_cpu"] =
        benchmark::Counter(wall > 0 ? (thread_cpu() - cpu_) / wall : 0.0, benchmark::Counter::kAvgThreads);
  }

 private:
  static double thread_cpu() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  }
  std::chrono::steady_clock::time_point wall_;
  double cpu_;
};

// Each thread's caller-supplied time: 1 ns per call, from a common start.
std::int64_t start_time() { return sturdy::time_point(10'000s).time_since_epoch().count(); }

std::atomic<std::uint64_t> counter{0};

void BM_Baseline_FetchAdd(benchmark::State& state) {
  const on_cpu cpu;
  for (auto _ : state) benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
  cpu.report(state);
}
BENCHMARK(BM_Baseline_FetchAdd)->Threads(1)->Threads(2);

void BM_MutexBucket_CallerTime(benchmark::State& state) {
  const on_cpu cpu;
  std::int64_t now = start_time(), admitted = 0;
  for (auto _ : state) admitted += shared_bucket<0>().try_acquire_at(++now) ? 1 : 0;
  report(state, admitted);
  cpu.report(state);
}
BENCHMARK(BM_MutexBucket_CallerTime)->Threads(1)->Threads(2);

// The rate limiter's admission as it was before the back-off: a
// compare-and-swap loop that retries at once (the same GCRA step, the same
// word), to show what the back-off changes under contention.
std::atomic<std::uint64_t> cas_word{0};
void BM_Baseline_CasLoop_CallerTime(benchmark::State& state) {
  const on_cpu cpu;
  const sturdy::detail::gcra core(static_cast<std::uint64_t>(always_admits.interval().count()),
                                  always_admits.burst);
  std::int64_t now = start_time(), admitted = 0;
  for (auto _ : state) {
    const std::uint64_t t = sturdy::detail::to_biased(++now);
    const std::uint64_t floor = core.floor_at(t);
    std::uint64_t word = cas_word.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t next = core.admit(word, floor, t, core.interval());
      if (next == 0) break;
      if (cas_word.compare_exchange_weak(word, next, std::memory_order_relaxed)) {
        ++admitted;
        break;
      }
    }
  }
  report(state, admitted);
  cpu.report(state);
}
BENCHMARK(BM_Baseline_CasLoop_CallerTime)->Threads(1)->Threads(2);

void BM_RateLimiter_CallerTime(benchmark::State& state) {
  const on_cpu cpu;
  auto& l = shared<sturdy::rate_limiter<>, 0>();
  std::int64_t now = start_time(), admitted = 0;
  for (auto _ : state)
    admitted += l.try_acquire_at(sturdy::time_point(sturdy::duration(++now))).allowed ? 1 : 0;
  report(state, admitted);
  cpu.report(state);
}
BENCHMARK(BM_RateLimiter_CallerTime)->Threads(1)->Threads(2);

void BM_MutexBucket_SteadyClock(benchmark::State& state) {
  std::int64_t admitted = 0;
  for (auto _ : state) {
    admitted += shared_bucket<1>().try_acquire_at(std::chrono::steady_clock::now().time_since_epoch().count())
                    ? 1
                    : 0;
  }
  report(state, admitted);
}
BENCHMARK(BM_MutexBucket_SteadyClock)->Threads(1)->Threads(2);

void BM_RateLimiter_SteadyClock(benchmark::State& state) {
  auto& l = shared<sturdy::rate_limiter<>, 1>();
  std::int64_t admitted = 0;
  for (auto _ : state) admitted += l.try_acquire().allowed ? 1 : 0;
  report(state, admitted);
}
BENCHMARK(BM_RateLimiter_SteadyClock)->Threads(1)->Threads(2);

void BM_RateLimiter_CoarseClock(benchmark::State& state) {
  auto& l = shared<sturdy::rate_limiter<coarse_clock>, 2>();
  std::int64_t admitted = 0;
  for (auto _ : state) admitted += l.try_acquire().allowed ? 1 : 0;
  report(state, admitted);
}
BENCHMARK(BM_RateLimiter_CoarseClock)->Threads(1)->Threads(2);

void BM_Clock_Steady(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sturdy::steady_clock_source{}.now());
}
BENCHMARK(BM_Clock_Steady)->Threads(1);

void BM_Clock_Coarse(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(coarse_clock{}.now());
}
BENCHMARK(BM_Clock_Coarse)->Threads(1);

}  // namespace
