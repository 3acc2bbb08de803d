// The retry decision core (retry_policy::begin / on_failure / after_wait /
// on_success) driven by hand: no sleeper, no thread, no real clock. Each
// test feeds events and asserts the decision (STYLE 3.8).
#include <chrono>
#include <cstdint>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using std::chrono::milliseconds;
using sturdy::call_context;
using sturdy::cancel_reason;
using sturdy::errc;
using sturdy::failure_info;
using sturdy::retry_decision;
using sturdy::retry_hint;
using sturdy::retry_options;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_listener;
using sturdy::testing::recording_sleeper;
using kind = retry_decision::kind;

using policy_type = sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper, recording_listener>;

const failure_info io_error{.code = std::make_error_code(std::errc::io_error), .exception = nullptr};

struct RetryCoreTest : ::testing::Test {
  manual_clock clock;
  recording_sleeper sleeper{clock};  // never used by the core
  recording_listener events;
  policy_type make(retry_options o) { return policy_type(std::move(o), clock, sleeper, events); }
};

TEST_F(RetryCoreTest, AFailureIsRetriedAfterTheBackoffDelayThenTheNextAttemptIsNumbered) {
  const auto p = make({.max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(40))});
  policy_type::state_type s;
  EXPECT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  EXPECT_EQ(s.attempt, 1u);
  const retry_decision d = p.on_failure(s, io_error, {}, cancel_reason::none, {});
  EXPECT_EQ(d.what, kind::wait);
  EXPECT_EQ(d.delay, milliseconds(40));
  EXPECT_EQ(p.after_wait(s, io_error, true, cancel_reason::none).what, kind::attempt);
  EXPECT_EQ(s.attempt, 2u);
  EXPECT_EQ(p.attempt_context(s, call_context{}).attempt, 2u);
  p.on_success(s);
  EXPECT_EQ(sleeper.count(), 0u);
}

// A driver may keep only the first attempt's part until it fails (as
// execute does): a retry_state built from it after the failure carries the
// deadline on, and the call ends at the deadline exactly as with one
// retry_state from the start.
TEST_F(RetryCoreTest, ARetryStateBuiltFromTheFirstAttemptsStateAfterAFailureKeepsItsDeadline) {
  const auto p = make({.max_attempts = 10,
                       .backoff = sturdy::backoff::constant(milliseconds(40)),
                       .max_elapsed = milliseconds(100)});
  sturdy::retry_call_state first;
  ASSERT_EQ(p.begin(first, call_context{}).what, kind::attempt);
  EXPECT_EQ(first.attempt, 1u);
  EXPECT_TRUE(first.timed);
  EXPECT_EQ(first.deadline, clock.now() + milliseconds(100));
  policy_type::state_type s{first};
  clock.advance(milliseconds(10));  // attempt 1 took 10 ms
  ASSERT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::wait);
  clock.advance(milliseconds(40));
  ASSERT_EQ(p.after_wait(s, io_error, true, cancel_reason::none).what, kind::attempt);
  EXPECT_EQ(s.attempt, 2u);
  EXPECT_EQ(p.attempt_context(s, call_context{}).deadline.at(), first.deadline);
  clock.advance(milliseconds(10));  // at 60 ms, 40 ms left: no room for a 40 ms delay and a 10 ms attempt
  const retry_decision d = p.on_failure(s, io_error, {}, cancel_reason::none, {});
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::deadline_exceeded);
}

TEST_F(RetryCoreTest, TheLastAllowedAttemptReturnsTheLastOutcome) {
  const auto p = make({.max_attempts = 2, .backoff = sturdy::backoff::constant(milliseconds(1))});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  ASSERT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::wait);
  ASSERT_EQ(p.after_wait(s, io_error, true, cancel_reason::none).what, kind::attempt);
  EXPECT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::return_last);
}

TEST_F(RetryCoreTest, AServerHintReplacesTheBackoffAndDoNotRetryStops) {
  const auto p = make({.max_attempts = 5, .backoff = sturdy::backoff::constant(milliseconds(1))});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  const retry_decision d = p.on_failure(s, io_error, retry_hint::after(milliseconds(700)), cancel_reason::none, {});
  EXPECT_EQ(d.what, kind::wait);
  EXPECT_EQ(d.delay, milliseconds(700));
  ASSERT_EQ(p.after_wait(s, io_error, true, cancel_reason::none).what, kind::attempt);
  EXPECT_EQ(p.on_failure(s, io_error, retry_hint::do_not_retry(), cancel_reason::none, {}).what, kind::return_last);
}

TEST_F(RetryCoreTest, AWaitCutShortStopsAsCancelledAndRefundsTheTicket) {
  sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 0.1});
  const auto p = make({.max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(5)), .budget = budget});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  ASSERT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::wait);
  const std::uint32_t before = budget.milli_tokens();
  const retry_decision d = p.after_wait(s, io_error, false, cancel_reason::none);
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::cancelled);
  EXPECT_GE(budget.milli_tokens(), before);
  EXPECT_EQ(s.ticket, 0u);
}

