// Test support for sturdy::asio: does an operation keep outstanding work on
// its handler's executor (Asio's rule) while its attempt runs on another
// io_context?
//
//   const auto w = sturdy::testing::run_with_attempt_on_other_io_context(
//       [](net::io_context& a, sturdy::testing::other_io_context_attempt attempt, bool& called) {
//         sturdy::asio::async_timeout(options, attempt, net::bind_executor(a, [&called](auto) { called = true; }));
//       });
//   EXPECT_TRUE(w.called_before_run_returned);
//
// The attempt waits 5 ms on a real steady_timer of io_context `b` (run by
// its own thread), its wait bound to `b` as a library with its own I/O
// thread does: it tracks no work on `a`. The handler's io_context `a` is
// run on the calling thread; `called_before_run_returned` says whether the
// handler ran before a.run() returned. `a` is drained afterwards either way.

#ifndef STURDY_TESTS_SUPPORT_OTHER_IO_CONTEXT_ATTEMPT_HPP_
#define STURDY_TESTS_SUPPORT_OTHER_IO_CONTEXT_ATTEMPT_HPP_

#include <chrono>
#include <thread>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "sturdy/context.hpp"

namespace sturdy::testing {

// An attempt (void(error_code)) on another io_context's timer.
struct other_io_context_attempt {
  boost::asio::steady_timer* timer;
  auto operator()(const call_context&) const {
    return boost::asio::async_initiate<const boost::asio::deferred_t&, void(boost::system::error_code)>(
        [t = timer](auto handler) {
          t->expires_after(std::chrono::milliseconds(5));
          t->async_wait(boost::asio::bind_executor(
              t->get_executor(), [h = std::move(handler)](boost::system::error_code ec) mutable {
                boost::asio::post(boost::asio::append(std::move(h), ec));
              }));
        },
        boost::asio::deferred);
  }
};

struct work_observation {
  bool called_before_run_returned = false;
  bool called = false;
};

template <class Start>
work_observation run_with_attempt_on_other_io_context(Start start) {
  boost::asio::io_context a;  // the handler's
  boost::asio::io_context b;  // the attempt's, run by another thread
  auto b_work = boost::asio::make_work_guard(b);
  std::thread b_thread([&b] { b.run(); });
  boost::asio::steady_timer timer(b);
  work_observation w;
  start(a, other_io_context_attempt{&timer}, w.called);
  a.run();
  w.called_before_run_returned = w.called;
  b_work.reset();
  b_thread.join();
  a.restart();
  a.run();  // a handler queued after a.run() returned early: run it
  return w;
}

}  // namespace sturdy::testing

#endif  // STURDY_TESTS_SUPPORT_OTHER_IO_CONTEXT_ATTEMPT_HPP_
