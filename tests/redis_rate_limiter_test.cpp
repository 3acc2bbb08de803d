// Tests of sturdy::redis::rate_limiter against a real redis-server
// (STURDY_REDIS_URL, or a private server started on first use):
//   - the Lua script decides exactly like the local decision core, decision
//     by decision over random sequences (client time from a manual clock);
//   - server time: burst, refusal, refill; idle keys expire; NOSCRIPT reload;
//   - unreadable state is corrupt_data; validation names the field;
//     unreachable Redis follows fail_open / fail_closed;
//   - acquire: reservations decide exactly like the local core's reserve;
//     it sleeps through the injected sleeper exactly until its turn, within
//     max_wait and the deadline, and is cancellable (manual clock, recording
//     sleeper, client time);
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
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <stop_token>
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

using fleet_limiter = sturdy::redis::rate_limiter<sturdy::testing::recording_listener, sturdy::testing::manual_clock,
                                                  sturdy::testing::recording_sleeper>;

TEST(RedisRateLimiterTest, ReservationsDecideExactlyLikeTheLocalCore) {
  const std::string address = sturdy::test::required_redis_address();
  std::mt19937_64 gen(16408);
  for (int round = 0; round < 4; ++round) {
    const std::uint64_t rate = std::uniform_int_distribution<std::uint64_t>(1, 50)(gen);
    const std::uint64_t burst = std::uniform_int_distribution<std::uint64_t>(1, 6)(gen);
    const sturdy::rate_limiter_options o{.rate = rate, .period = 1s, .burst = burst};
    const std::int64_t starts[] = {0, 1'700'000'000'000'000'000, -5'000'000'000,
                                   std::numeric_limits<std::int64_t>::max() - 3'000'000'000'000};
    sturdy::testing::manual_clock clock{time_point(duration(starts[round]))};
    limiter_store_options s =
        sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("resv" + std::to_string(round)));
    s.time = sturdy::redis::time_source::client;
    // The fleet limiter sleeps on a clock of its own, so that only the test
    // moves the shared one.
    sturdy::testing::manual_clock scratch;
    sturdy::testing::recording_listener events;
    fleet_limiter fleet(o, s, clock, events, sturdy::testing::recording_sleeper(scratch));
    sturdy::rate_limiter<sturdy::testing::manual_clock> local(o, clock);
    const std::int64_t T = o.interval().count();
    for (int step = 0; step < 120; ++step) {
      clock.advance(duration(std::uniform_int_distribution<std::int64_t>(0, 2 * T)(gen)));
      const std::uint64_t n = std::uniform_int_distribution<std::uint64_t>(1, burst + 1)(gen);
      const duration max_wait =
          step % 7 == 0 ? duration::max() : duration(std::uniform_int_distribution<std::int64_t>(0, 4 * T)(gen));
      const sturdy::rate_limit_reservation want = local.reserve(n, max_wait);
      const rate_limit_decision got = fleet.acquire("k", n, max_wait);
      rate_limit_decision expect = want.decision;
      expect.ticket = 0;
      expect.waited = want.wait;
      ASSERT_EQ(got, expect) << "round " << round << " step " << step << " n " << n << " reason "
                             << to_string(got.reason) << " want " << to_string(want.decision.reason);
    }
  }
}

