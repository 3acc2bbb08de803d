// Unit tests of sturdy/redis/idempotency_store.hpp against a real
// redis-server: the shared store suite (typed tests), the cache over Redis
// (replays, stored errors, value codecs, exceptions), failures of Redis
// itself (nothing listening, a server killed and restarted, a frozen server,
// fail-open), bad stored data written by another program, options.
//
// Redis: `STURDY_REDIS_URL` (host:port; scripts/test.sh sets it), else a
// private redis-server started by the test process. Tests that kill or
// freeze a server start their own on another loopback port. Every store uses
// a key prefix unique to this run.
#ifdef STURDY_NO_HIREDIS
#include <gtest/gtest.h>
TEST(RedisIdempotencyStoreTest, NeedsHiredis) { GTEST_SKIP() << "built without hiredis (no sturdy::redis)"; }
#else

#include "sturdy/redis/idempotency_store.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/idempotency_store_suite.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;
using sturdy::errc;
using sturdy::testing::recording_listener;

namespace {

sturdy::redis::store_options options_for(const std::string& address, const std::string& tag) {
  auto o = sturdy::redis::with_address({}, address);
  EXPECT_TRUE(o.has_value()) << "bad redis address '" << address << "'";
  sturdy::redis::store_options out = o.has_value() ? o.value() : sturdy::redis::store_options{};
  out.key_prefix = sturdy::test::unique_prefix(tag);
  return out;
}

sturdy::redis::store_options test_options(const std::string& tag) {
  const std::string address = sturdy::test::redis_address();
  EXPECT_FALSE(address.empty()) << "no Redis: set STURDY_REDIS_URL or put redis-server on PATH";
  return options_for(address, tag);
}

// A raw hiredis connection: "another program" writing to the same Redis.
class raw_client {
 public:
  explicit raw_client(const std::string& address) {
    auto o = sturdy::redis::with_address({}, address);
    if (o.has_value()) c_ = redisConnectWithTimeout(o.value().host.c_str(), o.value().port, timeval{1, 0});
  }
  ~raw_client() {
    if (c_ != nullptr) redisFree(c_);
  }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  // Runs a command given as binary-safe arguments; the reply as text
  // (integers as decimal), or "ERR:..." / "NIL".
  std::string run(const std::vector<std::string>& args) {
    if (c_ == nullptr || c_->err != 0) return "ERR:not connected";
    std::vector<const char*> argv;
    std::vector<std::size_t> len;
    for (const auto& a : args) {
      argv.push_back(a.data());
      len.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), len.data()));
    if (r == nullptr) return "ERR:io";
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER)
      out = std::to_string(r->integer);
    else if (r->type == REDIS_REPLY_NIL)
      out = "NIL";
    else if (r->type == REDIS_REPLY_ERROR)
      out = "ERR:" + std::string(r->str, r->len);
    else if (r->str != nullptr)
      out = std::string(r->str, r->len);
    freeReplyObject(r);
    return out;
  }

 private:
  redisContext* c_ = nullptr;
};

}  // namespace

// --- The shared store suite --------------------------------------------------

using redis_int_store = sturdy::redis::idempotency_store<int>;

template <>
struct sturdy::test::store_harness<redis_int_store> {
  using value_type = sturdy::outcome<int>;
  redis_int_store* store = nullptr;
  std::unique_ptr<redis_int_store> make() {
    static std::atomic<int> n{0};
    auto s = std::make_unique<redis_int_store>(test_options(sturdy::test::numbered("suite", n.fetch_add(1))));
    store = s.get();
    return s;
  }
  void advance(sturdy::duration d) { store->testing_advance(d); }
  static value_type value(int v) { return value_type(v); }
  static int read(const value_type& v) { return v.value(); }
};

namespace sturdy::test {
using RedisStores = ::testing::Types<redis_int_store>;
INSTANTIATE_TYPED_TEST_SUITE_P(Redis, IdempotencyStoreTest, RedisStores);
}  // namespace sturdy::test

namespace {

// --- The cache over Redis -----------------------------------------------------

TEST(RedisIdempotencyCacheTest, RunsOnceAndReplaysWithOneStoreCallPerReplay) {
  sturdy::redis::idempotency_cache<int> cache({}, test_options("replay"));
  int runs = 0;
  auto first = cache.execute("order-1", sturdy::stable_fingerprint("body"), [&] { return ++runs * 10; });
  ASSERT_TRUE(first.result.has_value());
  EXPECT_EQ(first.result.value(), 10);
  EXPECT_FALSE(first.replayed);
  for (int i = 0; i < 3; ++i) {
    auto again = cache.execute("order-1", sturdy::stable_fingerprint("body"), [&] { return ++runs * 10; });
    ASSERT_TRUE(again.result.has_value());
    EXPECT_EQ(again.result.value(), 10);
    EXPECT_TRUE(again.replayed);
  }
  EXPECT_EQ(runs, 1);
  auto other = cache.execute("order-1", sturdy::stable_fingerprint("another body"), [&] { return ++runs; });
  EXPECT_EQ(other.result.error(), errc::key_mismatch);
  const auto s = cache.stats();
  EXPECT_EQ(s.hits, 3U);
  EXPECT_EQ(s.misses, 1U);
  EXPECT_EQ(s.mismatches, 1U);
  EXPECT_EQ(s.entries, 1U);
}

TEST(RedisIdempotencyCacheTest, TwoStoresOnOnePrefixShareKeysLikeTwoReplicas) {
  const auto opts = test_options("replicas");
  sturdy::redis::idempotency_cache<std::string> a({}, opts);
  sturdy::redis::idempotency_cache<std::string> b({}, opts);
  auto ra = a.execute("k", 1, [] { return std::string("from a\0with nul", 15); });
  auto rb = b.execute("k", 1, [] { return std::string("from b"); });
  ASSERT_TRUE(rb.result.has_value());
  EXPECT_TRUE(rb.replayed);
  EXPECT_EQ(rb.result.value(), std::string("from a\0with nul", 15));
  // Another prefix is another namespace.
  auto other_opts = test_options("replicas-other");
  sturdy::redis::idempotency_cache<std::string> c({}, other_opts);
  EXPECT_FALSE(c.execute("k", 1, [] { return std::string("c"); }).replayed);
}

struct point {
  std::int32_t x;
  double y;
};

}  // namespace

