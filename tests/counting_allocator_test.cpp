#include "sturdy/testing/counting_allocator.hpp"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace {

TEST(CountingAllocatorTest, IsInstalledInEveryTestExecutable) {
  EXPECT_TRUE(sturdy::testing::counting_new_installed());
}

TEST(CountingAllocatorTest, DetectsAnAllocation) {
  sturdy::testing::allocation_scope scope;
  auto p = std::make_unique<std::vector<int>>(100);
  sturdy::testing::escape(p.get());
  sturdy::testing::escape(p->data());
  EXPECT_GE(scope.allocations(), 2u);  // the vector object and its buffer
  EXPECT_GE(scope.bytes(), 100 * sizeof(int));
}

TEST(CountingAllocatorTest, ReportsZeroWhereThereIsNone) {
  int buffer[16] = {};
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 16; ++i) buffer[i] = i * i;
  std::string small = "short";  // small-string optimisation: no heap
  EXPECT_EQ(scope.allocations(), 0u);
  EXPECT_EQ(buffer[15], 225);
  EXPECT_EQ(small.size(), 5u);
}

TEST(CountingAllocatorTest, CountsOverAlignedAllocations) {
  struct alignas(128) big {
    char c[128];
  };
  sturdy::testing::allocation_scope scope;
  auto p = std::make_unique<big>();
  sturdy::testing::escape(p.get());
  EXPECT_EQ(scope.allocations(), 1u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p.get()) % 128, 0u);
}

TEST(CountingAllocatorTest, OtherThreadsDoNotPolluteTheCount) {
  sturdy::testing::allocation_scope scope;
  std::uint64_t other = 0;
  {
    // Creating the thread allocates on this thread (its state); measure
    // only what happens while it runs.
    std::thread t([&] {
      sturdy::testing::allocation_scope inner;
      std::vector<int> v(1000);
      sturdy::testing::escape(v.data());
      other = inner.allocations();
    });
    const auto before_join = scope.allocations();
    t.join();
    EXPECT_EQ(scope.allocations(), before_join);
  }
  EXPECT_EQ(other, 1u);
}

}  // namespace
