// Deterministic tests of every transition and window rule of
// sturdy::circuit_breaker, driven by a manual clock.
#include "sturdy/circuit_breaker.hpp"

#include <chrono>
#include <latch>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"

// Reaches the internals to build states the public API cannot produce on x86
// (see HalfOpenRoundWhoseReportsMissedEachOtherIsDecidedByTheNextAcquire).
namespace sturdy::detail {
struct breaker_test_access {
  // Writes a probe slot the way record() does, without the scan that follows.
  template <class Breaker>
  static void report_silently(Breaker& b, std::uint32_t slot, std::uint64_t value) {
    b.slots_[slot].store(value);
  }
  // Takes the state word's locked bit as transition() does for `to`, and
  // publishes the new word as it does: what other threads can see meanwhile.
  template <class Breaker>
  static void begin_transition(Breaker& b, sturdy::breaker_state to) {
    b.word_.store(make_locked_word(b.word_.load(), static_cast<std::uint64_t>(to)));
  }
  template <class Breaker>
  static void finish_transition(Breaker& b) {
    b.word_.store(word_after_transition(b.word_.load()));
  }
};
}  // namespace sturdy::detail

namespace {

using namespace std::chrono_literals;
using sturdy::breaker_state;
using sturdy::call_outcome;
using sturdy::circuit_breaker_options;
using sturdy::errc;
using sturdy::transition_reason;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_listener;
using breaker = sturdy::circuit_breaker<manual_clock, recording_listener>;

// Only the consecutive-failure rule, unless a test turns others on.
circuit_breaker_options consecutive_only(std::uint32_t n) {
  return {.consecutive_failure_threshold = n, .failure_rate_threshold = 0.0, .count_window_size = 0};
}

struct fixture {
  explicit fixture(circuit_breaker_options o) : b(std::move(o), clock, events) {}
  manual_clock clock;
  recording_listener events;
  breaker b;

  void ok() {
    auto p = b.try_acquire();
    ASSERT_TRUE(p) << p.error().message();
    b.record(p.value(), call_outcome::success);
  }
  void fail() {
    auto p = b.try_acquire();
    ASSERT_TRUE(p) << p.error().message();
    b.record(p.value(), call_outcome::failure);
  }
  std::vector<sturdy::breaker_state_changed> changes() const { return events.of<sturdy::breaker_state_changed>(); }
};

// --- options ---------------------------------------------------------------

TEST(CircuitBreakerOptionsTest, DefaultsAreValid) {
  EXPECT_TRUE(circuit_breaker_options{}.validate());
  EXPECT_TRUE(circuit_breaker_options{}.validation_message().empty());
}

// Checks one invalid options value: refused, with a message that starts with
// "circuit_breaker_options." and names `field`. (Cases are checked one at a
// time rather than collected in a vector of aggregates: GCC 12 at -O3 warns
// falsely about moving braced temporaries that hold a shared_ptr.)
void expect_rejected(const circuit_breaker_options& o, std::string_view field) {
  auto r = o.validate();
  ASSERT_FALSE(r) << field;
  EXPECT_EQ(r.error(), errc::invalid_options);
  const std::string_view message = o.validation_message();
  EXPECT_EQ(message.substr(0, 24), "circuit_breaker_options.") << message;
  EXPECT_NE(message.find(field), std::string_view::npos) << field << " vs " << message;
}

TEST(CircuitBreakerOptionsTest, EachBadFieldIsNamed) {
  expect_rejected({.failure_rate_threshold = 1.5}, "failure_rate_threshold");
  expect_rejected({.failure_rate_threshold = std::nan("")}, "failure_rate_threshold");
  expect_rejected({.slow_call_duration = -1ns}, "slow_call_duration");
  expect_rejected({.slow_call_rate_threshold = 0.0}, "slow_call_rate_threshold");
  expect_rejected({.count_window_size = 2'000'000}, "count_window_size");
  expect_rejected({.time_window = -1s}, "time_window");
  expect_rejected({.time_window_buckets = 0}, "time_window_buckets");
  expect_rejected({.time_window = 5ns, .time_window_buckets = 10}, "time_window");
  expect_rejected({.count_window_size = 0}, "count_window_size or time_window must be > 0");
  expect_rejected({.minimum_calls = 0}, "minimum_calls");
  expect_rejected({.open_duration = 0s}, "open_duration");
  expect_rejected({.open_duration_growth = 0.5}, "open_duration_growth");
  expect_rejected({.open_duration_growth = INFINITY}, "open_duration_growth");
  expect_rejected({.open_duration = 1h, .max_open_duration = 1min}, "max_open_duration");
  expect_rejected({.half_open_probes = 0}, "half_open_probes");
  expect_rejected({.half_open_probes = 1001}, "half_open_probes");
  expect_rejected({.half_open_success_ratio = 0.0}, "half_open_success_ratio");
  expect_rejected({.probe_lease = 0s}, "probe_lease");
  expect_rejected({.counter_stripes = 3}, "counter_stripes");
}

TEST(CircuitBreakerTest, InvalidOptionsRejectEveryCallWithInvalidOptions) {
  fixture f({.half_open_probes = 0});
  EXPECT_EQ(f.b.options_status().error(), errc::invalid_options);
  auto p = f.b.try_acquire();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), errc::invalid_options);
  bool called = false;
  auto r = f.b.execute([&] { called = true; return 1; });
  EXPECT_FALSE(called);
  EXPECT_EQ(r.error(), errc::invalid_options);
  f.b.reset();  // refuses to leave forced_open
  EXPECT_EQ(f.b.state(), breaker_state::forced_open);
}

