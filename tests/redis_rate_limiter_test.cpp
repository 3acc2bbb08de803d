// Tests of sturdy::redis::rate_limiter against a real redis-server
// (STURDY_REDIS_URL, or a private server started on first use):
//   - the Lua script decides exactly like the local decision core, decision
//     by decision over random sequences (client time from a manual clock);
//   - server time: burst, refusal, refill; idle keys expire; NOSCRIPT reload;
//   - unreadable state is corrupt_data; validation names the field;
//     unreachable Redis follows fail_open / fail_closed;
// The fleet tests (two processes, Redis killed mid-run) are in
// redis_rate_limiter_fleet_test.cpp (label slow).
#ifdef STURDY_NO_HIREDIS
#include <gtest/gtest.h>
TEST(RedisRateLimiterTest, NeedsHiredis) { GTEST_SKIP() << "built without hiredis (no sturdy::redis)"; }
#else

#include "sturdy/redis/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/redis_rate_limiter.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::rate_limit_decision;
using sturdy::rate_limit_reason;
using sturdy::time_point;
using sturdy::redis::limiter_store_options;

namespace {

// A raw hiredis connection for poking at keys.
class raw_redis {
 public:
  explicit raw_redis(const std::string& address) {
    auto o = sturdy::redis::with_address(limiter_store_options{}, address);
    if (o.has_value()) c_ = redisConnectWithTimeout(o.value().host.c_str(), o.value().port, timeval{2, 0});
  }
  ~raw_redis() {
    if (c_ != nullptr) redisFree(c_);
  }
  raw_redis(const raw_redis&) = delete;
  raw_redis& operator=(const raw_redis&) = delete;
  // Runs a command; returns the integer reply, or the string reply's length,
  // or -1.
  long long run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> len;
    for (const auto& a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), len.data()));
    long long v = -1;
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) v = r->integer;
    if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS))
      v = static_cast<long long>(r->len);
    if (r != nullptr) freeReplyObject(r);
    return v;
  }

 private:
  redisContext* c_ = nullptr;
};