TEST(RedisRateLimiterTest, AcquireSleepsThroughTheSleeperExactlyUntilItsTurn) {
  const std::string address = sturdy::test::required_redis_address();
  limiter_store_options s = sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("acq"));
  s.time = sturdy::redis::time_source::client;
  sturdy::testing::manual_clock clock{time_point(1'700'000'000s)};
  sturdy::testing::recording_sleeper sleeper(clock);
  sturdy::testing::recording_listener events;
  // 10 per second, burst 1: one turn every 100 ms.
  fleet_limiter a({.rate = 10, .period = 1s, .burst = 1}, s, clock, events, sleeper);
  fleet_limiter b({.rate = 10, .period = 1s, .burst = 1}, s, clock, events, sleeper);  // another process
  const auto first = a.acquire("k");
  ASSERT_TRUE(first.allowed) << to_string(first.reason);
  EXPECT_EQ(first.waited, duration::zero());
  EXPECT_EQ(sleeper.count(), 0u);
  // The next turn is 100 ms away: reserved, then slept through the sleeper
  // (which advances the manual clock).
  const auto second = b.acquire("k");
  ASSERT_TRUE(second.allowed) << to_string(second.reason);
  EXPECT_EQ(second.waited, 100ms);
  EXPECT_EQ(sleeper.delays(), std::vector<duration>{100ms});
  // Both reserve before either sleeps: the turns are 100 ms apart, across
  // both limiter objects (one Redis state).
  sturdy::testing::manual_clock frozen{clock.now()};
  sturdy::testing::recording_sleeper no_advance(sturdy::testing::manual_clock{});
  fleet_limiter c({.rate = 10, .period = 1s, .burst = 1}, s, frozen, events, no_advance);
  fleet_limiter d({.rate = 10, .period = 1s, .burst = 1}, s, frozen, events, no_advance);
  EXPECT_EQ(c.acquire("k").waited, 100ms);
  EXPECT_EQ(d.acquire("k").waited, 200ms);
  EXPECT_EQ(c.acquire("k").waited, 300ms);
  // A turn further away than max_wait is refused without reserving or
  // sleeping; retry_after says when it would be admitted at once.
  const auto far = d.acquire("k", 1, 350ms);
  EXPECT_FALSE(far.allowed);
  EXPECT_EQ(far.reason, rate_limit_reason::rate_limited);
  EXPECT_EQ(far.retry_after, 400ms);
  EXPECT_EQ(d.acquire("k", 1, 400ms).waited, 400ms);
  EXPECT_EQ(no_advance.count(), 4u);
  // max_wait 0 and negative: admitted only at once.
  EXPECT_EQ(d.acquire("k", 1, 0ns).reason, rate_limit_reason::rate_limited);
  EXPECT_EQ(d.acquire("k", 1, -1s).reason, rate_limit_reason::rate_limited);
  // n > burst: refused at once, never waits.
  const auto big = d.acquire("k", 2);
  EXPECT_EQ(big.reason, rate_limit_reason::exceeds_burst);
  EXPECT_EQ(big.retry_after, duration::max());
  EXPECT_EQ(no_advance.count(), 4u);
  EXPECT_EQ(events.count<sturdy::rate_limit_rejected>(), 4u);
  EXPECT_EQ(events.count<sturdy::redis_store_failed>(), 0u);
}

TEST(RedisRateLimiterTest, AcquireRespectsTheDeadlineAndCancellation) {
  const std::string address = sturdy::test::required_redis_address();
  limiter_store_options s = sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("acqdl"));
  s.time = sturdy::redis::time_source::client;
  sturdy::testing::manual_clock clock{time_point(1'700'000'000s)};
  sturdy::testing::recording_sleeper sleeper(clock);
  sturdy::testing::recording_listener events;
  fleet_limiter l({.rate = 10, .period = 1s, .burst = 1}, s, clock, events, sleeper);
  ASSERT_TRUE(l.acquire("k").allowed);
  // The turn (100 ms away) is after the deadline: deadline_exceeded, nothing
  // reserved, no sleep.
  const auto late = l.acquire("k", 1, 1s, {}, clock.now() + 50ms);
  EXPECT_FALSE(late.allowed);
  EXPECT_EQ(late.reason, rate_limit_reason::deadline_exceeded);
  EXPECT_EQ(late.error(), sturdy::errc::deadline_exceeded);
  // ...but when max_wait refuses it first, it is rate_limited.
  EXPECT_EQ(l.acquire("k", 1, 20ms, {}, clock.now() + 50ms).reason, rate_limit_reason::rate_limited);
  // A deadline already reached refuses at once, even with a free turn.
  EXPECT_EQ(l.acquire("other", 1, 1s, {}, clock.now()).reason, rate_limit_reason::deadline_exceeded);
  EXPECT_EQ(l.try_acquire("other", 0).remaining, 1u);  // nothing taken
  // A deadline exactly at the turn admits it.
  EXPECT_EQ(l.acquire("k", 1, 1s, {}, clock.now() + 100ms).waited, 100ms);
  EXPECT_EQ(sleeper.count(), 1u);
  // Stop requested before: cancelled, nothing reserved.
  std::stop_source stop;
  stop.request_stop();
  const auto before = l.acquire("k", 1, 1s, stop.get_token());
  EXPECT_EQ(before.reason, rate_limit_reason::cancelled);
  EXPECT_EQ(before.error(), sturdy::errc::cancelled);
  EXPECT_EQ(l.try_acquire("k", 0).retry_after, 100ms);  // the next turn is unchanged
  // Stop requested while sleeping: cancelled; the reserved turn is
  // forfeited (never given to anyone else: admits less, never more).
  std::stop_source mid;
  sleeper.on_sleep([&](duration) { mid.request_stop(); });
  const auto cut = l.acquire("k", 1, 1s, mid.get_token());
  EXPECT_FALSE(cut.allowed);
  EXPECT_EQ(cut.reason, rate_limit_reason::cancelled);
  EXPECT_EQ(sleeper.cancelled_count(), 1u);
  EXPECT_EQ(l.try_acquire("k", 0).retry_after, 200ms);
  EXPECT_EQ(events.count<sturdy::redis_store_failed>(), 0u);
}

TEST(RedisRateLimiterTest, AcquireFollowsTheFailureModeWithoutWaiting) {
  const int port = sturdy::test::free_loopback_port();  // nothing listens
  for (const auto mode : {sturdy::redis::failure_mode::fail_open, sturdy::redis::failure_mode::fail_closed}) {
    limiter_store_options s = sturdy::test::limiter_store_at("127.0.0.1:" + std::to_string(port), "x:");
    s.on_unavailable = mode;
    sturdy::testing::manual_clock clock;
    sturdy::testing::recording_sleeper sleeper(clock);
    sturdy::testing::recording_listener events;
    fleet_limiter l({}, s, clock, events, sleeper);
    const auto d = l.acquire("k", 1, 1s);
    EXPECT_EQ(d.allowed, mode == sturdy::redis::failure_mode::fail_open);
    if (!d.allowed) {
      EXPECT_EQ(d.reason, rate_limit_reason::store_unavailable);
    }
    EXPECT_EQ(sleeper.count(), 0u);
    EXPECT_EQ(events.count<sturdy::redis_store_failed>(), 1u);
    EXPECT_EQ(events.count<sturdy::rate_limit_rejected>(), 0u);
  }
}

TEST(RedisRateLimiterTest, StateIsTwelvePackedBytesWithATtlUntilFull) {
  const std::string address = sturdy::test::required_redis_address();
  limiter_store_options s = sturdy::test::limiter_store_at(address, sturdy::test::unique_prefix("fmt"));
  s.time = sturdy::redis::time_source::client;
  // 1 per hour, burst 2, at t = 1.7e9 s + 5 ns: Z = TAT - tau = now - 2h + 1h.
  sturdy::testing::manual_clock clock{time_point(1'700'000'000s + 5ns)};
  sturdy::redis::rate_limiter<sturdy::null_listener, sturdy::testing::manual_clock> l(
      {.rate = 1, .period = 1h, .burst = 2}, s, clock);
  ASSERT_TRUE(l.try_acquire("k").allowed);
  redisContext* c = redisConnectWithTimeout(s.host.c_str(), s.port, timeval{2, 0});
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", l.key_of("k").data(), l.key_of("k").size()));
  ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_STRING);
  ASSERT_EQ(r->len, 12u);
  std::int64_t sec = 0;
  std::int32_t nsec = 0;
  std::memcpy(&sec, r->str, 8);  // little-endian host (x86-64, arm64)
  std::memcpy(&nsec, r->str + 8, 4);
  EXPECT_EQ(sec, 1'700'000'000 - 3600);
  EXPECT_EQ(nsec, 5);
  freeReplyObject(r);
  // TTL: until full (Z + tau - now = 1 h) plus the client-time slack (1 s).
  r = static_cast<redisReply*>(redisCommand(c, "PTTL %b", l.key_of("k").data(), l.key_of("k").size()));
  ASSERT_TRUE(r != nullptr && r->type == REDIS_REPLY_INTEGER);
  EXPECT_GT(r->integer, 3'600'000 + 1'000 - 60'000);
  EXPECT_LE(r->integer, 3'600'000 + 1'000);
  freeReplyObject(r);
  redisFree(c);
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
