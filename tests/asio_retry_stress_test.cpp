// Concurrency test of sturdy::asio::async_retry (run under TSan): many
// retry loops sharing one policy and one budget on a multi-threaded
// io_context, with cancellations racing attempts and backoff waits.
// Both drivers: callbacks (retry_op) and co_await with use_awaitable (the
// coroutine driver). Asserts: every handler runs exactly once; every operation's state is
// released; a loop that was not cancelled ends with the dependency's
// answer. Outcomes depend on the scheduling; the invariants do not.
// And: an attempt whose own sub-operations allocate through the handler's
// associated allocator (retry_op's handler arena) from several threads at
// once, as a parallel_group inside the attempt could.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_allocator.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

#include "sturdy/asio/retry.hpp"
#include "sturdy/retry_budget.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;

struct op_slot {
  explicit op_slot(net::io_context& io) : strand(net::make_strand(io)) {}
  net::strand<net::io_context::executor_type> strand;
  net::cancellation_signal signal;
  std::atomic<int> calls{0};
  std::atomic<int> attempts{0};
  int fail_first = 0;
  bool cancel = false;
  bool cancelled_result = false;
  bool success = false;
};

// The caller of the coroutine driver (use_awaitable): opts out of Asio's
// throw_if_cancelled so a cancellation still yields async_retry's result.
template <class Make>
net::awaitable<void> caller(const sturdy::retry_policy<>& policy, op_slot& s, Make make) {
  co_await net::this_coro::throw_if_cancelled(false);
  const sturdy::result<int> r = co_await sturdy::asio::async_retry(policy, std::move(make), net::use_awaitable);
  s.calls.fetch_add(1, std::memory_order_relaxed);
  s.success = r.has_value();
  s.cancelled_result = !r && r.error() == sturdy::errc::cancelled;
}