TEST_F(RetryCoreTest, AWaitCutShortByTheDeadlineStopsAsDeadlineExceeded) {
  const auto p = make({.max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(5))});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  ASSERT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::wait);
  const retry_decision d = p.after_wait(s, io_error, false, cancel_reason::deadline);
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::deadline_exceeded);
}

TEST_F(RetryCoreTest, TheDeadlineIsCheckedBeforeTheWaitAndAfterIt) {
  const auto p = make({.max_attempts = 5,
                       .backoff = sturdy::backoff::constant(milliseconds(30)),
                       .max_elapsed = milliseconds(100)});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  clock.advance(milliseconds(10));
  ASSERT_EQ(p.on_failure(s, io_error, {}, cancel_reason::none, {}).what, kind::wait);
  clock.advance(milliseconds(95));  // the wait overshot the deadline
  const retry_decision d = p.after_wait(s, io_error, true, cancel_reason::none);
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::deadline_exceeded);

  policy_type::state_type t;
  ASSERT_EQ(p.begin(t, call_context{}).what, kind::attempt);
  clock.advance(milliseconds(60));  // 40 ms left: 30 ms delay + 60 ms estimate does not fit
  const retry_decision e = p.on_failure(t, io_error, {}, cancel_reason::none, {});
  EXPECT_EQ(e.what, kind::fail);
  EXPECT_EQ(e.code, errc::deadline_exceeded);
}

TEST_F(RetryCoreTest, AStopRequestedBeforeTheFirstAttemptIsCancelled) {
  const auto p = make({});
  sturdy::cancel_source src;
  src.request_stop();
  policy_type::state_type s;
  const retry_decision d = p.begin(s, call_context{.token = src.token()});
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::cancelled);
  EXPECT_EQ(s.attempt, 0u);
}

TEST_F(RetryCoreTest, InvalidOptionsFailWithInvalidOptions) {
  const auto p = make({.max_attempts = 0});
  policy_type::state_type s;
  const retry_decision d = p.begin(s, call_context{});
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::invalid_options);
}

TEST_F(RetryCoreTest, ACancelledStopReplacesARetryableFailureOnly) {
  const auto p = make({.max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(5))});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  const retry_decision d = p.on_failure(s, io_error, {}, cancel_reason::cancelled, {});
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::cancelled);
}

TEST_F(RetryCoreTest, TheBudgetDeniesARetry) {
  sturdy::token_bucket_budget budget({.max_tokens = 2, .token_ratio = 0.1});
  const auto p = make({.max_attempts = 5, .backoff = sturdy::backoff::constant(milliseconds(5)), .budget = budget});
  policy_type::state_type s;
  ASSERT_EQ(p.begin(s, call_context{}).what, kind::attempt);
  const retry_decision d = p.on_failure(s, io_error, {}, cancel_reason::none, {});
  EXPECT_EQ(d.what, kind::fail);
  EXPECT_EQ(d.code, errc::budget_exhausted);
}

// A listener that opted in to the per-call completion event.
struct completions {
  static constexpr bool wants_retry_call_completed = true;
  std::vector<sturdy::retry_call_completed>* seen;
  void operator()(const sturdy::retry_call_completed& e) const { seen->push_back(e); }
  template <class E>
  void operator()(const E&) const noexcept {}
};
static_assert(sturdy::wants_retry_call_completed<completions>);
static_assert(!sturdy::wants_retry_call_completed<recording_listener>);

TEST_F(RetryCoreTest, EveryCallEndsWithOneCompletionEventForListenersThatAskForIt) {
  std::vector<sturdy::retry_call_completed> seen;
  using P = sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper, completions>;
  const P p({.max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(1))}, clock, sleeper,
            completions{&seen});
  int n = 0;
  (void)p.execute([] { return sturdy::result<int>(1); });                                    // success, 1 attempt
  (void)p.execute([&]() -> sturdy::result<int> { return ++n < 2 ? sturdy::result<int>(std::errc::io_error) : 2; });
  (void)p.execute([] { return sturdy::result<int>(std::errc::io_error); });                 // exhausted after 3
  (void)p.execute([] { return sturdy::result<int>(std::errc::operation_canceled); });       // not retryable
  const P bad({.max_attempts = 0}, clock, sleeper, completions{&seen});
  (void)bad.execute([] { return sturdy::result<int>(1); });                                  // refused, 0 attempts
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_TRUE(seen[0].succeeded && seen[0].attempts == 1);
  EXPECT_TRUE(seen[1].succeeded && seen[1].attempts == 2);
  EXPECT_TRUE(!seen[2].succeeded && seen[2].attempts == 3);
  EXPECT_TRUE(!seen[3].succeeded && seen[3].attempts == 1);
  EXPECT_TRUE(!seen[4].succeeded && seen[4].attempts == 0);
}

}  // namespace
