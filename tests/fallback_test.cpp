// Tests of sturdy::fallback_policy: value and function fallbacks, the
// predicate, exceptions, never hiding cancellation, events, contexts, and
// composition with today's compose() and with a timeout.
#include "sturdy/fallback.hpp"

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "sturdy/callback.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_timer.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/timeout.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::call_context;
using sturdy::errc;
using sturdy::failure_info;
using sturdy::result;
using sturdy::testing::recording_listener;

result<int> fails(std::error_code ec) { return ec; }

TEST(FallbackTest, ValueReplacesASelectedFailureAndSuccessPassesUntouched) {
  recording_listener events;
  auto fb = sturdy::fallback_to(7, {}, events);
  EXPECT_EQ(fb.execute([] { return result<int>(1); }).value(), 1);
  EXPECT_EQ(events.size(), 0u);
  EXPECT_EQ(fb.execute([] { return fails(errc::circuit_open); }).value(), 7);
  ASSERT_EQ(events.count<sturdy::fallback_applied>(), 1u);
  EXPECT_EQ(events.of<sturdy::fallback_applied>()[0].failure.code, errc::circuit_open);
}

TEST(FallbackTest, PredicateSelectsWhichFailuresFallBack) {
  auto fb = sturdy::fallback_to(std::string("cached"),
                                {.handle_if = [](const failure_info& f) { return f.code == errc::deadline_exceeded; }});
  EXPECT_EQ(fb.execute([] { return result<std::string>(make_error_code(errc::deadline_exceeded)); }).value(), "cached");
  auto other = fb.execute([] { return result<std::string>(make_error_code(errc::circuit_open)); });
  EXPECT_EQ(other.error(), errc::circuit_open);
}

TEST(FallbackTest, FunctionMayTakeTheFailureOrNothing) {
  auto with_failure = sturdy::fallback_with([](const failure_info& f) { return result<int>(f.code.value()); });
  EXPECT_EQ(with_failure.execute([] { return fails(errc::circuit_open); }).value(),
            static_cast<int>(errc::circuit_open));
  auto bare = sturdy::fallback_with([] { return 3; });  // a value the result is built from
  EXPECT_EQ(bare.execute([] { return fails(errc::circuit_open); }).value(), 3);
  auto failing = sturdy::fallback_with([] { return fails(std::make_error_code(std::errc::io_error)); });
  EXPECT_EQ(failing.execute([] { return fails(errc::circuit_open); }).error(), std::errc::io_error);
}

TEST(FallbackTest, ThrownExceptionsFallBackOrAreRethrown) {
  auto fb = sturdy::fallback_with([](const failure_info& f) { return f.exception_is<std::runtime_error>() ? 1 : 2; },
                                  {.handle_if = [](const failure_info& f) { return f.is_exception(); }});
  EXPECT_EQ(fb.execute([]() -> int { throw std::runtime_error("x"); }).value(), 1);
  auto only_codes = sturdy::fallback_to(0, {.handle_if = [](const failure_info& f) { return !f.is_exception(); }});
  EXPECT_THROW((void)only_codes.execute([]() -> int { throw std::logic_error("bug"); }), std::logic_error);
}

TEST(FallbackTest, NeverHidesCancellationWhateverThePredicateSays) {
  recording_listener events;
  auto fb = sturdy::fallback_to(9, {.handle_if = [](const failure_info&) { return true; }}, events);
  EXPECT_EQ(fb.execute([] { return fails(errc::cancelled); }).error(), errc::cancelled);
  EXPECT_EQ(fb.execute([] { return fails(std::make_error_code(std::errc::operation_canceled)); }).error(),
            std::errc::operation_canceled);
  EXPECT_THROW((void)fb.execute([]() -> int {
    throw std::system_error(std::make_error_code(std::errc::operation_canceled));
  }),
               std::system_error);
  // The caller's token fired: any failure is the caller's cancellation.
  sturdy::cancel_source caller;
  caller.request_stop();
  EXPECT_EQ(fb.execute([] { return fails(errc::circuit_open); }, call_context{.token = caller.token()}).error(),
            errc::circuit_open);
  std::stop_source ss;
  ss.request_stop();
  EXPECT_EQ(fb.execute([] { return fails(errc::circuit_open); }, ss.get_token()).error(), errc::circuit_open);
  EXPECT_EQ(events.count<sturdy::fallback_applied>(), 0u);
  // A deadline (not the caller) fired: that is a reason to fall back.
  sturdy::cancel_source timer;
  timer.request(sturdy::cancel_reason::deadline);
  EXPECT_EQ(fb.execute([] { return fails(errc::deadline_exceeded); }, call_context{.token = timer.token()}).value(), 9);
}

TEST(FallbackTest, HandsTheContextAndTheCallersStopTokenToTheCallee) {
  auto fb = sturdy::fallback_to(0);
  const call_context ctx{.attempt = 4};
  EXPECT_EQ(fb.execute([](const call_context& c) { return static_cast<int>(c.attempt); }, ctx).value(), 4);
  // A caller's std::stop_token reaches the callee as the context's token.
  std::stop_source ss;
  auto r = fb.execute(
      [&](const call_context& c) {
        ss.request_stop();
        return c.token.reason() == sturdy::cancel_reason::cancelled ? 1 : 2;
      },
      ss.get_token());
  EXPECT_EQ(r.value(), 1);
}

TEST(FallbackTest, SuccessAndValueFallbackAllocateNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not linked (TSan)";
  auto fb = sturdy::fallback_to(7);
  sturdy::testing::allocation_scope scope;
  auto a = fb.execute([] { return result<int>(1); });
  auto b = fb.execute([] { return fails(errc::circuit_open); });
  EXPECT_EQ(a.value() + b.value(), 8);
  EXPECT_EQ(scope.allocations(), 0u);
}

TEST(FallbackTest, ComposesOutermostWithTimeoutAndBreaker) {
  sturdy::testing::manual_timer timers;
  sturdy::circuit_breaker<> breaker({});
  auto pipeline = sturdy::compose(sturdy::fallback_to(-1),
                                  sturdy::timeout_policy<>({.timeout = 10ms}, timers.service()), breaker);
  EXPECT_EQ(pipeline.execute([] { return result<int>(5); }).value(), 5);
  EXPECT_EQ(pipeline.execute([&] {
              timers.advance(20ms);
              return fails(std::make_error_code(std::errc::io_error));
            }).value(),
            -1);
  breaker.force_open();
  EXPECT_EQ(pipeline.execute([] { return result<int>(5); }).value(), -1);
}

}  // namespace
