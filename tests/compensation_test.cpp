#include "sturdy/compensation.hpp"

#include <array>
#include <cstddef>
#include <new>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/outcome/boost_result.hpp>
#include <boost/outcome/std_outcome.hpp>
#include <gtest/gtest.h>

#include "sturdy/clock.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

#if STURDY_HAS_STD_EXPECTED
#include <expected>
#endif

namespace {

using sturdy::compensation_scope;
using sturdy::errc;
using sturdy::result;
using sturdy::step_status;
using namespace std::chrono_literals;

// A log of undo calls, by name.
struct journal {
  std::vector<std::string> calls;
  auto undo(std::string name) {
    return [this, name = std::move(name)] { calls.push_back(name); };
  }
};

// A stand-in for the coming sturdy::retry_policy: up to `max_attempts`
// calls, sleeping `delay` between them through an injected sleeper. Any
// object with execute(fn) -> execute_result_t<F> works the same way.
struct test_retry_policy {
  int max_attempts = 3;
  sturdy::duration delay = 100ms;
  sturdy::testing::recording_sleeper sleeper;
  int calls = 0;

  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    for (int attempt = 1;; ++attempt) {
      ++calls;
      if (attempt == max_attempts) return sturdy::invoke_wrapped(fn);  // last: exceptions propagate
      try {
        auto r = sturdy::invoke_wrapped(fn);
        if (sturdy::succeeded(r)) return r;
      } catch (...) {  // NOLINT(bugprone-empty-catch): retried
      }
      (void)sleeper.sleep_for(delay, std::stop_token{});
    }
  }
};
static_assert(sturdy::undo_policy<test_retry_policy>);

// ---------------------------------------------------------------- life cycle

TEST(CompensationScopeTest, DestructorUndoesInReverseOrderExactlyOnce) {
  journal j;
  {
    compensation_scope scope;
    ASSERT_TRUE(scope.add("a", j.undo("a")));
    ASSERT_TRUE(scope.add("b", j.undo("b")));
    ASSERT_TRUE(scope.add("c", j.undo("c")));
    EXPECT_EQ(scope.pending(), 3u);
    EXPECT_TRUE(j.calls.empty());
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"c", "b", "a"}));
}

TEST(CompensationScopeTest, CommitPreventsEveryUndo) {
  journal j;
  {
    compensation_scope scope;
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(scope.add(j.undo(std::to_string(i))));
    ASSERT_TRUE(scope.commit());
    EXPECT_EQ(scope.state(), sturdy::compensation_state::committed);
    EXPECT_EQ(scope.pending(), 0u);
  }
  EXPECT_TRUE(j.calls.empty());
}

TEST(CompensationScopeTest, ExplicitRollbackRunsNowAndReportsEachStep) {
  journal j;
  compensation_scope scope;
  ASSERT_TRUE(scope.add("first", j.undo("first")));
  ASSERT_TRUE(scope.add({.name = "second", .context = "id=7"}, j.undo("second")));
  const auto report = scope.rollback();
  EXPECT_EQ(j.calls, (std::vector<std::string>{"second", "first"}));
  EXPECT_TRUE(report.ok());
  EXPECT_TRUE(report.status());
  ASSERT_EQ(report.size(), 2u);
  EXPECT_EQ(report[0].name, "second");
  EXPECT_EQ(report[0].context, "id=7");
  EXPECT_EQ(report[0].status, step_status::undone);
  EXPECT_EQ(report[1].name, "first");
  EXPECT_EQ(report.undone(), 2u);
  EXPECT_EQ(report.failed(), 0u);
  EXPECT_EQ(scope.state(), sturdy::compensation_state::rolled_back);
}

