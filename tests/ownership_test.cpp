#include "sturdy/ownership.hpp"

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace {

struct blob_view {
  const std::byte* data;
  std::size_t size;
};
struct blob {
  std::vector<std::byte> bytes;
};

}  // namespace

template <>
struct sturdy::is_non_owning<blob_view> : std::true_type {};

namespace {

int plain_function(int v) { return v; }

TEST(OwnershipTest, ViewsAndObjectPointersAreNonOwning) {
  static_assert(sturdy::non_owning<std::string_view>);
  static_assert(sturdy::non_owning<const std::string_view&>);
  static_assert(sturdy::non_owning<std::wstring_view>);
  static_assert(sturdy::non_owning<std::span<const int>>);
  static_assert(sturdy::non_owning<std::span<blob, 3>>);
  static_assert(sturdy::non_owning<int*>);
  static_assert(sturdy::non_owning<const char*>);
  static_assert(sturdy::non_owning<blob*>);
  static_assert(sturdy::non_owning<std::reference_wrapper<blob>>);
  static_assert(sturdy::non_owning<blob_view>);  // the user's opt-in
  SUCCEED();
}

TEST(OwnershipTest, OwningTypesAndFunctionPointersAreAccepted) {
  static_assert(!sturdy::non_owning<std::string>);
  static_assert(!sturdy::non_owning<int>);
  static_assert(!sturdy::non_owning<blob>);
  static_assert(!sturdy::non_owning<std::vector<int>>);
  static_assert(!sturdy::non_owning<std::unique_ptr<int>>);
  static_assert(!sturdy::non_owning<decltype(&plain_function)>);
  EXPECT_EQ(plain_function(3), 3);
}

}  // namespace