// --- consecutive failures --------------------------------------------------

TEST(CircuitBreakerTest, OpensAfterThresholdConsecutiveFailures) {
  fixture f(consecutive_only(3));
  f.fail();
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::open);
  auto ch = f.changes();
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].from, breaker_state::closed);
  EXPECT_EQ(ch[0].to, breaker_state::open);
  EXPECT_EQ(ch[0].reason, transition_reason::consecutive_failures);
  EXPECT_EQ(ch[0].generation, 1u);
}

TEST(CircuitBreakerTest, SuccessResetsConsecutiveFailures) {
  fixture f(consecutive_only(3));
  f.fail();
  f.fail();
  f.ok();
  EXPECT_EQ(f.b.metrics().consecutive_failures, 0u);
  f.fail();
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  EXPECT_EQ(f.b.metrics().consecutive_failures, 2u);
}

// --- open ------------------------------------------------------------------

TEST(CircuitBreakerTest, OpenRejectsAtOnceAndSaysWhenProbesAreAdmitted) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .open_duration = 10s});
  f.fail();
  f.clock.advance(4s);
  auto p = f.b.try_acquire();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), errc::circuit_open);
  EXPECT_EQ(f.b.retry_after(), 6s);
  EXPECT_EQ(f.b.metrics().retry_after, 6s);
  auto rejected = f.events.of<sturdy::breaker_call_rejected>();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].retry_after, 6s);
  bool called = false;
  auto r = f.b.execute([&] { called = true; return sturdy::result<int>(1); });
  EXPECT_FALSE(called);
  EXPECT_EQ(r.error(), errc::circuit_open);
  EXPECT_EQ(f.b.metrics().rejections, 2u);
  f.clock.advance(6s);
  EXPECT_EQ(f.b.retry_after(), 0s);
  auto probe = f.b.try_acquire();
  ASSERT_TRUE(probe);
  EXPECT_TRUE(probe.value().is_probe());
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  EXPECT_EQ(f.changes().back().reason, transition_reason::open_duration_elapsed);
}

// --- half-open -------------------------------------------------------------

fixture* open_then_half_open(fixture& f) {
  f.fail();
  f.clock.advance(f.b.options().open_duration);
  return &f;
}

TEST(CircuitBreakerTest, HalfOpenAdmitsAtMostProbesAndClosesWhenTheySucceed) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .half_open_probes = 2});
  open_then_half_open(f);
  auto p1 = f.b.try_acquire();
  auto p2 = f.b.try_acquire();
  ASSERT_TRUE(p1 && p2);
  auto p3 = f.b.try_acquire();
  ASSERT_FALSE(p3);
  EXPECT_EQ(p3.error(), errc::circuit_open);
  EXPECT_EQ(f.b.retry_after(), f.b.options().probe_lease);
  f.b.record(p1.value(), call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  EXPECT_FALSE(f.b.try_acquire());  // the reported slot is not reused
  f.b.record(p2.value(), call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  EXPECT_EQ(f.changes().back().reason, transition_reason::probes_succeeded);
}

TEST(CircuitBreakerTest, HalfOpenFailureReopens) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .half_open_probes = 3});
  open_then_half_open(f);
  auto p1 = f.b.try_acquire();
  auto p2 = f.b.try_acquire();
  ASSERT_TRUE(p1 && p2);
  f.b.record(p1.value(), call_outcome::success);
  f.b.record(p2.value(), call_outcome::failure);
  EXPECT_EQ(f.b.state(), breaker_state::open);
  EXPECT_EQ(f.changes().back().reason, transition_reason::probes_failed);
}

