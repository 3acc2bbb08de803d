// Regression tests for the breaker items of "Hardening I" (issue 12: metrics
// that mean one thing in every state, one suppressed-trip event per would-be
// opening, the time window at any uptime and on any clock, every duration
// option at 0, 1 ns and duration::max()) and "Hardening II" (issue 13: a
// capturing failure_classifier, rules that can never trip rejected, the
// start-up maker, the options_rejected event and the message in the error).
#include "sturdy/circuit_breaker.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::breaker_state;
using sturdy::call_outcome;
using sturdy::circuit_breaker_options;
using sturdy::duration;
using sturdy::errc;
using sturdy::time_point;
using sturdy::transition_reason;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_listener;
using breaker = sturdy::circuit_breaker<manual_clock, recording_listener>;

void record(breaker& b, call_outcome outcome) {
  auto p = b.try_acquire();
  ASSERT_TRUE(p) << p.error().message();
  b.record(p.value(), outcome);
}
void ok(breaker& b) { record(b, call_outcome::success); }
void fail(breaker& b) { record(b, call_outcome::failure); }

// --- issue 12 item 12: metrics ----------------------------------------------

TEST(CircuitBreakerMetricsTest, Issue12_ConsecutiveFailuresReadZeroOutsideTheStatesThatCountThem) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 3, .failure_rate_threshold = 0.9, .count_window_size = 10,
             .minimum_calls = 10, .open_duration = 10s, .half_open_probes = 2},
            clock, events);
  fail(b);
  fail(b);
  EXPECT_EQ(b.metrics().consecutive_failures, 2u);
  fail(b);
  ASSERT_EQ(b.state(), breaker_state::open);
  auto m = b.metrics();
  EXPECT_EQ(m.consecutive_failures, 0u);  // main: 3, a leftover of closed
  EXPECT_EQ(m.consecutive_openings, 0u);
  EXPECT_EQ(m.count_window.calls, 0u);  // main: 3, a leftover of closed
  EXPECT_EQ(m.failures, 3u);            // totals keep counting
  clock.advance(10s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  ASSERT_TRUE(p1 && p2);
  ASSERT_EQ(b.state(), breaker_state::half_open);
  EXPECT_EQ(b.metrics().consecutive_failures, 0u);
  b.record(p1.value(), call_outcome::failure);  // reopens (ratio 1)
  ASSERT_EQ(b.state(), breaker_state::open);
  m = b.metrics();
  EXPECT_EQ(m.consecutive_openings, 1u);
  EXPECT_EQ(m.consecutive_failures, 0u);
  b.record(p2.value(), call_outcome::failure);  // stale now
  EXPECT_EQ(b.metrics().stale, 1u);
  b.force_open();
  EXPECT_EQ(b.metrics().consecutive_openings, 0u);  // main: 1, a leftover of open
  b.reset();
  m = b.metrics();
  EXPECT_EQ(m.consecutive_failures, 0u);
  EXPECT_EQ(m.consecutive_openings, 0u);
  fail(b);
  EXPECT_EQ(b.metrics().consecutive_failures, 1u);
  EXPECT_EQ(b.metrics().count_window.calls, 1u);
}

TEST(CircuitBreakerMetricsTest, Issue12_HalfOpenAfterGoodProbesShowsNoFailuresInARow) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .open_duration = 1s, .half_open_probes = 3, .half_open_success_ratio = 1.0},
            clock, events);
  fail(b);
  clock.advance(1s);
  ok(b);
  ok(b);
  ASSERT_EQ(b.state(), breaker_state::half_open);
  EXPECT_EQ(b.metrics().consecutive_failures, 0u);  // main: 1, the failure that opened it
  ok(b);
  ASSERT_EQ(b.state(), breaker_state::closed);
  EXPECT_EQ(b.metrics().consecutive_failures, 0u);
}

