// Stress of detail::concurrent_map under TSan: readers look keys up and read
// plain (non-atomic) entry fields under the read lock while writers insert,
// rewrite and erase them under the write lock. A broken reader-writer lock
// shows as a data race (TSan) or a torn entry (the checks below).
#include "sturdy/detail/concurrent_map.hpp"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using sturdy::detail::concurrent_map;
using sturdy::detail::map_key;

// Written by writers as a whole; a reader must see both halves from one write.
struct entry {
  std::uint64_t id = 0;
  std::uint64_t check = 0;  // ~id * version, rewritten with it
  std::uint64_t version = 0;
  sturdy::detail::relaxed_atomic<bool> referenced;
};

using map_t = concurrent_map<entry>;

TEST(ConcurrentMapStressTest, ReadersNeverSeeAnEntryAWriterIsChanging) {
  constexpr int keys = 256;
  constexpr int iterations = STURDY_TSAN ? 20'000 : 200'000;
  map_t m(4, 2);  // few shards and thread slots: more sharing, more contention
  std::vector<std::string> names;
  for (int i = 0; i < keys; ++i) {
    char buf[48];
    const int n = std::snprintf(buf, sizeof buf, "key-%d-xxxxxxxxxxxxxxxxxxxx", i);
    names.emplace_back(buf, static_cast<std::size_t>(n));
  }
  std::atomic<bool> torn{false};
  std::atomic<std::uint64_t> found{0};
  sturdy::detail::striped_counter hits;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(t));
      for (int i = 0; i < iterations / 4; ++i) {
        const auto id = static_cast<std::uint64_t>(gen() % keys);
        const std::string& k = names[id];
        m.write(map_t::hash(k), [&](map_t::shard& s) {
          if (gen() % 4 == 0) {
            s.table.erase(k);
            return;
          }
          entry& e = s.table[k];
          e.id = id;
          ++e.version;
          e.check = ~id * e.version;
        });
      }
    });
  }
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(100 + t));
      for (int i = 0; i < iterations; ++i) {
        const auto id = static_cast<std::uint64_t>(gen() % keys);
        const std::string& k = names[id];
        const bool f = m.find(map_key{k, map_t::hash(k)}, [&](const entry& e) {
          if (e.id != id || e.check != ~id * e.version) torn.store(true);
          e.referenced.store_if_changed(true);
        });
        if (f) {
          found.fetch_add(1, std::memory_order_relaxed);
          hits.add();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(torn.load());
  EXPECT_GT(found.load(), 0U);
  EXPECT_EQ(hits.sum(), found.load());
}

}  // namespace