TEST(CircuitBreakerTest, HalfOpenPartialSuccessRatioCloses) {
  // 4 probes, ratio 0.5: closes after 2 successes, reopens after 3 failures.
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .half_open_probes = 4, .half_open_success_ratio = 0.5});
  open_then_half_open(f);
  std::vector<sturdy::breaker_permit> p;
  for (int i = 0; i < 4; ++i) p.push_back(f.b.try_acquire().value());
  f.b.record(p[0], call_outcome::failure);
  f.b.record(p[1], call_outcome::failure);
  f.b.record(p[2], call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  f.b.record(p[3], call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
}

TEST(CircuitBreakerTest, HalfOpenPartialReopensWhenTheRatioCanNoLongerBeMet) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .half_open_probes = 4, .half_open_success_ratio = 0.5});
  open_then_half_open(f);
  std::vector<sturdy::breaker_permit> p;
  for (int i = 0; i < 4; ++i) p.push_back(f.b.try_acquire().value());
  f.b.record(p[0], call_outcome::failure);
  f.b.record(p[1], call_outcome::failure);
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  f.b.record(p[2], call_outcome::failure);
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

// On weak-memory hardware two probes reporting at once could, before the
// seq_cst fix, each miss the other's report, so nobody decided the round and
// every later acquire found no free slot: the breaker rejected forever. The
// acquire that finds no slot now decides a round its slots have decided.
// Built here by writing the slots without the reporters' decision.
TEST(CircuitBreakerTest, HalfOpenRoundWhoseReportsMissedEachOtherIsDecidedByTheNextAcquire) {
  using access = sturdy::detail::breaker_test_access;
  for (const bool succeeded : {true, false}) {
    SCOPED_TRACE(succeeded ? "both succeeded" : "both failed");
    fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
               .half_open_probes = 2});
    open_then_half_open(f);
    auto p1 = f.b.try_acquire();
    auto p2 = f.b.try_acquire();
    ASSERT_TRUE(p1 && p2);
    const std::uint64_t report = succeeded ? sturdy::detail::slot_succeeded : sturdy::detail::slot_failed;
    access::report_silently(f.b, 0, report);
    access::report_silently(f.b, 1, report);
    ASSERT_EQ(f.b.state(), breaker_state::half_open);  // nobody decided
    EXPECT_EQ(f.b.retry_after(), 0ns);                 // "deciding now", so callers come back
    const std::size_t changes_before = f.changes().size();
    auto next = f.b.try_acquire();
    ASSERT_EQ(f.changes().size(), changes_before + 1);
    if (succeeded) {
      ASSERT_TRUE(next) << next.error().message();
      EXPECT_EQ(next.value().state(), breaker_state::closed);
      EXPECT_EQ(f.b.state(), breaker_state::closed);
      EXPECT_EQ(f.changes().back().reason, transition_reason::probes_succeeded);
    } else {
      ASSERT_FALSE(next);
      EXPECT_EQ(next.error(), errc::circuit_open);
      EXPECT_EQ(f.b.state(), breaker_state::open);
      EXPECT_EQ(f.changes().back().reason, transition_reason::probes_failed);
      EXPECT_EQ(f.b.retry_after(), f.b.options().open_duration);
    }
    // The probes' own reports arrive after the round ended: stale.
    f.b.record(p1.value(), call_outcome::success);
    f.b.record(p2.value(), call_outcome::success);
    EXPECT_EQ(f.b.metrics().stale, 2u);
  }
}

// The same safety net decides a partial-ratio round as soon as the reported
// slots decide it, even while another probe still holds its lease.
TEST(CircuitBreakerTest, HalfOpenRoundDecidedByItsSlotsClosesWhileAProbeIsStillOut) {
  using access = sturdy::detail::breaker_test_access;
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .half_open_probes = 3, .half_open_success_ratio = 0.6});  // needs 2 of 3
  open_then_half_open(f);
  std::vector<sturdy::breaker_permit> p;
  for (int i = 0; i < 3; ++i) p.push_back(f.b.try_acquire().value());
  access::report_silently(f.b, 0, sturdy::detail::slot_succeeded);
  access::report_silently(f.b, 1, sturdy::detail::slot_succeeded);
  ASSERT_EQ(f.b.state(), breaker_state::half_open);
  auto next = f.b.try_acquire();
  ASSERT_TRUE(next);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  EXPECT_EQ(f.changes().back().reason, transition_reason::probes_succeeded);
}

