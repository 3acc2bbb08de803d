// Lookups of existing keys in sturdy's detail::concurrent_map, and replays
// in the idempotency memory store built on it, against oneTBB's
// concurrent_hash_map, libcuckoo's cuckoohash_map and the mechanism the
// memory store used before it moved onto the map (64 std::mutex shards over
// Abseil flat_hash_maps, a replay writing its hit counter and reference bit
// under the exclusive lock), all in this binary, at 1 and 2 threads.
//
// Each lookup is an idempotency replay's map work: find the key (36-byte
// UUID-like keys, 1M of them, visited in a per-thread random order), check
// state, TTL and fingerprint, copy the 32-byte stored value out, set the
// CLOCK reference bit, count a hit. The same entry type (reference bit as a
// relaxed atomic, hits on per-thread stripes) goes into TBB and libcuckoo, so
// they differ only in the map. `memory_idempotency_store` is the real store:
// `begin()` on a completed key (its read-locked replay path, the value
// copied into the returned `begin_outcome`), with a clock fixed at the same
// instant the maps compare against, so no implementation reads a clock.
// Compare CPU time per lookup at equal thread counts (real time too when the
// machine is idle):
//   ./concurrent_map_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/flat_hash_map.h>
#include <benchmark/benchmark.h>

#include "sturdy/clock.hpp"
#include "sturdy/detail/concurrent_map.hpp"
#include "sturdy/idempotency.hpp"

#if STURDY_BENCH_HAVE_TBB
#include <oneapi/tbb/concurrent_hash_map.h>
#endif
#if STURDY_BENCH_HAVE_LIBCUCKOO
#include <libcuckoo/cuckoohash_map.hh>
#endif

namespace {

constexpr std::size_t key_count = 1 << 20;
constexpr std::size_t order_length = 1 << 16;  // per thread: random key indices, cycled

struct stored_value {
  std::array<std::uint64_t, 4> words{};
};

enum class entry_state : std::uint8_t { in_progress, completed };

// One idempotency entry: what a replay reads, the reference bit it sets.
struct entry {
  sturdy::time_point deadline{};
  std::uint64_t fingerprint = 0;
  entry_state state = entry_state::completed;
  sturdy::detail::relaxed_atomic<bool> referenced;
  stored_value value;
};

const std::vector<std::string>& keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> out;
    out.reserve(key_count);
    std::mt19937_64 gen(42);
    for (std::size_t i = 0; i < key_count; ++i) {
      const std::uint64_t a = gen(), b = gen();
      char buf[40];
      const int n = std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                                  static_cast<unsigned>(a >> 16) & 0xffff, static_cast<unsigned>(a) & 0xffff,
                                  static_cast<unsigned>(b >> 48),
                                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }();
  return k;
}

entry make_entry(std::size_t i) {
  entry e;
  e.deadline = sturdy::time_point(std::chrono::hours(1));
  e.fingerprint = i;
  e.value.words = {i, i + 1, i + 2, i + 3};
  return e;
}

const sturdy::time_point bench_now = sturdy::time_point(std::chrono::minutes(1));

// The replay decision shared by every implementation.
inline bool replay(const entry& e, std::uint64_t fingerprint, stored_value& out) noexcept {
  if (e.state != entry_state::completed || !(bench_now < e.deadline) || e.fingerprint != fingerprint) return false;
  out = e.value;
  e.referenced.store_if_changed(true);
  return true;
}

// --- implementations -----------------------------------------------------------

struct sturdy_map {
  using map_t = sturdy::detail::concurrent_map<entry>;
  map_t map{64};
  sturdy::detail::striped_counter hits;
  sturdy_map() {
    const auto& k = keys();
    for (std::size_t s = 0; s < map.shard_count(); ++s) {
      map.write_shard(s, [&](map_t::shard& sh) { sh.table.reserve(key_count / map.shard_count() * 5 / 4); });
    }
    for (std::size_t i = 0; i < k.size(); ++i) {
      map.write(map_t::hash(k[i]), [&](map_t::shard& sh) { sh.table.emplace(k[i], make_entry(i)); });
    }
  }
  bool lookup(std::string_view key, std::uint64_t fp, stored_value& out) {
    bool ok = false;
    map.find(sturdy::detail::map_key{key, map_t::hash(key)}, [&](const entry& e) { ok = replay(e, fp, out); });
    if (ok) hits.add();
    return ok;
  }
  void insert_erase(const std::string& key, std::size_t i) {
    const std::size_t h = map_t::hash(key);
    map.write(h, [&](map_t::shard& sh) { sh.table.emplace(key, make_entry(i)); });
    map.write(h, [&](map_t::shard& sh) { sh.table.erase(sturdy::detail::map_key{key, h}); });
  }
};