// A plain struct is stored byte for byte only when its author opts in.
template <>
struct sturdy::redis::use_byte_codec<point> : std::true_type {};

namespace {

TEST(RedisIdempotencyCacheTest, TriviallyCopyableAndVoidValuesRoundTrip) {
  sturdy::redis::idempotency_cache<point> points({}, test_options("pod"));
  (void)points.execute("p", 1, [] { return point{7, 2.5}; });
  auto r = points.execute("p", 1, [] { return point{0, 0}; });
  ASSERT_TRUE(r.replayed);
  EXPECT_EQ(r.result.value().x, 7);
  EXPECT_EQ(r.result.value().y, 2.5);

  sturdy::redis::idempotency_cache<void> acks({}, test_options("void"));
  int runs = 0;
  (void)acks.execute("a", 1, [&] { ++runs; });
  auto again = acks.execute("a", 1, [&] { ++runs; });
  EXPECT_TRUE(again.replayed);
  EXPECT_TRUE(again.result.has_value());
  EXPECT_EQ(runs, 1);
}

struct receipt {
  std::string id;
  int cents = 0;
};

}  // namespace

template <>
struct sturdy::redis::codec<receipt> {
  static void encode(const receipt& r, std::string& out) { out += std::to_string(r.cents) + "|" + r.id; }
  static std::optional<receipt> decode(std::string_view in) {
    const auto bar = in.find('|');
    if (bar == std::string_view::npos) return std::nullopt;
    int cents = 0;
    const auto [end, ec] = std::from_chars(in.data(), in.data() + bar, cents);
    if (ec != std::errc() || end != in.data() + bar) return std::nullopt;
    return receipt{std::string(in.substr(bar + 1)), cents};
  }
};

namespace {

TEST(RedisIdempotencyCacheTest, AUserCodecStoresItsType) {
  static_assert(sturdy::redis::serializable<receipt>);
  static_assert(!sturdy::redis::serializable<std::vector<int> >);
  static_assert(!sturdy::redis::serializable<int*>);
  sturdy::redis::idempotency_cache<receipt> cache({}, test_options("codec"));
  (void)cache.execute("r", 1, [] { return receipt{"ch_1", 1250}; });
  auto r = cache.execute("r", 1, [] { return receipt{"ch_2", 0}; });
  ASSERT_TRUE(r.replayed);
  EXPECT_EQ(r.result.value().id, "ch_1");
  EXPECT_EQ(r.result.value().cents, 1250);
}

TEST(RedisIdempotencyCacheTest, CachedErrorCodesReplayWithTheirCategory) {
  const sturdy::idempotency_policy cache_all{.failures = sturdy::failure_caching::cache};
  sturdy::redis::idempotency_cache<int> cache({}, test_options("errors"));
  int runs = 0;
  auto fail_with = [&](std::error_code ec) {
    return [&runs, ec]() -> sturdy::result<int> {
      ++runs;
      return ec;
    };
  };
  (void)cache.execute("generic", 1, cache_all, fail_with(std::make_error_code(std::errc::permission_denied)));
  auto g = cache.execute("generic", 1, cache_all, fail_with({}));
  ASSERT_TRUE(g.replayed);
  EXPECT_EQ(g.result.error(), std::make_error_code(std::errc::permission_denied));
  (void)cache.execute("sturdy", 1, cache_all, fail_with(errc::not_found));
  auto s = cache.execute("sturdy", 1, cache_all, fail_with({}));
  ASSERT_TRUE(s.replayed);
  EXPECT_EQ(s.result.error(), errc::not_found);
  EXPECT_EQ(runs, 2);
}

class private_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "test.private"; }
  std::string message(int) const override { return "private"; }
};

TEST(RedisIdempotencyCacheTest, ErrorsOfUnlistedCategoriesAndExceptionsAreNotCachedButReleased) {
  static const private_category cat;
  const sturdy::idempotency_policy cache_all{.failures = sturdy::failure_caching::cache};
  using cache_t = sturdy::redis::idempotency_cache<int, recording_listener>;
  cache_t cache({}, test_options("uncacheable"));
  int runs = 0;
  auto r1 = cache.execute("priv", 1, cache_all, [&]() -> sturdy::result<int> {
    ++runs;
    return std::error_code(3, cat);
  });
  EXPECT_EQ(r1.result.error(), std::error_code(3, cat));  // the caller still gets it
  auto r2 = cache.execute("priv", 1, cache_all, [&]() -> sturdy::result<int> { return ++runs; });
  EXPECT_FALSE(r2.replayed);  // released, so the retry ran
  EXPECT_EQ(runs, 2);

  EXPECT_THROW(
      (void)cache.execute("throws", 1, cache_all, [&]() -> int { throw std::runtime_error("boom"); }),
      std::runtime_error);
  auto r3 = cache.execute("throws", 1, cache_all, [&] { return 5; });
  EXPECT_FALSE(r3.replayed);
  EXPECT_EQ(r3.result.value(), 5);
  EXPECT_EQ(cache.store().listener().count<sturdy::redis_outcome_not_stored>(), 2U);

  // Listed, the same category is stored and replayed.
  auto opts = test_options("listed");
  opts.error_categories = {&cat};
  sturdy::redis::idempotency_cache<int> listed({}, opts);
  (void)listed.execute("priv", 1, cache_all,
                       [&]() -> sturdy::result<int> { return std::error_code(3, cat); });
  auto r4 = listed.execute("priv", 1, cache_all, [&]() -> sturdy::result<int> { return 1; });
  ASSERT_TRUE(r4.replayed);
  EXPECT_EQ(r4.result.error(), std::error_code(3, cat));
}