TEST(CircuitBreakerTest, OpenDurationGrowsAcrossConsecutiveOpeningsUpToTheCap) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .open_duration = 1s, .open_duration_growth = 2.0, .max_open_duration = 5s});
  f.fail();
  EXPECT_EQ(f.b.retry_after(), 1s);
  const std::vector<std::chrono::seconds> expected = {2s, 4s, 5s, 5s};
  for (auto d : expected) {
    f.clock.advance(f.b.retry_after());
    auto probe = f.b.try_acquire();
    ASSERT_TRUE(probe);
    f.b.record(probe.value(), call_outcome::failure);
    EXPECT_EQ(f.b.retry_after(), d);
  }
  EXPECT_EQ(f.b.metrics().consecutive_openings, 4u);
  f.clock.advance(5s);
  auto probe = f.b.try_acquire();
  f.b.record(probe.value(), call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();  // a fresh trip from closed starts again at open_duration
  EXPECT_EQ(f.b.retry_after(), 1s);
}

TEST(CircuitBreakerTest, OpenDurationGrowthNeverOverflows) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .open_duration = 1s, .open_duration_growth = 1e300, .max_open_duration = 24h});
  f.fail();
  for (int i = 0; i < 5; ++i) {
    f.clock.advance(f.b.retry_after());
    auto probe = f.b.try_acquire();
    ASSERT_TRUE(probe);
    f.b.record(probe.value(), call_outcome::failure);
    EXPECT_EQ(f.b.retry_after(), 24h);
  }
}

TEST(CircuitBreakerTest, ProbeLeaseExpiresSoASilentProbeCannotWedgeTheBreaker) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .probe_lease = 5s});
  open_then_half_open(f);
  auto lost = f.b.try_acquire();  // its caller never reports
  ASSERT_TRUE(lost);
  f.clock.advance(4s);
  EXPECT_FALSE(f.b.try_acquire());
  EXPECT_EQ(f.b.retry_after(), 1s);
  f.clock.advance(1s);
  auto fresh = f.b.try_acquire();
  ASSERT_TRUE(fresh);
  ASSERT_EQ(f.events.count<sturdy::breaker_probe_lease_expired>(), 1u);
  f.b.record(lost.value(), call_outcome::failure);  // too late: ignored
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  EXPECT_EQ(f.b.metrics().stale, 1u);
  f.b.record(fresh.value(), call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
}

// --- ignored and stale outcomes -------------------------------------------

TEST(CircuitBreakerTest, IgnoredOutcomesAreNeitherSuccessNorFailure) {
  fixture f(consecutive_only(2));
  f.fail();
  auto p = f.b.try_acquire();
  f.b.record(p.value(), call_outcome::ignored);
  EXPECT_EQ(f.b.metrics().consecutive_failures, 1u);  // not reset by an ignored call
  auto m = f.b.metrics();
  EXPECT_EQ(m.calls, 1u);
  EXPECT_EQ(m.ignored, 1u);
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, IgnoredProbeFreesItsSlot) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0});
  open_then_half_open(f);
  auto p = f.b.try_acquire();
  ASSERT_TRUE(p);
  EXPECT_FALSE(f.b.try_acquire());
  f.b.record(p.value(), call_outcome::ignored);
  EXPECT_EQ(f.b.state(), breaker_state::half_open);
  auto again = f.b.try_acquire();
  ASSERT_TRUE(again);
  f.b.record(again.value(), call_outcome::success);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
}

TEST(CircuitBreakerTest, OutcomesFromAnOlderGenerationAreIgnored) {
  fixture f(consecutive_only(2));
  auto old1 = f.b.try_acquire();
  auto old2 = f.b.try_acquire();
  f.fail();
  f.fail();
  ASSERT_EQ(f.b.state(), breaker_state::open);
  f.b.reset();
  EXPECT_EQ(f.b.generation(), 2u);
  f.b.record(old1.value(), call_outcome::failure);
  f.b.record(old2.value(), call_outcome::failure);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  auto m = f.b.metrics();
  EXPECT_EQ(m.stale, 2u);
  EXPECT_EQ(m.consecutive_failures, 0u);
  // A success with an old permit is dropped too.
  auto old3 = f.b.try_acquire();
  f.b.force_open();
  f.b.reset();
  f.b.record(old3.value(), call_outcome::success);
  EXPECT_EQ(f.b.metrics().stale, 3u);
  EXPECT_EQ(f.b.metrics().calls, 2u);
}

