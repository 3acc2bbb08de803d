// Model-based test of sturdy::concurrency_limiter: long random sequences of
// acquire / enqueue / release (every outcome) / timeout / cancel / execute
// (returning, failing and throwing) are applied to the limiter and to a
// sequential reference (a counter and a deque), and every observable is
// compared after every step: in flight, queued, which waiter was handed a
// permit, and what each call returned. After quiescence the capacity must
// equal the limit: no permit leaked, none invented.
#include "sturdy/concurrency_limiter.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"
#include "support/limiter_node.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::errc;
using sturdy::time_point;
using sturdy::wait_status;
using sturdy::testing::manual_clock;
using limiter = sturdy::concurrency_limiter<sturdy::fixed_limit, manual_clock>;

using node = sturdy::test::counted_node;

// The reference: what a sequential bulkhead with a bounded queue does.
struct reference {
  std::uint32_t limit;
  std::uint32_t max_queue;
  bool lifo;
  std::uint32_t in_flight = 0;
  struct waiter {
    int id;
    time_point until;
    errc code;
  };
  std::deque<waiter> queue;

  bool try_acquire() {
    if (!queue.empty() || in_flight >= limit) return false;
    ++in_flight;
    return true;
  }
  wait_status enqueue(int id, time_point now, duration max_wait, time_point deadline) {
    if (deadline <= now) return wait_status::deadline_exceeded;
    if (try_acquire()) return wait_status::granted;
    if (max_wait <= duration::zero() || queue.size() >= max_queue) return wait_status::limit_exceeded;
    const time_point end = now + max_wait;
    queue.push_back({id, std::min(end, deadline), deadline <= end ? errc::deadline_exceeded : errc::limit_exceeded});
    return wait_status::waiting;
  }
  // Returns the id of the waiter handed the permit, or -1.
  int release() {
    if (!queue.empty() && in_flight <= limit) {
      const waiter w = lifo ? queue.back() : queue.front();
      if (lifo) {
        queue.pop_back();
      } else {
        queue.pop_front();
      }
      return w.id;
    }
    --in_flight;
    return -1;
  }
  void remove(int id) {
    queue.erase(std::remove_if(queue.begin(), queue.end(), [&](const waiter& w) { return w.id == id; }), queue.end());
  }
  const waiter* find(int id) const {
    for (const waiter& w : queue) {
      if (w.id == id) return &w;
    }
    return nullptr;
  }
};