TEST(CircuitBreakerMetricsTest, Issue12_MetricsOnlyAnnouncesEachWouldBeOpeningOnce) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 2, .failure_rate_threshold = 0, .count_window_size = 0}, clock,
            events);
  b.metrics_only();
  for (int i = 0; i < 6; ++i) fail(b);
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 1u);  // main: 5, one per failure
  EXPECT_EQ(b.metrics().consecutive_failures, 6u);
  ok(b);
  fail(b);  // the rule no longer holds: re-armed
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 1u);
  fail(b);  // holds again: a second would-be opening
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 2u);
  EXPECT_EQ(b.state(), breaker_state::metrics_only);
}

TEST(CircuitBreakerMetricsTest, Issue12_MetricsOnlyAnnouncesEachRateRuleOpeningOnce) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0.5, .count_window_size = 4,
             .minimum_calls = 4},
            clock, events);
  b.metrics_only();
  for (int i = 0; i < 10; ++i) fail(b);
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 1u);  // main: 7
  for (int i = 0; i < 3; ++i) ok(b);
  fail(b);  // window: 3 ok + 1 failure, 25%: the rule does not hold, re-armed
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 1u);
  fail(b);  // 2 of 4
  EXPECT_EQ(events.count<sturdy::breaker_trip_suppressed>(), 2u);
  EXPECT_EQ(events.of<sturdy::breaker_trip_suppressed>().back().reason, transition_reason::failure_rate);
}

// --- issue 12 item 4: the time window at any uptime ---------------------------

// The smallest window the options allow: 1 ns buckets.
circuit_breaker_options smallest_time_window() {
  return {.consecutive_failure_threshold = 0, .failure_rate_threshold = 0.5, .count_window_size = 0,
          .time_window = 2ns, .time_window_buckets = 2, .minimum_calls = 2};
}

TEST(CircuitBreakerTimeWindowTest, Issue12_CountsAndTripsAfter2To31And2To32Buckets) {
  for (const std::int64_t buckets : {std::int64_t{1} << 31, std::int64_t{1} << 32, (std::int64_t{1} << 32) + 1}) {
    manual_clock clock;
    recording_listener events;
    breaker b(smallest_time_window(), clock, events);
    ok(b);
    ok(b);
    EXPECT_EQ(b.metrics().time_window.calls, 2u) << buckets;
    clock.advance(duration(buckets));
    EXPECT_EQ(b.metrics().time_window.calls, 0u) << buckets;  // long gone
    fail(b);
    EXPECT_EQ(b.state(), breaker_state::closed) << buckets;  // 1 call < minimum
    fail(b);
    EXPECT_EQ(b.state(), breaker_state::open) << buckets;  // 2 of 2 in the window
  }
}

TEST(CircuitBreakerTimeWindowTest, Issue12_WorksOnAClockFromNearMinToNearMax) {
  for (const duration window : {duration(2ns), duration(10s), duration::max()}) {
    circuit_breaker_options o = smallest_time_window();
    o.time_window = window;
    o.open_duration = 1s;
    o.max_open_duration = duration::max();
    manual_clock clock(time_point::min() + 5ns);
    recording_listener events;
    breaker b(o, clock, events);
    ok(b);
    ok(b);
    EXPECT_EQ(b.metrics().time_window.calls, 2u);
    ASSERT_TRUE(clock.set(time_point::max() - 2s));
    const auto m = b.metrics();
    EXPECT_EQ(m.time_in_state, duration::max());  // saturates
    EXPECT_EQ(m.time_window.calls, 0u) << window.count();  // more than a window ago, even for max
    fail(b);
    fail(b);
    EXPECT_EQ(b.state(), breaker_state::open) << window.count();
    EXPECT_EQ(b.retry_after(), 1s);
    ASSERT_TRUE(clock.set(time_point::max()));
    ok(b);  // the probe
    EXPECT_EQ(b.state(), breaker_state::closed);
  }
}

TEST(CircuitBreakerTimeWindowTest, Issue12_WindowMathIsExactAtTheEdgesOfTheTimeRange) {
  sturdy::detail::time_window w(2ns, 2);
  const time_point lo = time_point::min();
  const time_point hi = time_point::max();
  w.add(7, 3, 1, lo, hi);  // spread over the whole range: only the end is in the window
  const auto c = w.counts(hi);
  EXPECT_EQ(c.failures, 1u);  // the last failure lands at `now`
  EXPECT_LE(c.calls, 2u);
  EXPECT_GE(c.calls, 1u);
  sturdy::detail::time_window whole(duration::max(), 1);  // one bucket: [0, max)
  whole.add(7, 3, 1, time_point{}, hi - 1ns);
  EXPECT_EQ(whole.counts(hi - 1ns).calls, 7u);
  EXPECT_EQ(whole.counts(hi - 1ns).failures, 3u);
  EXPECT_EQ(whole.counts(hi).calls, 0u);  // the next bucket
}