TEST(CompensationScopeTest, ManyUndosBeyondInlineCapacityStillRunInReverse) {
  journal j;
  {
    compensation_scope scope;
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(scope.add(j.undo(std::to_string(i))));
  }
  ASSERT_EQ(j.calls.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(j.calls[static_cast<std::size_t>(i)], std::to_string(99 - i));
}

TEST(CompensationScopeTest, LargeAndOverAlignedUndosAreBoxedAndRun) {
  std::vector<int> order;
  {
    compensation_scope scope;
    std::array<char, 200> big{};
    big[0] = 1;
    ASSERT_TRUE(scope.add([&order, big] { order.push_back(big[0]); }));
    struct alignas(64) over_aligned {
      std::vector<int>* out;
      void operator()() const { out->push_back(2); }
    };
    ASSERT_TRUE(scope.add(over_aligned{&order}));
    auto owned = std::make_unique<int>(3);  // move-only capture
    ASSERT_TRUE(scope.add([&order, p = std::move(owned)] { order.push_back(*p); }));
  }
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
}

TEST(CompensationScopeTest, UndoCallablesAreDestroyedOnCommitAndAfterRunning) {
  auto token = std::make_shared<int>(0);
  {
    compensation_scope scope;
    ASSERT_TRUE(scope.add([token] {}));
    EXPECT_EQ(token.use_count(), 2);
    ASSERT_TRUE(scope.commit());
    EXPECT_EQ(token.use_count(), 1);
  }
  {
    compensation_scope scope;
    for (int i = 0; i < 12; ++i) ASSERT_TRUE(scope.add([token] {}));
    EXPECT_EQ(token.use_count(), 13);
  }
  EXPECT_EQ(token.use_count(), 1);
}

// ---------------------------------------------------------------- triggers

TEST(CompensationScopeTest, RollsBackOnException) {
  journal j;
  auto flow = [&] {
    compensation_scope scope;
    (void)scope.add("a", j.undo("a"));
    (void)scope.add("b", j.undo("b"));
    throw std::runtime_error("step 3 failed");
  };
  EXPECT_THROW(flow(), std::runtime_error);
  EXPECT_EQ(j.calls, (std::vector<std::string>{"b", "a"}));
}

TEST(CompensationScopeTest, RollsBackOnEarlyErrorReturn) {
  journal j;
  auto flow = [&](bool fail) -> result<int> {
    compensation_scope scope;
    (void)scope.add("a", j.undo("a"));
    if (fail) return errc::not_found;
    (void)scope.add("b", j.undo("b"));
    BOOST_OUTCOME_TRY(scope.commit());
    return 1;
  };
  EXPECT_EQ(flow(true).error(), errc::not_found);
  EXPECT_EQ(j.calls, (std::vector<std::string>{"a"}));
  j.calls.clear();
  EXPECT_EQ(flow(false).value(), 1);
  EXPECT_TRUE(j.calls.empty());
}

result<int> failing_call() { return errc::store_unavailable; }
result<int> ok_call(int v) { return v; }

TEST(CompensationScopeTest, RollsBackOnOutcomeTry) {
  journal j;
  auto flow = [&]() -> result<int> {
    compensation_scope scope;
    BOOST_OUTCOME_TRY(auto a, scope.step("a", [] { return ok_call(1); }, j.undo("a")));
    BOOST_OUTCOME_TRY(auto b, scope.step("b", [] { return ok_call(2); }, j.undo("b")));
    BOOST_OUTCOME_TRY(auto c, failing_call());
    BOOST_OUTCOME_TRY(scope.commit());
    return a + b + c;
  };
  EXPECT_EQ(flow().error(), errc::store_unavailable);
  EXPECT_EQ(j.calls, (std::vector<std::string>{"b", "a"}));
}

// ---------------------------------------------------------------- step()

TEST(CompensationScopeTest, StepRegistersUndoOnlyOnSuccess) {
  journal j;
  {
    compensation_scope scope;
    auto ok = scope.step("ok", [] { return result<int>(1); }, j.undo("ok"));
    auto bad = scope.step("bad", []() -> result<int> { return errc::not_found; }, j.undo("bad"));
    EXPECT_EQ(ok.value(), 1);
    EXPECT_EQ(bad.error(), errc::not_found);
    EXPECT_EQ(scope.pending(), 1u);
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"ok"}));
}

