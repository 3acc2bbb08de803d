// Stress of sturdy::registry under TSan: threads get-or-create keys from a
// small key space in a registry far smaller than it (so every few calls
// evict), change their entries' quiescence, hold handles, and erase keys.
// Checks: a handle is always the entry of the key asked for; an entry held by
// a thread is never replaced (never evicted) while held; the bounds hold.
#include "sturdy/registry.hpp"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

using sturdy::quiescence;

struct fake_options {
  std::string key;
};

class fake_primitive {
 public:
  using options_type = fake_options;
  explicit fake_primitive(fake_options o) : options_(std::move(o)) {}
  [[nodiscard]] sturdy::quiescence quiescence(sturdy::time_point) const noexcept { return state_.load(); }
  void set(sturdy::quiescence q) noexcept { state_.store(q); }
  [[nodiscard]] const fake_options& options() const noexcept { return options_; }

 private:
  fake_options options_;
  std::atomic<sturdy::quiescence> state_{sturdy::quiescence::quiescent};
};

std::string numbered(std::string_view prefix, unsigned n) {
  char buf[16];
  const int len = std::snprintf(buf, sizeof buf, "%u", n);
  std::string out(prefix);
  out.append(buf, static_cast<std::size_t>(len));
  return out;
}

TEST(RegistryStressTest, ConcurrentGetOrCreateEvictionAndEraseKeepEntriesAndBounds) {
  constexpr std::size_t max_entries = 16;
  constexpr int iterations = STURDY_TSAN ? 20'000 : 200'000;
  sturdy::registry<fake_primitive> reg({.max_entries = max_entries,
                                        .idle_timeout = sturdy::duration::zero(),
                                        .shards = 2,
                                        .options_for = [](std::string_view k) { return fake_options{std::string(k)}; }});
  std::vector<std::string> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(numbered("tenant-", static_cast<unsigned>(i)));
  std::atomic<bool> wrong_entry{false}, over_bound{false};
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(t + 1));
      for (int i = 0; i < iterations; ++i) {
        const std::string& k = keys[gen() % keys.size()];
        const unsigned op = gen() % 16;
        if (op == 0) {
          (void)reg.erase(k);
          continue;
        }
        auto r = reg.get(k);
        if (!r) {
          refused.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        auto& h = r.value();
        if (h->options().key != k) wrong_entry.store(true);
        if (op < 4) h->set(static_cast<quiescence>(gen() % 3));
        if (op == 7 && reg.size() > max_entries) over_bound.store(true);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(wrong_entry.load());
  EXPECT_FALSE(over_bound.load());
  const auto st = reg.stats();
  EXPECT_LE(st.entries, max_entries);
  EXPECT_GT(st.evictions, 0U);
  EXPECT_EQ(st.refusals, refused.load());
}

TEST(RegistryStressTest, AnEntryHeldByAThreadIsNotEvictedByOthers) {
  // No erase here: so while a thread holds a handle, every lookup of its key
  // must return the same entry, however hard the others churn.
  constexpr int iterations = STURDY_TSAN ? 10'000 : 100'000;
  sturdy::registry<fake_primitive> reg({.max_entries = 8,
                                        .idle_timeout = sturdy::duration::zero(),
                                        .shards = 1,
                                        .options_for = [](std::string_view k) { return fake_options{std::string(k)}; }});
  std::atomic<bool> replaced{false};
  std::atomic<bool> stop{false};
  std::thread holder([&] {
    for (int i = 0; i < iterations / 10 && !replaced.load(); ++i) {
      auto h = reg.get("held");
      if (!h) continue;
      for (int j = 0; j < 10; ++j) {
        auto again = reg.get("held");
        if (again && again.value().get() != h.value().get()) replaced.store(true);
      }
    }
    stop.store(true);
  });
  std::vector<std::thread> churn;
  for (int t = 0; t < 2; ++t) {
    churn.emplace_back([&, t] {
      std::mt19937 gen(static_cast<unsigned>(t + 7));
      while (!stop.load()) (void)reg.get(numbered("churn-", gen() % 1000));
    });
  }
  holder.join();
  for (auto& th : churn) th.join();
  EXPECT_FALSE(replaced.load());
  EXPECT_LE(reg.size(), 8U);
}

}  // namespace
