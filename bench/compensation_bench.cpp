// compensation_scope vs scope guards: register N undos, then commit (none
// run) or roll back (all run), for N = 1, 3, 8. Baselines in the same binary:
//   - Bare:        N increments, no guard at all;
//   - HandGuard:   N minimal hand-written lambda guards (`if (active) f();`);
//   - AbslCleanup: N absl::Cleanup guards (Cancel() to commit).
// The commit decision is a runtime value, as it is in real code, so no
// guard can be optimized away. Every benchmark reports allocs/iter (this
// binary links the counting operator new) to back the zero-allocation claim.
//
//   build/dev/bench/compensation_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <utility>

#include "sturdy/compensation.hpp"
#include "sturdy/testing/counting_allocator.hpp"

#if defined(STURDY_BENCH_HAVE_ABSL_CLEANUP)
#include "absl/cleanup/cleanup.h"
#endif

namespace {

struct alloc_counter {
  explicit alloc_counter(benchmark::State& s) : state(s), start(sturdy::testing::thread_allocations().allocations) {}
  ~alloc_counter() {
    const auto n = sturdy::testing::thread_allocations().allocations - start;
    state.counters["allocs/iter"] =
        benchmark::Counter(static_cast<double>(n), benchmark::Counter::kAvgIterations);
  }
  benchmark::State& state;
  std::uint64_t start;
};

// The undo every variant registers: one observable increment.
#define STURDY_BENCH_UNDO [&c] { benchmark::DoNotOptimize(c += 1); }

bool runtime_flag(bool v) {
  benchmark::DoNotOptimize(v);
  return v;
}

// ------------------------------------------------------------------ sturdy

template <int N>
void BM_Scope(benchmark::State& state, bool commit) {
  alloc_counter allocs(state);
  std::int64_t c = 0;
  for (auto _ : state) {
    const bool do_commit = runtime_flag(commit);
    sturdy::compensation_scope scope;
    for (int i = 0; i < N; ++i) (void)scope.add(STURDY_BENCH_UNDO);
    if (do_commit) (void)scope.commit();
  }
  benchmark::DoNotOptimize(c);
}

template <int N>
void BM_Scope_NamedStep(benchmark::State& state, bool commit) {
  alloc_counter allocs(state);
  std::int64_t c = 0;
  for (auto _ : state) {
    const bool do_commit = runtime_flag(commit);
    sturdy::compensation_scope scope;
    for (int i = 0; i < N; ++i) {
      (void)scope.step("step", [i] { return sturdy::result<int>(i); }, STURDY_BENCH_UNDO);
    }
    if (do_commit) (void)scope.commit();
  }
  benchmark::DoNotOptimize(c);
}

template <int N>
void BM_Scope_RollbackReport(benchmark::State& state) {
  alloc_counter allocs(state);
  std::int64_t c = 0;
  for (auto _ : state) {
    sturdy::compensation_scope scope;
    for (int i = 0; i < N; ++i) (void)scope.add(STURDY_BENCH_UNDO);
    auto report = scope.rollback();
    benchmark::DoNotOptimize(report.undone());
  }
  benchmark::DoNotOptimize(c);
}

// ------------------------------------------------------------------ baselines

template <int N>
void BM_Bare(benchmark::State& state, bool commit) {
  std::int64_t c = 0;
  for (auto _ : state) {
    const bool do_commit = runtime_flag(commit);
    if (!do_commit) {
      for (int i = 0; i < N; ++i) benchmark::DoNotOptimize(c += 1);
    }
  }
  benchmark::DoNotOptimize(c);
}

template <class F>
struct hand_guard {
  explicit hand_guard(F fn) : f(std::move(fn)) {}
  hand_guard(const hand_guard&) = delete;
  hand_guard& operator=(const hand_guard&) = delete;
  ~hand_guard() {
    if (active) f();
  }
  F f;
  bool active = true;
};
template <class F>
hand_guard(F) -> hand_guard<F>;

template <int N>
void nest_hand(std::int64_t& c, bool commit) {
  hand_guard g{STURDY_BENCH_UNDO};
  if constexpr (N > 1) nest_hand<N - 1>(c, commit);
  if (commit) g.active = false;
}

template <int N>
void BM_HandGuard(benchmark::State& state, bool commit) {
  alloc_counter allocs(state);
  std::int64_t c = 0;
  for (auto _ : state) nest_hand<N>(c, runtime_flag(commit));
  benchmark::DoNotOptimize(c);
}

#if defined(STURDY_BENCH_HAVE_ABSL_CLEANUP)
template <int N>
void nest_absl(std::int64_t& c, bool commit) {
  auto g = absl::MakeCleanup(STURDY_BENCH_UNDO);
  if constexpr (N > 1) nest_absl<N - 1>(c, commit);
  if (commit) std::move(g).Cancel();
}

template <int N>
void BM_AbslCleanup(benchmark::State& state, bool commit) {
  alloc_counter allocs(state);
  std::int64_t c = 0;
  for (auto _ : state) nest_absl<N>(c, runtime_flag(commit));
  benchmark::DoNotOptimize(c);
}
#endif

template <int N>
void register_all() {
  const std::string n = std::to_string(N);
  for (const bool commit : {true, false}) {
    const std::string what = std::string(commit ? "commit/" : "rollback/") + n;
    benchmark::RegisterBenchmark(("BM_Bare/" + what).c_str(), BM_Bare<N>, commit);
    benchmark::RegisterBenchmark(("BM_HandGuard/" + what).c_str(), BM_HandGuard<N>, commit);
#if defined(STURDY_BENCH_HAVE_ABSL_CLEANUP)
    benchmark::RegisterBenchmark(("BM_AbslCleanup/" + what).c_str(), BM_AbslCleanup<N>, commit);
#endif
    benchmark::RegisterBenchmark(("BM_Scope/" + what).c_str(), BM_Scope<N>, commit);
    benchmark::RegisterBenchmark(("BM_Scope_NamedStep/" + what).c_str(), BM_Scope_NamedStep<N>, commit);
  }
  benchmark::RegisterBenchmark(("BM_Scope_RollbackReport/" + n).c_str(), BM_Scope_RollbackReport<N>);
}

[[maybe_unused]] const bool registered = [] {
  register_all<1>();
  register_all<3>();
  register_all<8>();
  return true;
}();

}  // namespace