TEST(CompensationScopeTest, StepAcceptsEveryAdaptedReturnType) {
  namespace outcome = BOOST_OUTCOME_V2_NAMESPACE;
  journal j;
  {
    compensation_scope scope;
    auto v = scope.step("void", [] {}, j.undo("void"));
    static_assert(std::is_same_v<decltype(v), result<void>>);
    auto plain = scope.step("plain", [] { return std::string("x"); }, j.undo("plain"));
    static_assert(std::is_same_v<decltype(plain), result<std::string>>);
    EXPECT_EQ(plain.value(), "x");
    auto o = scope.step("outcome", [] { return sturdy::outcome<int>(3); }, j.undo("outcome"));
    static_assert(std::is_same_v<decltype(o), sturdy::outcome<int>>);
    auto oe = scope.step(
        "outcome-exception",
        []() -> sturdy::outcome<int> { return std::make_exception_ptr(std::runtime_error("x")); },
        j.undo("never"));
    EXPECT_TRUE(oe.has_exception());
    auto br = scope.step("boost_result", [] { return outcome::boost_result<int>(4); }, j.undo("boost"));
    EXPECT_TRUE(br.has_value());
#if STURDY_HAS_STD_EXPECTED
    auto ex = scope.step("expected", [] { return std::expected<int, std::error_code>(5); }, j.undo("exp"));
    EXPECT_TRUE(ex.has_value());
#endif
  }
  std::vector<std::string> want{"boost", "outcome", "plain", "void"};
#if STURDY_HAS_STD_EXPECTED
  want.insert(want.begin(), "exp");
#endif
  EXPECT_EQ(j.calls, want);
}

TEST(CompensationScopeTest, StepUndoMayTakeTheActionsValue) {
  std::vector<int> deleted;
  {
    compensation_scope scope;
    auto id = scope.step("create", [] { return result<int>(42); }, [&](const int& v) { deleted.push_back(v); });
    EXPECT_EQ(id.value(), 42);
    auto name = scope.step(
        "plain", [] { return std::string("bob"); },
        [&](const std::string& s) { deleted.push_back(static_cast<int>(s.size())); });
    EXPECT_EQ(name.value(), "bob");
  }
  EXPECT_EQ(deleted, (std::vector<int>{3, 42}));
}

TEST(CompensationScopeTest, StepActionExceptionPropagatesAndEarlierStepsRollBack) {
  journal j;
  auto flow = [&] {
    compensation_scope scope;
    (void)scope.step("a", [] { return 1; }, j.undo("a"));
    (void)scope.step("b", []() -> int { throw std::logic_error("boom"); }, j.undo("b"));
  };
  EXPECT_THROW(flow(), std::logic_error);
  EXPECT_EQ(j.calls, (std::vector<std::string>{"a"}));
}

// ---------------------------------------------------------------- failing undos

TEST(CompensationScopeTest, FailingAndThrowingUndosDoNotStopTheOthers) {
  journal j;
  sturdy::dead_letter_queue dlq;
  sturdy::testing::manual_clock clock(sturdy::time_point{} + 5s);
  sturdy::compensation_scope scope(dlq, sturdy::run_once{}, clock, {.name = "saga"});
  (void)scope.add("a", j.undo("a"));
  (void)scope.add({.name = "b", .context = "user=1"}, []() -> result<void> { return errc::store_unavailable; });
  (void)scope.add("c", j.undo("c"));
  (void)scope.add("d", [] { throw std::runtime_error("d exploded"); });
  (void)scope.add("e", j.undo("e"));
  const auto report = scope.rollback();
  EXPECT_EQ(j.calls, (std::vector<std::string>{"e", "c", "a"}));
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.error(), errc::compensation_failed);
  EXPECT_EQ(report.undone(), 3u);
  EXPECT_EQ(report.failed(), 2u);
  ASSERT_EQ(report.size(), 5u);
  EXPECT_EQ(report[1].name, "d");
  EXPECT_EQ(report[1].status, step_status::failed);
  EXPECT_TRUE(report[1].failure.is_exception());
  ASSERT_TRUE(report[1].failure.exception_is<std::runtime_error>());
  EXPECT_TRUE(report[1].dead_lettered);
  EXPECT_EQ(report[3].name, "b");
  EXPECT_EQ(report[3].failure.code, errc::store_unavailable);
  EXPECT_TRUE(report[3].dead_lettered);
  EXPECT_FALSE(report[0].dead_lettered);

  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].saga, "saga");
  EXPECT_EQ(entries[0].step, "d");
  EXPECT_EQ(entries[0].exception_text, "d exploded");
  EXPECT_FALSE(entries[0].code);
  EXPECT_EQ(entries[0].at, sturdy::time_point{} + 5s);
  EXPECT_EQ(entries[0].reason, sturdy::dead_letter_reason::undo_failed);
  EXPECT_EQ(entries[1].step, "b");
  EXPECT_EQ(entries[1].context, "user=1");
  EXPECT_EQ(entries[1].code, errc::store_unavailable);
  EXPECT_TRUE(entries[1].exception_text.empty());
}

