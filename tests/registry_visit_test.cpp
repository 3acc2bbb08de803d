// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// registry::visit: every entry's key and primitive, no handle copied (an
// entry visited stays evictable), nothing allocated.
#include <map>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/registry.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

TEST(RegistryVisitTest, VisitsEveryEntryWithItsKeyAndPrimitive) {
  sturdy::registry<sturdy::circuit_breaker<>> reg({.options_for = [](std::string_view key) {
    return sturdy::circuit_breaker_options{.consecutive_failure_threshold = static_cast<std::uint32_t>(key.size())};
  }});
  for (const char* k : {"a", "bb", "ccc"}) ASSERT_TRUE(reg.get(k));
  std::map<std::string, std::uint32_t> seen;
  reg.visit([&](std::string_view key, const sturdy::circuit_breaker<>& b) {
    seen[std::string(key)] = b.options().consecutive_failure_threshold;
  });
  EXPECT_EQ(seen, (std::map<std::string, std::uint32_t>{{"a", 1}, {"bb", 2}, {"ccc", 3}}));
}

TEST(RegistryVisitTest, CopiesNoHandleAndAllocatesNothing) {
  sturdy::registry<sturdy::circuit_breaker<>> reg({.max_entries = 1});
  ASSERT_TRUE(reg.get("a"));
  std::size_t visited = 0;
  {
    sturdy::testing::allocation_scope scope;
    reg.visit([&](std::string_view, const sturdy::circuit_breaker<>&) { ++visited; });
    EXPECT_EQ(scope.allocations(), 0U);
  }
  EXPECT_EQ(visited, 1u);
  EXPECT_TRUE(reg.get("b")) << "a visited entry stays evictable";
  EXPECT_EQ(reg.stats().evictions, 1u);
}

}  // namespace
