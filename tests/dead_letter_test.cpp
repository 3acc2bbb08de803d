#include "sturdy/dead_letter.hpp"

#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/error.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

using sturdy::dead_letter_entry;
using sturdy::dead_letter_queue;
using sturdy::errc;
using sturdy::result;

dead_letter_entry make_entry(std::string step, std::error_code code = sturdy::errc::store_unavailable) {
  dead_letter_entry e;
  e.saga = "saga";
  e.step = std::move(step);
  e.code = code;
  return e;
}

TEST(DeadLetterQueueTest, PushAssignsIncreasingIdsAndListsOldestFirst) {
  dead_letter_queue q;
  ASSERT_TRUE(q.push(make_entry("a")));
  ASSERT_TRUE(q.push(make_entry("b")));
  const auto all = q.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, 1u);
  EXPECT_EQ(all[0].step, "a");
  EXPECT_EQ(all[1].id, 2u);
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.accepted(), 2u);
  EXPECT_FALSE(q.empty());
}

TEST(DeadLetterQueueTest, FullQueueRefusesNewEntriesAndCountsThem) {
  dead_letter_queue q({.capacity = 2});
  ASSERT_TRUE(q.push(make_entry("a")));
  ASSERT_TRUE(q.push(make_entry("b")));
  const auto r = q.push(make_entry("c"));
  EXPECT_EQ(r.error(), errc::capacity_exceeded);
  EXPECT_EQ(q.dropped(), 1u);
  const auto all = q.list();
  ASSERT_EQ(all.size(), 2u);  // the oldest are kept, never evicted
  EXPECT_EQ(all[0].step, "a");
  EXPECT_EQ(q.capacity(), 2u);
}

TEST(DeadLetterQueueTest, OptionsValidation) {
  EXPECT_TRUE(sturdy::dead_letter_queue_options{}.validate());
  const sturdy::dead_letter_queue_options zero{.capacity = 0};
  EXPECT_EQ(zero.validate().error(), errc::invalid_options);
  EXPECT_NE(zero.validation_message().find("capacity"), std::string_view::npos);
  EXPECT_TRUE(sturdy::dead_letter_queue_options{}.validation_message().empty());
  // Documented behaviour with invalid options: keeps nothing, drops all.
  dead_letter_queue q(zero);
  EXPECT_EQ(q.push(make_entry("a")).error(), errc::capacity_exceeded);
  EXPECT_EQ(q.dropped(), 1u);
}

TEST(DeadLetterQueueTest, InspectFindsByIdOrReportsNotFound) {
  dead_letter_queue q;
  ASSERT_TRUE(q.push(make_entry("a")));
  ASSERT_TRUE(q.push(make_entry("b")));
  const auto b = q.inspect(2);
  ASSERT_TRUE(b);
  EXPECT_EQ(b.value().step, "b");
  EXPECT_EQ(q.inspect(99).error(), errc::not_found);
  EXPECT_EQ(q.size(), 2u);  // inspect does not remove
}

TEST(DeadLetterQueueTest, DrainRemovesEverythingInOrder) {
  dead_letter_queue q;
  for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(q.push(make_entry(s)));
  const auto drained = q.drain();
  ASSERT_EQ(drained.size(), 3u);
  EXPECT_EQ(drained[0].step, "a");
  EXPECT_EQ(drained[2].step, "c");
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.drain().empty());
  // Ids keep increasing after a drain.
  ASSERT_TRUE(q.push(make_entry("d")));
  EXPECT_EQ(q.list()[0].id, 4u);
}

TEST(DeadLetterQueueTest, DiscardRemovesOne) {
  dead_letter_queue q;
  ASSERT_TRUE(q.push(make_entry("a")));
  ASSERT_TRUE(q.push(make_entry("b")));
  EXPECT_TRUE(q.discard(1));
  EXPECT_EQ(q.discard(1).error(), errc::not_found);
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q.list()[0].step, "b");
}

TEST(DeadLetterQueueTest, ReplaySuccessRemovesEntry) {
  dead_letter_queue q;
  ASSERT_TRUE(q.push(make_entry("a")));
  std::string seen;
  const auto r = q.replay(1, [&](const dead_letter_entry& e) { seen = e.step; });
  EXPECT_TRUE(r);
  EXPECT_EQ(seen, "a");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.replay(1, [](const dead_letter_entry&) {}).error(), errc::not_found);
}

TEST(DeadLetterQueueTest, FailedReplayKeepsEntryInPlaceAndCountsAttempts) {
  dead_letter_queue q;
  for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(q.push(make_entry(s)));
  const auto r1 = q.replay(2, [](const dead_letter_entry&) -> result<void> { return errc::store_unavailable; });
  EXPECT_EQ(r1.error(), errc::compensation_failed);
  const auto r2 = q.replay(2, [](const dead_letter_entry&) -> int { throw std::runtime_error("still down"); });
  EXPECT_EQ(r2.error(), errc::compensation_failed);
  const auto all = q.list();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].id, 2u);  // back in its place
  EXPECT_EQ(all[1].replay_attempts, 2u);
}

TEST(DeadLetterQueueTest, FailedReplayIsNeverLostEvenWhenQueueFilledMeanwhile) {
  dead_letter_queue q({.capacity = 1});
  ASSERT_TRUE(q.push(make_entry("a")));
  const auto r = q.replay(1, [&](const dead_letter_entry&) -> result<void> {
    EXPECT_TRUE(q.push(make_entry("b")));  // the slot freed by the replay is taken
    return errc::store_unavailable;
  });
  EXPECT_FALSE(r);
  const auto all = q.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, "a");
  EXPECT_EQ(all[1].step, "b");
}