TEST(CompensationScopeTest, NonStdExceptionIsRecordedAsUnknown) {
  sturdy::dead_letter_queue dlq;
  {
    compensation_scope scope(dlq);
    (void)scope.add("odd", [] { throw 42; });
  }
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq.list()[0].exception_text, "unknown exception");
}

TEST(CompensationScopeTest, StopAtFirstFailureSkipsAndDeadLettersTheRest) {
  journal j;
  sturdy::dead_letter_queue dlq;
  compensation_scope scope(dlq, {.name = "strict", .stop_at_first_failure = true});
  (void)scope.add("a", j.undo("a"));
  (void)scope.add("b", j.undo("b"));
  (void)scope.add("c", []() -> result<void> { return errc::store_unavailable; });
  (void)scope.add("d", j.undo("d"));
  const auto report = scope.rollback();
  EXPECT_EQ(j.calls, (std::vector<std::string>{"d"}));
  EXPECT_EQ(report.undone(), 1u);
  EXPECT_EQ(report.failed(), 1u);
  EXPECT_EQ(report.skipped(), 2u);
  ASSERT_EQ(report.size(), 4u);
  EXPECT_EQ(report[2].status, step_status::skipped);
  EXPECT_EQ(report[3].status, step_status::skipped);
  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].step, "c");
  EXPECT_EQ(entries[1].step, "b");
  EXPECT_EQ(entries[1].reason, sturdy::dead_letter_reason::undo_skipped);
  EXPECT_EQ(entries[1].code, errc::compensation_failed);
  EXPECT_EQ(entries[2].step, "a");
}

TEST(CompensationScopeTest, FullSinkIsReportedAsNotDeadLettered) {
  sturdy::dead_letter_queue dlq({.capacity = 1});
  compensation_scope scope(dlq);
  (void)scope.add("x", []() -> result<void> { return errc::cancelled; });
  (void)scope.add("y", []() -> result<void> { return errc::cancelled; });
  const auto report = scope.rollback();
  EXPECT_TRUE(report[0].dead_lettered);
  EXPECT_FALSE(report[1].dead_lettered);
  EXPECT_EQ(dlq.dropped(), 1u);
}

// A destructor that rolls back while another exception unwinds the stack,
// with an undo that throws: no std::terminate, every other undo runs, the
// original exception reaches the caller.
TEST(CompensationScopeTest, DestructorDuringUnwindingWithThrowingUndoDoesNotTerminate) {
  journal j;
  sturdy::dead_letter_queue dlq;
  auto flow = [&] {
    compensation_scope scope(dlq);
    (void)scope.add("a", j.undo("a"));
    (void)scope.add("throws", [] { throw std::runtime_error("undo failed"); });
    (void)scope.add("b", j.undo("b"));
    throw std::invalid_argument("original");
  };
  try {
    flow();
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "original");
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"b", "a"}));
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq.list()[0].exception_text, "undo failed");
}

TEST(CompensationScopeTest, UndoReturningOutcomeWithExceptionIsAFailure) {
  compensation_scope scope;
  (void)scope.add("o", []() -> sturdy::outcome<void> { return std::make_exception_ptr(std::runtime_error("e")); });
  const auto report = scope.rollback();
  EXPECT_EQ(report.failed(), 1u);
  EXPECT_TRUE(report[0].failure.is_exception());
}

