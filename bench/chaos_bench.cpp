// The cost of a chaos layer that is switched off (the production state): one
// relaxed load in front of the call. Baseline: the same callee called bare.
#include <benchmark/benchmark.h>

#include "sturdy/chaos.hpp"

namespace {

[[gnu::noinline]] sturdy::result<int> callee(int v) { return v + 1; }

void BM_Chaos_Baseline_BareCall(benchmark::State& state) {
  int v = 0;
  for (auto _ : state) {
    auto r = callee(v);
    benchmark::DoNotOptimize(r);
    v = r.value();
  }
}
BENCHMARK(BM_Chaos_Baseline_BareCall);

void BM_Chaos_Off(benchmark::State& state) {
  sturdy::chaos_policy chaos({.injection_rate = 1.0}, sturdy::chaos_error{sturdy::errc::store_unavailable});
  int v = 0;
  for (auto _ : state) {
    auto r = chaos.execute([&] { return callee(v); });
    benchmark::DoNotOptimize(r);
    v = r.value();
  }
}
BENCHMARK(BM_Chaos_Off);

void BM_Chaos_OnNotSelected(benchmark::State& state) {
  // Enabled with rate 0: counts the call, reads the clock, draws, calls fn.
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 0.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  int v = 0;
  for (auto _ : state) {
    auto r = chaos.execute([&] { return callee(v); });
    benchmark::DoNotOptimize(r);
    v = r.value();
  }
}
BENCHMARK(BM_Chaos_OnNotSelected);

void BM_Chaos_OnHalfInjected(benchmark::State& state) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 0.5, .seed = 7},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  int v = 0;
  for (auto _ : state) {
    auto r = chaos.execute([&] { return callee(v); });
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Chaos_OnHalfInjected);

}  // namespace