TEST(RedisIdempotencyCacheTest, AWaitingDuplicatePollsAndReplaysTheOwnersOutcome) {
  using sturdy::testing::manual_clock;
  using sturdy::testing::recording_sleeper;
  using cache_t = sturdy::idempotency_cache<int, manual_clock, recording_sleeper, sturdy::null_listener,
                                            sturdy::redis::idempotency_store<int> >;
  manual_clock clock;
  recording_sleeper sleeper(clock);
  cache_t cache({.poll_initial = 1ms, .poll_max = 4ms}, test_options("wait"), clock, sleeper);
  auto owner = cache.store().begin("k", 1, 30s).value();
  ASSERT_EQ(owner.status, sturdy::begin_status::acquired);
  int polls = 0;
  sleeper.on_sleep([&](sturdy::duration) {
    if (++polls == 3) {
      ASSERT_TRUE(cache.store().complete("k", owner.token, sturdy::outcome<int>(42), 1h).has_value());
    }
  });
  auto r = cache.execute("k", 1, {.in_flight = sturdy::in_flight_policy::wait}, [] { return 0; });
  ASSERT_TRUE(r.replayed);
  EXPECT_EQ(r.result.value(), 42);
  // Polls doubled from poll_initial up to poll_max.
  ASSERT_GE(sleeper.delays().size(), 3U);
  EXPECT_EQ(sleeper.delays()[0], sturdy::duration(1ms));
  EXPECT_EQ(sleeper.delays()[1], sturdy::duration(2ms));
  EXPECT_EQ(sleeper.delays()[2], sturdy::duration(4ms));
  // Rejecting duplicates answer in_progress at once.
  auto owner2 = cache.store().begin("k2", 1, 30s).value();
  (void)owner2;
  EXPECT_EQ(cache.execute("k2", 1, [] { return 0; }).result.error(), errc::in_progress);
}

// --- Redis itself failing ------------------------------------------------------

TEST(RedisIdempotencyFailureTest, NothingListeningIsStoreUnavailableAndNothingRuns) {
  using store_t = sturdy::redis::idempotency_store<int, recording_listener>;
  auto opts = options_for(sturdy::test::numbered("127.0.0.1:", sturdy::test::free_loopback_port()), "down");
  sturdy::redis::idempotency_cache<int, recording_listener> cache({}, opts);
  int runs = 0;
  auto r = cache.execute("k", 1, [&] { return ++runs; });
  EXPECT_EQ(r.result.error(), errc::store_unavailable);
  EXPECT_EQ(runs, 0);
  store_t& store = cache.store();
  EXPECT_EQ(store.ping().error(), errc::store_unavailable);
  const auto events = store.listener().of<sturdy::redis_store_failed>();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].error, errc::store_unavailable);
  EXPECT_FALSE(events[0].failed_open);
  EXPECT_EQ(store.stats().entries, 0U);
}

TEST(RedisIdempotencyFailureTest, FailOpenRunsTheWorkWithoutIdempotencyAndSaysSo) {
  auto opts = options_for(sturdy::test::numbered("127.0.0.1:", sturdy::test::free_loopback_port()), "open");
  opts.on_unavailable = sturdy::redis::failure_mode::fail_open;
  sturdy::redis::idempotency_cache<int, recording_listener> cache({}, opts);
  int runs = 0;
  auto r1 = cache.execute("k", 1, [&] { return ++runs; });
  auto r2 = cache.execute("k", 1, [&] { return ++runs; });
  EXPECT_EQ(r1.result.value(), 1);
  EXPECT_EQ(r2.result.value(), 2);  // no idempotency while Redis is away
  EXPECT_FALSE(r2.replayed);
  const auto events = cache.store().listener().of<sturdy::redis_store_failed>();
  ASSERT_EQ(events.size(), 2U);
  EXPECT_TRUE(events[0].failed_open);
  EXPECT_EQ(events[0].operation, "begin");
  // The null token is only the fail-open run's: a fail-closed store refuses it.
  sturdy::redis::idempotency_store<int> closed(test_options("null-token"));
  EXPECT_EQ(closed.complete("k", sturdy::fencing_token{0}, sturdy::outcome<int>(1), 1h).error(),
            errc::stale_token);
  EXPECT_EQ(closed.abandon("k", sturdy::fencing_token{0}).error(), errc::stale_token);
}

TEST(RedisIdempotencyFailureTest, KilledAndRestartedRedisFailsClearlyThenServesAndRunsNoKeyTwice) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start()) << "redis-server must be on PATH";
  auto opts = options_for(server.address(), "restart");
  opts.connect_timeout = 100ms;
  opts.command_timeout = 200ms;
  sturdy::redis::idempotency_cache<int> cache({}, opts);
  std::vector<int> runs(20, 0);
  auto call = [&](int key) {
    return cache.execute(sturdy::test::numbered("key-", key), 1,
                         [&runs, key] { return ++runs[key] + key * 100; });
  };
  for (int k = 0; k < 10; ++k) ASSERT_TRUE(call(k).result.has_value());
  for (int k = 0; k < 10; ++k) EXPECT_TRUE(call(k).replayed);

  server.kill();
  for (int k = 10; k < 20; ++k) EXPECT_EQ(call(k).result.error(), errc::store_unavailable) << k;
  EXPECT_EQ(call(0).result.error(), errc::store_unavailable);  // replays too: fail closed

  ASSERT_TRUE(server.start());
  for (int attempt = 0; attempt < 3; ++attempt) {
    for (int k = 10; k < 20; ++k) {
      auto r = call(k);
      ASSERT_TRUE(r.result.has_value()) << r.result.error().message();
      EXPECT_EQ(r.result.value(), 1 + k * 100);
      EXPECT_EQ(r.replayed, attempt > 0);
    }
  }
  for (int k = 0; k < 20; ++k) EXPECT_EQ(runs[k], 1) << "key " << k;
}

TEST(RedisIdempotencyFailureTest, TokensKeepIncreasingAcrossARestartThatLostTheData) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  sturdy::redis::idempotency_store<int> store(options_for(server.address(), "tokens"));
  auto before = store.begin("k", 1, 30s).value();
  server.kill();
  ASSERT_TRUE(server.start());
  // The pooled connection died with the server: replaced, not an error.
  auto begun = store.begin("k", 1, 30s);
  ASSERT_TRUE(begun.has_value()) << begun.error().message();
  auto after = begun.value();  // the data is gone: acquired again
  ASSERT_EQ(after.status, sturdy::begin_status::acquired);
  EXPECT_GT(after.token, before.token);
  // So the pre-restart owner cannot complete over the new run.
  EXPECT_EQ(store.complete("k", before.token, sturdy::outcome<int>(1), 1h).error(), errc::stale_token);
}