TEST(CompensationScopeTest, ListenerSeesFailedStepsAndEveryRollback) {
  sturdy::testing::recording_listener events;
  sturdy::testing::manual_clock clock;
  {
    // Null sink: without a listener these failures would be recorded nowhere.
    compensation_scope scope(sturdy::null_dead_letter_sink{}, sturdy::run_once{}, clock, events, {.name = "obs"});
    static_assert(std::is_same_v<decltype(scope)::sink_type, sturdy::null_dead_letter_sink>);
    (void)scope.add("ok", [] {});
    (void)scope.add({.name = "bad", .context = "c"}, []() -> result<void> { return errc::cancelled; });
  }
  const auto failed = events.of<sturdy::compensation_step_failed>();
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].saga, "obs");
  EXPECT_EQ(failed[0].step, "bad");
  EXPECT_EQ(failed[0].failure.code, errc::cancelled);
  EXPECT_FALSE(failed[0].dead_lettered);
  const auto done = events.of<sturdy::compensation_rolled_back>();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].undone, 1u);
  EXPECT_EQ(done[0].failed, 1u);
  EXPECT_TRUE(done[0].by_destructor);

  events.clear();
  compensation_scope scope(sturdy::null_dead_letter_sink{}, sturdy::run_once{}, clock, events);
  (void)scope.add([] {});
  EXPECT_TRUE(scope.rollback().ok());
  ASSERT_EQ(events.count<sturdy::compensation_rolled_back>(), 1u);
  EXPECT_FALSE(events.of<sturdy::compensation_rolled_back>()[0].by_destructor);
  compensation_scope committed(sturdy::null_dead_letter_sink{}, sturdy::run_once{}, clock, events);
  ASSERT_TRUE(committed.commit());
  EXPECT_EQ(events.count<sturdy::compensation_rolled_back>(), 1u);  // commit emits nothing
}

// ---------------------------------------------------------------- retries

TEST(CompensationScopeTest, ScopeWidePolicyRetriesFailingUndosWithRecordedSleeps) {
  sturdy::testing::manual_clock clock;
  test_retry_policy policy{.max_attempts = 3, .delay = 100ms, .sleeper = sturdy::testing::recording_sleeper(clock)};
  sturdy::dead_letter_queue dlq;
  int flaky_calls = 0;
  int dead_calls = 0;
  {
    compensation_scope scope(dlq, policy, clock);
    (void)scope.add("flaky", [&]() -> result<void> {
      if (++flaky_calls < 2) return errc::store_unavailable;
      return sturdy::success();
    });
    (void)scope.add("dead", [&]() -> result<void> {
      ++dead_calls;
      throw std::runtime_error("still down");
    });
  }
  EXPECT_EQ(dead_calls, 3);   // all attempts used
  EXPECT_EQ(flaky_calls, 2);  // succeeded on the second
  EXPECT_EQ(policy.sleeper.delays(), (std::vector<sturdy::duration>{100ms, 100ms, 100ms}));
  ASSERT_EQ(dlq.size(), 1u);
  const auto e = dlq.list()[0];
  EXPECT_EQ(e.step, "dead");
  EXPECT_EQ(e.exception_text, "still down");
  EXPECT_EQ(e.at, sturdy::time_point{} + 200ms);  // stamped after the dead undo's two sleeps
}

TEST(CompensationScopeTest, PerUndoPolicyWithUndoWith) {
  sturdy::testing::manual_clock clock;
  test_retry_policy policy{.max_attempts = 4, .delay = 1s, .sleeper = sturdy::testing::recording_sleeper(clock)};
  int calls = 0;
  int plain_calls = 0;
  int value_seen = 0;
  {
    compensation_scope scope;
    (void)scope.add("plain", [&]() -> result<void> {
      ++plain_calls;
      return errc::cancelled;
    });
    (void)scope.add("retried", sturdy::undo_with(policy, [&]() -> result<void> {
                      return ++calls < 4 ? result<void>(errc::cancelled) : sturdy::success();
                    }));
    // The value-taking form works through undo_with too.
    (void)scope.step("with value", [] { return 7; }, sturdy::undo_with(policy, [&](int v) { value_seen = v; }));
  }
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(value_seen, 7);
  EXPECT_EQ(plain_calls, 1);  // no scope-wide policy: run once
  EXPECT_EQ(policy.sleeper.count(), 3u);
}

// ---------------------------------------------------------------- misuse

