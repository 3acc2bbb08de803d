// std::expected support; built as C++23 where the compiler accepts it (see
// outcome_expected_test.cmake). Skipped where the library has no expected.
#include <gtest/gtest.h>

#include "sturdy/outcome.hpp"

namespace {

#if STURDY_HAS_STD_EXPECTED
TEST(OutcomeTraitsExpectedTest, ClassifiesAndBuildsExpected) {
  using E = std::expected<int, std::error_code>;
  auto ok = sturdy::invoke_wrapped([] { return E(4); });
  static_assert(std::is_same_v<decltype(ok), E>);
  EXPECT_TRUE(sturdy::succeeded(ok));
  E bad(std::unexpect, std::make_error_code(std::errc::timed_out));
  EXPECT_FALSE(sturdy::succeeded(bad));
  EXPECT_EQ(sturdy::failure_of(bad).code, std::errc::timed_out);
  auto made = sturdy::make_failure<E>(sturdy::errc::circuit_open);
  ASSERT_FALSE(made.has_value());
  EXPECT_EQ(made.error(), sturdy::errc::circuit_open);
  // An error-code enum as E.
  using E2 = std::expected<int, std::errc>;
  E2 bad2(std::unexpect, std::errc::io_error);
  EXPECT_EQ(sturdy::failure_of(bad2).code, std::errc::io_error);
}
#else
TEST(OutcomeTraitsExpectedTest, ClassifiesAndBuildsExpected) {
  GTEST_SKIP() << "this standard library has no std::expected";
}
#endif

}  // namespace