// The idempotency memory store itself, on detail::concurrent_map: a lookup
// is `begin()` on a completed key.
struct fixed_clock {
  [[nodiscard]] sturdy::time_point now() const noexcept { return bench_now; }
};

struct memory_store {
  using store_t = sturdy::memory_idempotency_store<stored_value, fixed_clock>;
  // Twice the keys: no shard reaches its share of the bound, nothing is evicted.
  store_t store{{.shards = 64, .max_entries = 2 * key_count}, fixed_clock{}};
  memory_store() {
    const auto& k = keys();
    for (std::size_t i = 0; i < k.size(); ++i) {
      const auto b = store.begin(k[i], i, std::chrono::seconds(30)).value();
      if (!store.complete(k[i], b.token, make_entry(i).value, std::chrono::hours(1))) std::abort();
    }
  }
  bool lookup(std::string_view key, std::uint64_t fp, stored_value& out) {
    auto r = store.begin(key, fp, std::chrono::seconds(30));
    if (!r.has_value() || r.value().status != sturdy::begin_status::completed) return false;
    out = *r.value().value;
    return true;
  }
  void insert_erase(const std::string& key, std::size_t i) {
    const auto b = store.begin(key, i, std::chrono::seconds(30)).value();
    (void)store.abandon(key, b.token);
  }
};

// The idempotency store's mechanism before it moved onto concurrent_map:
// exclusive shard locks; the hit counter and reference bit are plain fields
// written under the lock.
struct mutex_shards {
  struct plain_entry {
    sturdy::time_point deadline{};
    std::uint64_t fingerprint = 0;
    entry_state state = entry_state::completed;
    bool referenced = false;
    stored_value value;
  };
  struct alignas(64) shard {
    std::mutex mu;
    absl::flat_hash_map<std::string, plain_entry, sturdy::detail::map_hasher, sturdy::detail::map_key_eq> map;
    std::uint64_t hits = 0;
  };
  std::unique_ptr<shard[]> shards = std::make_unique<shard[]>(64);
  // As the store does: the top bits pick the shard.
  static std::size_t shard_of(std::size_t h) noexcept { return h >> 58; }
  mutex_shards() {
    const auto& k = keys();
    for (std::size_t s = 0; s < 64; ++s) shards[s].map.reserve(key_count / 64 * 5 / 4);
    for (std::size_t i = 0; i < k.size(); ++i) {
      const entry e = make_entry(i);
      shards[shard_of(sturdy::detail::map_hash(k[i]))].map.emplace(k[i],
                                                              plain_entry{e.deadline, e.fingerprint, e.state, false, e.value});
    }
  }
  bool lookup(std::string_view key, std::uint64_t fp, stored_value& out) {
    const std::size_t h = sturdy::detail::map_hash(key);
    shard& s = shards[shard_of(h)];
    std::lock_guard lock(s.mu);
    auto it = s.map.find(sturdy::detail::map_key{key, h});
    if (it == s.map.end()) return false;
    plain_entry& e = it->second;
    if (e.state != entry_state::completed || !(bench_now < e.deadline) || e.fingerprint != fp) return false;
    ++s.hits;
    e.referenced = true;
    out = e.value;
    return true;
  }
  void insert_erase(const std::string& key, std::size_t i) {
    const std::size_t h = sturdy::detail::map_hash(key);
    shard& s = shards[shard_of(h)];
    const entry e = make_entry(i);
    {
      std::lock_guard lock(s.mu);
      s.map.emplace(key, plain_entry{e.deadline, e.fingerprint, e.state, false, e.value});
    }
    std::lock_guard lock(s.mu);
    s.map.erase(sturdy::detail::map_key{key, h});
  }
};

#if STURDY_BENCH_HAVE_TBB
struct tbb_map {
  tbb::concurrent_hash_map<std::string, entry> map{key_count};
  sturdy::detail::striped_counter hits;
  tbb_map() {
    const auto& k = keys();
    for (std::size_t i = 0; i < k.size(); ++i) map.insert({k[i], make_entry(i)});
  }
  bool lookup(const std::string& key, std::uint64_t fp, stored_value& out) {
    tbb::concurrent_hash_map<std::string, entry>::const_accessor a;
    if (!map.find(a, key)) return false;
    const bool ok = replay(a->second, fp, out);
    if (ok) hits.add();
    return ok;
  }
  void insert_erase(const std::string& key, std::size_t i) {
    map.insert({key, make_entry(i)});
    map.erase(key);
  }
};
#endif

