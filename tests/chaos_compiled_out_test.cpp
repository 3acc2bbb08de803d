// With STURDY_NO_CHAOS defined, every chaos layer calls fn directly: an
// enabled layer with rate 1 injects nothing and counts nothing.
#define STURDY_NO_CHAOS 1
#include "sturdy/chaos.hpp"

#include <gtest/gtest.h>

namespace {

TEST(ChaosCompiledOutTest, EnabledLayerInjectsNothing) {
  sturdy::chaos_policy chaos({.enabled = sturdy::chaos_switch(true), .injection_rate = 1.0},
                             sturdy::chaos_error{sturdy::errc::store_unavailable});
  int called = 0;
  auto r = chaos.execute([&] { return ++called; });
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), 1);
  EXPECT_EQ(chaos.calls(), 0u);
  EXPECT_EQ(chaos.injected(), 0u);
}

}  // namespace