// --- issue 12 item 7: every duration option at 0, 1 ns and max ---------------

// What each duration option does at an extreme, as documented in
// docs/circuit_breaker.md ("Extreme values"): either a validation error
// naming the field, or a breaker that trips and recovers as stated.
TEST(CircuitBreakerDurationsTest, Issue12_EveryDurationOptionAtZeroOneNanosecondAndMax) {
  struct field {
    const char* name;
    duration circuit_breaker_options::*member;
    bool zero_valid;
  };
  const field fields[] = {
      {"slow_call_duration", &circuit_breaker_options::slow_call_duration, true},
      {"time_window", &circuit_breaker_options::time_window, true},
      {"open_duration", &circuit_breaker_options::open_duration, false},
      {"max_open_duration", &circuit_breaker_options::max_open_duration, false},
      {"probe_lease", &circuit_breaker_options::probe_lease, false},
  };
  for (const field& f : fields) {
    for (const duration v : {duration::zero(), duration(1), duration::max()}) {
      circuit_breaker_options o{.consecutive_failure_threshold = 2, .failure_rate_threshold = 0.5,
                                .count_window_size = 4, .time_window_buckets = 1, .minimum_calls = 4,
                                .open_duration = 1ns, .open_duration_growth = 2.0,
                                .max_open_duration = duration::max()};
      o.*(f.member) = v;
      const std::string where = std::string(f.name) + " = " + std::to_string(v.count());
      const std::string_view message = o.validation_message();
      if (!message.empty()) {
        // The only refusals: a zero where > 0 is required, or
        // max_open_duration below open_duration.
        EXPECT_NE(message.find(std::string("circuit_breaker_options.") + f.name), std::string_view::npos)
            << where << ": " << message;
        EXPECT_TRUE((v == duration::zero() && !f.zero_valid) ||
                    (f.member == &circuit_breaker_options::max_open_duration && v < o.open_duration))
            << where << ": " << message;
        auto made = sturdy::make_circuit_breaker(o, manual_clock());
        EXPECT_EQ(made.error(), errc::invalid_options) << where;
        continue;
      }
      manual_clock clock(time_point::max() - 10s);  // late in time, to meet every saturation
      recording_listener events;
      breaker b(o, clock, events);
      // Trip by consecutive failures, timed through execute.
      for (int i = 0; i < 2; ++i) {
        auto r = b.execute([&] {
          clock.advance(1ms);
          return sturdy::result<int>(errc::cancelled);
        });
        EXPECT_FALSE(r);
      }
      ASSERT_EQ(b.state(), breaker_state::open) << where;
      const duration open_for = o.open_duration;
      const auto left = [&] { return sturdy::detail::time_between(clock.now(), time_point::max()); };
      EXPECT_EQ(b.retry_after(), std::min(open_for, left())) << where;  // saturated at the end of time
      EXPECT_GE(b.metrics().time_in_state, duration::zero());
      if (open_for == duration::max()) {
        // open_duration = max means "until time_point::max()": still open one
        // tick before, then a probe.
        ASSERT_TRUE(clock.set(time_point::max() - 1ns));
        EXPECT_FALSE(b.try_acquire()) << where;
        ASSERT_TRUE(clock.set(time_point::max()));
        EXPECT_TRUE(b.try_acquire()) << where;
        EXPECT_EQ(b.state(), breaker_state::half_open) << where;
        continue;
      }
      clock.advance(open_for);
      auto probe = b.try_acquire();
      ASSERT_TRUE(probe) << where;
      EXPECT_EQ(b.state(), breaker_state::half_open) << where;
      EXPECT_EQ(b.retry_after(), std::min(o.probe_lease, left())) << where;  // every slot leased
      b.record(probe.value(), call_outcome::failure);
      EXPECT_EQ(b.state(), breaker_state::open) << where;
      // Grown (x2) but capped by max_open_duration, and saturated at the end
      // of time.
      const duration grown = std::min(o.max_open_duration, 2 * o.open_duration);
      EXPECT_EQ(b.retry_after(), std::min(grown, left())) << where;
      EXPECT_EQ(b.metrics().consecutive_openings, 1u);
    }
  }
}