// While another thread publishes a transition, a call sees the state being
// entered: admitted (with a permit of the new generation) when that state
// admits every call, rejected otherwise. An operator's reset()/disable() on a
// busy breaker must not itself produce a burst of circuit_open errors.
TEST(CircuitBreakerTest, CallsArrivingWhileATransitionIsPublishedSeeTheStateBeingEntered) {
  using access = sturdy::detail::breaker_test_access;
  for (const breaker_state to : {breaker_state::closed, breaker_state::disabled, breaker_state::metrics_only,
                                 breaker_state::open, breaker_state::forced_open, breaker_state::half_open}) {
    SCOPED_TRACE(std::string(to_string(to)));
    fixture f(consecutive_only(3));
    access::begin_transition(f.b, to);
    auto p = f.b.try_acquire();
    const bool admits =
        to == breaker_state::closed || to == breaker_state::disabled || to == breaker_state::metrics_only;
    if (!admits) {
      ASSERT_FALSE(p);
      EXPECT_EQ(p.error(), errc::circuit_open);
      access::finish_transition(f.b);
      EXPECT_EQ(f.b.metrics().rejections, 1u);
      continue;
    }
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ(p.value().state(), to);
    EXPECT_EQ(p.value().generation(), 1u);  // the generation being published
    EXPECT_FALSE(p.value().is_probe());
    access::finish_transition(f.b);
    ASSERT_EQ(f.b.state(), to);
    f.b.record(p.value(), call_outcome::failure);  // counts in the new period
    const auto m = f.b.metrics();
    EXPECT_EQ(m.calls, 1u);
    EXPECT_EQ(m.failures, 1u);
    EXPECT_EQ(m.stale, 0u);
    EXPECT_EQ(m.rejections, 0u);
  }
}

// Reported before the transition finished publishing, such a permit is not
// yet of the current generation: it is counted as stale, never lost.
TEST(CircuitBreakerTest, PermitAdmittedDuringATransitionReportedBeforeItEndsIsStale) {
  using access = sturdy::detail::breaker_test_access;
  fixture f(consecutive_only(1));
  access::begin_transition(f.b, breaker_state::disabled);
  auto p = f.b.try_acquire();
  ASSERT_TRUE(p);
  f.b.record(p.value(), call_outcome::failure);
  access::finish_transition(f.b);
  const auto m = f.b.metrics();
  EXPECT_EQ(m.stale, 1u);
  EXPECT_EQ(m.calls, 0u);
  EXPECT_EQ(f.b.state(), breaker_state::disabled);
}

// --- count window ----------------------------------------------------------

circuit_breaker_options count_window(std::uint32_t size, std::uint32_t min_calls, double rate) {
  return {.consecutive_failure_threshold = 0, .failure_rate_threshold = rate, .count_window_size = size,
          .minimum_calls = min_calls};
}

TEST(CircuitBreakerTest, CountWindowWaitsForMinimumCalls) {
  fixture f(count_window(10, 5, 0.5));
  for (int i = 0; i < 4; ++i) f.fail();  // 100% but only 4 calls
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::open);
  EXPECT_EQ(f.changes().back().reason, transition_reason::failure_rate);
}

TEST(CircuitBreakerTest, CountWindowTripsAtTheRateThreshold) {
  fixture f(count_window(10, 4, 0.5));
  f.ok();
  f.ok();
  f.ok();
  f.fail();  // 1/4
  f.fail();  // 2/5
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();  // 3/6 = 0.5
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, SuccessNeverTripsEvenWhenItReachesMinimumCalls) {
  fixture f(count_window(10, 4, 0.5));
  f.fail();
  f.fail();
  f.fail();
  f.ok();  // 3/4 >= 0.5, but rules run on failures only
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, CountWindowWrapsAroundAndForgetsOldFailures) {
  fixture f(count_window(4, 4, 0.75));
  f.fail();
  f.fail();
  f.ok();
  f.ok();  // window F F S S
  f.ok();  // S F S S... ring: [S F S S] after wrap evicts the first F
  auto m = f.b.metrics();
  EXPECT_EQ(m.count_window.calls, 4u);
  EXPECT_EQ(m.count_window.failures, 1u);
  f.fail();  // window F S S F -> 2/4 < 0.75
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();  // S S F F -> 2/4
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();  // S F F F -> 3/4
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, LongRunsOfSuccessesFillTheWindowWithoutLosingCount) {
  fixture f(count_window(100, 100, 0.02));
  for (int i = 0; i < 1000; ++i) f.ok();
  f.fail();
  auto m = f.b.metrics();
  EXPECT_EQ(m.count_window.calls, 100u);
  EXPECT_EQ(m.count_window.failures, 1u);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.fail();  // 2/100 = 0.02
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, ClosingStartsWithAnEmptyWindow) {
  fixture f(count_window(10, 2, 0.5));
  f.fail();
  f.fail();
  ASSERT_EQ(f.b.state(), breaker_state::open);
  f.clock.advance(f.b.retry_after());
  auto probe = f.b.try_acquire();
  f.b.record(probe.value(), call_outcome::success);
  ASSERT_EQ(f.b.state(), breaker_state::closed);
  auto m = f.b.metrics();
  EXPECT_EQ(m.count_window.calls, 0u);
  f.fail();  // 1/1 but minimum 2
  EXPECT_EQ(f.b.state(), breaker_state::closed);
}