TEST(RedisIdempotencyFailureTest, AFrozenServerTimesOutInsteadOfHanging) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  auto opts = options_for(server.address(), "frozen");
  opts.command_timeout = 100ms;
  sturdy::redis::idempotency_store<int> store(opts);
  ASSERT_TRUE(store.ping().has_value());
  server.pause();
  EXPECT_EQ(store.begin("k", 1, 30s).error(), errc::store_unavailable);
  server.resume();
  // The timed-out begin may still have run on the server once it thawed:
  // then "k" is in progress under a lease nobody holds (a takeover frees it).
  auto b = store.begin("k", 1, 30s);  // a fresh connection
  ASSERT_TRUE(b.has_value()) << b.error().message();
  EXPECT_TRUE(b.value().status == sturdy::begin_status::acquired ||
              b.value().status == sturdy::begin_status::in_progress);
  auto other = store.begin("other", 1, 30s);
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other.value().status, sturdy::begin_status::acquired);
}

// The deliberate timing test: a frozen server with many more callers than
// connections. Before the pool wait was bounded, callers queued for a
// connection while every holder timed out in turn: the 64th caller of a
// 2-connection pool waited ~32 command timeouts (3.2 s here). Now every call
// fails within pool_wait + connect + 2 x command timeout (0.4 s here); the
// assertion allows 1 s more for a loaded machine and sanitizers.
TEST(RedisIdempotencyFailureTest, AFrozenServerFailsEveryCallWithinTheTimeoutsHoweverManyThreadsQueue) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  auto opts = options_for(server.address(), "frozen-queue");
  opts.connect_timeout = 100ms;
  opts.command_timeout = 100ms;
  opts.pool_wait_timeout = 100ms;
  opts.pool_size = 2;
  sturdy::redis::idempotency_store<int> store(opts);
  ASSERT_TRUE(store.ping().has_value());
  server.pause();
  constexpr int threads = 64;
  std::vector<std::error_code> errors(threads);
  std::vector<std::chrono::steady_clock::duration> took(threads);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      const auto start = std::chrono::steady_clock::now();
      auto b = store.begin(sturdy::test::numbered("k", i), 1, 30s);
      took[i] = std::chrono::steady_clock::now() - start;
      errors[i] = b.has_value() ? std::error_code() : b.error();
    });
  }
  for (auto& t : pool) t.join();
  server.resume();
  const auto bound = opts.pool_wait_timeout + opts.connect_timeout + 2 * opts.command_timeout + 1s;
  for (int i = 0; i < threads; ++i) {
    EXPECT_EQ(errors[i], errc::store_unavailable) << i;
    EXPECT_LT(took[i], bound) << i << " took "
                              << std::chrono::duration_cast<std::chrono::milliseconds>(took[i]).count()
                              << " ms";
  }
  // Thawed, the same store serves again.
  auto b = store.begin("after", 1, 30s);
  ASSERT_TRUE(b.has_value()) << b.error().message();
}

// A fake server that answers the handshake at once, then sends its reply to
// the next command one byte every 30 ms. A socket receive timeout of
// command_timeout (50 ms) per recv() would accept that reply after ~200 ms;
// command_timeout bounds the whole reply, so the call fails.
TEST(RedisIdempotencyFailureTest, CommandTimeoutBoundsAWholeReplyNotEachRecv) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t addr_len = sizeof(addr);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &addr_len), 0);
  std::thread fake([listener] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    auto read_until = [fd](std::string_view needle, int count) {
      std::string in;
      char buf[4096];
      for (;;) {
        std::size_t seen = 0;
        for (std::size_t at = in.find(needle); at != std::string::npos; at = in.find(needle, at + 1)) ++seen;
        if (seen >= static_cast<std::size_t>(count)) return true;
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) return false;
        in.append(buf, static_cast<std::size_t>(n));
      }
    };
    if (read_until("LOAD", 3)) {  // the three SCRIPT LOADs: three "SHA1s"
      const std::string sha = "$40\r\n" + std::string(40, 'a') + "\r\n";
      const std::string replies = sha + sha + sha;
      (void)::send(fd, replies.data(), replies.size(), MSG_NOSIGNAL);
      if (read_until("PING", 1)) {
        for (const char ch : std::string_view("+PONG\r\n")) {
          std::this_thread::sleep_for(30ms);
          if (::send(fd, &ch, 1, MSG_NOSIGNAL) != 1) break;
        }
      }
    }
    ::close(fd);
  });
  auto opts = options_for(sturdy::test::numbered("127.0.0.1:", ntohs(addr.sin_port)), "trickle");
  opts.command_timeout = 50ms;
  sturdy::redis::idempotency_store<int> store(opts);
  EXPECT_EQ(store.ping().error(), errc::store_unavailable);
  fake.join();
  ::close(listener);
}

TEST(RedisIdempotencyFailureTest, AFlushedScriptCacheFallsBackToEval) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  sturdy::redis::idempotency_store<int> store(options_for(server.address(), "noscript"));
  auto b = store.begin("k", 1, 30s).value();
  raw_client raw(server.address());
  ASSERT_EQ(raw.run({"SCRIPT", "FLUSH"}), "OK");
  ASSERT_TRUE(store.complete("k", b.token, sturdy::outcome<int>(9), 1h).has_value());
  auto r = store.begin("k", 1, 30s).value();
  ASSERT_EQ(r.status, sturdy::begin_status::completed);
  EXPECT_EQ(r.value->value(), 9);
}

// --- Misconfiguration is not an outage ------------------------------------------
//
// A wrong or missing password, or a database index the server does not have,
// is errc::invalid_options, even with fail_open: classified as
// store_unavailable, a password typo would silently turn idempotency off.