TEST(CircuitBreakerDurationsTest, Issue12_SlowCallDurationMaxMeansNoCallIsSlow) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0, .slow_call_duration = duration::max(),
             .count_window_size = 2, .minimum_calls = 2},
            clock, events);
  for (int i = 0; i < 4; ++i) {
    auto r = b.execute([&] {
      clock.advance(24h);
      return 1;
    });
    EXPECT_TRUE(r);
  }
  EXPECT_EQ(b.metrics().slow_calls, 0u);
  EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(CircuitBreakerDurationsTest, Issue12_OneNanosecondSlowCallDurationCountsEveryTimedCallAsSlow) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0, .slow_call_duration = 1ns,
             .count_window_size = 2, .minimum_calls = 2},
            clock, events);
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(b.execute([&] {
      clock.advance(2ns);
      return 1;
    }));
  }
  EXPECT_EQ(b.state(), breaker_state::open);
  EXPECT_EQ(events.of<sturdy::breaker_state_changed>().back().reason, transition_reason::slow_call_rate);
}

// --- issue 13 item 5: rules that can never trip ------------------------------

TEST(CircuitBreakerOptionsTest, Issue13_MinimumCallsAboveTheCountWindowIsRejectedNamingBothFields) {
  for (const circuit_breaker_options& o :
       {circuit_breaker_options{.count_window_size = 100, .minimum_calls = 200},
        circuit_breaker_options{.count_window_size = 20}}) {  // with the default minimum_calls of 100
    ASSERT_FALSE(o.validate());
    const std::string_view m = o.validation_message();
    EXPECT_NE(m.find("circuit_breaker_options.minimum_calls"), std::string_view::npos) << m;
    EXPECT_NE(m.find("circuit_breaker_options.count_window_size"), std::string_view::npos) << m;
  }
  EXPECT_TRUE((circuit_breaker_options{.count_window_size = 20, .minimum_calls = 20}.validate()));
  // Without a rate rule the count window is unused: nothing to reject.
  EXPECT_TRUE((circuit_breaker_options{.failure_rate_threshold = 0, .count_window_size = 20}.validate()));
}

TEST(CircuitBreakerOptionsTest, Issue13_EveryTripRuleOffIsRejected) {
  const circuit_breaker_options o{.consecutive_failure_threshold = 0, .failure_rate_threshold = 0};
  ASSERT_FALSE(o.validate());
  EXPECT_NE(o.validation_message().find("circuit_breaker_options.consecutive_failure_threshold"),
            std::string_view::npos);
  EXPECT_NE(o.validation_message().find("disable()"), std::string_view::npos);
}

// --- issue 13 item 6: start-up check, event, message -------------------------

TEST(CircuitBreakerMakerTest, Issue13_MakerReturnsAPinnedBreakerOrTheError) {
  auto made = sturdy::make_circuit_breaker({.consecutive_failure_threshold = 1});
  ASSERT_TRUE(made);
  std::unique_ptr<sturdy::circuit_breaker<>> b = std::move(made).value();
  EXPECT_EQ(b->state(), breaker_state::closed);
  manual_clock clock;
  recording_listener events;
  auto with_clock = sturdy::make_circuit_breaker({}, clock, events);
  static_assert(std::is_same_v<decltype(with_clock), sturdy::result<std::unique_ptr<breaker>>>);
  ASSERT_TRUE(with_clock);
  auto bad = sturdy::make_circuit_breaker({.half_open_probes = 0});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::invalid_options);
}

