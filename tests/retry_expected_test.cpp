// Retry over std::expected; built as C++23 where the compiler accepts it
// (see retry_expected_test.cmake). Skipped where the library has no expected.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <system_error>

#include "sturdy/retry.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

#if STURDY_HAS_STD_EXPECTED
// A typed error with a server hint, found through ADL on std::expected's E.
struct api_error {
  int code;
  std::int64_t pushback_ms;
};
std::error_code sturdy_to_error_code(const api_error& e) { return {e.code, std::generic_category()}; }
api_error sturdy_from_error_code(std::error_code ec, std::type_identity<api_error>) { return {ec.value(), 0}; }
sturdy::retry_hint sturdy_retry_hint(const api_error& e) { return sturdy::retry_hint::from_pushback_ms(e.pushback_ms); }

TEST(RetryExpectedTest, RetriesExpectedAndReturnsTheLastError) {
  using E = std::expected<int, std::error_code>;
  sturdy::testing::manual_clock clock;
  sturdy::testing::recording_sleeper sleeper(clock);
  std::mt19937_64 gen(1);
  int calls = 0;
  auto r = sturdy::retry(sturdy::retry_options{.max_attempts = 3}, [&]() -> E {
    ++calls;
    return std::unexpected(std::make_error_code(calls == 3 ? std::errc::io_error : std::errc::timed_out));
  }, gen, clock, sleeper);
  static_assert(std::is_same_v<decltype(r), E>);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), std::errc::io_error);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(sleeper.count(), 2u);
}

TEST(RetryExpectedTest, HintsFromTheErrorValueAndSturdyErrorsInside) {
  using E = std::expected<int, api_error>;
  sturdy::testing::manual_clock clock;
  sturdy::testing::recording_sleeper sleeper(clock);
  std::mt19937_64 gen(1);
  int calls = 0;
  auto r = sturdy::retry(sturdy::retry_options{.max_attempts = 5}, [&]() -> E {
    if (++calls == 1) return std::unexpected(api_error{14, 300});
    return 8;
  }, gen, clock, sleeper);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(sleeper.delays().at(0), std::chrono::milliseconds(300));
  std::stop_source stop;
  stop.request_stop();
  auto c = sturdy::retry(sturdy::retry_options{}, [&]() -> E { return 1; }, gen, clock, sleeper, stop.get_token());
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code, static_cast<int>(sturdy::errc::cancelled));
}
#else
TEST(RetryExpectedTest, SkippedWithoutStdExpected) { GTEST_SKIP() << "no std::expected"; }
#endif

}  // namespace