TEST(RedisMisconfigurationTest, AWrongOrMissingPasswordIsInvalidOptionsAndNeverFailsOpen) {
  sturdy::test::redis_server server({"--requirepass", "s3cret"});
  ASSERT_TRUE(server.start());
  for (const std::string password : {"typo", ""}) {
    SCOPED_TRACE("password '" + password + "'");
    auto opts = options_for(server.address(), "auth");
    opts.password = password;
    opts.on_unavailable = sturdy::redis::failure_mode::fail_open;
    sturdy::redis::idempotency_cache<int, recording_listener> cache({}, opts);
    int runs = 0;
    auto r = cache.execute("k", 1, [&] { return ++runs; });
    ASSERT_FALSE(r.result.has_value());
    EXPECT_EQ(r.result.error(), errc::invalid_options);
    EXPECT_EQ(runs, 0);  // not failed open
    auto& store = cache.store();
    EXPECT_EQ(store.begin("k", 1, 30s).error(), errc::invalid_options);
    EXPECT_EQ(store.complete("k", sturdy::fencing_token{5}, sturdy::outcome<int>(1), 1h).error(),
              errc::invalid_options);
    EXPECT_EQ(store.abandon("k", sturdy::fencing_token{5}).error(), errc::invalid_options);
    EXPECT_EQ(store.ping().error(), errc::invalid_options);
    const auto events = store.listener().of<sturdy::redis_store_failed>();
    ASSERT_FALSE(events.empty());
    for (const auto& e : events) {
      EXPECT_EQ(e.error, errc::invalid_options);
      EXPECT_FALSE(e.failed_open);
    }
  }
  // The right password works.
  auto opts = options_for(server.address(), "auth-ok");
  opts.password = "s3cret";
  sturdy::redis::idempotency_cache<int> cache({}, opts);
  ASSERT_TRUE(cache.store().ping().has_value());
  auto r = cache.execute("k", 1, [] { return 7; });
  ASSERT_TRUE(r.result.has_value()) << r.result.error().message();
  EXPECT_EQ(r.result.value(), 7);
}

TEST(RedisMisconfigurationTest, APasswordForAServerWithoutOneIsInvalidOptions) {
  auto opts = test_options("needless-auth");
  if (std::getenv("STURDY_REDIS_URL") != nullptr) GTEST_SKIP() << "the shared server may have a password";
  opts.password = "unexpected";
  opts.on_unavailable = sturdy::redis::failure_mode::fail_open;
  sturdy::redis::idempotency_store<int> store(opts);
  EXPECT_EQ(store.begin("k", 1, 30s).error(), errc::invalid_options);
}

TEST(RedisMisconfigurationTest, ADatabaseIndexTheServerLacksIsInvalidOptions) {
  auto opts = test_options("bad-db");
  opts.database = 100000;  // valid as an option; redis-server has 16 by default
  opts.on_unavailable = sturdy::redis::failure_mode::fail_open;
  sturdy::redis::idempotency_store<int, recording_listener> store(opts);
  EXPECT_EQ(store.begin("k", 1, 30s).error(), errc::invalid_options);
  EXPECT_EQ(store.ping().error(), errc::invalid_options);
  const auto events = store.listener().of<sturdy::redis_store_failed>();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].error, errc::invalid_options);
  EXPECT_FALSE(events[0].failed_open);
}

TEST(RedisMisconfigurationTest, ServerRepliesAreClassified) {
  using sturdy::redis::detail::classify_error_reply;
  using sturdy::redis::detail::classify_setup_error;
  EXPECT_EQ(classify_error_reply("NOAUTH Authentication required."), errc::invalid_options);
  EXPECT_EQ(classify_error_reply("WRONGPASS invalid username-password pair or user is disabled."),
            errc::invalid_options);
  EXPECT_EQ(classify_error_reply("NOPERM this user has no permissions to run the 'evalsha' command"),
            errc::invalid_options);
  EXPECT_EQ(classify_error_reply("LOADING Redis is loading the dataset in memory"), errc::store_unavailable);
  EXPECT_EQ(classify_error_reply("OOM command not allowed when used memory > 'maxmemory'."),
            errc::store_unavailable);
  EXPECT_EQ(classify_error_reply("WRONGTYPE Operation against a key holding the wrong kind of value"),
            errc::corrupt_data);
  EXPECT_EQ(classify_setup_error("ERR DB index is out of range"), errc::invalid_options);
  EXPECT_EQ(classify_setup_error("ERR AUTH <password> called without any password configured for the default "
                                 "user. Are you sure your configuration is correct?"),
            errc::invalid_options);
  EXPECT_EQ(classify_setup_error("LOADING Redis is loading the dataset in memory"), errc::store_unavailable);
  EXPECT_EQ(classify_setup_error("BUSY Redis is busy running a script."), errc::store_unavailable);
}

// --- Bad stored data ---------------------------------------------------------------

class RedisCorruptDataTest : public ::testing::Test {
 protected:
  RedisCorruptDataTest() : store_(test_options("corrupt")), raw_(sturdy::test::redis_address()) {}
  std::string key(std::string_view k) { return store_.entry_key(k); }
  void expect_corrupt(std::string_view k) {
    auto b = store_.begin(k, 1, 30s);
    ASSERT_FALSE(b.has_value());
    EXPECT_EQ(b.error(), errc::corrupt_data);
  }
  sturdy::redis::idempotency_store<int> store_;
  raw_client raw_;
};

TEST_F(RedisCorruptDataTest, AKeyOfAnotherTypeIsCorruptData) {
  ASSERT_EQ(raw_.run({"SET", key("str"), "hello"}), "OK");
  expect_corrupt("str");
  EXPECT_EQ(store_.complete("str", sturdy::fencing_token{1}, sturdy::outcome<int>(1), 1h).error(),
            errc::corrupt_data);
  EXPECT_EQ(store_.abandon("str", sturdy::fencing_token{1}).error(), errc::corrupt_data);
  EXPECT_EQ(raw_.run({"GET", key("str")}), "hello");  // never overwritten
}