// coroutine: each loop is `co_await async_retry(..., use_awaitable)` in a
// coroutine co_spawned on the loop's strand (the coroutine driver); else a
// callback on the strand (retry_op).
void shared_policy_and_budget_with_cancellations(bool coroutine) {
  constexpr int ops = 2000;
  net::io_context io;
  sturdy::ratio_budget<> budget;
  const sturdy::retry_policy<> policy(sturdy::retry_options{
      .max_attempts = 4,
      .backoff = sturdy::backoff::exponential(std::chrono::microseconds(1), std::chrono::microseconds(50)),
      .budget = budget});
  std::vector<std::unique_ptr<op_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<op_slot>(io));
  std::mt19937 rng(42);
  std::atomic<int> released{0};
  for (int i = 0; i < ops; ++i) {
    op_slot& s = *slots[static_cast<std::size_t>(i)];
    s.fail_first = static_cast<int>(rng() % 4);
    s.cancel = rng() % 3 == 0;
    auto sentinel = std::shared_ptr<int>(new int(0), [&released](int* p) {
      delete p;
      released.fetch_add(1, std::memory_order_relaxed);
    });
    // Each attempt completes later through the io_context (a post), failing
    // for the first `fail_first` attempts.
    auto make = [&s, &io, sentinel](const sturdy::call_context& c) {
      s.attempts.fetch_add(1, std::memory_order_relaxed);
      const sturdy::result<int> r = static_cast<int>(c.attempt) > s.fail_first
                                        ? sturdy::result<int>(7)
                                        : sturdy::result<int>(std::make_error_code(std::errc::io_error));
      return net::post(io, net::append(net::deferred, r));
    };
    if (coroutine) {
      net::co_spawn(s.strand, caller(policy, s, make), net::bind_cancellation_slot(s.signal.slot(), net::detached));
    } else {
      auto record = [&s](sturdy::result<int> r) {
        s.calls.fetch_add(1, std::memory_order_relaxed);
        s.success = r.has_value();
        s.cancelled_result = !r && r.error() == sturdy::errc::cancelled;
      };
      sturdy::asio::async_retry(policy, make,
                                net::bind_cancellation_slot(s.signal.slot(), net::bind_executor(s.strand, record)));
    }
    if (s.cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  int successes = 0;
  for (const auto& s : slots) {
    EXPECT_EQ(s->calls.load(), 1);
    EXPECT_GE(s->attempts.load(), s->cancel ? 0 : 1);
    if (!s->cancel && !s->success) {
      // Not cancelled: either the dependency's answer or the budget's stop.
      EXPECT_LE(s->attempts.load(), 4);
    }
    successes += s->success ? 1 : 0;
  }
  EXPECT_GT(successes, 0);
  EXPECT_EQ(released.load(), ops);  // every operation's state (and its make_attempt) was freed
}

TEST(AsioRetryStress, SharedPolicyAndBudgetWithCancellations) { shared_policy_and_budget_with_cancellations(false); }

TEST(AsioRetryStress, SharedPolicyAndBudgetWithCancellationsCoroutineDriver) {
  shared_policy_and_budget_with_cancellations(true);
}

// --- the handler arena under concurrent sub-operations -------------------------

// An attempt that fans out into `fanout` sub-operations on a multi-threaded
// io_context, each hopping `hops` times (a post per hop), every post bound
// to the attempt handler's associated allocator (retry_op's handler arena):
// the arena is allocated from and given back to on several threads at once.
// The last sub-operation to finish completes the attempt through the
// handler's executor.
template <class Handler>
struct fan_state {
  fan_state(Handler h, int n) : handler(std::move(h)), left(n) {}
  Handler handler;
  std::atomic<int> left;
  sturdy::result<int> result{std::make_error_code(std::errc::io_error)};
};

template <class Handler>
struct hop {
  std::shared_ptr<fan_state<Handler>> state;
  net::io_context::executor_type pool;
  int hops_left;
  void operator()() {
    if (--hops_left > 0) {
      auto alloc = net::get_associated_allocator(state->handler);
      auto ex = pool;
      return net::post(ex, net::bind_allocator(alloc, std::move(*this)));
    }
    if (state->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      Handler h = std::move(state->handler);
      const sturdy::result<int> r = state->result;
      state.reset();
      net::post(net::append(std::move(h), r));  // through the handler's executor and allocator
    }
  }
};

struct fan_out_attempt {
  net::io_context* pool;
  std::atomic<int>* attempts;
  int fail_first;
  int fanout;
  int hops;
  auto operator()(const sturdy::call_context& c) const {
    attempts->fetch_add(1, std::memory_order_relaxed);
    const bool fails = static_cast<int>(c.attempt) <= fail_first;
    return net::async_initiate<decltype(net::deferred), void(sturdy::result<int>)>(
        [p = pool, fails, n = fanout, k = hops](auto handler) {
          using H = decltype(handler);
          auto alloc = net::get_associated_allocator(handler);
          auto state = std::make_shared<fan_state<H>>(std::move(handler), n);
          if (!fails) state->result = 7;
          for (int i = 0; i < n; ++i) {
            net::post(p->get_executor(), net::bind_allocator(alloc, hop<H>{state, p->get_executor(), k}));
          }
        },
        net::deferred);
  }
};

// Fails (a TSan report on the arena's slots, or a block handed out twice)
// when handler_arena is unsynchronised.
TEST(AsioRetryStress, AttemptSubOperationsShareTheHandlerArenaAcrossThreads) {
  constexpr int loops = 300;
  net::io_context io;
  const sturdy::retry_policy<> policy(sturdy::retry_options{
      .max_attempts = 3, .backoff = sturdy::backoff::constant(std::chrono::microseconds(1))});
  std::vector<std::unique_ptr<op_slot>> slots;
  for (int i = 0; i < loops; ++i) slots.push_back(std::make_unique<op_slot>(io));
  for (int i = 0; i < loops; ++i) {
    op_slot& s = *slots[static_cast<std::size_t>(i)];
    s.fail_first = i % 3;  // 0, 1 or 2 failed attempts before the success
    auto record = [&s](sturdy::result<int> r) {
      s.calls.fetch_add(1, std::memory_order_relaxed);
      s.success = r.has_value() && r.value() == 7;
    };
    sturdy::asio::async_retry(policy, fan_out_attempt{&io, &s.attempts, s.fail_first, 4, 8},
                              net::bind_executor(s.strand, record));
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run(); });
  for (auto& t : threads) t.join();
  for (const auto& s : slots) {
    EXPECT_EQ(s->calls.load(), 1);
    EXPECT_TRUE(s->success);
    EXPECT_EQ(s->attempts.load(), s->fail_first + 1);
  }
}

}  // namespace
