// Many scopes on many threads dead-letter into one shared queue while an
// operator thread lists, inspects, replays, discards and drains it. Nothing
// may be lost or duplicated: every failed undo ends up exactly once in
// (drained + replayed + discarded + still queued + dropped).

#include <atomic>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/stress.hpp"
#include "sturdy/compensation.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"

namespace {

using sturdy::errc;
using sturdy::result;

TEST(DeadLetterQueueStressTest, ConcurrentProducersAndOperatorLoseNothing) {
  constexpr int kProducers = 4;
  const std::uint64_t per_thread = sturdy::test::stress_iterations(200000) / kProducers;
  sturdy::dead_letter_queue dlq({.capacity = 512});
  std::atomic<std::uint64_t> failed_undos{0};
  std::atomic<int> producers_done{0};

  std::vector<std::thread> producers;
  for (int t = 0; t < kProducers; ++t) {
    producers.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < per_thread; ++i) {
        sturdy::compensation_scope scope(dlq, {.name = "stress"});
        (void)scope.add("ok", [] {});
        (void)scope.add("fails", []() -> result<void> { return errc::store_unavailable; });
        if ((i + static_cast<std::uint64_t>(t)) % 3 == 0) {
          (void)scope.add("throws", [] { throw 1; });
        }
        const auto report = scope.rollback();
        failed_undos.fetch_add(report.failed(), std::memory_order_relaxed);
      }
      producers_done.fetch_add(1);
    });
  }

  std::uint64_t drained = 0;
  std::uint64_t replayed = 0;
  std::uint64_t discarded = 0;
  std::set<std::uint64_t> seen_ids;
  bool duplicate = false;
  auto note = [&](std::uint64_t id) { duplicate = duplicate || !seen_ids.insert(id).second; };
  std::thread operator_thread([&] {
    std::uint64_t round = 0;
    while (producers_done.load() < kProducers) {
      ++round;
      const auto listed = dlq.list();
      for (std::size_t i = 1; i < listed.size(); ++i) {
        if (listed[i - 1].id >= listed[i].id) duplicate = true;  // must stay in id order
      }
      if (!listed.empty()) {
        const auto id = listed.front().id;
        if (dlq.inspect(id)) {
          if (round % 3 == 0) {
            // A replay that fails the first time goes back, then one that succeeds.
            (void)dlq.replay(id, [](const sturdy::dead_letter_entry&) -> result<void> { return errc::cancelled; });
            if (dlq.replay(id, [](const sturdy::dead_letter_entry&) {})) {
              ++replayed;
              note(id);
            }
          } else if (round % 3 == 1) {
            if (dlq.discard(id)) {
              ++discarded;
              note(id);
            }
          }
        }
      }
      if (round % 5 == 0) {
        for (const auto& e : dlq.drain()) {
          ++drained;
          note(e.id);
        }
      }
      if (round % 7 == 0) {
        replayed += dlq.replay_all([](const sturdy::dead_letter_entry& e) -> result<void> {
          if (e.step == "throws") return errc::cancelled;  // those stay
          return sturdy::success();
        });
      }
    }
  });
  for (auto& p : producers) p.join();
  operator_thread.join();

  for (const auto& e : dlq.drain()) {
    ++drained;
    note(e.id);
  }
  EXPECT_FALSE(duplicate);
  EXPECT_TRUE(dlq.empty());
  EXPECT_EQ(dlq.accepted() + dlq.dropped(), failed_undos.load());
  EXPECT_EQ(drained + replayed + discarded, dlq.accepted());
  EXPECT_GT(failed_undos.load(), 0u);
}

// Several threads replay, drain and push at once: entries out for replay
// are placeholders that only their replayer may refill or remove, so every
// accepted entry ends up replayed, drained or still queued, exactly once.
TEST(DeadLetterQueueStressTest, ConcurrentReplayersAndDrainersLoseNothing) {
  const std::uint64_t n = sturdy::test::stress_iterations(40000);
  constexpr std::uint64_t kLate = 10;  // pushed after the drainer stopped: left to the replayers
  sturdy::dead_letter_queue dlq({.capacity = 256});
  std::atomic<bool> stop_draining{false};
  std::atomic<bool> stop_replaying{false};
  std::atomic<std::uint64_t> replayed{0};
  std::atomic<std::uint64_t> drained{0};
  const auto push = [&](std::uint64_t i) {
    sturdy::dead_letter_entry e;
    e.step = i % 2 == 0 ? "even" : "odd";
    (void)dlq.push(std::move(e));
  };
  std::thread producer([&] {
    for (std::uint64_t i = 0; i < n; ++i) push(i);
  });
  std::vector<std::thread> replayers;
  for (int t = 0; t < 2; ++t) {
    replayers.emplace_back([&, t] {
      std::uint64_t round = 0;
      const auto replay_all = [&] {
        ++round;
        replayed.fetch_add(dlq.replay_all([&](const sturdy::dead_letter_entry& e) -> result<void> {
          if ((e.id + round + static_cast<std::uint64_t>(t)) % 3 == 0) return errc::cancelled;  // goes back
          return sturdy::success();
        }));
      };
      while (!stop_replaying.load()) {
        replay_all();
        const auto listed = dlq.list();
        if (!listed.empty() && dlq.replay(listed.back().id, [](const sturdy::dead_letter_entry&) {})) {
          replayed.fetch_add(1);
        }
      }
      replay_all();
    });
  }
  std::thread drainer([&] {
    while (!stop_draining.load()) {
      drained.fetch_add(dlq.drain().size());
      std::this_thread::yield();
    }
  });
  producer.join();
  stop_draining.store(true);
  drainer.join();
  for (std::uint64_t i = 0; i < kLate; ++i) push(i);
  stop_replaying.store(true);
  for (auto& r : replayers) r.join();
  const std::uint64_t left = dlq.drain().size();
  EXPECT_TRUE(dlq.empty());
  EXPECT_EQ(dlq.accepted() + dlq.dropped(), n + kLate);
  EXPECT_EQ(replayed.load() + drained.load() + left, dlq.accepted());
  EXPECT_GT(replayed.load(), 0u);
}

}  // namespace