TEST(CircuitBreakerMakerTest, Issue13_TheFirstRefusedCallAnnouncesTheInvalidField) {
  manual_clock clock;
  recording_listener events;
  breaker b({.half_open_probes = 0}, clock, events);
  EXPECT_EQ(events.count<sturdy::options_rejected>(), 0u);  // nothing until a call is refused
  EXPECT_FALSE(b.try_acquire());
  EXPECT_FALSE(b.execute([] { return 1; }));
  EXPECT_FALSE(b.try_acquire());
  const auto e = events.of<sturdy::options_rejected>();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].primitive, "circuit_breaker");
  EXPECT_EQ(e[0].message, "circuit_breaker_options.half_open_probes must be in [1, 1000]");
}

// An error type that can carry a message (as absl::Status can).
struct described_error {
  explicit described_error(std::error_code c, std::string m = {}) : code(c), message(std::move(m)) {}
  std::error_code code;
  std::string message;
};
std::error_code sturdy_to_error_code(const described_error& e) { return e.code; }
described_error sturdy_from_error_code(std::error_code ec, std::string_view message,
                                       std::type_identity<described_error>) {
  return described_error(ec, std::string(message));
}
template <class T>
using described_result =
    BOOST_OUTCOME_V2_NAMESPACE::basic_result<T, described_error, BOOST_OUTCOME_V2_NAMESPACE::policy::terminate>;

TEST(CircuitBreakerMakerTest, Issue13_TheRefusalCarriesTheMessageWhereTheErrorTypeCan) {
  sturdy::circuit_breaker<manual_clock> b({.probe_lease = 0s}, manual_clock());
  auto r = b.execute([]() -> described_result<int> { return 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_options);
  EXPECT_EQ(r.error().message, "circuit_breaker_options.probe_lease must be > 0");
  // A plain std::error_code cannot carry it: the code alone.
  auto plain = b.execute([] { return 1; });
  EXPECT_EQ(plain.error(), errc::invalid_options);
}

// --- issue 13 item 2: the classifier is a sturdy::callback ---------------------

TEST(CircuitBreakerClassifierTest, Issue13_ACapturingClassifierReadFromConfiguration) {
  const std::set<int> ignored_codes = {static_cast<int>(errc::cancelled)};
  manual_clock clock;
  recording_listener events;
  circuit_breaker_options o{.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0};
  o.failure_classifier = [codes = ignored_codes](const sturdy::failure_info& f) {
    return codes.contains(f.code.value()) ? call_outcome::ignored : call_outcome::failure;
  };
  static_assert(std::is_same_v<decltype(o.failure_classifier),
                               sturdy::callback<call_outcome(const sturdy::failure_info&)>>);
  breaker b(o, clock, events);
  EXPECT_FALSE(b.execute([] { return sturdy::result<int>(errc::cancelled); }));
  EXPECT_EQ(b.state(), breaker_state::closed);
  EXPECT_EQ(b.metrics().ignored, 1u);
  EXPECT_FALSE(b.execute([] { return sturdy::result<int>(errc::retries_exhausted); }));
  EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreakerClassifierTest, Issue13_AThrowingClassifierCountsAFailureAndTheFailurePathDoesNotAllocate) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  manual_clock clock;
  circuit_breaker_options o{.consecutive_failure_threshold = 3, .failure_rate_threshold = 0, .count_window_size = 0};
  const std::set<int> codes = {1, 2, 3};  // a capture too large to store inline: allocated once, here
  o.failure_classifier = [codes](const sturdy::failure_info& f) -> call_outcome {
    if (codes.contains(f.code.value())) throw std::runtime_error("classifier bug");
    return call_outcome::failure;
  };
  sturdy::circuit_breaker<manual_clock> b(o, clock);
  (void)b.metrics();  // first use of the thread index
  {
    sturdy::testing::allocation_scope scope;
    (void)b.execute([] { return sturdy::result<int>(std::error_code(9, std::generic_category())); });
    EXPECT_EQ(scope.allocations(), 0u);  // calling the heap-held classifier allocates nothing
  }
  (void)b.execute([] { return sturdy::result<int>(std::error_code(1, std::generic_category())); });
  EXPECT_EQ(b.metrics().consecutive_failures, 2u);  // the throw counted as a failure
}

}  // namespace