TEST_F(RedisCorruptDataTest, AForeignHashIsCorruptDataAndLeftAlone) {
  ASSERT_EQ(raw_.run({"HSET", key("hash"), "name", "someone else's"}), "1");
  expect_corrupt("hash");
  EXPECT_EQ(raw_.run({"HGET", key("hash"), "name"}), "someone else's");
}

TEST_F(RedisCorruptDataTest, UnreadableFieldsAreCorruptData) {
  const std::string far = "99999999999999";
  ASSERT_EQ(raw_.run({"HSET", key("state"), "s", "zz", "f", "1", "t", "5", "d", far}), "4");
  expect_corrupt("state");
  ASSERT_EQ(raw_.run({"HSET", key("deadline"), "s", "c", "f", "1", "t", "5", "d", "soon", "v", "S1v"}), "5");
  expect_corrupt("deadline");
  ASSERT_EQ(raw_.run({"HSET", key("novalue"), "s", "c", "f", "1", "t", "5", "d", far}), "4");
  expect_corrupt("novalue");
}

TEST_F(RedisCorruptDataTest, UndecodableValuesAreCorruptData) {
  const std::string far = "99999999999999";
  const std::vector<std::pair<std::string, std::string> > bad = {
      {"garbage", "not ours"},
      {"short", std::string("S1v\x01\x02", 5)},  // an int needs 4 bytes
      {"long", std::string("S1v\x01\x02\x03\x04\x05", 8)},
      {"tag", std::string("S1x\x01\x02\x03\x04", 7)},
      {"category", std::string("S1eno.such.category\0"
                               "5",
                               21)},
      {"errvalue", std::string("S1egeneric\0"
                               "x",
                               12)},
      {"empty", ""},
  };
  for (const auto& [name, value] : bad) {
    ASSERT_EQ(raw_.run({"HSET", key(name), "s", "c", "f", "1", "t", "5", "d", far, "v", value}), "5");
    SCOPED_TRACE(name);
    expect_corrupt(name);
  }
  // Through the cache: the caller gets corrupt_data and the work never runs.
  sturdy::redis::idempotency_cache<int> cache({}, store_.options());
  int runs = 0;
  EXPECT_EQ(cache.execute("garbage", 1, [&] { return ++runs; }).result.error(), errc::corrupt_data);
  EXPECT_EQ(runs, 0);
}

// The counter has no TTL, so an allkeys-* policy may evict it: harmless.
TEST_F(RedisCorruptDataTest, ALostTokenCounterIsHarmlessTokensStillIncrease) {
  const std::string seq = store_.options().key_prefix + "seq";
  auto before = store_.begin("a", 1, 30s).value();
  EXPECT_EQ(raw_.run({"PTTL", seq}), "-1");  // no TTL (and the docs say so)
  ASSERT_EQ(raw_.run({"DEL", seq}), "1");    // as an eviction would
  auto after = store_.begin("b", 1, 30s).value();
  EXPECT_GT(after.token, before.token);
  EXPECT_TRUE(store_.complete("a", before.token, sturdy::outcome<int>(1), 1h).has_value());
}

TEST_F(RedisCorruptDataTest, ATokenCounterThatIsNotANumberIsCorruptData) {
  ASSERT_EQ(raw_.run({"SET", store_.options().key_prefix + "seq", "abc"}), "OK");
  expect_corrupt("fresh");
}

// --- Hardening I: the byte codec (issue 12, item 2) -------------------------------

struct holds_pointer {
  const char* name;
  int n;
};
struct plain_pair {
  int a;
  int b;
};
enum class color : std::uint8_t { red = 1, green = 2 };

// On main the trivially-copyable codec stored string_view, span and structs
// holding pointers: raw addresses that another replica would replay.
TEST(RedisIdempotencyCacheTest, Issue12_TheByteCodecTakesOnlyArithmeticEnumsAndOptedInTypes) {
  using sturdy::redis::serializable;
  static_assert(serializable<int> && serializable<double> && serializable<bool> && serializable<char>);
  static_assert(serializable<color> && serializable<std::string> && serializable<void>);
  static_assert(serializable<point>);  // opted in above
  static_assert(!serializable<std::string_view>);
  static_assert(!serializable<std::span<const int> >);
  static_assert(!serializable<holds_pointer>);
  static_assert(!serializable<plain_pair>);  // trivially copyable, but not opted in
  static_assert(!serializable<const char*>);
  static_assert(!serializable<int*>);

  sturdy::redis::idempotency_cache<color> colors({}, test_options("enum"));
  (void)colors.execute("c", 1, [] { return color::green; });
  auto r = colors.execute("c", 1, [] { return color::red; });
  ASSERT_TRUE(r.replayed);
  EXPECT_EQ(r.result.value(), color::green);
  sturdy::redis::idempotency_cache<bool> flags({}, test_options("bool"));
  (void)flags.execute("f", 1, [] { return true; });
  EXPECT_TRUE(flags.execute("f", 1, [] { return false; }).result.value());
}

// On main a byte other than 0 or 1 was memcpy'd into a bool: undefined
// behaviour (UBSan: "load of value 2, which is not a valid value for type
// 'bool'").
TEST_F(RedisCorruptDataTest, Issue12_BytesThatAreNoValidBoolAreCorruptDataAndAnyEnumClassValueReadsBack) {
  const std::string far = "99999999999999";
  sturdy::redis::idempotency_store<bool> bools(store_.options());
  ASSERT_EQ(
      raw_.run({"HSET", key("b2"), "s", "c", "f", "1", "t", "5", "d", far, "v", std::string("S1v\x02", 4)}),
      "5");
  auto b = bools.begin("b2", 1, 30s);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error(), errc::corrupt_data);
  ASSERT_EQ(
      raw_.run({"HSET", key("b1"), "s", "c", "f", "1", "t", "5", "d", far, "v", std::string("S1v\x01", 4)}),
      "5");
  EXPECT_TRUE(bools.begin("b1", 1, 30s).value().value->value());

  // Every value of a scoped enum's underlying type is a value of the enum.
  sturdy::redis::idempotency_store<color> colors(store_.options());
  ASSERT_EQ(
      raw_.run({"HSET", key("c77"), "s", "c", "f", "1", "t", "5", "d", far, "v", std::string("S1v\x4d", 4)}),
      "5");
  EXPECT_EQ(static_cast<int>(colors.begin("c77", 1, 30s).value().value->value()), 77);
}