TEST(DeadLetterQueueTest, ReplayAllRemovesSuccessesAndKeepsFailuresInOrder) {
  dead_letter_queue q;
  for (const char* s : {"a", "b", "c", "d"}) ASSERT_TRUE(q.push(make_entry(s)));
  const std::size_t ok = q.replay_all([](const dead_letter_entry& e) -> result<void> {
    if (e.step == "b" || e.step == "d") return errc::store_unavailable;
    return sturdy::success();
  });
  EXPECT_EQ(ok, 2u);
  const auto all = q.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, "b");
  EXPECT_EQ(all[1].step, "d");
  EXPECT_EQ(all[0].replay_attempts, 1u);
}

// "An entry is never lost by replaying it" must hold when memory runs out
// too: putting a failed entry back used to insert it into the deque again,
// which may allocate (and throw), with the entry held only by a local. Now
// it moves back into the placeholder it left: nothing to allocate, nothing
// to throw. (Three entries of ~200 bytes fill one and a half 512-byte
// deque nodes, so re-inserting the last one needs a fresh node.)
TEST(DeadLetterQueueTest, PuttingAFailedReplayBackAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  for (std::uint64_t id = 1; id <= 3; ++id) {
    dead_letter_queue q;
    for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(q.push(make_entry(s)));
    const auto fail = [](const dead_letter_entry&) -> result<void> { return errc::store_unavailable; };
    sturdy::testing::allocation_scope scope;
    EXPECT_EQ(q.replay(id, fail).error(), errc::compensation_failed);
    EXPECT_EQ(q.replay_all(fail), 0u);
    EXPECT_EQ(scope.allocations(), 0u) << "id " << id;
    const auto all = q.list();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[id - 1].replay_attempts, 2u);
  }
}

TEST(DeadLetterQueueTest, EntryOutForReplayIsHiddenAndCannotBeTakenTwice) {
  dead_letter_queue q;
  for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(q.push(make_entry(s)));
  const auto r = q.replay(2, [&](const dead_letter_entry& e) -> result<void> {
    EXPECT_EQ(e.step, "b");
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(q.inspect(2).error(), errc::not_found);
    EXPECT_EQ(q.discard(2).error(), errc::not_found);
    EXPECT_EQ(q.replay(2, [](const dead_letter_entry&) {}).error(), errc::not_found);
    // drain() takes the others and leaves this one to its replayer.
    const auto drained = q.drain();
    EXPECT_EQ(drained.size(), 2u);
    EXPECT_TRUE(q.push(make_entry("d")));
    return errc::store_unavailable;
  });
  EXPECT_FALSE(r);
  const auto all = q.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].step, "b");  // back in id order, before the newer entry
  EXPECT_EQ(all[1].step, "d");
  EXPECT_EQ(all[1].id, 4u);
}

TEST(DeadLetterQueueTest, ReplayAllSkipsEntriesPushedMeanwhile) {
  dead_letter_queue q;
  for (const char* s : {"a", "b"}) ASSERT_TRUE(q.push(make_entry(s)));
  std::vector<std::string> seen;
  const std::size_t ok = q.replay_all([&](const dead_letter_entry& e) {
    seen.push_back(e.step);
    (void)q.push(make_entry(e.step + "+"));  // new failures while replaying
  });
  EXPECT_EQ(ok, 2u);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(q.size(), 2u);
}

TEST(DeadLetterEntryTest, DescribeNamesStepErrorAndContext) {
  dead_letter_entry e = make_entry("assign role");
  e.id = 3;
  e.context = "user=42";
  const std::string line = e.describe();
  EXPECT_NE(line.find("#3"), std::string::npos);
  EXPECT_NE(line.find("saga/\"assign role\""), std::string::npos);
  EXPECT_NE(line.find("undo_failed"), std::string::npos);
  EXPECT_NE(line.find(sturdy::message(errc::store_unavailable)), std::string::npos);
  EXPECT_NE(line.find("user=42"), std::string::npos);

  dead_letter_entry x;
  x.step = "s";
  x.exception_text = "boom";
  x.reason = sturdy::dead_letter_reason::undo_skipped;
  EXPECT_NE(x.describe().find("exception: boom"), std::string::npos);
  EXPECT_NE(x.describe().find("undo_skipped"), std::string::npos);
  dead_letter_entry none;
  EXPECT_NE(none.describe().find("no error recorded"), std::string::npos);
}

TEST(DeadLetterEntryTest, ExceptionTextOf) {
  EXPECT_EQ(sturdy::exception_text_of(nullptr), "");
  EXPECT_EQ(sturdy::exception_text_of(std::make_exception_ptr(std::runtime_error("x"))), "x");
  EXPECT_EQ(sturdy::exception_text_of(std::make_exception_ptr(7)), "unknown exception");
}

TEST(NullDeadLetterSinkTest, IsEmptyAcceptsAndDiscards) {
  static_assert(std::is_empty_v<sturdy::null_dead_letter_sink>);
  static_assert(sturdy::sink_discards_entries_v<sturdy::null_dead_letter_sink>);
  sturdy::null_dead_letter_sink sink;
  EXPECT_TRUE(sink.push(make_entry("a")));
}

// A user-defined sink: anything with push(dead_letter_entry&&) -> result<void>.
struct vector_sink {
  std::vector<dead_letter_entry> entries;
  result<void> push(dead_letter_entry&& e) {
    entries.push_back(std::move(e));
    return sturdy::success();
  }
};
static_assert(sturdy::dead_letter_sink<vector_sink>);
static_assert(!sturdy::sink_discards_entries_v<vector_sink>);
static_assert(!sturdy::dead_letter_sink<int>);

}  // namespace
