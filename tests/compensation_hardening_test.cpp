// Regression tests for the compensation items of "Hardening I" (issue 12:
// step and scope names are owned; undo_with around an undo that takes no
// argument) and "Hardening II" (issue 13: a const policy, `{}` options).
// Names here are longer than a small-string buffer, so a dangling view would
// read freed heap memory: ASan reports it.
#include "sturdy/compensation.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::compensation_scope;
using sturdy::errc;
using sturdy::result;

// Copies what it is told, so the test can compare after the scope is gone.
struct name_log {
  std::vector<std::string>* seen;
  void operator()(const sturdy::compensation_step_failed& e) const {
    seen->push_back(std::string(e.saga) + "|" + std::string(e.step));
  }
  void operator()(const auto&) const {}
};

TEST(CompensationOwnershipTest, Issue12_NamesBuiltAtRunTimeOutliveTheirTemporaries) {
  const std::string user = "a-user-with-a-long-identifier";
  sturdy::dead_letter_queue dlq;
  std::vector<std::string> seen;
  sturdy::compensation_report report;
  {
    compensation_scope saga(dlq, sturdy::run_once{}, sturdy::testing::manual_clock(), name_log{&seen},
                            {.name = std::string("onboard-") + user});
    (void)saga.step(std::string("create ") + user, [] { return result<int>(1); },
                    []() -> result<void> { return errc::store_unavailable; });
    const sturdy::step_info info{.name = std::string("assign role to ") + user,
                                 .context = std::string("user=") + user};
    (void)saga.step(info, [] { return 2; }, []() -> result<void> { return errc::cancelled; });
    (void)saga.add(std::string("notify ") + user, [] {});
    report = saga.rollback();
  }
  ASSERT_EQ(report.size(), 3u);
  EXPECT_EQ(report[0].name, "notify " + user);
  EXPECT_EQ(report[1].name, "assign role to " + user);
  EXPECT_EQ(report[1].context, "user=" + user);
  EXPECT_EQ(report[2].name, "create " + user);
  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].saga, "onboard-" + user);
  EXPECT_EQ(entries[0].step, "assign role to " + user);
  EXPECT_EQ(entries[1].step, "create " + user);
  EXPECT_NE(entries[1].describe().find("onboard-" + user + "/\"create " + user + "\""), std::string::npos);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], "onboard-" + user + "|create " + user);
}

TEST(CompensationOwnershipTest, Issue12_TheDestructorsRollbackReadsOwnedNames) {
  const std::string user = "another-user-with-a-long-name";
  sturdy::dead_letter_queue dlq;
  {
    compensation_scope saga(dlq, {.name = std::string("onboard-") + user});
    (void)saga.step(std::string("create ") + user, [] { return result<int>(1); },
                    [](const int&) -> result<void> { return errc::store_unavailable; });
  }  // rolled back here, long after both temporaries died
  const auto entries = dlq.list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].saga, "onboard-" + user);
  EXPECT_EQ(entries[0].step, "create " + user);
}

// A policy with state (so it is held by reference) whose execute is const.
struct counting_policy {
  int* calls;
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) const {
    ++*calls;
    return sturdy::invoke_wrapped(std::forward<F>(fn));
  }
};

TEST(CompensationPolicyTest, Issue12_UndoWithAroundAnUndoThatTakesNoArgumentAfterAValue) {
  int policy_calls = 0;
  const counting_policy policy{&policy_calls};
  int undone = 0;
  int value_seen = 0;
  {
    compensation_scope saga;
    auto r = saga.step([] { return result<int>(42); }, sturdy::undo_with(policy, [&] { ++undone; }));
    ASSERT_TRUE(r);
    EXPECT_EQ(r.value(), 42);
    // The value-taking form keeps working.
    (void)saga.step([] { return 7; }, sturdy::undo_with(policy, [&](const int& v) { value_seen = v; }));
  }
  EXPECT_EQ(undone, 1);
  EXPECT_EQ(value_seen, 7);
  EXPECT_EQ(policy_calls, 2);
}

TEST(CompensationPolicyTest, Issue13_AConstPolicyIsAccepted) {
  int policy_calls = 0;
  const counting_policy policy{&policy_calls};
  sturdy::dead_letter_queue dlq;
  {
    compensation_scope saga(dlq, policy);
    static_assert(std::is_same_v<decltype(saga), compensation_scope<sturdy::dead_letter_queue, counting_policy>>);
    (void)saga.add("a", [] {});
  }
  EXPECT_EQ(policy_calls, 1);

  // The library's own retry_policy, declared const as the docs do.
  sturdy::testing::manual_clock clock;
  const sturdy::retry_policy<sturdy::backoff, sturdy::testing::manual_clock, sturdy::testing::recording_sleeper>
      retry({.max_attempts = 3}, clock, sturdy::testing::recording_sleeper(clock));
  int attempts = 0;
  {
    compensation_scope saga(dlq, retry, {.name = "const-retry"});
    (void)saga.add("flaky", [&]() -> result<void> {
      return ++attempts < 3 ? result<void>(errc::store_unavailable) : sturdy::success();
    });
  }
  EXPECT_EQ(attempts, 3);
  EXPECT_TRUE(dlq.empty());
}

TEST(CompensationPolicyTest, Issue13_EmptyBracesMeanDefaultOptions) {
  sturdy::dead_letter_queue dlq;
  int undone = 0;
  {
    compensation_scope saga(dlq, {});
    static_assert(std::is_same_v<decltype(saga), compensation_scope<sturdy::dead_letter_queue>>);
    (void)saga.add([&] { ++undone; });
    compensation_scope<> plain(sturdy::null_dead_letter_sink{}, {});
    (void)plain.add([&] { ++undone; });
  }
  EXPECT_EQ(undone, 2);
}

}  // namespace