void run_model(std::uint64_t seed, bool lifo) {
  std::mt19937_64 gen(seed);
  auto pick = [&](std::uint64_t n) { return static_cast<std::size_t>(gen() % n); };
  const auto lim = static_cast<std::uint32_t>(1 + pick(4));
  const auto max_queue = static_cast<std::uint32_t>(pick(5));
  manual_clock clock;
  limiter l({.max_queue = max_queue, .order = lifo ? sturdy::queue_order::lifo : sturdy::queue_order::fifo},
            sturdy::fixed_limit({.limit = lim}), clock);
  reference ref{.limit = lim, .max_queue = max_queue, .lifo = lifo, .in_flight = 0, .queue = {}};

  std::vector<limiter::permit> held;
  std::vector<std::unique_ptr<node>> nodes;  // index = id
  std::vector<int> queued_ids;               // ids the limiter holds in its queue (any order)
  std::vector<int> granted_ids;              // handed a permit, not yet adopted
  const auto release_held = [&](std::size_t i, sturdy::limit_outcome o) {
    held[i].record(o);
    held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
  };
  const auto after_release = [&](int handed) {
    if (handed < 0) return;
    ASSERT_EQ(nodes[static_cast<std::size_t>(handed)]->wakes, 1) << "seed " << seed;
    queued_ids.erase(std::find(queued_ids.begin(), queued_ids.end(), handed));
    granted_ids.push_back(handed);
  };
  const auto wakes_total = [&] {
    int n = 0;
    for (const auto& p : nodes) n += p->wakes;
    return n;
  };

  for (int step = 0; step < 400; ++step) {
    const int before = wakes_total();
    int expected_wakes = 0;
    switch (pick(8)) {
      case 0: {  // try_acquire
        const bool want = ref.try_acquire();
        auto r = l.try_acquire();
        ASSERT_EQ(r.has_value(), want) << "seed " << seed << " step " << step;
        if (r) held.push_back(std::move(r).value());
        break;
      }
      case 1: {  // enqueue
        const int id = static_cast<int>(nodes.size());
        nodes.push_back(std::make_unique<node>());
        const duration max_wait = pick(4) == 0 ? duration::zero() : duration(static_cast<duration::rep>(1 + pick(5)) * 1ms);
        const time_point deadline =
            pick(3) == 0 ? clock.now() + static_cast<duration::rep>(pick(6)) * 1ms : time_point::max();
        const wait_status want = ref.enqueue(id, clock.now(), max_wait, deadline);
        const wait_status got = l.enqueue(nodes.back()->node, max_wait, deadline);
        ASSERT_EQ(got, want) << "seed " << seed << " step " << step;
        if (got == wait_status::granted) held.push_back(l.adopt(nodes.back()->node));
        if (got == wait_status::waiting) queued_ids.push_back(id);
        break;
      }
      case 2:
      case 3: {  // release a permit with any outcome
        if (held.empty()) break;
        const int handed = ref.release();
        expected_wakes = handed >= 0 ? 1 : 0;
        release_held(pick(held.size()), static_cast<sturdy::limit_outcome>(pick(3)));
        after_release(handed);
        break;
      }
      case 4: {  // time passes; every queued node polls
        clock.advance(static_cast<duration::rep>(pick(3)) * 1ms);
        for (std::size_t i = 0; i < queued_ids.size();) {
          const int id = queued_ids[i];
          const reference::waiter* w = ref.find(id);
          ASSERT_NE(w, nullptr);
          const bool expired = clock.now() >= w->until;
          const wait_status want = !expired ? wait_status::waiting
                                   : w->code == errc::deadline_exceeded ? wait_status::deadline_exceeded
                                                                       : wait_status::limit_exceeded;
          ASSERT_EQ(l.poll(nodes[static_cast<std::size_t>(id)]->node, false), want) << "seed " << seed;
          if (expired) {
            ref.remove(id);
            queued_ids.erase(queued_ids.begin() + static_cast<std::ptrdiff_t>(i));
          } else {
            ++i;
          }
        }
        break;
      }
      case 5: {  // a queued caller is cancelled
        if (queued_ids.empty()) break;
        const std::size_t i = pick(queued_ids.size());
        const int id = queued_ids[i];
        ASSERT_EQ(l.poll(nodes[static_cast<std::size_t>(id)]->node, true), wait_status::cancelled);
        ref.remove(id);
        queued_ids.erase(queued_ids.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
      case 6: {  // a granted waiter wakes up and takes its permit
        if (granted_ids.empty()) break;
        const int id = granted_ids.back();
        granted_ids.pop_back();
        ASSERT_EQ(l.poll(nodes[static_cast<std::size_t>(id)]->node, pick(2) == 0), wait_status::granted);
        held.push_back(l.adopt(nodes[static_cast<std::size_t>(id)]->node));
        break;
      }
      case 7: {  // execute: returns, fails or throws; never keeps the permit
        const bool admitted = ref.try_acquire();
        int handed = -1;
        if (admitted) handed = ref.release();
        expected_wakes = handed >= 0 ? 1 : 0;
        const std::size_t kind = pick(3);
        bool ran = false;
        bool threw = false;
        try {
          auto r = l.execute([&]() -> sturdy::result<int> {
            ran = true;
            if (kind == 0) return 1;
            if (kind == 1) return sturdy::make_error_code(errc::deadline_exceeded);
            throw std::runtime_error("fn failed");
          });
          if (!admitted) {
            ASSERT_EQ(r.error(), errc::limit_exceeded);
          }
        } catch (const std::runtime_error&) {
          threw = true;
        }
        ASSERT_EQ(ran, admitted) << "seed " << seed;
        ASSERT_EQ(threw, admitted && kind == 2);
        after_release(handed);
        break;
      }
      default:
        break;
    }
    ASSERT_EQ(wakes_total() - before, expected_wakes) << "seed " << seed << " step " << step;
    ASSERT_EQ(l.in_flight(), ref.in_flight) << "seed " << seed << " step " << step;
    ASSERT_EQ(l.queued(), ref.queue.size()) << "seed " << seed << " step " << step;
    ASSERT_LE(l.in_flight(), lim);
  }

  // Quiescence: everyone leaves or finishes; the capacity is the limit.
  for (int id : queued_ids) EXPECT_TRUE(l.leave(nodes[static_cast<std::size_t>(id)]->node));
  for (int id : granted_ids) held.push_back(l.adopt(nodes[static_cast<std::size_t>(id)]->node));
  held.clear();
  ASSERT_EQ(l.in_flight(), 0u) << "seed " << seed;
  ASSERT_EQ(l.queued(), 0u);
  std::vector<limiter::permit> all;
  for (std::uint32_t i = 0; i < lim; ++i) {
    auto r = l.try_acquire();
    ASSERT_TRUE(r) << "seed " << seed << ": capacity shrank";
    all.push_back(std::move(r).value());
  }
  EXPECT_FALSE(l.try_acquire()) << "seed " << seed << ": capacity grew";
}

TEST(ConcurrencyLimiterModelTest, FifoMatchesTheSequentialReference) {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    run_model(seed, false);
    if (HasFatalFailure()) return;
  }
}

TEST(ConcurrencyLimiterModelTest, LifoMatchesTheSequentialReference) {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    run_model(seed, true);
    if (HasFatalFailure()) return;
  }
}

}  // namespace
