// Benchmarks for sturdy/retry.hpp, sturdy/backoff.hpp and
// sturdy/retry_budget.hpp. Baselines live in this binary so that every claim
// is a ratio measured in the same run:
//   - the happy path against a bare call and a hand-written retry loop;
//   - one delay computation per jitter mode, with absl::BitGen and with a
//     small fast generator (SplitMix64, and sturdy::thread_local_random);
//   - budget record/acquire at 1 and 2 threads against a std::mutex token
//     bucket and against raw atomic increments.
//
// Run:
//   build/dev/bench/retry_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <system_error>

#include <benchmark/benchmark.h>

#include "absl/random/random.h"
#include "sturdy/backoff.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "retry_baseline.hpp"

namespace {

// ---------------------------------------------------------------------------
// Happy path
// ---------------------------------------------------------------------------

// The callee: a little real work the optimizer cannot drop. Two flavours:
// inlined (about one cycle: the harshest possible ratio, it shows the
// absolute overhead) and a real, not-inlined function call (what any
// callee that does I/O is at least).
int g_counter = 0;
[[gnu::noinline]] sturdy::result<int> callee_noinline() {
  benchmark::DoNotOptimize(g_counter);
  return ++g_counter;
}
inline sturdy::result<int> callee_inline() {
  benchmark::DoNotOptimize(g_counter);
  return ++g_counter;
}
// A callee with a little real work (an FNV-1a hash over 64 bytes, about
// 20 ns): the cheapest thing worth retrying still costs more than this.
[[gnu::noinline]] sturdy::result<int> callee_work() {
  static unsigned char buf[64] = {1, 2, 3};
  benchmark::DoNotOptimize(buf);
  std::uint32_t h = 2166136261u;
  for (unsigned char c : buf) h = (h ^ c) * 16777619u;
  return static_cast<int>(h & 0x7fffffff) + (++g_counter & 1);
}
struct working {
  sturdy::result<int> operator()() const { return callee_work(); }
};
struct inlined {
  sturdy::result<int> operator()() const { return callee_inline(); }
};
struct called {
  sturdy::result<int> operator()() const { return callee_noinline(); }
};

template <class Callee>
void BM_Retry_HappyPath_BareCall(benchmark::State& state) {
  for (auto _ : state) {
    auto r = Callee()();
    benchmark::DoNotOptimize(r);
  }
}

// What a careful user writes by hand: a loop with an attempt counter.
template <class Callee>
void BM_Retry_HappyPath_HandWrittenLoop(benchmark::State& state) {
  for (auto _ : state) {
    sturdy::result<int> r = std::errc::io_error;
    for (int attempt = 0; attempt < 3; ++attempt) {
      r = Callee()();
      if (r) break;
    }
    benchmark::DoNotOptimize(r);
  }
}

template <class Callee>
void BM_Retry_HappyPath_Policy(benchmark::State& state) {
  const sturdy::retry_policy<> policy;
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}

template <class Callee>
void BM_Retry_HappyPath_FreeFunction(benchmark::State& state) {
  for (auto _ : state) {
    auto r = sturdy::retry(Callee());
    benchmark::DoNotOptimize(r);
  }
}

// With a time limit: one clock read per call.
template <class Callee>
void BM_Retry_HappyPath_PolicyWithTimeLimit(benchmark::State& state) {
  const sturdy::retry_policy<> policy(sturdy::retry_options{.max_elapsed = std::chrono::seconds(5)});
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}

// With a shared token bucket (full: a success writes nothing).
template <class Callee>
void BM_Retry_HappyPath_PolicyWithTokenBucket(benchmark::State& state) {
  static sturdy::token_bucket_budget budget;
  const sturdy::retry_policy<> policy(sturdy::retry_options{.budget = budget});
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}

// With a shared adaptive throttle: one clock read and two atomic updates
// (request and accept) per successful call.
template <class Callee>
void BM_Retry_HappyPath_PolicyWithThrottle(benchmark::State& state) {
  static sturdy::adaptive_throttle<> budget;
  const sturdy::retry_policy<> policy(sturdy::retry_options{.budget = budget});
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}

// Before/after: the same happy paths through the policy as it was before the
// hardening round (bench/retry_baseline.hpp), in this binary. Report the
// ratio Policy / BaselinePolicy per callee.
template <class Callee>
void BM_Retry_HappyPath_BaselinePolicy(benchmark::State& state) {
  const sturdy::retry_baseline::retry_policy<> policy;
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}
template <class Callee>
void BM_Retry_HappyPath_BaselinePolicyWithTimeLimit(benchmark::State& state) {
  const sturdy::retry_baseline::retry_policy<> policy(
      sturdy::retry_baseline::retry_options{.max_elapsed = std::chrono::seconds(5)});
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}
template <class Callee>
void BM_Retry_HappyPath_BaselinePolicyWithTokenBucket(benchmark::State& state) {
  static sturdy::token_bucket_budget budget;
  const sturdy::retry_baseline::retry_policy<> policy(sturdy::retry_baseline::retry_options{.budget = budget});
  for (auto _ : state) {
    auto r = policy.execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}

// The same with the policy behind a pointer the optimizer cannot see
// through, as for a policy built at start-up and shared: no field of it is
// known at compile time, so no check folds away.
template <class Policy, class Callee>
void shared_policy_loop(benchmark::State& state, const Policy& built) {
  const Policy* policy = &built;
  benchmark::DoNotOptimize(policy);
  for (auto _ : state) {
    auto r = policy->execute(Callee());
    benchmark::DoNotOptimize(r);
  }
}
template <class Callee>
void BM_Retry_HappyPath_SharedPolicy(benchmark::State& state) {
  static const sturdy::retry_policy<> built;
  shared_policy_loop<sturdy::retry_policy<>, Callee>(state, built);
}
template <class Callee>
void BM_Retry_HappyPath_BaselineSharedPolicy(benchmark::State& state) {
  static const sturdy::retry_baseline::retry_policy<> built;
  shared_policy_loop<sturdy::retry_baseline::retry_policy<>, Callee>(state, built);
}

// The retrying path: the callee fails twice, then succeeds; the backoff is
// zero and the sleeper returns at once, so this measures the loop's own
// decisions (two failures recorded, two delays drawn, two retry events).
// With the token bucket, two failures per success drain it: that variant
// mostly measures the budget's denial path (one failure, then a stop).
struct no_sleep {
  bool sleep_for(sturdy::duration, std::stop_token) const noexcept { return true; }
};
template <bool WithBudget>
void BM_Retry_RetryingPath(benchmark::State& state) {
  static sturdy::token_bucket_budget budget;
  const sturdy::retry_policy<sturdy::backoff, sturdy::steady_clock_source, no_sleep> policy(
      sturdy::retry_options{.max_attempts = 3,
                            .backoff = sturdy::backoff::constant(sturdy::duration::zero()),
                            .budget = WithBudget ? sturdy::retry_budget_ref(budget) : sturdy::retry_budget_ref()});
  int n = 0;
  for (auto _ : state) {
    auto r = policy.execute([&]() -> sturdy::result<int> {
      benchmark::DoNotOptimize(n);
      if (++n % 3 != 0) return std::errc::io_error;
      return n;
    });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK_TEMPLATE(BM_Retry_RetryingPath, false);
BENCHMARK_TEMPLATE(BM_Retry_RetryingPath, true);

BENCHMARK_TEMPLATE(BM_Retry_HappyPath_SharedPolicy, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselineSharedPolicy, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_SharedPolicy, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselineSharedPolicy, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselinePolicy, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselinePolicyWithTimeLimit, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselinePolicyWithTokenBucket, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselinePolicy, working);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BaselinePolicy, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BareCall, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_HandWrittenLoop, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_Policy, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_FreeFunction, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_PolicyWithTimeLimit, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_PolicyWithTokenBucket, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_PolicyWithThrottle, called);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BareCall, working);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_HandWrittenLoop, working);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_Policy, working);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_FreeFunction, working);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_BareCall, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_HandWrittenLoop, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_Policy, inlined);
BENCHMARK_TEMPLATE(BM_Retry_HappyPath_FreeFunction, inlined);