#if STURDY_BENCH_HAVE_LIBCUCKOO
struct cuckoo_map {
  libcuckoo::cuckoohash_map<std::string, entry> map;
  sturdy::detail::striped_counter hits;
  cuckoo_map() {
    const auto& k = keys();
    map.reserve(key_count);
    for (std::size_t i = 0; i < k.size(); ++i) map.insert(k[i], make_entry(i));
  }
  bool lookup(const std::string& key, std::uint64_t fp, stored_value& out) {
    bool ok = false;
    map.find_fn(key, [&](const entry& e) { ok = replay(e, fp, out); });
    if (ok) hits.add();
    return ok;
  }
  void insert_erase(const std::string& key, std::size_t i) {
    map.insert(key, make_entry(i));
    map.erase(key);
  }
};
#endif

// One map alive at a time (they take a few hundred MB each).
template <class Impl>
Impl* instance(bool create) {
  static std::unique_ptr<Impl> p;
  if (create && !p) p = std::make_unique<Impl>();
  if (!create) p.reset();
  return p.get();
}

template <class Impl>
void release_all_but() {
  if (!std::is_same_v<Impl, sturdy_map>) instance<sturdy_map>(false);
  if (!std::is_same_v<Impl, mutex_shards>) instance<mutex_shards>(false);
  if (!std::is_same_v<Impl, memory_store>) instance<memory_store>(false);
#if STURDY_BENCH_HAVE_TBB
  if (!std::is_same_v<Impl, tbb_map>) instance<tbb_map>(false);
#endif
#if STURDY_BENCH_HAVE_LIBCUCKOO
  if (!std::is_same_v<Impl, cuckoo_map>) instance<cuckoo_map>(false);
#endif
}

template <class Impl>
void setup(const benchmark::State&) {
  release_all_but<Impl>();
  (void)instance<Impl>(true);
}

template <class Impl>
void BM_ReplayLookup(benchmark::State& state) {
  Impl& m = *instance<Impl>(true);
  const auto& k = keys();
  std::vector<std::uint32_t> order(order_length);
  std::mt19937 gen(static_cast<unsigned>(1234 + state.thread_index()));
  for (auto& o : order) o = static_cast<std::uint32_t>(gen() % key_count);
  std::size_t i = 0;
  std::uint64_t found = 0;
  stored_value out;
  for (auto _ : state) {
    const std::uint32_t idx = order[i++ & (order_length - 1)];
    found += m.lookup(k[idx], idx, out) ? 1 : 0;
    benchmark::DoNotOptimize(out);
  }
  if (found != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("a lookup missed");
  state.SetItemsProcessed(state.iterations());
}

// A first call's map work: insert a new key (then erase it, so the map stays
// at 1M keys). The writer's side of the reader-writer lock: it reads every
// thread slot's reader counter for the shard.
template <class Impl>
void BM_InsertErase(benchmark::State& state) {
  Impl& m = *instance<Impl>(true);
  std::vector<std::string> fresh;
  fresh.reserve(order_length);
  for (std::size_t j = 0; j < order_length; ++j) {
    char buf[48];
    const int n = std::snprintf(buf, sizeof buf, "fresh-%d-%012zu-xxxxxxxxxxxxxxxx", state.thread_index(), j);
    fresh.emplace_back(buf, static_cast<std::size_t>(n));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    m.insert_erase(fresh[i & (order_length - 1)], i);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

#define STURDY_MAP_BENCH(impl, label)                                                             \
  BENCHMARK_TEMPLATE(BM_ReplayLookup, impl)                                                       \
      ->Name("BM_ReplayLookup_1M/" label)                                                         \
      ->Setup(setup<impl>)                                                                        \
      ->Threads(1)                                                                                \
      ->Threads(2)                                                                                \
      ->UseRealTime();                                                                            \
  BENCHMARK_TEMPLATE(BM_InsertErase, impl)                                                        \
      ->Name("BM_InsertErase_1M/" label)                                                          \
      ->Setup(setup<impl>)                                                                        \
      ->Threads(1)                                                                                \
      ->Threads(2)                                                                                \
      ->UseRealTime()

STURDY_MAP_BENCH(sturdy_map, "sturdy_concurrent_map");
STURDY_MAP_BENCH(memory_store, "sturdy_memory_idempotency_store");
STURDY_MAP_BENCH(mutex_shards, "mutex_shards_before");
#if STURDY_BENCH_HAVE_TBB
STURDY_MAP_BENCH(tbb_map, "tbb_concurrent_hash_map");
#endif
#if STURDY_BENCH_HAVE_LIBCUCKOO
STURDY_MAP_BENCH(cuckoo_map, "libcuckoo");
#endif

}  // namespace
