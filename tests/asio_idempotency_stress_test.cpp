// Concurrency test of sturdy/asio/idempotency.hpp (run under TSan): async
// duplicates of a few keys on a multi-threaded io_context, parked waiters
// woken by owners completing on other threads, cancellations racing the
// wake-ups, and the blocking execute on a plain thread sharing the cache.
// Asserts: every handler runs exactly once; each key's work succeeds
// exactly once (every success is stored, so later calls replay it); every
// answer is that key's value, a replay of it, or a refusal the rules allow.

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <array>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sturdy/asio/idempotency.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using R = sturdy::result<int>;

struct call_slot {
  explicit call_slot(net::io_context& io) : strand(net::make_strand(io)), work_timer(io) {}
  net::strand<net::io_context::executor_type> strand;
  net::steady_timer work_timer;
  net::cancellation_signal signal;
  std::atomic<int> calls{0};
};

TEST(AsioIdempotencyStress, DuplicatesWaitersAndCancellationsAcrossThreads) {
  constexpr int ops = 1200;
  constexpr int keys = 8;
  sturdy::idempotency_options o;
  o.policy.in_flight = sturdy::in_flight_policy::wait;
  o.policy.wait_timeout = 2s;
  sturdy::idempotency_cache<int> cache(o);
  net::io_context io;
  std::vector<std::unique_ptr<call_slot>> slots;
  for (int i = 0; i < ops; ++i) slots.push_back(std::make_unique<call_slot>(io));
  std::array<std::atomic<int>, keys> successes{};
  std::atomic<int> wrong{0}, cancelled{0}, answered{0};
  std::mt19937 rng(2026);
  for (int i = 0; i < ops; ++i) {
    call_slot& s = *slots[static_cast<std::size_t>(i)];
    const int k = static_cast<int>(rng() % keys);
    const auto work = std::chrono::microseconds(rng() % 300);
    const bool cancel = rng() % 5 == 0;
    net::post(s.strand, [&, k, work, cancel] {
      sturdy::asio::async_execute(
          cache, "key-" + std::to_string(k), 1,
          [&s, &successes, k, work] {
            s.work_timer.expires_after(work);
            return net::async_compose<decltype(net::deferred), void(R)>(
                [&s, &successes, k, started = false](auto& self, boost::system::error_code ec = {}) mutable {
                  if (!started) {
                    started = true;
                    return s.work_timer.async_wait(std::move(self));
                  }
                  if (ec) return self.complete(R(std::make_error_code(std::errc::operation_canceled)));
                  successes[static_cast<std::size_t>(k)].fetch_add(1);
                  self.complete(R(100 + k));
                },
                net::deferred, s.work_timer);
          },
          net::bind_cancellation_slot(s.signal.slot(), net::bind_executor(s.strand, [&, k](sturdy::idempotency_result<R> r) {
            s.calls.fetch_add(1);
            answered.fetch_add(1);
            if (r.result.has_value()) {
              if (r.result.value() != 100 + k) wrong.fetch_add(1);
            } else if (r.result.error() == sturdy::errc::cancelled ||
                       r.result.error() == std::make_error_code(std::errc::operation_canceled)) {
              cancelled.fetch_add(1);
            } else {
              wrong.fetch_add(1);
            }
          })));
      if (cancel) net::post(s.strand, [&s] { s.signal.emit(net::cancellation_type::terminal); });
    });
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { io.run(); });
  // The blocking driver on this thread, sharing the cache.
  int blocking_ok = 0;
  for (int i = 0; i < 200; ++i) {
    auto r = cache.execute("key-" + std::to_string(i % keys), 1, [&, i]() -> R {
      successes[static_cast<std::size_t>(i % keys)].fetch_add(1);
      return 100 + i % keys;
    });
    if (r.result.has_value() && r.result.value() == 100 + i % keys) ++blocking_ok;
  }
  for (auto& t : threads) t.join();
  for (auto& s : slots) EXPECT_EQ(s->calls.load(), 1);
  EXPECT_EQ(answered.load(), ops);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(blocking_ok, 200);
  for (auto& n : successes) EXPECT_EQ(n.load(), 1);  // each key's work succeeded exactly once
}

}  // namespace