// ---------------------------------------------------------------------------
// One delay computation per jitter mode
// ---------------------------------------------------------------------------

// A small fast generator for comparison.
struct splitmix64 {
  using result_type = std::uint64_t;
  std::uint64_t x;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~0ull; }
  result_type operator()() {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

template <class Gen>
void delay_bench(benchmark::State& state, Gen& gen) {
  const auto j = static_cast<sturdy::jitter>(state.range(0));
  const sturdy::backoff b{.jitter = j, .base = std::chrono::milliseconds(10), .cap = std::chrono::seconds(30)};
  sturdy::backoff::state st;
  std::uint64_t n = 0;
  for (auto _ : state) {
    auto d = b.next_delay(n, st, gen);
    benchmark::DoNotOptimize(d);
    n = (n + 1) & 15;  // retry numbers 0..15, then a new "call"
    if (n == 0) st = {};
  }
  state.SetLabel(std::string(sturdy::to_string(j)));
}

void BM_Backoff_NextDelay_AbslBitGen(benchmark::State& state) {
  absl::BitGen gen(std::seed_seq{42});
  delay_bench(state, gen);
}
void BM_Backoff_NextDelay_SplitMix64(benchmark::State& state) {
  splitmix64 gen{42};
  delay_bench(state, gen);
}
void BM_Backoff_NextDelay_ThreadLocalRandom(benchmark::State& state) {
  sturdy::thread_local_random gen;
  delay_bench(state, gen);
}
BENCHMARK(BM_Backoff_NextDelay_AbslBitGen)->DenseRange(0, 5);
BENCHMARK(BM_Backoff_NextDelay_SplitMix64)->DenseRange(0, 5);
BENCHMARK(BM_Backoff_NextDelay_ThreadLocalRandom)->DenseRange(0, 5);

// ---------------------------------------------------------------------------
// Budgets: one failure record, one retry check, one success record per
// iteration, at 1 and 2 threads.
// ---------------------------------------------------------------------------

// Baseline: the obvious token bucket under a std::mutex.
class mutex_token_bucket {
 public:
  void record_failure() {
    std::lock_guard lock(mu_);
    tokens_ = tokens_ > 1 ? tokens_ - 1 : 0;
  }
  void record_success() {
    std::lock_guard lock(mu_);
    tokens_ = tokens_ + ratio_ < max_ ? tokens_ + ratio_ : max_;
  }
  bool allows_retry() {
    std::lock_guard lock(mu_);
    return tokens_ > max_ / 2;
  }

 private:
  std::mutex mu_;
  double tokens_ = 100;
  const double max_ = 100;
  const double ratio_ = 1;
};

mutex_token_bucket g_mutex_bucket;
sturdy::token_bucket_budget g_token_bucket({.max_tokens = 100, .token_ratio = 1});
sturdy::ratio_budget<> g_ratio_budget({.ratio = 0.5, .window = std::chrono::seconds(10), .min_retries_per_second = 100});
sturdy::adaptive_throttle<> g_throttle;
alignas(64) std::atomic<std::uint64_t> g_raw_a{0};

void BM_Budget_MutexTokenBucket(benchmark::State& state) {
  for (auto _ : state) {
    g_mutex_bucket.record_failure();
    benchmark::DoNotOptimize(g_mutex_bucket.allows_retry());
    g_mutex_bucket.record_success();
  }
}
void BM_Budget_RawAtomics(benchmark::State& state) {
  for (auto _ : state) {
    g_raw_a.fetch_sub(1, std::memory_order_relaxed);
    benchmark::DoNotOptimize(g_raw_a.load(std::memory_order_relaxed));
    g_raw_a.fetch_add(1, std::memory_order_relaxed);
  }
}
void BM_Budget_TokenBucket(benchmark::State& state) {
  for (auto _ : state) {
    g_token_bucket.on_outcome(sturdy::attempt_outcome::failure);
    benchmark::DoNotOptimize(g_token_bucket.try_retry(0));
    g_token_bucket.on_outcome(sturdy::attempt_outcome::success);
  }
}
// The ratio budget reads the steady clock in each of its calls.
void BM_Budget_RatioBudget(benchmark::State& state) {
  for (auto _ : state) {
    g_ratio_budget.on_attempt(false);
    benchmark::DoNotOptimize(g_ratio_budget.try_retry(0));
    g_ratio_budget.on_outcome(sturdy::attempt_outcome::success);
  }
}
void BM_Budget_AdaptiveThrottle(benchmark::State& state) {
  std::uint64_t e = 0x9e3779b97f4a7c15ULL;
  for (auto _ : state) {
    g_throttle.on_attempt(false);
    benchmark::DoNotOptimize(g_throttle.try_retry(e *= 0xbf58476d1ce4e5b9ULL));
    g_throttle.on_outcome(sturdy::attempt_outcome::success);
  }
}
BENCHMARK(BM_Budget_MutexTokenBucket)->Threads(1)->Threads(2);
BENCHMARK(BM_Budget_RawAtomics)->Threads(1)->Threads(2);
BENCHMARK(BM_Budget_TokenBucket)->Threads(1)->Threads(2);
BENCHMARK(BM_Budget_RatioBudget)->Threads(1)->Threads(2);
BENCHMARK(BM_Budget_AdaptiveThrottle)->Threads(1)->Threads(2);

}  // namespace
