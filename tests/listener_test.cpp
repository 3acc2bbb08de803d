#include "sturdy/listener.hpp"

#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "sturdy/testing/recording_listener.hpp"

namespace {

struct event_a {
  int v;
};
struct event_b {
  std::string s;
};

struct only_a {
  int* seen;
  void operator()(const event_a& e) const { *seen += e.v; }
};

struct throwing {
  void operator()(const event_a&) const { throw std::runtime_error("listener bug"); }
};

TEST(ListenerTest, NullListenerIsEmptyAndTakesEverything) {
  static_assert(std::is_empty_v<sturdy::null_listener>);
  static_assert(sturdy::listener_for<sturdy::null_listener, event_a>);
  sturdy::null_listener l;
  sturdy::emit(l, event_a{1});
  sturdy::emit(l, event_b{"x"});
  SUCCEED();
}

TEST(ListenerTest, EventsAListenerCannotTakeAreSkipped) {
  int seen = 0;
  only_a l{&seen};
  static_assert(!sturdy::listener_for<only_a, event_b>);
  sturdy::emit(l, event_a{2});
  sturdy::emit(l, event_b{"ignored"});
  EXPECT_EQ(seen, 2);
}

TEST(ListenerTest, ExceptionsFromListenersAreSwallowed) {
  throwing l;
  EXPECT_NO_THROW(sturdy::emit(l, event_a{1}));
}

TEST(RecordingListenerTest, RecordsInOrderAndFiltersByType) {
  sturdy::testing::recording_listener rec;
  auto copy = rec;  // the primitive's copy
  sturdy::emit(copy, event_a{1});
  sturdy::emit(copy, event_b{"two"});
  sturdy::emit(copy, event_a{3});
  EXPECT_EQ(rec.size(), 3u);
  EXPECT_EQ(rec.count<event_a>(), 2u);
  ASSERT_EQ(rec.of<event_b>().size(), 1u);
  EXPECT_EQ(rec.of<event_b>()[0].s, "two");
  EXPECT_EQ(rec.of<event_a>()[1].v, 3);
  EXPECT_EQ(rec.types()[1], std::type_index(typeid(event_b)));
  rec.clear();
  EXPECT_EQ(copy.size(), 0u);
}

}  // namespace