TEST(RedisRateLimiterTest, ScriptDecidesExactlyLikeTheLocalCore) {
  const std::string address = sturdy::test::required_redis_address();
  std::mt19937_64 gen(16407);
  for (int round = 0; round < 6; ++round) {
    const std::uint64_t rate = std::uniform_int_distribution<std::uint64_t>(1, 50)(gen);
    const std::uint64_t burst = std::uniform_int_distribution<std::uint64_t>(1, 6)(gen);
    const duration period =
        round == 5 ? duration(rate * 3)
                   : duration(std::uniform_int_distribution<std::int64_t>(1'000'000, 3'000'000'000)(gen));
    const sturdy::rate_limiter_options o{.rate = rate, .period = period, .burst = burst};
    // Starts on both sides of the epoch and near the end of the range.
    const std::int64_t starts[] = {0,
                                   -5'000'000'000,
                                   1'700'000'000'000'000'000,
                                   -1'000,
                                   7'000'000'000'000'000'000,
                                   std::numeric_limits<std::int64_t>::min() + 10};
    sturdy::testing::manual_clock clock{time_point(duration(starts[round]))};
    limiter_store_options s =
        sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("diff" + std::to_string(round)));
    s.time = sturdy::redis::time_source::client;
    sturdy::redis::rate_limiter<sturdy::null_listener, sturdy::testing::manual_clock> fleet(o, s, clock);
    sturdy::rate_limiter<sturdy::testing::manual_clock> local(o, clock);
    const std::int64_t T = o.interval().count();
    for (int step = 0; step < 150; ++step) {
      const int kind = std::uniform_int_distribution<int>(0, 3)(gen);
      clock.advance(duration(kind == 0 ? 0 : std::uniform_int_distribution<std::int64_t>(0, 2 * T)(gen)));
      const std::uint64_t n = std::uniform_int_distribution<std::uint64_t>(0, burst + 1)(gen);
      rate_limit_decision want = local.try_acquire(n);
      want.ticket = 0;
      const rate_limit_decision got = fleet.try_acquire("k", n);
      ASSERT_EQ(got, want) << "round " << round << " step " << step << " n " << n << " reason "
                           << to_string(got.reason);
    }
  }
}

TEST(RedisRateLimiterTest, ServerTimeBurstRefusalRefillAndIdleExpiry) {
  const std::string address = sturdy::test::required_redis_address();
  const std::string prefix = sturdy::test::unique_prefix("server");
  sturdy::redis::rate_limiter<> l({.rate = 1, .period = 1h, .burst = 3},
                                  sturdy::test::limiter_store_at(address, prefix));
  for (int i = 0; i < 3; ++i) {
    const auto d = l.try_acquire("tenant");
    ASSERT_TRUE(d.allowed) << to_string(d.reason);
    EXPECT_EQ(d.remaining, static_cast<std::uint64_t>(2 - i));
  }
  const auto no = l.try_acquire("tenant");
  EXPECT_FALSE(no.allowed);
  EXPECT_EQ(no.error(), sturdy::errc::rate_limited);
  EXPECT_GT(no.retry_after, 59min);
  EXPECT_LE(no.retry_after, 1h);
  EXPECT_TRUE(l.try_acquire("other").allowed);  // keys are independent
  // The key lives until the bucket would be full again, no longer.
  raw_redis raw(address);
  const long long pttl = raw.run({"PTTL", l.key_of("tenant")});
  EXPECT_GT(pttl, 3 * 3600 * 1000 - 60'000);
  EXPECT_LE(pttl, 3 * 3600 * 1000);
  // An hour later (this object's view of the server clock): one more.
  l.testing_advance(1h);
  EXPECT_TRUE(l.try_acquire("tenant").allowed);
  EXPECT_FALSE(l.try_acquire("tenant").allowed);
  // A deleted (expired) key is a full bucket.
  raw.run({"DEL", l.key_of("tenant")});
  EXPECT_EQ(l.try_acquire("tenant", 0).remaining, 3u);
  // A short limit's key expires by itself.
  sturdy::redis::rate_limiter<> quick({.rate = 1000, .period = 1s, .burst = 2},
                                      sturdy::test::limiter_store_at(address, prefix));
  ASSERT_TRUE(quick.try_acquire("q").allowed);
  EXPECT_LE(raw.run({"PTTL", quick.key_of("q")}), 2);
  for (int i = 0; i < 200 && raw.run({"EXISTS", quick.key_of("q")}) == 1; ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(raw.run({"EXISTS", quick.key_of("q")}), 0);
}

TEST(RedisRateLimiterTest, PeekAndRequestLargerThanBurst) {
  const std::string address = sturdy::test::required_redis_address();
  sturdy::redis::rate_limiter<> l(
      {.rate = 1, .period = 1h, .burst = 2},
      sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("peek")));
  EXPECT_EQ(l.try_acquire("k", 0).remaining, 2u);
  EXPECT_EQ(l.try_acquire("k", 0).remaining, 2u);  // a peek takes nothing
  const auto big = l.try_acquire("k", 3);
  EXPECT_FALSE(big.allowed);
  EXPECT_EQ(big.reason, rate_limit_reason::exceeds_burst);
  EXPECT_EQ(big.retry_after, duration::max());
  EXPECT_EQ(big.remaining, 2u);
  EXPECT_TRUE(l.try_acquire("k", 2).allowed);
}

TEST(RedisRateLimiterTest, ReloadsTheScriptAfterTheServerForgetsIt) {
  const std::string address = sturdy::test::required_redis_address();
  sturdy::redis::rate_limiter<> l(
      {.rate = 10, .period = 1s, .burst = 5},
      sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("noscript")));
  ASSERT_TRUE(l.try_acquire("k").allowed);
  raw_redis raw(address);
  ASSERT_GE(raw.run({"SCRIPT", "FLUSH"}), 0);
  const auto d = l.try_acquire("k");
  EXPECT_TRUE(d.allowed) << to_string(d.reason);
  EXPECT_EQ(d.remaining, 3u);
}

TEST(RedisRateLimiterTest, UnreadableStateIsCorruptDataNeverFailedOpen) {
  const std::string address = sturdy::test::required_redis_address();
  limiter_store_options s = sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("corrupt"));
  s.on_unavailable = sturdy::redis::failure_mode::fail_open;
  sturdy::testing::recording_listener events;
  sturdy::redis::rate_limiter<sturdy::testing::recording_listener> l({.rate = 10, .period = 1s, .burst = 5},
                                                                     s, {}, events);
  raw_redis raw(address);
  raw.run({"SET", l.key_of("text"), "not a state"});
  raw.run({"HSET", l.key_of("hash"), "f", "v"});
  for (const char* key : {"text", "hash"}) {
    const auto d = l.try_acquire(key);
    EXPECT_FALSE(d.allowed) << key;
    EXPECT_EQ(d.reason, rate_limit_reason::corrupt_data) << key;
    EXPECT_EQ(d.error(), sturdy::errc::corrupt_data);
  }
  ASSERT_EQ(events.count<sturdy::redis_store_failed>(), 2u);
  EXPECT_FALSE(events.of<sturdy::redis_store_failed>()[0].failed_open);
}