// --- Hardening I: exactly-once when storing throws (issue 12, item 3) ------------

}  // namespace

template <>
struct sturdy::redis::codec<sturdy::test::fragile> {
  static void encode(const sturdy::test::fragile& f, std::string& out) {
    if (sturdy::test::fragile::encode_fails) throw std::length_error("encode failed");
    out += std::to_string(f.v);
  }
  static std::optional<sturdy::test::fragile> decode(std::string_view in) {
    int v = 0;
    const auto [end, ec] = std::from_chars(in.data(), in.data() + in.size(), v);
    if (ec != std::errc() || end != in.data() + in.size()) return std::nullopt;
    return sturdy::test::fragile(v);
  }
};

namespace {

// Fails on main before the fix: the codec's (or the copy's) exception
// escaped execute() with the key in progress, and once the lease ran out a
// duplicate ran the work again.
TEST(RedisIdempotencyCacheTest, Issue12_AThrowingCodecOrCopyFencesTheKeyAndTheWorkNeverRunsTwice) {
  using sturdy::test::fragile;
  using cache_t = sturdy::redis::idempotency_cache<fragile, recording_listener>;
  for (const bool codec_throws : {true, false}) {
    SCOPED_TRACE(codec_throws ? "throwing codec" : "throwing copy");
    recording_listener events;
    cache_t cache({.ttl = 1h, .lease = 10s}, test_options(codec_throws ? "codec-throws" : "copy-throws"),
                  sturdy::steady_clock_source(), sturdy::thread_sleeper(), events);
    int runs = 0;
    auto work = [&] { return fragile(++runs * 100); };
    auto first = [&] {
      fragile::failing storing(codec_throws ? fragile::encode_fails : fragile::copy_fails);
      return cache.execute("k", 1, work);
    }();
    ASSERT_TRUE(first.result.has_value());
    EXPECT_EQ(first.result.value().v, 100);
    auto lost = events.of<sturdy::idempotency_outcome_not_stored>();
    ASSERT_EQ(lost.size(), 1U);
    EXPECT_TRUE(lost[0].fenced);
    cache.store().testing_advance(11s);  // past the lease
    auto again = cache.execute("k", 1, work);
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.result.error(), errc::outcome_not_stored);
    EXPECT_EQ(runs, 1);
  }
}

// --- Hardening I: every duration option at 0, 1 ns and max (issue 12, item 7) --

class detail_listener {
 public:
  void operator()(const sturdy::redis_store_failed& e) const {
    std::lock_guard lock(state_->mu);
    state_->details.emplace_back(e.detail);
  }
  std::vector<std::string> details() const {
    std::lock_guard lock(state_->mu);
    return state_->details;
  }

 private:
  struct state {
    std::mutex mu;
    std::vector<std::string> details;
  };
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

// connect_timeout and command_timeout: 0 invalid; 1 ns a bound no round trip
// can meet (the call fails with store_unavailable; connecting is bounded at
// hiredis's resolution, 1 ms); max: no bound. pool_wait_timeout: 0 does not
// wait; max waits as long as it takes (on main, `now + max` overflowed and
// a caller facing a busy pool failed at once).
TEST(RedisIdempotencyFailureTest, Issue12_EveryDurationOptionAtZeroOneNanosecondAndMax) {
  const sturdy::duration zero{0}, one{1}, max = sturdy::duration::max();
  auto with = [](auto set) {
    auto o = test_options("durations");
    set(o);
    return o;
  };
  using opts = sturdy::redis::store_options;
  // Zero.
  EXPECT_EQ(with([&](opts& o) { o.connect_timeout = zero; }).validation_message(),
            "redis::store_options.connect_timeout must be > 0");
  EXPECT_EQ(with([&](opts& o) { o.command_timeout = zero; }).validation_message(),
            "redis::store_options.command_timeout must be > 0");
  EXPECT_TRUE(with([&](opts& o) { o.pool_wait_timeout = zero; }).validation_message().empty());
  // One nanosecond: no reply arrives within 1 ns.
  {
    sturdy::redis::idempotency_store<int> s(with([&](opts& o) { o.command_timeout = one; }));
    EXPECT_EQ(s.begin("k", 1, 30s).error(), errc::store_unavailable);
  }
  {
    sturdy::redis::idempotency_store<int> s(with([&](opts& o) { o.connect_timeout = one; }));
    auto b = s.begin("k1", 1, 30s);  // loopback may connect within hiredis's 1 ms
    EXPECT_TRUE(b.has_value() || b.error() == errc::store_unavailable);
  }
  // Max everywhere, and the store's own arguments (lease, ttl) at 1 ns and max.
  {
    sturdy::redis::idempotency_store<int> s(with([&](opts& o) {
      o.connect_timeout = max;
      o.command_timeout = max;
      o.pool_wait_timeout = max;
    }));
    EXPECT_EQ(s.begin("k", 1, zero).error(), errc::invalid_options);
    auto b = s.begin("k", 1, max);
    ASSERT_TRUE(b.has_value()) << b.error().message();
    s.testing_advance(std::chrono::hours(24 * 365 * 100));
    EXPECT_EQ(s.begin("k", 1, one).value().status, sturdy::begin_status::in_progress);
    EXPECT_EQ(s.complete("k", b.value().token, 1, zero).error(), errc::invalid_options);
    ASSERT_TRUE(s.complete("k", b.value().token, 1, max).has_value());
    s.testing_advance(max);  // saturates
    EXPECT_EQ(s.begin("k", 1, one).value().status, sturdy::begin_status::completed);
    auto shortlived = s.begin("k2", 1, one);
    ASSERT_TRUE(shortlived.has_value());
    ASSERT_TRUE(s.complete("k2", shortlived.value().token, 1, one).has_value());  // 1 ns: 1 ms
  }
  // pool_wait_timeout = max with the only connection busy: the second
  // caller waits for it instead of failing at once.
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  auto o = options_for(server.address(), "pool-wait-max");
  o.pool_size = 1;
  o.command_timeout = 200ms;
  o.connect_timeout = 200ms;
  o.pool_wait_timeout = max;
  detail_listener seen;
  sturdy::redis::idempotency_store<int, detail_listener> s(o, seen);
  ASSERT_TRUE(s.ping().has_value());
  server.pause();
  std::vector<std::thread> callers;
  std::vector<std::error_code> errors(2);
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([&, i] {
      auto b = s.begin(sturdy::test::numbered("busy", i), 1, 30s);
      errors[static_cast<std::size_t>(i)] = b.has_value() ? std::error_code() : b.error();
    });
  }
  for (auto& t : callers) t.join();
  server.resume();
  for (const auto& e : errors) EXPECT_EQ(e, errc::store_unavailable);
  for (const std::string& d : seen.details()) EXPECT_EQ(d.find("pool_wait_timeout"), std::string::npos) << d;
  EXPECT_TRUE(s.begin("after", 1, 30s).has_value());
}

