#include "sturdy/error.hpp"

#include <set>
#include <string>
#include <system_error>

#include <gtest/gtest.h>

namespace {

constexpr int kFirst = static_cast<int>(sturdy::errc::circuit_open);
constexpr int kLast = static_cast<int>(sturdy::errc::outcome_not_stored);

TEST(ErrcTest, EveryValueHasADistinctNonEmptyMessage) {
  std::set<std::string> seen;
  for (int v = kFirst; v <= kLast; ++v) {
    const std::error_code ec = static_cast<sturdy::errc>(v);
    const std::string msg = ec.message();
    EXPECT_FALSE(msg.empty()) << v;
    EXPECT_NE(msg, "unknown sturdy error") << v;
    EXPECT_TRUE(seen.insert(msg).second) << "duplicate message for " << v << ": " << msg;
  }
  EXPECT_EQ(std::error_code(kLast + 1, sturdy::error_category()).message(), "unknown sturdy error");
}

TEST(ErrcTest, ComparesEqualThroughErrorCode) {
  for (int v = kFirst; v <= kLast; ++v) {
    const auto e = static_cast<sturdy::errc>(v);
    const std::error_code ec = e;
    EXPECT_EQ(ec, e);
    EXPECT_EQ(ec.value(), v);
    EXPECT_EQ(&ec.category(), &sturdy::error_category());
    EXPECT_STREQ(ec.category().name(), "sturdy");
    EXPECT_TRUE(static_cast<bool>(ec));
    for (int w = kFirst; w <= kLast; ++w) {
      if (w != v) {
        EXPECT_NE(ec, static_cast<sturdy::errc>(w));
      }
    }
  }
}

TEST(ErrcTest, MapsToPortableConditions) {
  EXPECT_EQ(std::error_code(sturdy::errc::deadline_exceeded), std::errc::timed_out);
  EXPECT_EQ(std::error_code(sturdy::errc::cancelled), std::errc::operation_canceled);
  EXPECT_EQ(std::error_code(sturdy::errc::invalid_options), std::errc::invalid_argument);
  EXPECT_EQ(std::error_code(sturdy::errc::circuit_open), std::errc::resource_unavailable_try_again);
  EXPECT_NE(std::error_code(sturdy::errc::circuit_open), std::errc::timed_out);
}

sturdy::result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return sturdy::errc::invalid_options;
  return c - '0';
}

sturdy::result<int> sum_two(char a, char b) {
  BOOST_OUTCOME_TRY(auto x, parse_digit(a));
  BOOST_OUTCOME_TRY(auto y, parse_digit(b));
  return x + y;
}

TEST(ResultTest, TryPropagatesTheFirstError) {
  auto ok = sum_two('3', '4');
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok.value(), 7);
  auto bad = sum_two('3', 'x');
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), sturdy::errc::invalid_options);
}

TEST(ResultTest, IsTheStdEditionOfOutcome) {
  static_assert(std::is_same_v<sturdy::result<int>::error_type, std::error_code>,
                "sturdy::result must carry std::error_code, not boost::system::error_code");
  sturdy::result<void> v = sturdy::success();
  EXPECT_TRUE(v);
}

}  // namespace
