// Registry lookup of an existing key: sturdy::registry<circuit_breaker<>>
// against the registry a service writes by hand, std::mutex +
// std::unordered_map<std::string, std::shared_ptr<circuit_breaker<>>> (with
// transparent lookup, so neither allocates), at 1 and 2 threads. Both return
// a reference-counted handle the caller may keep. Keys: 10'000 hosts (the
// registry's default bound) and 1M, visited in a per-thread random order.
//   ./registry_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <benchmark/benchmark.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/registry.hpp"

namespace {

using breaker = sturdy::circuit_breaker<>;
constexpr std::size_t order_length = 1 << 16;

const std::vector<std::string>& keys(std::size_t n) {
  static std::vector<std::string> k;
  if (k.size() != n) {
    k.clear();
    for (std::size_t i = 0; i < n; ++i) {
      char buf[48];
      const int len = std::snprintf(buf, sizeof buf, "api-%zu.eu-west-1.example.com", i);
      k.emplace_back(buf, static_cast<std::size_t>(len));
    }
  }
  return k;
}

// Breakers cost a few hundred bytes each; one stripe keeps 1M of them small.
sturdy::circuit_breaker_options small_breaker() { return {.count_window_size = 10, .counter_stripes = 1}; }

struct sturdy_registry {
  sturdy::registry<breaker> reg;
  explicit sturdy_registry(std::size_t n)
      : reg({.max_entries = 2 * n, .options_for = [](std::string_view) { return small_breaker(); }}) {
    for (const auto& k : keys(n)) (void)reg.get(k);
  }
  auto lookup(const std::string& key) { return reg.get(key).value(); }
};

struct mutex_unordered_map {
  struct hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<breaker>, hash, std::equal_to<>> map;
  explicit mutex_unordered_map(std::size_t n) {
    for (const auto& k : keys(n)) map.emplace(k, std::make_shared<breaker>(small_breaker()));
  }
  std::shared_ptr<breaker> lookup(std::string_view key) {
    std::lock_guard lock(mu);
    auto it = map.find(key);
    return it == map.end() ? nullptr : it->second;
  }
};

template <class Impl>
std::unique_ptr<Impl>& instance() {
  static std::unique_ptr<Impl> p;
  return p;
}

// One registry alive at a time, rebuilt only when the size or type changes
// (not for every repetition).
template <class Impl>
void setup(const benchmark::State& state) {
  static std::size_t built_for = 0;
  const auto n = static_cast<std::size_t>(state.range(0));
  if (instance<Impl>() && built_for == n) return;
  instance<sturdy_registry>().reset();
  instance<mutex_unordered_map>().reset();
  instance<Impl>() = std::make_unique<Impl>(n);
  built_for = n;
}

template <class Impl>
void BM_RegistryLookup(benchmark::State& state) {
  Impl& m = *instance<Impl>();
  const auto& k = keys(static_cast<std::size_t>(state.range(0)));
  std::vector<std::uint32_t> order(order_length);
  std::mt19937 gen(static_cast<unsigned>(99 + state.thread_index()));
  for (auto& o : order) o = static_cast<std::uint32_t>(gen() % k.size());
  std::size_t i = 0;
  for (auto _ : state) {
    auto h = m.lookup(k[order[i++ & (order_length - 1)]]);
    benchmark::DoNotOptimize(h.get());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_TEMPLATE(BM_RegistryLookup, sturdy_registry)
    ->Name("BM_RegistryLookup/sturdy_registry")
    ->Setup(setup<sturdy_registry>)
    ->Arg(10'000)
    ->Arg(1'000'000)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_RegistryLookup, mutex_unordered_map)
    ->Name("BM_RegistryLookup/mutex_unordered_map")
    ->Setup(setup<mutex_unordered_map>)
    ->Arg(10'000)
    ->Arg(1'000'000)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