// --- time window -----------------------------------------------------------

circuit_breaker_options time_window(std::uint32_t min_calls, double rate) {
  return {.consecutive_failure_threshold = 0, .failure_rate_threshold = rate, .count_window_size = 0,
          .time_window = 10s, .time_window_buckets = 10, .minimum_calls = min_calls};
}

TEST(CircuitBreakerTest, TimeWindowBucketsExpire) {
  fixture f(time_window(3, 0.5));
  f.fail();
  f.fail();  // 2 failures in bucket 0
  f.clock.advance(10s);  // bucket 0 leaves the window
  f.fail();              // 1 failure, 1 call in window
  EXPECT_EQ(f.b.metrics().time_window.calls, 1u);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  f.clock.advance(9s);  // still in the window
  f.fail();
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, TimeWindowSpreadsSuccessesOverTheTimeSinceTheLastFailure) {
  fixture f(time_window(2, 0.5));
  f.fail();  // t = 0: [F]
  for (int i = 0; i < 20; ++i) f.ok();  // counted without a clock read
  f.clock.advance(20s);
  // The 20 successes are spread over (0 s, 20 s], at 1 s, 2 s, ..., 20 s. The
  // window at 20 s is the bucket [20 s, 21 s) and the 9 before it, so it
  // holds those at 11 s ... 20 s: 10. The failure at 0 s has expired.
  auto m = f.b.metrics();
  EXPECT_EQ(m.time_window.calls, 10u);
  EXPECT_EQ(m.time_window.failures, 0u);
  f.fail();
  m = f.b.metrics();
  EXPECT_EQ(m.time_window.calls, 11u);
  EXPECT_EQ(m.time_window.failures, 1u);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
}

// --- slow calls ------------------------------------------------------------

TEST(CircuitBreakerTest, SlowCallsTripTheSlowCallRate) {
  manual_clock clock;
  recording_listener events;
  breaker b({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0,
             .slow_call_duration = 100ms, .slow_call_rate_threshold = 0.5, .count_window_size = 4,
             .minimum_calls = 4},
            clock, events);
  auto fast = [&] { clock.advance(10ms); return sturdy::result<int>(1); };
  auto slow = [&] { clock.advance(150ms); return sturdy::result<int>(2); };
  auto exactly = [&] { clock.advance(100ms); return sturdy::result<int>(3); };
  EXPECT_TRUE(b.execute(fast));
  EXPECT_TRUE(b.execute(exactly));  // not slower than the threshold
  EXPECT_TRUE(b.execute(slow));
  EXPECT_EQ(b.state(), breaker_state::closed);  // 1/3, below minimum anyway
  EXPECT_TRUE(b.execute(slow));                 // 2/4
  EXPECT_EQ(b.state(), breaker_state::open);
  EXPECT_EQ(events.of<sturdy::breaker_state_changed>().back().reason, transition_reason::slow_call_rate);
  EXPECT_EQ(b.metrics().slow_calls, 2u);
}

TEST(CircuitBreakerTest, CallerReportedDurationsCountAsSlow) {
  fixture f({.consecutive_failure_threshold = 0, .failure_rate_threshold = 0, .slow_call_duration = 1s,
             .slow_call_rate_threshold = 1.0, .count_window_size = 2, .minimum_calls = 2});
  auto p = f.b.try_acquire();
  f.b.record(p.value(), call_outcome::success, 2s);
  p = f.b.try_acquire();
  f.b.record(p.value(), call_outcome::success);  // untimed: never slow
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  p = f.b.try_acquire();
  f.b.record(p.value(), call_outcome::success, 3s);  // window: slow, fast, slow -> last 2: fast, slow
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  p = f.b.try_acquire();
  f.b.record(p.value(), call_outcome::success, 3s);
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

TEST(CircuitBreakerTest, NoClockReadWhenSlowCallDetectionIsOff) {
  struct counting_clock {
    int* reads;
    sturdy::time_point now() { ++*reads; return {}; }
  };
  int reads = 0;
  sturdy::circuit_breaker<counting_clock> b({}, counting_clock{&reads});
  const int at_start = reads;
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(b.execute([] { return 1; }));
  EXPECT_EQ(reads, at_start);
}

// --- manual states -----------------------------------------------------------

TEST(CircuitBreakerTest, ForcedOpenRejectsUntilReset) {
  fixture f(consecutive_only(1));
  f.b.force_open();
  auto p = f.b.try_acquire();
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error(), errc::circuit_open);
  EXPECT_EQ(f.b.retry_after(), sturdy::duration::max());
  f.clock.advance(24h);
  EXPECT_FALSE(f.b.try_acquire());
  f.b.reset();
  EXPECT_TRUE(f.b.try_acquire());
  auto ch = f.changes();
  ASSERT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch[0].to, breaker_state::forced_open);
  EXPECT_EQ(ch[0].reason, transition_reason::manual);
  EXPECT_EQ(ch[1].to, breaker_state::closed);
}

