// Tests of detail::concurrent_map, the sharded string-keyed map under the
// registries: lookup, writes, the CLOCK hand, striped counters, and that a
// lookup allocates nothing.
#include "sturdy/detail/concurrent_map.hpp"

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"

namespace {

using sturdy::detail::concurrent_map;
using sturdy::detail::map_key;

struct entry {
  std::uint64_t value = 0;
  sturdy::detail::relaxed_atomic<bool> referenced;
};

struct shard_counts {
  std::size_t inserts = 0;
};

using map_t = concurrent_map<entry, shard_counts>;

std::string key_of(std::uint64_t i) {
  char buf[48];
  const int n = std::snprintf(buf, sizeof buf, "key-%020llu", static_cast<unsigned long long>(i));
  return std::string(buf, static_cast<std::size_t>(n));
}

void insert(map_t& m, const std::string& k, std::uint64_t v) {
  const std::size_t h = map_t::hash(k);
  m.write(h, [&](map_t::shard& s) {
    s.table.try_emplace(k, entry{v, {}});
    ++s.state.inserts;
  });
}

std::uint64_t lookup(const map_t& m, std::string_view k, bool* found = nullptr) {
  std::uint64_t out = 0;
  const bool f = m.find(map_key{k, map_t::hash(k)}, [&](const entry& e) { out = e.value; });
  if (found != nullptr) *found = f;
  return out;
}

TEST(ConcurrentMapTest, FindsWhatWasWrittenAndNothingElse) {
  map_t m(8);
  EXPECT_EQ(m.shard_count(), 8U);
  for (std::uint64_t i = 0; i < 1000; ++i) insert(m, key_of(i), i * 3);
  for (std::uint64_t i = 0; i < 1000; ++i) {
    bool found = false;
    EXPECT_EQ(lookup(m, key_of(i), &found), i * 3);
    EXPECT_TRUE(found);
  }
  bool found = true;
  (void)lookup(m, "absent", &found);
  EXPECT_FALSE(found);
  std::size_t total = 0, inserts = 0, used = 0;
  for (std::size_t i = 0; i < m.shard_count(); ++i) {
    m.read_shard(i, [&](const map_t::shard& s) {
      total += s.table.size();
      inserts += s.state.inserts;
      used += s.table.empty() ? 0 : 1;
    });
  }
  EXPECT_EQ(total, 1000U);
  EXPECT_EQ(inserts, 1000U);
  EXPECT_EQ(used, 8U);  // the keys spread over every shard
}

TEST(ConcurrentMapTest, ShardCountIsRoundedUpToAPowerOfTwo) {
  EXPECT_EQ(map_t(0).shard_count(), 1U);
  EXPECT_EQ(map_t(3).shard_count(), 4U);
  EXPECT_EQ(map_t(64, 1).shard_count(), 64U);
}

TEST(ConcurrentMapTest, LookupAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  map_t m(16);
  for (std::uint64_t i = 0; i < 100; ++i) insert(m, key_of(i), i);
  const std::string k = key_of(42);  // 24 bytes: a heap-allocated key in the table
  sturdy::testing::allocation_scope scope;
  std::uint64_t sum = 0;
  for (int i = 0; i < 1000; ++i) sum += lookup(m, k);
  EXPECT_EQ(sum, 42'000U);
  EXPECT_EQ(scope.allocations(), 0U);
}

TEST(ConcurrentMapTest, EvictOneGivesReferencedEntriesASecondChance) {
  map_t m(1);
  for (std::uint64_t i = 0; i < 4; ++i) insert(m, key_of(i), i);
  const auto second_chance = [](const std::string&, entry& e) {
    if (e.referenced.load()) {
      e.referenced.store(false);
      return false;
    }
    return true;
  };
  m.write_shard(0, [&](map_t::shard& s) {
    for (auto& [k, e] : s.table) e.referenced.store(true);
    // One pass clears every bit and evicts nothing.
    EXPECT_FALSE(map_t::evict_one(s, second_chance, 4));
    EXPECT_EQ(s.table.size(), 4U);
    for (auto& [k, e] : s.table) EXPECT_FALSE(e.referenced.load());
    entry victim;
    EXPECT_TRUE(map_t::evict_one(s, second_chance, 1, &victim));
    EXPECT_EQ(s.table.size(), 3U);
    EXPECT_FALSE(s.table.contains(key_of(victim.value)));
  });
}

TEST(ConcurrentMapTest, TheHandMovesOnSoSuccessiveEvictionsTakeDistinctEntries) {
  map_t m(1);
  for (std::uint64_t i = 0; i < 10; ++i) insert(m, key_of(i), i);
  std::set<std::uint64_t> evicted;
  m.write_shard(0, [&](map_t::shard& s) {
    // Spare entry 7 forever; every other entry is evictable.
    const auto spare7 = [](const std::string&, const entry& e) { return e.value != 7; };
    for (int i = 0; i < 9; ++i) {
      entry victim;
      ASSERT_TRUE(map_t::evict_one(s, spare7, 2 * s.table.size() + 1, &victim));
      EXPECT_TRUE(evicted.insert(victim.value).second);
    }
    EXPECT_FALSE(map_t::evict_one(s, spare7, 2 * s.table.size() + 1));
    EXPECT_EQ(s.table.size(), 1U);
    EXPECT_TRUE(s.table.contains(key_of(7)));
    EXPECT_FALSE(map_t::evict_one(s, spare7, 0));
  });
  EXPECT_EQ(evicted.size(), 9U);
}

TEST(ConcurrentMapTest, EvictOneOnAnEmptyShardFindsNothing) {
  map_t m(1);
  m.write_shard(0, [&](map_t::shard& s) {
    EXPECT_FALSE(map_t::evict_one(s, [](const std::string&, const entry&) { return true; }, 10));
  });
}

TEST(ConcurrentMapTest, StripedCounterSumsEveryThreadsIncrements) {
  sturdy::detail::striped_counter c(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&c] {
      for (int i = 0; i < 1000; ++i) c.add();
    });
  }
  for (auto& t : threads) t.join();
  c.add(5);
  EXPECT_EQ(c.sum(), 8005U);
}

TEST(ConcurrentMapTest, RelaxedAtomicCopiesItsValue) {
  sturdy::detail::relaxed_atomic<int> a(3);
  sturdy::detail::relaxed_atomic<int> b(a);
  EXPECT_EQ(b.load(), 3);
  b.store_if_changed(4);
  a = b;
  EXPECT_EQ(a.load(), 4);
}

TEST(ConcurrentMapTest, KeyHeapBytesFollowTheSmallStringBuffer) {
  EXPECT_EQ(map_t::key_heap_bytes(15), 0U);
  EXPECT_EQ(map_t::key_heap_bytes(16), 17U);
  EXPECT_GT(map_t::slot_bytes, sizeof(std::string));
}

}  // namespace
