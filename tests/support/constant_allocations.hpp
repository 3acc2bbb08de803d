// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// Test support: the "allocations reach a constant" check of the async tests.
#ifndef STURDY_TESTS_SUPPORT_CONSTANT_ALLOCATIONS_HPP_
#define STURDY_TESTS_SUPPORT_CONSTANT_ALLOCATIONS_HPP_

#include <cstdint>
#include <cstdio>

#include <gtest/gtest.h>

namespace sturdy::testing {

// Runs `one` (one operation, returning the allocations it made) three times.
// The first may fill per-thread caches (Asio's recycling allocator); the
// later ones must allocate the same amount, and no more than the first.
// Prints both counts (the docs quote them). Returns the steady count.
template <class F>
std::uint64_t expect_constant_allocations(const char* what, F&& one) {
  const std::uint64_t first = one();
  const std::uint64_t second = one();
  const std::uint64_t third = one();
  EXPECT_EQ(second, third) << what;
  EXPECT_LE(second, first) << what;
  std::printf("%s allocations: first call %llu, later calls %llu each\n", what,
              static_cast<unsigned long long>(first), static_cast<unsigned long long>(second));
  return second;
}

}  // namespace sturdy::testing

#endif  // STURDY_TESTS_SUPPORT_CONSTANT_ALLOCATIONS_HPP_