TEST(CompensationScopeTest, MisuseIsRefusedWithErrcAndChangesNothing) {
  journal j;
  {
    compensation_scope scope;
    (void)scope.add("a", j.undo("a"));
    ASSERT_TRUE(scope.commit());
    EXPECT_EQ(scope.commit().error(), errc::already_committed);
    EXPECT_EQ(scope.add("late", j.undo("late")).error(), errc::already_committed);
    bool ran = false;
    auto s = scope.step("late step", [&] { ran = true; return 1; }, j.undo("x"));
    EXPECT_FALSE(ran);
    EXPECT_EQ(s.error(), errc::already_committed);
    const auto r = scope.rollback();
    EXPECT_EQ(r.error(), errc::already_committed);
    EXPECT_EQ(r.size(), 0u);
    EXPECT_EQ(scope.state(), sturdy::compensation_state::committed);
  }
  EXPECT_TRUE(j.calls.empty());
  {
    compensation_scope scope;
    (void)scope.add("a", j.undo("a"));
    EXPECT_TRUE(scope.rollback().ok());
    const auto again = scope.rollback();
    EXPECT_EQ(again.error(), errc::already_rolled_back);
    EXPECT_EQ(again.status().error(), errc::already_rolled_back);
    EXPECT_EQ(again.size(), 0u);
    EXPECT_EQ(scope.commit().error(), errc::already_rolled_back);
    EXPECT_EQ(scope.add("late", j.undo("late")).error(), errc::already_rolled_back);
    EXPECT_EQ(scope.step("s", [] {}, j.undo("s")).error(), errc::already_rolled_back);
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"a"}));  // once, not again
}

TEST(CompensationScopeTest, UndoThatReentersItsScopeFindsItRolledBack) {
  compensation_scope scope;
  std::error_code seen;
  (void)scope.add([&] { seen = scope.add([] {}).error(); });
  EXPECT_TRUE(scope.rollback().ok());
  EXPECT_EQ(seen, errc::already_rolled_back);
}

// ---------------------------------------------------------------- nesting

TEST(CompensationScopeTest, NestedScopeCommitsIntoParent) {
  journal j;
  {
    compensation_scope parent;
    (void)parent.add("p1", j.undo("p1"));
    {
      compensation_scope child;
      for (int i = 0; i < 10; ++i) (void)child.add(j.undo("c" + std::to_string(i)));
      ASSERT_TRUE(child.commit_into(parent));
      EXPECT_EQ(child.state(), sturdy::compensation_state::committed);
    }
    EXPECT_TRUE(j.calls.empty());
    (void)parent.add("p2", j.undo("p2"));
    EXPECT_EQ(parent.pending(), 12u);
  }
  std::vector<std::string> want{"p2"};
  for (int i = 9; i >= 0; --i) want.push_back("c" + std::to_string(i));
  want.push_back("p1");
  EXPECT_EQ(j.calls, want);
}

TEST(CompensationScopeTest, NestedScopeIntoInactiveParentIsRefusedAndRollsBackItself) {
  journal j;
  compensation_scope parent;
  ASSERT_TRUE(parent.commit());
  {
    compensation_scope child;
    (void)child.add("c", j.undo("c"));
    EXPECT_EQ(child.commit_into(parent).error(), errc::already_committed);
    EXPECT_TRUE(child.active());
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"c"}));
}

// Committing a scope into itself used to "succeed" while leaving it active,
// so it still rolled back at exit: a success that did not commit.
TEST(CompensationScopeTest, CommitIntoItselfIsRefusedAndChangesNothing) {
  journal j;
  {
    compensation_scope self;
    (void)self.add("s", j.undo("s"));
    EXPECT_EQ(self.commit_into(self).error(), errc::invalid_options);
    EXPECT_TRUE(self.active());
    EXPECT_EQ(self.pending(), 1u);
  }
  EXPECT_EQ(j.calls, (std::vector<std::string>{"s"}));  // rolled back, as an uncommitted scope does
}

// ---------------------------------------------------------------- allocations

// A large undo (boxed on the heap) whose allocation fails: models running
// out of memory while registering.
struct unallocatable_undo {
  std::array<char, 100> pad{};
  int* calls;
  void operator()() const { ++*calls; }
  static void* operator new(std::size_t) { throw std::bad_alloc(); }
  static void operator delete(void*) noexcept {}
};