// --- Hardening II: start-up check (issue 13, item 6) ----------------------------

TEST(RedisStoreOptionsTest, Issue13_MakeIdempotencyCacheChecksTheOptionsAndDeducesTheListener) {
  recording_listener events;
  auto made = sturdy::redis::make_idempotency_cache<int>({}, test_options("make"), events);
  ASSERT_TRUE(made.has_value());
  auto cache = std::move(made).value();
  EXPECT_EQ(cache->execute("k", 1, [] { return 4; }).result.value(), 4);
  EXPECT_EQ(events.count<sturdy::idempotency_executed>(), 1U);

  auto bad = test_options("make-bad");
  bad.pool_size = 0;
  EXPECT_EQ(sturdy::redis::make_idempotency_cache<int>({}, bad, events).error(), errc::invalid_options);
  EXPECT_EQ(sturdy::redis::make_idempotency_cache<int>({.ttl = 0s}, test_options("x"), events).error(),
            errc::invalid_options);
  auto why = events.of<sturdy::options_rejected>();
  ASSERT_EQ(why.size(), 2U);
  EXPECT_EQ(why[0].primitive, "redis::idempotency_cache");
  EXPECT_EQ(why[0].message, "redis::store_options.pool_size must be in [1, 1024]");
  EXPECT_EQ(why[1].message, "idempotency_options.ttl must be > 0");

  // A cache built anyway refuses every call, once reporting why.
  sturdy::redis::idempotency_cache<int, recording_listener> refused({}, bad, sturdy::steady_clock_source(),
                                                                    sturdy::thread_sleeper(), events);
  EXPECT_EQ(refused.validation_message(), "redis::store_options.pool_size must be in [1, 1024]");
  EXPECT_EQ(refused.execute("k", 1, [] { return 1; }).result.error(), errc::invalid_options);
  EXPECT_EQ(events.of<sturdy::options_rejected>().size(), 3U);
}

// --- Options -------------------------------------------------------------------------

TEST(RedisStoreOptionsTest, EveryBadFieldIsNamedAndRefused) {
  using sturdy::redis::store_options;
  EXPECT_TRUE(store_options{}.validate().has_value());
  const std::vector<store_options> bad = {
      {.host = ""},
      {.port = 0},
      {.connect_timeout = 0s},
      {.command_timeout = -1ms},
      {.pool_size = 0},
      {.pool_size = 2000},
      {.pool_wait_timeout = -1ms},
      {.on_unavailable = static_cast<sturdy::redis::failure_mode>(7)},
      {.database = -1},
      {.error_categories = {nullptr}},
  };
  for (const auto& o : bad) {
    EXPECT_EQ(o.validate().error(), errc::invalid_options) << o.validation_message();
    EXPECT_FALSE(o.validation_message().empty());
    sturdy::redis::idempotency_store<int> store(o);
    EXPECT_EQ(store.begin("k", 1, 1s).error(), errc::invalid_options);
    EXPECT_EQ(store.complete("k", sturdy::fencing_token{1}, sturdy::outcome<int>(1), 1s).error(),
              errc::invalid_options);
    EXPECT_EQ(store.abandon("k", sturdy::fencing_token{1}).error(), errc::invalid_options);
  }
  sturdy::redis::idempotency_store<int> store(test_options("opts"));
  EXPECT_EQ(store.begin("k", 1, 0s).error(), errc::invalid_options);
  EXPECT_EQ(store.complete("k", sturdy::fencing_token{1}, sturdy::outcome<int>(1), -1s).error(),
            errc::invalid_options);
}

TEST(RedisStoreOptionsTest, WithAddressParsesHostAndPort) {
  auto a = sturdy::redis::with_address({}, "127.0.0.1:16379");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a.value().host, "127.0.0.1");
  EXPECT_EQ(a.value().port, 16379);
  auto v6 = sturdy::redis::with_address({}, "[::1]:6380");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6.value().host, "::1");
  for (const char* bad : {"", "host", ":1", "host:", "host:0", "host:65536", "host:12x", "host:-1"}) {
    EXPECT_EQ(sturdy::redis::with_address({}, bad).error(), errc::invalid_options) << bad;
  }
}

TEST(RedisStoreOptionsTest, DatabaseAndKeyPrefixPlaceTheEntries) {
  auto opts = test_options("db");
  opts.database = 3;
  sturdy::redis::idempotency_store<int> store(opts);
  auto b = store.begin("k", 1, 30s).value();
  ASSERT_TRUE(store.complete("k", b.token, sturdy::outcome<int>(1), 1h).has_value());
  raw_client raw(sturdy::test::redis_address());
  ASSERT_EQ(raw.run({"SELECT", "3"}), "OK");
  EXPECT_EQ(raw.run({"HGET", opts.key_prefix + "k:k", "s"}), "c");
  const std::string pttl = raw.run({"PTTL", opts.key_prefix + "k:k"});
  EXPECT_GT(std::stoll(pttl), 3'000'000);  // the TTL is Redis's expiry too
  EXPECT_LE(std::stoll(pttl), 3'600'000);
}

}  // namespace

#endif  // STURDY_NO_HIREDIS