TEST(CircuitBreakerTest, DisabledAdmitsEverythingAndStillCounts) {
  fixture f(consecutive_only(1));
  f.b.disable();
  for (int i = 0; i < 10; ++i) f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::disabled);
  auto m = f.b.metrics();
  EXPECT_EQ(m.calls, 10u);
  EXPECT_EQ(m.failures, 10u);
  EXPECT_EQ(f.events.count<sturdy::breaker_trip_suppressed>(), 0u);
}

TEST(CircuitBreakerTest, MetricsOnlyEvaluatesRulesButNeverOpens) {
  fixture f(consecutive_only(2));
  f.b.metrics_only();
  f.fail();
  f.fail();
  f.fail();
  EXPECT_EQ(f.b.state(), breaker_state::metrics_only);
  auto s = f.events.of<sturdy::breaker_trip_suppressed>();
  ASSERT_EQ(s.size(), 1u);  // once per would-be opening (see the hardening tests)
  EXPECT_EQ(s[0].reason, transition_reason::consecutive_failures);
}

TEST(CircuitBreakerTest, MetricsSnapshotReportsStateAndTimeInState) {
  fixture f({.consecutive_failure_threshold = 1, .failure_rate_threshold = 0, .count_window_size = 0,
             .open_duration = 30s});
  f.ok();
  f.clock.advance(3s);
  f.fail();
  f.clock.advance(2s);
  auto m = f.b.metrics();
  EXPECT_EQ(m.state, breaker_state::open);
  EXPECT_EQ(m.generation, 1u);
  EXPECT_EQ(m.time_in_state, 2s);
  EXPECT_EQ(m.retry_after, 28s);
  EXPECT_EQ(m.calls, 2u);
  EXPECT_EQ(m.failures, 1u);
}

// --- execute ---------------------------------------------------------------

TEST(CircuitBreakerTest, ExecuteCountsExceptionsAsFailuresAndRethrows) {
  fixture f(consecutive_only(2));
  EXPECT_THROW((void)f.b.execute([]() -> int { throw std::runtime_error("down"); }), std::runtime_error);
  EXPECT_THROW((void)f.b.execute([] { throw std::runtime_error("down"); }), std::runtime_error);
  EXPECT_EQ(f.b.state(), breaker_state::open);
  auto r = f.b.execute([] {});
  static_assert(std::is_same_v<decltype(r), sturdy::result<void>>);
  EXPECT_EQ(r.error(), errc::circuit_open);
}

TEST(CircuitBreakerTest, ExecuteWorksWithEveryResultShape) {
  fixture f(consecutive_only(100));
  auto a = f.b.execute([] { return 7; });
  static_assert(std::is_same_v<decltype(a), sturdy::result<int>>);
  EXPECT_EQ(a.value(), 7);
  auto b = f.b.execute([] { return sturdy::result<std::string>(std::string("x")); });
  EXPECT_EQ(b.value(), "x");
  auto c = f.b.execute([] { return sturdy::outcome<int>(std::make_exception_ptr(std::logic_error("e"))); });
  static_assert(std::is_same_v<decltype(c), sturdy::outcome<int>>);
  EXPECT_TRUE(c.has_exception());
  auto d = f.b.execute([] { return sturdy::result<int>(std::make_error_code(std::errc::timed_out)); });
  EXPECT_EQ(d.error(), std::errc::timed_out);
  auto m = f.b.metrics();
  EXPECT_EQ(m.calls, 4u);
  EXPECT_EQ(m.failures, 2u);
  f.b.force_open();
  auto e = f.b.execute([] { return sturdy::outcome<int>(1); });
  EXPECT_EQ(e.error(), errc::circuit_open);
}