TEST(RedisRateLimiterTest, ValidationNamesTheField) {
  limiter_store_options bad;
  bad.pool_size = 0;
  EXPECT_EQ(bad.validation_message(), "redis::limiter_store_options.pool_size must be in [1, 1024]");
  sturdy::testing::recording_listener events;
  sturdy::redis::rate_limiter<sturdy::testing::recording_listener> l({}, bad, {}, events);
  EXPECT_EQ(l.try_acquire("k").reason, rate_limit_reason::invalid_options);
  EXPECT_EQ(l.try_acquire("k").error(), sturdy::errc::invalid_options);
  EXPECT_EQ(l.execute("k", [] { return 1; }).error(), sturdy::errc::invalid_options);
  ASSERT_EQ(events.count<sturdy::options_rejected>(), 1u);
  EXPECT_EQ(events.of<sturdy::options_rejected>()[0].message, bad.validation_message());
  sturdy::redis::rate_limiter<> bad_limit({.burst = 0});
  EXPECT_EQ(bad_limit.try_acquire("k").reason, rate_limit_reason::invalid_options);
}

TEST(RedisRateLimiterTest, UnreachableRedisFollowsTheFailureMode) {
  const int port = sturdy::test::free_loopback_port();  // nothing listens
  for (const auto mode : {sturdy::redis::failure_mode::fail_open, sturdy::redis::failure_mode::fail_closed}) {
    limiter_store_options s = sturdy::test::limiter_store_at("127.0.0.1:" + std::to_string(port), "x:");
    s.on_unavailable = mode;
    sturdy::testing::recording_listener events;
    sturdy::redis::rate_limiter<sturdy::testing::recording_listener> l({}, s, {}, events);
    const auto d = l.try_acquire("k");
    int calls = 0;
    auto r = l.execute("k", [&] { return ++calls; });
    if (mode == sturdy::redis::failure_mode::fail_open) {
      EXPECT_TRUE(d.allowed);
      EXPECT_TRUE(r.has_value());
      EXPECT_EQ(calls, 1);
      EXPECT_TRUE(events.of<sturdy::redis_store_failed>()[0].failed_open);
    } else {
      EXPECT_FALSE(d.allowed);
      EXPECT_EQ(d.reason, rate_limit_reason::store_unavailable);
      EXPECT_EQ(r.error(), sturdy::errc::store_unavailable);
      EXPECT_EQ(calls, 0);
      EXPECT_FALSE(events.of<sturdy::redis_store_failed>()[0].failed_open);
    }
    EXPECT_EQ(l.ping().error(), sturdy::errc::store_unavailable);
  }
}

}  // namespace

#endif  // STURDY_NO_HIREDIS