TEST(CompensationScopeTest, OutOfMemoryAddIsRefusedAndStepUndoesAtOnce) {
  int calls = 0;
  sturdy::dead_letter_queue dlq;
  {
    compensation_scope scope(dlq);
    EXPECT_EQ(scope.add("big", unallocatable_undo{.calls = &calls}).error(), errc::capacity_exceeded);
    EXPECT_EQ(scope.pending(), 0u);
    EXPECT_EQ(calls, 0);
    bool acted = false;
    auto r = scope.step("big step", [&] { acted = true; return 5; }, unallocatable_undo{.calls = &calls});
    EXPECT_TRUE(acted);
    EXPECT_EQ(r.error(), errc::capacity_exceeded);
    EXPECT_EQ(calls, 1);  // compensated immediately: nothing stays done without an undo
    EXPECT_TRUE(scope.active());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(dlq.empty());
}

// A value whose copy constructor throws on demand (its move never does).
struct fragile_value {
  static inline int throw_on_copy = 0;  // 0: copies fine; 1: runtime_error; 2: bad_alloc
  int id = 0;
  explicit fragile_value(int i) : id(i) {}
  fragile_value(fragile_value&& o) noexcept : id(o.id) {}
  fragile_value(const fragile_value& o) : id(o.id) {
    if (throw_on_copy == 1) throw std::runtime_error("copy failed");
    if (throw_on_copy == 2) throw std::bad_alloc();
  }
  fragile_value& operator=(const fragile_value&) = default;
  fragile_value& operator=(fragile_value&&) noexcept = default;
  ~fragile_value() = default;
};

// The action's value is copied into the undo after the action succeeded;
// when that copy threw, no undo was registered and the step stayed done.
TEST(CompensationScopeTest, ThrowingValueCopyUndoesTheStepAtOnceAndRethrows) {
  std::vector<int> undone;
  {
    compensation_scope scope;
    (void)scope.add("earlier", [&] { undone.push_back(0); });
    fragile_value::throw_on_copy = 1;
    EXPECT_THROW((void)scope.step("create", [] { return result<fragile_value>(fragile_value(7)); },
                                  [&](const fragile_value& v) { undone.push_back(v.id); }),
                 std::runtime_error);
    fragile_value::throw_on_copy = 0;
    EXPECT_EQ(undone, (std::vector<int>{7}));  // the step was undone at once, with its value
    EXPECT_TRUE(scope.active());
    EXPECT_EQ(scope.pending(), 1u);  // nothing registered for it
  }
  EXPECT_EQ(undone, (std::vector<int>{7, 0}));  // each undo exactly once
}

TEST(CompensationScopeTest, OutOfMemoryCopyingTheValueUndoesAtOnceAndDeadLettersAFailure) {
  sturdy::dead_letter_queue dlq;
  compensation_scope scope(dlq);
  int calls = 0;
  fragile_value::throw_on_copy = 2;
  auto r = scope.step({.name = "reserve", .context = "order=9"},
                      [] { return result<fragile_value>(fragile_value(9)); },
                      [&](const fragile_value& v) -> result<void> {
                        ++calls;
                        EXPECT_EQ(v.id, 9);
                        return errc::store_unavailable;  // the undo itself fails
                      });
  fragile_value::throw_on_copy = 0;
  EXPECT_EQ(r.error(), errc::capacity_exceeded);
  EXPECT_EQ(calls, 1);
  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].step, "reserve");
  EXPECT_EQ(entries[0].context, "order=9");
  EXPECT_EQ(entries[0].code, errc::store_unavailable);
  EXPECT_EQ(scope.pending(), 0u);
}

// An undo whose copy throws (an lvalue undo is copied into the scope).
struct throwing_copy_undo {
  int* calls;
  explicit throwing_copy_undo(int* c) : calls(c) {}
  throwing_copy_undo(const throwing_copy_undo&) { throw std::runtime_error("cannot copy undo"); }
  void operator()() const { ++*calls; }
};

TEST(CompensationScopeTest, ThrowingUndoCopyRunsTheCallersUndoAtOnce) {
  int calls = 0;
  compensation_scope scope;
  const throwing_copy_undo undo(&calls);
  EXPECT_THROW((void)scope.step("s", [] { return 1; }, undo), std::runtime_error);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(scope.pending(), 0u);
}