TEST(CircuitBreakerTest, ClassifierDecidesWhatCountsAsAFailure) {
  circuit_breaker_options o = consecutive_only(1);
  o.failure_classifier = [](const sturdy::failure_info& fi) {
    if (fi.code == std::errc::operation_canceled) return call_outcome::ignored;
    if (fi.code == std::errc::no_such_file_or_directory) return call_outcome::success;  // a 404 is fine
    if (fi.exception_is<std::invalid_argument>()) return call_outcome::success;
    return call_outcome::failure;
  };
  fixture f(std::move(o));
  (void)f.b.execute([] { return sturdy::result<int>(std::make_error_code(std::errc::operation_canceled)); });
  (void)f.b.execute([] { return sturdy::result<int>(std::make_error_code(std::errc::no_such_file_or_directory)); });
  EXPECT_THROW((void)f.b.execute([]() -> int { throw std::invalid_argument("bad"); }), std::invalid_argument);
  EXPECT_EQ(f.b.state(), breaker_state::closed);
  auto m = f.b.metrics();
  EXPECT_EQ(m.ignored, 1u);
  EXPECT_EQ(m.calls, 2u);
  EXPECT_EQ(m.failures, 0u);
  (void)f.b.execute([] { return sturdy::result<int>(std::make_error_code(std::errc::io_error)); });
  EXPECT_EQ(f.b.state(), breaker_state::open);
}

// --- internals -------------------------------------------------------------

TEST(CircuitBreakerInternalsTest, LiveThreadsGetDistinctStripeIndicesThatAreRecycled) {
  std::uint32_t first = 0, second = 0, a = 0, b = 0;
  std::thread([&] { first = sturdy::detail::thread_index(); }).join();
  std::thread([&] { second = sturdy::detail::thread_index(); }).join();
  EXPECT_EQ(first, second);  // the exited thread's index was reused
  std::latch both(2);
  std::thread t1([&] { a = sturdy::detail::thread_index(); both.arrive_and_wait(); });
  std::thread t2([&] { b = sturdy::detail::thread_index(); both.arrive_and_wait(); });
  t1.join();
  t2.join();
  EXPECT_NE(a, b);
}

TEST(CircuitBreakerInternalsTest, CountWindowSpreadsABatchsFailuresEvenlyEndingWithTheLast) {
  // Reference: call i of n is marked when floor((i+1)k/n) > floor(ik/n).
  for (std::uint64_t size : {1u, 4u, 9u, 50u}) {
    for (std::uint64_t n = 1; n <= 60; ++n) {
      for (std::uint64_t f = 0; f <= n; f += (n / 7) + 1) {
        const std::uint64_t s = n - f / 2;
        sturdy::detail::count_window w(static_cast<std::uint32_t>(size));
        w.add(3, 1, 0);  // something to evict first
        w.add(n, f, s);
        std::uint64_t want_f = 0, want_s = 0;
        for (std::uint64_t i = n - std::min(n, size); i < n; ++i) {
          want_f += (i + 1) * f / n > i * f / n;
          want_s += (i + 1) * s / n > i * s / n;
        }
        std::uint64_t want_calls = std::min(n, size);
        if (n < size) {  // part of the first batch survives: 3 calls, the last failed
          const std::uint64_t keep = std::min<std::uint64_t>(3, size - n);
          want_calls += keep;
          want_f += keep >= 1 ? 1 : 0;
        }
        const auto c = w.counts();
        ASSERT_EQ(c.calls, want_calls) << size << " " << n << " " << f;
        ASSERT_EQ(c.failures, want_f) << size << " " << n << " " << f;
        ASSERT_EQ(c.slow, want_s) << size << " " << n << " " << s;
      }
    }
  }
}

// --- allocations -----------------------------------------------------------

TEST(CircuitBreakerTest, TheCallPathAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  manual_clock clock;
  sturdy::circuit_breaker<manual_clock> b({.consecutive_failure_threshold = 3, .count_window_size = 50,
                                           .time_window = 10s, .minimum_calls = 10,
                                           .half_open_probes = 2},
                                          clock);
  (void)b.metrics();  // first use of the thread index
  sturdy::testing::allocation_scope scope;
  int calls = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) (void)b.execute([&] { ++calls; return sturdy::result<int>(i); });
    for (int i = 0; i < 5; ++i) {
      (void)b.execute([] { return sturdy::result<int>(std::make_error_code(std::errc::io_error)); });
    }
    (void)b.execute([] { return 1; });  // rejected while open
    clock.advance(b.retry_after());
    for (int i = 0; i < 2; ++i) (void)b.execute([] { return sturdy::result<int>(1); });  // probes close it
    (void)b.metrics();
  }
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_GT(calls, 0);
  EXPECT_EQ(b.state(), breaker_state::closed);
}

}  // namespace
