#include "sturdy/callback.hpp"

#include <memory>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"

namespace {

bool is_even(int v) { return v % 2 == 0; }

TEST(CallbackTest, EmptyByDefaultAndFromNull) {
  sturdy::callback<bool(int)> a;
  sturdy::callback<bool(int)> b = nullptr;
  bool (*null_fn)(int) = nullptr;
  sturdy::callback<bool(int)> c = null_fn;
  EXPECT_FALSE(a);
  EXPECT_FALSE(b);
  EXPECT_FALSE(c);
  EXPECT_TRUE(a == nullptr);
}

TEST(CallbackTest, CallsFunctionPointersAndCaptureLessLambdas) {
  sturdy::callback<bool(int)> f = &is_even;
  sturdy::callback<bool(int)> by_reference = is_even;  // a function reference: never null
  EXPECT_TRUE(by_reference(2));
  sturdy::callback<bool(int)> g = [](int v) { return v > 10; };
  ASSERT_TRUE(f);
  EXPECT_TRUE(f(4));
  EXPECT_FALSE(f(3));
  EXPECT_TRUE(g(11));
  EXPECT_FALSE(g(1));
}

TEST(CallbackTest, OwnsACapturedSetAndCopiesShareIt) {
  sturdy::callback<bool(int)> copy;
  {
    std::set<int> codes{500, 502, 503};
    sturdy::callback<bool(int)> cb = [codes = std::move(codes)](int s) { return codes.contains(s); };
    copy = cb;
  }  // the original is gone; the copy still owns the set
  EXPECT_TRUE(copy(503));
  EXPECT_FALSE(copy(404));
}

TEST(CallbackTest, SmallCallablesNeverAllocateAndCopiesNeverAllocate) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  int threshold = 7;  // not const: a constant would need no capture (clang -Wunused-lambda-capture)
  sturdy::testing::allocation_scope scope;
  sturdy::callback<bool(int)> small = [threshold](int v) { return v > threshold; };
  sturdy::callback<bool(int)> copy = small;
  EXPECT_TRUE(copy(8));
  EXPECT_EQ(scope.allocations(), 0u);

  std::string big(100, 'x');
  sturdy::callback<bool(int)> large = [big](int v) { return big.size() == static_cast<std::size_t>(v); };
  const auto after_build = scope.allocations();
  EXPECT_GE(after_build, 1u);
  sturdy::callback<bool(int)> large_copy = large;
  EXPECT_TRUE(large_copy(100));
  EXPECT_EQ(scope.allocations(), after_build);
}

bool above_one(int v) { return v > 1; }

// A function named directly (a reference: never null) holds it; a null
// function pointer gives an empty callback. GCC 12 at -O3 warned
// -Wnonnull-compare on the first (the -O3 CI stage compiles this).
TEST(CallbackTest, FunctionReferenceAndFunctionPointers) {
  sturdy::callback<bool(int)> by_name = above_one;
  bool (*null_pointer)(int) = nullptr;
  sturdy::callback<bool(int)> from_null = null_pointer;
  bool (*pointer)(int) = &above_one;
  sturdy::callback<bool(int)> from_pointer = pointer;
  ASSERT_TRUE(by_name);
  EXPECT_TRUE(by_name(2));
  EXPECT_FALSE(from_null);
  ASSERT_TRUE(from_pointer);
  EXPECT_FALSE(from_pointer(1));
}

}  // namespace