TEST(CompensationScopeTest, ContextIsCopiedSoTemporariesAreSafe) {
  sturdy::dead_letter_queue dlq;
  compensation_scope scope(dlq);
  for (int i = 0; i < 10; ++i) {
    // A long context (heap) and a short one (small-string buffer), both temporaries.
    (void)scope.add({.name = "s", .context = std::string(40, 'x') + std::to_string(i)},
                    []() -> result<void> { return errc::cancelled; });
    (void)scope.add({.name = "t", .context = std::to_string(i)}, [] {});
  }
  const auto report = scope.rollback();
  ASSERT_EQ(report.size(), 20u);
  EXPECT_EQ(report[0].context, "9");
  EXPECT_EQ(report[1].context, std::string(40, 'x') + "9");
  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 10u);
  EXPECT_EQ(entries[9].context, std::string(40, 'x') + "0");
}

TEST(CompensationScopeTest, NoAllocationForUpToEightSmallUndos) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  int counter = 0;
  long long sum = 0;
  sturdy::testing::allocation_scope allocs;
  {
    compensation_scope scope;
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(scope.add("step", [&counter, &sum, i] {
        ++counter;
        sum += i;
      }));
    }
  }
  {
    compensation_scope scope;
    for (int i = 0; i < 8; ++i) ASSERT_TRUE(scope.add([&counter] { ++counter; }));
    ASSERT_TRUE(scope.commit());
  }
  {
    compensation_scope scope;
    for (int i = 0; i < 8; ++i) {
      (void)scope.step("s", [i] { return result<int>(i); }, [&counter](const int& v) -> result<void> {
        counter += v;
        if (v == 3) return errc::cancelled;  // a failing undo allocates nothing either
        return sturdy::success();
      });
    }
    const auto report = scope.rollback();
    EXPECT_EQ(report.size(), 8u);
    EXPECT_EQ(report.failed(), 1u);
  }
  EXPECT_EQ(allocs.allocations(), 0u);
  EXPECT_EQ(counter, 8 + 28);
  EXPECT_EQ(sum, 28);
}

TEST(CompensationScopeTest, NinthUndoAllocatesOnceAndStillWorks) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  int counter = 0;
  sturdy::testing::allocation_scope allocs;
  {
    compensation_scope scope;
    for (int i = 0; i < 16; ++i) (void)scope.add([&counter] { ++counter; });
    EXPECT_EQ(allocs.allocations(), 1u);  // one array for 16 entries
  }
  EXPECT_EQ(counter, 16);
}

TEST(CompensationScopeTest, ConstructorsDeduceSinkPolicyAndClock) {
  sturdy::dead_letter_queue dlq;
  sturdy::testing::manual_clock clock;
  test_retry_policy policy{.sleeper = sturdy::testing::recording_sleeper(clock)};
  compensation_scope a;
  static_assert(std::is_same_v<decltype(a), compensation_scope<>>);
  compensation_scope b({.name = "named"});
  static_assert(std::is_same_v<decltype(b), compensation_scope<>>);
  EXPECT_EQ(b.options().name, "named");
  compensation_scope c(dlq);
  static_assert(std::is_same_v<decltype(c), compensation_scope<sturdy::dead_letter_queue>>);
  compensation_scope d(sturdy::null_dead_letter_sink{}, policy, {.stop_at_first_failure = true});
  static_assert(std::is_same_v<decltype(d), compensation_scope<sturdy::null_dead_letter_sink, test_retry_policy>>);
  EXPECT_TRUE(d.options().stop_at_first_failure);
  compensation_scope e(dlq, sturdy::run_once{}, clock);
  static_assert(std::is_same_v<decltype(e), compensation_scope<sturdy::dead_letter_queue, sturdy::run_once,
                                                               sturdy::testing::manual_clock>>);
}

TEST(CompensationScopeTest, UndoReturningAPlainValueCountsAsSuccess) {
  int n = 0;
  {
    compensation_scope scope;
    (void)scope.add([&n] { return ++n; });
    const auto report = scope.rollback();
    EXPECT_TRUE(report.ok());
  }
  EXPECT_EQ(n, 1);
}

TEST(CompensationScopeTest, DefaultScopeIsSmall) {
  // Empty sink, policy and clock take no space beyond the stack itself.
  // (The options own the saga name: one std::string.)
  EXPECT_LE(sizeof(compensation_scope<>), sizeof(sturdy::detail::undo_stack) + sizeof(std::string) + 16);
}

}  // namespace
