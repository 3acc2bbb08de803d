// Benchmarks of sturdy::idempotency_cache against a hand-written
// std::mutex + std::unordered_map cache with the same essentials
// (bench/idempotency_baseline.hpp), in the same binary.
//
// Both hold 1M completed keys (11-byte keys, uint64_t values, 24 h TTL, a 1.125M
// entry bound so new keys evict). Workloads, at 1 and 2 threads:
//   Replay          every call replays a random stored key (the hit path)
//   FirstExecution  every call runs a new key (admission + eviction + store)
//   Mixed90         90 % replays, 10 % first executions
// Counters: bytes_per_entry (heap bytes per stored entry, measured with
// mallinfo2 around the prefill).
//
// Reproduce: build/dev/bench/idempotency_bench --benchmark_repetitions=5
//            --benchmark_report_aggregates_only=true
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "idempotency_baseline.hpp"
#include "sturdy/idempotency.hpp"

namespace {

constexpr std::size_t kKeys = 1'000'000;

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> v;
    v.reserve(kKeys);
    char buf[32];
    for (std::size_t i = 0; i < kKeys; ++i) {
      const int n = std::snprintf(buf, sizeof buf, "key-%07zu", i);
      v.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return v;
  }();
  return k;
}

// Heap bytes in use: small chunks plus mmapped large blocks (the tables).
std::size_t heap_in_use() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

using sturdy_cache = sturdy::idempotency_cache<std::uint64_t>;
using baseline_cache = bench::mutex_map_cache<std::uint64_t>;

struct sturdy_impl {
  std::unique_ptr<sturdy_cache> cache;
  double bytes_per_entry = 0;
  sturdy_impl() {
    (void)keys();
    const std::size_t before = heap_in_use();
    cache = std::make_unique<sturdy_cache>(
        sturdy::idempotency_options{},
        sturdy::memory_store_options{.shards = 64, .max_entries = kKeys + kKeys / 8});
    for (std::size_t i = 0; i < kKeys; ++i) (void)cache->execute(keys()[i], i, [i] { return i; });
    bytes_per_entry = static_cast<double>(heap_in_use() - before) / static_cast<double>(kKeys);
  }
  auto run(std::string_view key, std::uint64_t fp) {
    return cache->execute(key, fp, [fp] { return fp; });
  }
};

struct baseline_impl {
  std::unique_ptr<baseline_cache> cache;
  double bytes_per_entry = 0;
  baseline_impl() {
    (void)keys();
    const std::size_t before = heap_in_use();
    cache = std::make_unique<baseline_cache>(kKeys + kKeys / 8, std::chrono::hours(24));
    for (std::size_t i = 0; i < kKeys; ++i) (void)cache->execute(keys()[i], i, [i] { return i; });
    bytes_per_entry = static_cast<double>(heap_in_use() - before) / static_cast<double>(kKeys);
  }
  auto run(std::string_view key, std::uint64_t fp) {
    return cache->execute(key, fp, [fp] { return fp; });
  }
};

// One prefilled instance per implementation and workload: first executions
// evict stored keys, which must not turn another workload's replays into
// misses.
template <class Impl, int workload>
Impl& instance() {
  static Impl impl;
  return impl;
}

// replay_percent: share of calls that replay a stored key; the rest run a
// key never seen before (unique per thread and call).
template <class Impl, int replay_percent>
void BM_Idempotency(benchmark::State& state) {
  Impl& impl = instance<Impl, replay_percent>();
  const auto& k = keys();
  std::mt19937_64 gen(42 + static_cast<std::uint64_t>(state.thread_index()));
  std::uint64_t fresh = 0;
  char buf[48];
  std::uint64_t replays = 0;
  for (auto _ : state) {
    const std::uint64_t r = gen();
    if (static_cast<int>(r % 100) < replay_percent) {
      const std::size_t i = (r >> 8) % kKeys;
      auto res = impl.run(k[i], i);
      replays += res.replayed ? 1 : 0;
      benchmark::DoNotOptimize(res);
    } else {
      // 16 bytes: longer than SSO would be unfair to neither (both copy once).
      const int n = std::snprintf(buf, sizeof buf, "n%02d-%011llu", state.thread_index(),
                                  static_cast<unsigned long long>(fresh++ % 100'000'000'000ULL));
      auto res = impl.run(std::string_view(buf, static_cast<std::size_t>(n)), 1);
      benchmark::DoNotOptimize(res);
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_entry"] =
      benchmark::Counter(impl.bytes_per_entry, benchmark::Counter::kAvgThreads);
  state.counters["replayed"] =
      benchmark::Counter(static_cast<double>(replays), benchmark::Counter::kAvgIterations);
}

#define STURDY_IDEM_BENCH(name, impl, pct) \
  BENCHMARK_TEMPLATE(BM_Idempotency, impl, pct)->Name(name)->Threads(1)->Threads(2)->UseRealTime()

STURDY_IDEM_BENCH("BM_Idempotency_Replay/sturdy", sturdy_impl, 100);
STURDY_IDEM_BENCH("BM_Idempotency_Replay/mutex_unordered_map", baseline_impl, 100);
STURDY_IDEM_BENCH("BM_Idempotency_FirstExecution/sturdy", sturdy_impl, 0);
STURDY_IDEM_BENCH("BM_Idempotency_FirstExecution/mutex_unordered_map", baseline_impl, 0);
STURDY_IDEM_BENCH("BM_Idempotency_Mixed90/sturdy", sturdy_impl, 90);
STURDY_IDEM_BENCH("BM_Idempotency_Mixed90/mutex_unordered_map", baseline_impl, 90);

}  // namespace
