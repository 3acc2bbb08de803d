// Tests of sturdy/deadline_propagation.hpp: grpc-timeout units, the 8-digit
// limit and rounding, the milliseconds header, round trips, and the local
// cap on every deadline read.
#include "sturdy/deadline_propagation.hpp"

#include <chrono>
#include <string_view>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::time_point;

TEST(GrpcTimeoutTest, FormatsInTheFinestUnitThatFitsEightDigits) {
  EXPECT_EQ(sturdy::format_grpc_timeout(duration::zero()).view(), "0n");
  EXPECT_EQ(sturdy::format_grpc_timeout(duration(1)).view(), "1n");
  EXPECT_EQ(sturdy::format_grpc_timeout(duration(99'999'999)).view(), "99999999n");
  EXPECT_EQ(sturdy::format_grpc_timeout(duration(100'000'000)).view(), "100000u");
  EXPECT_EQ(sturdy::format_grpc_timeout(100ms).view(), "100000u");
  EXPECT_EQ(sturdy::format_grpc_timeout(5s).view(), "5000000u");
  EXPECT_EQ(sturdy::format_grpc_timeout(100s).view(), "100000m");
  EXPECT_EQ(sturdy::format_grpc_timeout(100'000s).view(), "100000S");
  EXPECT_EQ(sturdy::format_grpc_timeout(duration::max()).view(), "2562047H");
  EXPECT_EQ(sturdy::format_grpc_timeout(-5s).view(), "0n");
}

TEST(GrpcTimeoutTest, RoundsDownSoTheServerNeverGetsMoreTime) {
  const duration d = 123'456'789'123ns;  // 123.456789123 s: 12 digits of ns
  const auto v = sturdy::format_grpc_timeout(d);
  EXPECT_EQ(v.view(), "123456m");  // 123456789u would be 9 digits
  EXPECT_LE(sturdy::parse_grpc_timeout(v.view()).value(), d);
}

TEST(GrpcTimeoutTest, ParsesEveryUnit) {
  EXPECT_EQ(sturdy::parse_grpc_timeout("100m").value(), 100ms);
  EXPECT_EQ(sturdy::parse_grpc_timeout("5S").value(), 5s);
  EXPECT_EQ(sturdy::parse_grpc_timeout("2M").value(), 2min);
  EXPECT_EQ(sturdy::parse_grpc_timeout("1H").value(), 1h);
  EXPECT_EQ(sturdy::parse_grpc_timeout("7u").value(), 7us);
  EXPECT_EQ(sturdy::parse_grpc_timeout("9n").value(), 9ns);
  EXPECT_EQ(sturdy::parse_grpc_timeout("0n").value(), duration::zero());
  EXPECT_EQ(sturdy::parse_grpc_timeout("99999999H").value(), duration::max());  // saturates
}

TEST(GrpcTimeoutTest, RejectsMalformedValues) {
  for (std::string_view bad : {"", "m", "100", "123456789m", "10x", "-5S", "1 S", "+1S", "1.5S", "S1"}) {
    auto r = sturdy::parse_grpc_timeout(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error(), std::errc::invalid_argument) << bad;
  }
}

TEST(GrpcTimeoutTest, RoundTripsKeepTheBudgetWithinOneUnitAndNeverAbove) {
  const duration samples[] = {duration(1), duration(999), 1ms, 100ms, 1s, 99s, 1h, 10'000h, duration::max() / 2};
  for (const duration d : samples) {
    const duration back = sturdy::parse_grpc_timeout(sturdy::format_grpc_timeout(d).view()).value();
    EXPECT_LE(back, d);
    EXPECT_GE(back, d - d / 100'000 - duration(1)) << d.count();  // a unit is at most 1/10^5 of the value
  }
}

TEST(TimeoutMsTest, FormatsAndParsesMilliseconds) {
  EXPECT_EQ(sturdy::format_timeout_ms(1500us).view(), "1");
  EXPECT_EQ(sturdy::format_timeout_ms(duration::zero()).view(), "0");
  EXPECT_EQ(sturdy::format_timeout_ms(2h).view(), "7200000");
  EXPECT_EQ(sturdy::parse_timeout_ms("250").value(), 250ms);
  EXPECT_EQ(sturdy::parse_timeout_ms("9999999999999999999").value(), duration::max());
  for (std::string_view bad : {"", "-1", "1.5", "12ms", "99999999999999999999"}) {
    EXPECT_FALSE(sturdy::parse_timeout_ms(bad)) << bad;
  }
}

TEST(DeadlineReadTest, NeverLaterThanTheLocalCap) {
  sturdy::testing::manual_clock clock(time_point(100s));
  const auto ref = sturdy::clock_ref::of(clock);
  EXPECT_EQ(sturdy::deadline_from_grpc_timeout("50m", 1s, ref).value().at(), time_point(100s) + 50ms);
  EXPECT_EQ(sturdy::deadline_from_grpc_timeout("5S", 1s, ref).value().at(), time_point(100s) + 1s);
  EXPECT_EQ(sturdy::deadline_from_grpc_timeout("99999999H", 1s, ref).value().at(), time_point(100s) + 1s);
  EXPECT_EQ(sturdy::deadline_from_grpc_timeout("", 2s, ref).value().at(), time_point(100s) + 2s);  // absent
  EXPECT_TRUE(sturdy::deadline_from_grpc_timeout("", duration::max(), ref).value().is_none());
  EXPECT_EQ(sturdy::deadline_from_timeout_ms("30000", 10s, ref).value().at(), time_point(100s) + 10s);
  EXPECT_EQ(sturdy::deadline_from_timeout_ms("30", 10s, ref).value().at(), time_point(100s) + 30ms);
  EXPECT_EQ(sturdy::deadline_from_grpc_timeout("bogus", 1s, ref).error(), std::errc::invalid_argument);
  EXPECT_EQ(sturdy::deadline_from_timeout_ms("1", -1s, ref).error(), sturdy::errc::invalid_options);
  EXPECT_EQ(sturdy::deadline_from_timeout_ms("0", 1s, ref).value().at(), time_point(100s));
}

TEST(DeadlineWriteTest, WritesTheRemainingBudgetOrNothing) {
  sturdy::testing::manual_clock clock;
  const auto d = sturdy::deadline::after(250ms, sturdy::clock_ref::of(clock));
  clock.advance(50ms);
  EXPECT_EQ(sturdy::grpc_timeout_for(d)->view(), "200000u");
  EXPECT_EQ(sturdy::timeout_ms_for(d)->view(), "200");
  clock.advance(1s);
  EXPECT_EQ(sturdy::grpc_timeout_for(d)->view(), "0n");
  EXPECT_FALSE(sturdy::grpc_timeout_for(sturdy::deadline()));
  EXPECT_FALSE(sturdy::timeout_ms_for(sturdy::deadline()));
}

}  // namespace
