// Unit tests of sturdy/idempotency.hpp: the store suite instantiated for the
// in-memory store, then the cache front (policies, expiry, leases, bounds,
// validation, events). Time moves only through manual_clock; waiting
// duplicates "sleep" through recording_sleeper.
#include "sturdy/idempotency.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/adapters/absl_status.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_listener.hpp"
#include "sturdy/testing/recording_sleeper.hpp"
#include "support/idempotency_store_suite.hpp"

using namespace std::chrono_literals;
using sturdy::errc;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_listener;
using sturdy::testing::recording_sleeper;

// --- The store suite, for the in-memory store -------------------------------

using memory_store = sturdy::memory_idempotency_store<sturdy::outcome<int>, manual_clock>;
using small_memory_store = memory_store;  // same type; one shard variant below

template <>
struct sturdy::test::store_harness<memory_store> {
  using value_type = sturdy::outcome<int>;
  manual_clock clock;
  std::unique_ptr<memory_store> make() {
    return std::make_unique<memory_store>(sturdy::memory_store_options{.shards = 4, .max_entries = 1024},
                                          clock);
  }
  void advance(sturdy::duration d) { clock.advance(d); }
  static value_type value(int v) { return value_type(v); }
  static int read(const value_type& v) { return v.value(); }
};

using Stores = ::testing::Types<memory_store>;
namespace sturdy::test {
INSTANTIATE_TYPED_TEST_SUITE_P(Memory, IdempotencyStoreTest, Stores);
}  // namespace sturdy::test

namespace {

// --- The cache front ---------------------------------------------------------

using cache_t = sturdy::idempotency_cache<int, manual_clock, recording_sleeper, recording_listener>;

struct fixture {
  manual_clock clock;
  recording_sleeper sleeper{clock};
  recording_listener events;
  std::unique_ptr<cache_t> make(sturdy::idempotency_options o = {},
                                sturdy::memory_store_options s = {.shards = 4, .max_entries = 1024}) {
    return std::make_unique<cache_t>(std::move(o), s, clock, sleeper, events);
  }
};

sturdy::idempotency_policy waiting(sturdy::duration timeout = 10s) {
  return {.in_flight = sturdy::in_flight_policy::wait, .wait_timeout = timeout};
}

TEST(IdempotencyCacheTest, FirstCallRunsAndLaterCallsReplayMarkedAsReplayed) {
  fixture f;
  auto cache = f.make();
  int runs = 0;
  auto fn = [&] { return ++runs * 10; };
  auto first = cache->execute("k", 1, fn);
  ASSERT_TRUE(first.result.has_value());
  EXPECT_EQ(first.result.value(), 10);
  EXPECT_FALSE(first.replayed);
  for (int i = 0; i < 3; ++i) {
    auto again = cache->execute("k", 1, fn);
    ASSERT_TRUE(again.result.has_value());
    EXPECT_EQ(again.result.value(), 10);
    EXPECT_TRUE(again.replayed);
  }
  EXPECT_EQ(runs, 1);
  const auto s = cache->stats();
  EXPECT_EQ(s.misses, 1U);
  EXPECT_EQ(s.hits, 3U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_executed>(), 1U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_replayed>(), 3U);
}

TEST(IdempotencyCacheTest, KeysAreValidatedBeforeAnythingRuns) {
  fixture f;
  auto cache = f.make({.max_key_length = 8});
  int runs = 0;
  auto fn = [&] { return ++runs; };
  EXPECT_EQ(cache->execute("", 1, fn).result.error(), errc::missing_key);
  EXPECT_EQ(cache->execute("123456789", 1, fn).result.error(), errc::invalid_key);
  EXPECT_TRUE(cache->execute("12345678", 1, fn).result.has_value());
  EXPECT_EQ(runs, 1);
  auto rejected = f.events.of<sturdy::idempotency_rejected>();
  ASSERT_EQ(rejected.size(), 2U);
  EXPECT_EQ(rejected[0].reason, errc::missing_key);
  EXPECT_EQ(rejected[1].reason, errc::invalid_key);
}

TEST(IdempotencyCacheTest, DefaultKeyLimitIs255Bytes) {
  sturdy::idempotency_cache<int> cache;
  EXPECT_TRUE(cache.execute(std::string(255, 'k'), 1, [] { return 1; }).result.has_value());
  EXPECT_EQ(cache.execute(std::string(256, 'k'), 1, [] { return 1; }).result.error(), errc::invalid_key);
}

TEST(IdempotencyCacheTest, FingerprintMismatchNeverRunsFn) {
  fixture f;
  auto cache = f.make();
  int runs = 0;
  (void)cache->execute("k", 1, [&] { return ++runs; });
  auto r = cache->execute("k", 2, [&] { return ++runs; });
  EXPECT_EQ(r.result.error(), errc::key_mismatch);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(cache->stats().mismatches, 1U);
}

TEST(IdempotencyCacheTest, AnotherPayloadCannotTakeOverACrashedOwnersKey) {
  fixture f;
  auto cache = f.make({.lease = 5s});
  auto crashed = cache->store().begin("k", 1, 5s).value();  // A (fp 1) crashes mid-work
  f.clock.advance(6s);
  int runs = 0;
  auto other = cache->execute("k", 2, [&] { return ++runs; });  // B reuses the key: 422
  EXPECT_EQ(other.result.error(), errc::key_mismatch);
  EXPECT_EQ(runs, 0);
  auto retry = cache->execute("k", 1, [&] { return ++runs; });  // A's retry takes over
  EXPECT_EQ(retry.result.value(), 1);
  EXPECT_EQ(cache->stats().takeovers, 1U);
  (void)crashed;
}

TEST(IdempotencyCacheTest, RejectPolicyReturnsInProgressWhileTheFirstCallRuns) {
  fixture f;
  auto cache = f.make();
  int inner_runs = 0;
  auto outer = cache->execute("k", 1, [&] {
    auto inner = cache->execute("k", 1, [&] { return ++inner_runs; });
    EXPECT_EQ(inner.result.error(), errc::in_progress);
    EXPECT_EQ(inner.result.error(), std::errc::operation_in_progress);
    return 7;
  });
  EXPECT_EQ(outer.result.value(), 7);
  EXPECT_EQ(inner_runs, 0);
  EXPECT_EQ(cache->stats().rejections, 1U);
  EXPECT_EQ(f.sleeper.count(), 0U);  // rejecting never waits
}

TEST(IdempotencyCacheTest, WaitPolicyGivesUpAfterTheWaitTimeout) {
  fixture f;
  auto cache = f.make();
  auto owner = cache->store().begin("k", 1, 30s);
  ASSERT_EQ(owner.value().status, sturdy::begin_status::acquired);
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(5s), [&] { return ++runs; });
  EXPECT_EQ(r.result.error(), errc::wait_timeout);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(f.sleeper.total(), sturdy::duration(5s));
  const auto s = cache->stats();
  EXPECT_EQ(s.waits, 1U);
  EXPECT_EQ(s.wait_timeouts, 1U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_waiting>(), 1U);
}

TEST(IdempotencyCacheTest, WaitPolicyWakesWhenTheOwnerCompletesAndReplays) {
  fixture f;
  auto cache = f.make();
  auto owner = cache->store().begin("k", 1, 30s).value();
  f.sleeper.on_sleep([&](sturdy::duration) {
    ASSERT_TRUE(cache->store().complete("k", owner.token, sturdy::outcome<int>(99), 1h).has_value());
  });
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(), [&] { return ++runs; });
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.result.value(), 99);
  EXPECT_TRUE(r.replayed);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(f.sleeper.cancelled_count(), 1U);  // woken, not timed out
}

TEST(IdempotencyCacheTest, WaiterRunsTheWorkItselfWhenTheOwnerAbandons) {
  fixture f;
  auto cache = f.make();
  auto owner = cache->store().begin("k", 1, 30s).value();
  f.sleeper.on_sleep(
      [&](sturdy::duration) { ASSERT_TRUE(cache->store().abandon("k", owner.token).has_value()); });
  auto r = cache->execute("k", 1, waiting(), [] { return 5; });
  EXPECT_EQ(r.result.value(), 5);
  EXPECT_FALSE(r.replayed);
}

TEST(IdempotencyCacheTest, WaiterTakesOverWhenTheOwnersLeaseRunsOut) {
  fixture f;
  auto cache = f.make({.lease = 2s});
  auto owner = cache->store().begin("k", 1, 2s).value();
  auto r = cache->execute("k", 1, waiting(10s), [] { return 5; });
  EXPECT_EQ(r.result.value(), 5);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(f.sleeper.total(), sturdy::duration(2s));  // slept only until the lease ran out
  auto executed = f.events.of<sturdy::idempotency_executed>();
  ASSERT_EQ(executed.size(), 1U);
  EXPECT_TRUE(executed[0].took_over);
  EXPECT_GT(executed[0].token, owner.token);
  EXPECT_EQ(cache->stats().takeovers, 1U);
  // The crashed owner comes back: refused.
  EXPECT_EQ(cache->store().complete("k", owner.token, sturdy::outcome<int>(1), 1h).error(),
            errc::stale_token);
  EXPECT_EQ(cache->execute("k", 1, [] { return 0; }).result.value(), 5);
}

TEST(IdempotencyCacheTest, StaleOwnersLateCompletionIsRefusedAndTheNewerResultKept) {
  fixture f;
  auto cache = f.make({.lease = 10s});
  auto stale = cache->execute("k", 1, [&] {
    f.clock.advance(11s);                                   // this run outlives its lease...
    auto newer = cache->execute("k", 1, [] { return 2; });  // ...and a retry takes over
    EXPECT_EQ(newer.result.value(), 2);
    return 1;
  });
  EXPECT_EQ(stale.result.error(), errc::stale_token);
  EXPECT_EQ(cache->execute("k", 1, [] { return 3; }).result.value(), 2);
  EXPECT_EQ(cache->stats().stale_completions, 1U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_completion_refused>(), 1U);
}

TEST(IdempotencyCacheTest, LateOwnerWhoseEvictedEntryNobodyTookStoresItsResult) {
  fixture f;
  auto cache = f.make({.lease = 5s}, {.shards = 1, .max_entries = 1});
  int runs = 0;
  auto late = cache->execute("a", 1, [&] {
    ++runs;
    f.clock.advance(6s);                                                    // outlives its lease...
    EXPECT_EQ(cache->execute("b", 1, [] { return 2; }).result.value(), 2);  // ...and "a" is evicted
    return 1;
  });
  ASSERT_TRUE(late.result.has_value()) << late.result.error().message();
  EXPECT_EQ(late.result.value(), 1);  // nobody took "a" over: its result stands and is stored
  EXPECT_FALSE(late.replayed);
  auto retry = cache->execute("a", 1, [&] { return ++runs; });
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.result.value(), 1);
  EXPECT_EQ(runs, 1);  // the retry did not run the work again
  EXPECT_EQ(cache->stats().stale_completions, 0U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_completion_refused>(), 0U);
}

TEST(IdempotencyCacheTest, LateOwnerStoresItsResultWhenTheNewerOwnerAbandoned) {
  fixture f;
  auto cache = f.make({.lease = 5s});
  auto late = cache->execute("k", 1, [&]() -> sturdy::result<int> {
    f.clock.advance(6s);
    auto newer = cache->execute("k", 1, [&]() -> sturdy::result<int> {  // takes over, fails, releases
      return std::make_error_code(std::errc::io_error);
    });
    EXPECT_EQ(newer.result.error(), std::errc::io_error);
    return 1;
  });
  EXPECT_EQ(late.result.value(), 1);
  EXPECT_EQ(cache->execute("k", 1, [] { return 3; }).result.value(), 1);
}

TEST(IdempotencyCacheTest, CompletedEntriesExpireAfterTheTtl) {
  fixture f;
  auto cache = f.make({.ttl = 1h});
  int runs = 0;
  auto fn = [&] { return ++runs; };
  (void)cache->execute("k", 1, fn);
  f.clock.advance(59min);
  EXPECT_TRUE(cache->execute("k", 1, fn).replayed);
  f.clock.advance(1min);
  auto r = cache->execute("k", 1, fn);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(r.result.value(), 2);
  EXPECT_EQ(cache->stats().expirations, 1U);
}

// A store that cannot wake waiters (like a Redis store polling): the cache
// polls it with doubling intervals instead. Also shows that the concept is
// all a store needs.
// Forwards every store operation to a memory store over a manual clock; the
// test stores below replace only what they test.
template <bool Wakes>
class forwarding_store {
 public:
  using value_type = sturdy::outcome<int>;
  using options_type = sturdy::memory_store_options;
  static constexpr bool wakes_waiters = Wakes;
  forwarding_store(options_type o, manual_clock clock) : inner_(o, std::move(clock)) {}
  sturdy::result<sturdy::begin_outcome<value_type>> begin(std::string_view key, std::uint64_t fp,
                                                          sturdy::duration lease,
                                                          sturdy::idempotency_waiter* w) {
    return inner_.begin(key, fp, lease, w);
  }
  sturdy::result<void> complete(std::string_view key, sturdy::fencing_token t, value_type v,
                                sturdy::duration ttl) {
    return inner_.complete(key, t, std::move(v), ttl);
  }
  sturdy::result<void> abandon(std::string_view key, sturdy::fencing_token t) {
    return inner_.abandon(key, t);
  }
  void cancel_wait(std::string_view key, sturdy::idempotency_waiter& w) noexcept {
    inner_.cancel_wait(key, w);
  }
  [[nodiscard]] sturdy::idempotency_store_stats stats() const { return inner_.stats(); }
  sturdy::memory_idempotency_store<value_type, manual_clock>& inner() { return inner_; }

 private:
  sturdy::memory_idempotency_store<value_type, manual_clock> inner_;
};

class polling_store : public forwarding_store<false> {
 public:
  using forwarding_store::forwarding_store;
  sturdy::result<sturdy::begin_outcome<value_type>> begin(std::string_view key, std::uint64_t fp,
                                                          sturdy::duration lease,
                                                          sturdy::idempotency_waiter* w) {
    EXPECT_EQ(w, nullptr);  // the cache never hands a waiter to a polling store
    return forwarding_store::begin(key, fp, lease, nullptr);
  }
  void cancel_wait(std::string_view, sturdy::idempotency_waiter&) noexcept {}
};
static_assert(sturdy::idempotency_store<polling_store>);

// A cache over polling_store: polls at 1, 2, 4, 4, ... ms.
struct polling_fixture {
  manual_clock clock;
  recording_sleeper sleeper{clock};
  sturdy::idempotency_cache<int, manual_clock, recording_sleeper, sturdy::null_listener, polling_store> cache{
      {.poll_initial = 1ms, .poll_max = 4ms}, {.shards = 1, .max_entries = 16}, clock, sleeper};
};

TEST(IdempotencyCacheTest, WaitersPollAStoreThatCannotWakeThemWithDoublingIntervals) {
  polling_fixture p;
  auto& cache = p.cache;
  auto& sleeper = p.sleeper;
  auto owner = cache.store().begin("k", 1, 30s, nullptr).value();
  int sleeps = 0;
  sleeper.on_sleep([&](sturdy::duration) {
    if (++sleeps == 5) (void)cache.store().complete("k", owner.token, sturdy::outcome<int>(6), 1h);
  });
  auto r = cache.execute("k", 1, waiting(), [] { return 0; });
  EXPECT_EQ(r.result.value(), 6);
  EXPECT_TRUE(r.replayed);
  const std::vector<sturdy::duration> expected{1ms, 2ms, 4ms, 4ms, 4ms};
  EXPECT_EQ(sleeper.delays(), expected);
}

// A waking store that records which waiter nodes it has linked and which the
// cache has unlinked again: a node left linked when execute returns (or
// unwinds) would be written through after its stack frame is gone.
class tracking_store : public forwarding_store<true> {
 public:
  using forwarding_store::forwarding_store;
  sturdy::result<sturdy::begin_outcome<value_type>> begin(std::string_view key, std::uint64_t fp,
                                                          sturdy::duration lease,
                                                          sturdy::idempotency_waiter* w) {
    auto r = forwarding_store::begin(key, fp, lease, w);
    if (w != nullptr && r.has_value() && r.value().status == sturdy::begin_status::in_progress) ++linked;
    return r;
  }
  void cancel_wait(std::string_view key, sturdy::idempotency_waiter& w) noexcept {
    forwarding_store::cancel_wait(key, w);
    ++cancelled;
  }

  int linked = 0;
  int cancelled = 0;
};
static_assert(sturdy::idempotency_store<tracking_store>);

TEST(IdempotencyCacheTest, ASleeperThatThrowsLeavesNoWaiterLinkedToTheStore) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  sturdy::idempotency_cache<int, manual_clock, recording_sleeper, sturdy::null_listener, tracking_store>
      cache({}, {.shards = 1, .max_entries = 16}, clock, sleeper);
  auto owner = cache.store().begin("k", 1, 30s, nullptr).value();
  sleeper.on_sleep([](sturdy::duration) { throw std::runtime_error("sleeper failed"); });
  EXPECT_THROW((void)cache.execute("k", 1, waiting(), [] { return 0; }), std::runtime_error);
  EXPECT_EQ(cache.store().linked, 1);
  EXPECT_EQ(cache.store().cancelled, 1);  // unlinked while unwinding
  // The owner completes: the store must not touch the dead waiter (ASan).
  EXPECT_TRUE(cache.store().complete("k", owner.token, sturdy::outcome<int>(3), 1h).has_value());
}

// A sleeper that wakes early (after half the delay) without a stop request,
// as a real sleeper may: the waiting duplicate loops and re-parks.
struct early_waking_sleeper {
  manual_clock clock;
  std::shared_ptr<std::function<void(int)>> hook = std::make_shared<std::function<void(int)>>();
  std::shared_ptr<int> sleeps = std::make_shared<int>(0);
  bool sleep_for(sturdy::duration d, std::stop_token stop) {
    if (*hook) (*hook)(++*sleeps);
    if (stop.stop_requested()) return false;
    clock.advance(d / 2);
    return true;
  }
};

TEST(IdempotencyCacheTest, AWaitReusesOneStopSourceAcrossEarlyWakeups) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  manual_clock clock;
  early_waking_sleeper sleeper{clock};
  sturdy::idempotency_cache<int, manual_clock, early_waking_sleeper> cache(
      {}, {.shards = 1, .max_entries = 16}, clock, sleeper);
  auto owner = cache.store().begin("k", 1, 30s).value();
  *sleeper.hook = [&](int n) {
    if (n == 5) (void)cache.store().complete("k", owner.token, sturdy::outcome<int>(4), 1h);
  };
  sturdy::testing::allocation_scope scope;
  auto r = cache.execute("k", 1, waiting(), [] { return 0; });
  const auto allocations = scope.allocations();
  EXPECT_EQ(r.result.value(), 4);
  EXPECT_EQ(*sleeper.sleeps, 5);
  EXPECT_EQ(allocations, 1U);  // the one stop_source, not one per re-park
}

// --- Failures ----------------------------------------------------------------

TEST(IdempotencyCacheTest, FailuresAreNotCachedByDefault) {
  fixture f;
  auto cache = f.make();
  int runs = 0;
  auto fn = [&]() -> sturdy::result<int> {
    if (++runs == 1) return std::make_error_code(std::errc::connection_refused);
    return 4;
  };
  EXPECT_EQ(cache->execute("k", 1, fn).result.error(), std::errc::connection_refused);
  auto retry = cache->execute("k", 1, fn);
  EXPECT_EQ(retry.result.value(), 4);
  EXPECT_FALSE(retry.replayed);
  EXPECT_TRUE(cache->execute("k", 1, fn).replayed);
  EXPECT_EQ(runs, 2);
}

TEST(IdempotencyCacheTest, CachePolicyReplaysTheFailure) {
  fixture f;
  auto cache = f.make({.policy = {.failures = sturdy::failure_caching::cache}});
  int runs = 0;
  auto fn = [&]() -> sturdy::result<int> {
    ++runs;
    return std::make_error_code(std::errc::permission_denied);
  };
  (void)cache->execute("k", 1, fn);
  auto r = cache->execute("k", 1, fn);
  EXPECT_TRUE(r.replayed);
  EXPECT_EQ(r.result.error(), std::errc::permission_denied);
  EXPECT_EQ(runs, 1);
}

TEST(IdempotencyCacheTest, CacheIfPermanentCachesOnlyWhatThePredicateCallsPermanent) {
  fixture f;
  auto cache = f.make({.policy = {.failures = sturdy::failure_caching::cache_if_permanent,
                                  .is_permanent = [](const sturdy::failure_info& i) {
                                    return i.code == std::errc::invalid_argument;
                                  }}});
  int runs = 0;
  auto transient = [&]() -> sturdy::result<int> {
    ++runs;
    return std::make_error_code(std::errc::timed_out);
  };
  auto permanent = [&]() -> sturdy::result<int> {
    ++runs;
    return std::make_error_code(std::errc::invalid_argument);
  };
  (void)cache->execute("t", 1, transient);
  EXPECT_FALSE(cache->execute("t", 1, transient).replayed);
  EXPECT_EQ(runs, 2);
  (void)cache->execute("p", 1, permanent);
  auto r = cache->execute("p", 1, permanent);
  EXPECT_TRUE(r.replayed);
  EXPECT_EQ(r.result.error(), std::errc::invalid_argument);
  EXPECT_EQ(runs, 3);
}

TEST(IdempotencyCacheTest, ExceptionReachesTheCallerAndReleasesTheKeyByDefault) {
  fixture f;
  auto cache = f.make();
  int runs = 0;
  auto fn = [&]() -> int {
    if (++runs == 1) throw std::runtime_error("boom");
    return 8;
  };
  EXPECT_THROW((void)cache->execute("k", 1, fn), std::runtime_error);
  auto r = cache->execute("k", 1, fn);
  EXPECT_EQ(r.result.value(), 8);
  EXPECT_FALSE(r.replayed);
}

TEST(IdempotencyCacheTest, CachedExceptionIsRethrownToEveryReplay) {
  fixture f;
  auto cache = f.make({.policy = {.failures = sturdy::failure_caching::cache}});
  int runs = 0;
  auto fn = [&]() -> int {
    ++runs;
    throw std::invalid_argument("bad payload");
  };
  EXPECT_THROW((void)cache->execute("k", 1, fn), std::invalid_argument);
  for (int i = 0; i < 2; ++i) {
    try {
      (void)cache->execute("k", 1, fn);
      ADD_FAILURE() << "expected the stored exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "bad payload");
    }
  }
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(f.events.count<sturdy::idempotency_replayed>(), 2U);
}

TEST(IdempotencyCacheTest, AnExceptionReturnedInsideAnOutcomeIsReplayedInsideItNotThrown) {
  fixture f;
  auto cache = f.make({.policy = {.failures = sturdy::failure_caching::cache}});
  int runs = 0;
  auto fn = [&]() -> sturdy::outcome<int> {
    ++runs;
    return sturdy::outcome<int>(std::in_place_type<std::exception_ptr>,
                                std::make_exception_ptr(std::invalid_argument("in the outcome")));
  };
  auto first = cache->execute("k", 1, fn);
  ASSERT_TRUE(first.result.has_exception());
  EXPECT_FALSE(first.result.has_error());
  for (int i = 0; i < 2; ++i) {
    sturdy::idempotency_result<sturdy::outcome<int>> again{sturdy::outcome<int>(0)};
    ASSERT_NO_THROW(again = cache->execute("k", 1, fn));
    EXPECT_TRUE(again.replayed);
    ASSERT_TRUE(again.result.has_exception());
    EXPECT_FALSE(again.result.has_error());
    EXPECT_THROW(std::rethrow_exception(again.result.exception()), std::invalid_argument);
  }
  // An error and an exception together come back together.
  auto both = [&]() -> sturdy::outcome<int> {
    ++runs;
    return BOOST_OUTCOME_V2_NAMESPACE::failure(std::make_error_code(std::errc::io_error),
                                               std::make_exception_ptr(std::runtime_error("io")));
  };
  (void)cache->execute("b", 1, both);
  auto r = cache->execute("b", 1, both);
  EXPECT_TRUE(r.replayed);
  EXPECT_EQ(r.result.error(), std::errc::io_error);
  EXPECT_TRUE(r.result.has_exception());
  EXPECT_EQ(runs, 2);
  // A thrown exception is still thrown to replays whose outcome could hold it.
  auto thrower = [&]() -> sturdy::outcome<int> { throw std::logic_error("thrown"); };
  EXPECT_THROW((void)cache->execute("t", 1, thrower), std::logic_error);
  EXPECT_THROW((void)cache->execute("t", 1, thrower), std::logic_error);
}

TEST(IdempotencyCacheTest, AReplayedStatusKeepsItsCodeButNotItsMessage) {
  // Pins the documented limit: a replay rebuilds the error from its
  // std::error_code; the first caller gets the full status.
  fixture f;
  sturdy::idempotency_cache<int, manual_clock, recording_sleeper> cache(
      {.policy = {.failures = sturdy::failure_caching::cache}}, {.shards = 1, .max_entries = 16}, f.clock,
      f.sleeper);
  auto fn = []() -> absl::StatusOr<int> { return absl::NotFoundError("no such account"); };
  auto first = cache.execute("k", 1, fn);
  EXPECT_EQ(first.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(first.result.status().message(), "no such account");
  auto again = cache.execute("k", 1, fn);
  ASSERT_TRUE(again.replayed);
  EXPECT_EQ(again.result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(again.result.status().message(), "no such account");
}

TEST(IdempotencyCacheTest, PermanentPredicateSeesTheException) {
  fixture f;
  auto cache = f.make({.policy = {.failures = sturdy::failure_caching::cache_if_permanent,
                                  .is_permanent = [](const sturdy::failure_info& i) {
                                    return i.exception_is<std::invalid_argument>();
                                  }}});
  int runs = 0;
  auto fn = [&]() -> int {
    ++runs;
    if (runs == 1) throw std::runtime_error("transient");
    throw std::invalid_argument("permanent");
  };
  EXPECT_THROW((void)cache->execute("k", 1, fn), std::runtime_error);
  EXPECT_THROW((void)cache->execute("k", 1, fn), std::invalid_argument);
  EXPECT_THROW((void)cache->execute("k", 1, fn), std::invalid_argument);
  EXPECT_EQ(runs, 2);
}

TEST(IdempotencyCacheTest, PolicyPassedPerCallOverridesTheDefault) {
  fixture f;
  auto cache = f.make();  // default: dont_cache
  int runs = 0;
  auto fn = [&]() -> sturdy::result<int> {
    ++runs;
    return std::make_error_code(std::errc::io_error);
  };
  const sturdy::idempotency_policy cache_all{.failures = sturdy::failure_caching::cache};
  (void)cache->execute("k", 1, cache_all, fn);
  EXPECT_TRUE(cache->execute("k", 1, fn).replayed);
  EXPECT_EQ(runs, 1);
}

// --- Bounds --------------------------------------------------------------------

TEST(IdempotencyCacheTest, CapacityEvictsCompletedEntriesButNeverInProgressOnes) {
  fixture f;
  auto cache = f.make({}, {.shards = 1, .max_entries = 4});
  auto& store = cache->store();
  auto held = store.begin("held", 1, 1h).value();
  for (int i = 0; i < 100; ++i) {
    auto r = cache->execute(sturdy::test::numbered("k", i), 1, [i] { return i; });
    ASSERT_EQ(r.result.value(), i);
    ASSERT_LE(cache->stats().entries, 4U);
  }
  EXPECT_EQ(cache->stats().evictions, 97U);
  EXPECT_GT(f.events.count<sturdy::idempotency_evicted>(), 0U);
  // The in-progress entry survived every eviction and still completes.
  EXPECT_TRUE(store.complete("held", held.token, sturdy::outcome<int>(1), 1h).has_value());
}

TEST(IdempotencyCacheTest, NothingEvictableMeansCapacityExceededNotGrowth) {
  fixture f;
  auto cache = f.make({}, {.shards = 1, .max_entries = 2});
  auto a = cache->store().begin("a", 1, 1h).value();
  auto b = cache->store().begin("b", 1, 1h).value();
  int runs = 0;
  auto r = cache->execute("c", 1, [&] { return ++runs; });
  EXPECT_EQ(r.result.error(), errc::capacity_exceeded);
  EXPECT_EQ(runs, 0);
  // Once an owner finishes, its completed entry can make room.
  ASSERT_TRUE(cache->store().complete("a", a.token, sturdy::outcome<int>(1), 1h).has_value());
  EXPECT_EQ(cache->execute("c", 1, [&] { return ++runs; }).result.value(), 1);
  (void)b;
}

TEST(IdempotencyCacheTest, ClockGivesRecentlyReplayedEntriesASecondChance) {
  fixture f;
  auto cache = f.make({}, {.shards = 1, .max_entries = 3});
  for (const char* k : {"a", "b", "c"}) (void)cache->execute(k, 1, [] { return 1; });
  ASSERT_TRUE(cache->execute("a", 1, [] { return 0; }).replayed);  // references "a"
  (void)cache->execute("d", 1, [] { return 1; });                  // evicts one of b, c
  EXPECT_TRUE(cache->execute("a", 1, [] { return 0; }).replayed);
}

TEST(IdempotencyCacheTest, ExpiredLeaseEntryMakesRoomAndItsOwnerIsRefused) {
  fixture f;
  auto cache = f.make({}, {.shards = 1, .max_entries = 1});
  auto crashed = cache->store().begin("a", 1, 5s).value();
  f.clock.advance(5s);
  EXPECT_EQ(cache->execute("b", 1, [] { return 1; }).result.value(), 1);
  EXPECT_EQ(cache->store().complete("a", crashed.token, sturdy::outcome<int>(1), 1h).error(),
            errc::stale_token);
}

TEST(IdempotencyCacheTest, AMillionUniqueKeysStayWithinTheEntryBound) {
  fixture f;
  constexpr std::size_t bound = 4096;
  auto cache = f.make({}, {.shards = 16, .max_entries = bound});
  std::vector<sturdy::begin_outcome<sturdy::outcome<int>>> held;
  for (int i = 0; i < 16; ++i)
    held.push_back(cache->store().begin(sturdy::test::numbered("held", i), 1, 24h).value());
  char key[32];
  for (int i = 0; i < 1'000'000; ++i) {
    const int n = std::snprintf(key, sizeof key, "key-%d", i);
    auto r = cache->execute(std::string_view(key, static_cast<std::size_t>(n)), 1, [i] { return i; });
    ASSERT_TRUE(r.result.has_value()) << i << ": " << r.result.error().message();
    if ((i & 0xffff) == 0) {
      ASSERT_LE(cache->stats().entries, bound);
    }
  }
  const auto s = cache->stats();
  EXPECT_LE(s.entries, bound);
  EXPECT_GE(s.evictions, 1'000'000U + 16U - bound);
  EXPECT_LE(cache->store().memory_usage(), bound * 4 * memory_store::entry_overhead + (1U << 20));
  for (int i = 0; i < 16; ++i) {
    const bool ok = cache->store()
                        .complete(sturdy::test::numbered("held", i), held[static_cast<std::size_t>(i)].token,
                                  sturdy::outcome<int>(i), 1h)
                        .has_value();
    EXPECT_TRUE(ok);
  }
}

TEST(IdempotencyCacheTest, ByteBoundCountsKeysAndValues) {
  manual_clock clock;
  constexpr std::size_t limit = 16 * 1024;
  sturdy::idempotency_cache<std::string, manual_clock, recording_sleeper> cache(
      {}, {.shards = 1, .max_entries = 1 << 20, .max_bytes = limit}, clock, recording_sleeper(clock));
  const std::string payload(1000, 'p');
  for (int i = 0; i < 200; ++i) {
    auto r = cache.execute(std::string(40, 'k') + std::to_string(i), 1, [&] { return payload; });
    ASSERT_EQ(r.result.value(), payload);
    // A completion may overshoot by one value until the next admission.
    ASSERT_LE(cache.stats().bytes, limit + 1100);
  }
  EXPECT_GT(cache.stats().evictions, 150U);
}

TEST(IdempotencyCacheTest, AKeyLargerThanItsShardIsRefusedWithoutEvictingAnything) {
  manual_clock clock;
  memory_store store({.shards = 1, .max_entries = 64, .max_bytes = 4 * memory_store::min_shard_bytes}, clock);
  ASSERT_TRUE(store.validation_message().empty()) << store.validation_message();
  for (const char* k : {"a", "b", "c"}) {
    auto b = store.begin(k, 1, 10s).value();
    ASSERT_TRUE(store.complete(k, b.token, sturdy::outcome<int>(1), 1h).has_value());
  }
  const std::string huge(8 * memory_store::min_shard_bytes, 'k');
  EXPECT_EQ(store.begin(huge, 1, 10s).error(), errc::capacity_exceeded);
  EXPECT_EQ(store.stats().evictions, 0U);
  EXPECT_EQ(store.stats().entries, 3U);
  for (const char* k : {"a", "b", "c"})
    EXPECT_EQ(store.begin(k, 1, 10s).value().status, sturdy::begin_status::completed);
}

TEST(IdempotencyCacheTest, LiveLeasesFillingTheByteBoundRefuseANewKeyWithoutEvicting) {
  manual_clock clock;
  const std::size_t long_charge = memory_store::entry_overhead + 101;  // a 100-byte key
  memory_store store({.shards = 1, .max_entries = 64, .max_bytes = 4 * long_charge - 1}, clock);
  ASSERT_TRUE(store.validation_message().empty()) << store.validation_message();
  auto c = store.begin("c", 1, 10s).value();
  ASSERT_TRUE(store.complete("c", c.token, sturdy::outcome<int>(1), 1h).has_value());
  for (char k : {'1', '2', '3'}) {
    ASSERT_EQ(store.begin(std::string(100, k), 1, 10s).value().status, sturdy::begin_status::acquired);
  }
  // Three live leases hold 3 * long_charge: a fourth cannot fit even if "c"
  // goes, so "c" must stay.
  EXPECT_EQ(store.begin(std::string(100, '4'), 1, 10s).error(), errc::capacity_exceeded);
  EXPECT_EQ(store.stats().evictions, 0U);
  EXPECT_EQ(store.begin("c", 1, 10s).value().status, sturdy::begin_status::completed);
  // Once the leases run out they are evictable and the key is admitted.
  clock.advance(10s);
  EXPECT_EQ(store.begin(std::string(100, '4'), 1, 10s).value().status, sturdy::begin_status::acquired);
}

TEST(IdempotencyCacheTest, AShardOfLiveLeasesFailsFastYetFindsTheFirstExpiredLease) {
  manual_clock clock;
  memory_store store({.shards = 1, .max_entries = 2}, clock);
  auto a = store.begin("a", 1, 10s).value();
  (void)store.begin("b", 1, 20s).value();
  EXPECT_EQ(store.begin("x", 1, 30s).error(), errc::capacity_exceeded);  // both live
  ASSERT_TRUE(store.complete("a", a.token, sturdy::outcome<int>(1), 1h).has_value());
  ASSERT_EQ(store.begin("c", 1, 30s).value().status, sturdy::begin_status::acquired);  // evicts "a"
  clock.advance(11s);  // past a's old lease, not b's or c's
  EXPECT_EQ(store.begin("d", 1, 30s).error(), errc::capacity_exceeded);
  clock.advance(1s);
  EXPECT_EQ(store.begin("d", 1, 30s).error(), errc::capacity_exceeded);
  clock.advance(8s);  // b's lease runs out
  EXPECT_EQ(store.begin("d", 1, 30s).value().status, sturdy::begin_status::acquired);
  EXPECT_EQ(store.stats().evictions, 2U);
  EXPECT_EQ(store.stats().entries, 2U);
}

TEST(IdempotencyCacheTest, FailFastCountsInProgressEntriesThroughEveryTransition) {
  // A miscount of in-progress entries would refuse "d" below although "c"
  // is completed and evictable.
  manual_clock clock;
  memory_store store({.shards = 1, .max_entries = 2}, clock);
  const auto ok = [](const auto& r) {
    return r.has_value() && r.value().status == sturdy::begin_status::acquired;
  };
  ASSERT_TRUE(ok(store.begin("a", 1, 10s)));
  clock.advance(10s);
  auto a = store.begin("a", 1, 1000s);  // takeover: still one in progress
  ASSERT_TRUE(ok(a) && a.value().took_over);
  ASSERT_TRUE(store.complete("a", a.value().token, sturdy::outcome<int>(1), 5s).has_value());
  ASSERT_TRUE(ok(store.begin("b", 1, 1000s)));
  clock.advance(5s);
  auto a2 = store.begin("a", 1, 1000s);  // "a" expired: reacquired in place
  ASSERT_TRUE(ok(a2));
  EXPECT_EQ(store.begin("c", 1, 1000s).error(), errc::capacity_exceeded);  // a and b live
  ASSERT_TRUE(store.abandon("a", a2.value().token).has_value());
  auto c = store.begin("c", 1, 1000s);
  ASSERT_TRUE(ok(c));
  ASSERT_TRUE(store.complete("c", c.value().token, sturdy::outcome<int>(3), 1h).has_value());
  EXPECT_TRUE(ok(store.begin("d", 1, 1000s)));  // evicts "c"
  EXPECT_EQ(store.stats().evictions, 1U);
}

TEST(IdempotencyCacheTest, AByteBoundTooSmallForOneEntryPerShardIsInvalid) {
  const sturdy::memory_store_options tiny{.shards = 64, .max_entries = 1 << 10, .max_bytes = 4096};
  EXPECT_TRUE(tiny.validation_message().empty());  // V-independent checks pass
  const std::string_view why = memory_store::validation_message(tiny);
  EXPECT_NE(why.find("max_bytes"), std::string_view::npos) << why;
  manual_clock clock;
  memory_store store(tiny, clock);
  EXPECT_EQ(store.validation_message(), why);
  EXPECT_EQ(store.begin("k", 1, 10s).error(), errc::invalid_options);
  const sturdy::memory_store_options enough{
      .shards = 64, .max_entries = 1 << 10, .max_bytes = 64 * memory_store::min_shard_bytes};
  EXPECT_TRUE(memory_store::validation_message(enough).empty());
}

// --- Options, values, fingerprints ----------------------------------------------

TEST(IdempotencyCacheTest, InvalidOptionsRefuseEveryCallAndNameTheField) {
  const sturdy::idempotency_options bad{.lease = 0s};
  EXPECT_EQ(bad.validate().error(), errc::invalid_options);
  EXPECT_NE(bad.validation_message().find("lease"), std::string_view::npos);
  sturdy::idempotency_cache<int> cache(bad);
  int runs = 0;
  EXPECT_EQ(cache.execute("k", 1, [&] { return ++runs; }).result.error(), errc::invalid_options);
  EXPECT_EQ(runs, 0);

  const sturdy::idempotency_policy no_predicate{.failures = sturdy::failure_caching::cache_if_permanent};
  EXPECT_NE(no_predicate.validation_message().find("is_permanent"), std::string_view::npos);
  sturdy::idempotency_cache<int> ok;
  EXPECT_EQ(ok.execute("k", 1, no_predicate, [&] { return ++runs; }).result.error(), errc::invalid_options);
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(sturdy::idempotency_options{}.validate().has_value());
}

TEST(IdempotencyCacheTest, InvalidStoreOptionsAreReported) {
  EXPECT_NE(sturdy::memory_store_options{.shards = 3}.validation_message().find("shards"),
            std::string_view::npos);
  const sturdy::memory_store_options few{.shards = 8, .max_entries = 4};
  EXPECT_NE(few.validation_message().find("max_entries"), std::string_view::npos);
  EXPECT_TRUE(sturdy::memory_store_options{}.validate().has_value());
  sturdy::idempotency_cache<int> cache({}, {.shards = 0});
  EXPECT_EQ(cache.execute("k", 1, [] { return 1; }).result.error(), errc::invalid_options);
}

TEST(IdempotencyCacheTest, VoidAndStringWorkAndPlainValuesAreWrapped) {
  sturdy::idempotency_cache<void> v;
  int runs = 0;
  EXPECT_TRUE(v.execute("k", 1, [&] { ++runs; }).result.has_value());
  EXPECT_TRUE(v.execute("k", 1, [&] { ++runs; }).replayed);
  EXPECT_EQ(runs, 1);

  sturdy::idempotency_cache<std::string> s;
  (void)s.execute("k", 1, [] { return std::string(100, 'x'); });
  auto r = s.execute("k", 1, [] { return std::string(); });
  EXPECT_EQ(r.result.value(), std::string(100, 'x'));
  EXPECT_TRUE(r.replayed);
}

TEST(IdempotencyCacheTest, ReplayAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  sturdy::idempotency_cache<int> cache;
  const std::string key(100, 'k');  // longer than SSO: a lookup must not copy it
  (void)cache.execute(key, 1, [] { return 1; });
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    auto r = cache.execute(key, 1, [] { return 2; });
    sturdy::testing::escape(&r);
    ASSERT_TRUE(r.replayed);
  }
  EXPECT_EQ(scope.allocations(), 0U);
}

// The store's replay (a begin that finds a completed key) runs under the
// shard's read lock: no allocation either, with a key longer than SSO.
TEST(IdempotencyCacheTest, AStoreReplayAllocatesNothingAndCountsEveryHit) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  manual_clock clock;
  memory_store store({.shards = 4, .max_entries = 1024}, clock);
  const std::string key(100, 'k');
  auto b = store.begin(key, 1, 10s).value();
  ASSERT_TRUE(store.complete(key, b.token, sturdy::outcome<int>(7), 1h).has_value());
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    auto r = store.begin(key, 1, 10s);
    sturdy::testing::escape(&r);
    ASSERT_EQ(r.value().status, sturdy::begin_status::completed);
    ASSERT_EQ(r.value().value->value(), 7);
  }
  EXPECT_EQ(scope.allocations(), 0U);
  EXPECT_EQ(store.stats().hits, 100U);
  // A replay that misses (another fingerprint, past the TTL) falls through to
  // the write path and is counted there, not as a hit.
  EXPECT_EQ(store.begin(key, 2, 10s).value().status, sturdy::begin_status::mismatch);
  clock.advance(1h);
  EXPECT_EQ(store.begin(key, 1, 10s).value().status, sturdy::begin_status::acquired);
  const auto st = store.stats();
  EXPECT_EQ(st.hits, 100U);
  EXPECT_EQ(st.mismatches, 1U);
  EXPECT_EQ(st.expirations, 1U);
  EXPECT_EQ(st.misses, 2U);
}

// --- Hardening: exactly-once when storing throws (issue 12, item 3) -------------

// Fails on main before the fix: the copy's exception escaped execute() and
// left the key in progress; once the lease ran out a duplicate ran the work
// again.
TEST(IdempotencyCacheTest, Issue12_AThrowingCopyOfTheResultFencesTheKeyAndTheWorkNeverRunsTwice) {
  using fragile_cache =
      sturdy::idempotency_cache<sturdy::test::fragile, manual_clock, recording_sleeper, recording_listener>;
  manual_clock clock;
  recording_sleeper sleeper(clock);
  recording_listener events;
  fragile_cache cache({.ttl = 1h, .lease = 10s}, {.shards = 1, .max_entries = 16}, clock, sleeper, events);
  int runs = 0;
  auto work = [&] { return sturdy::test::fragile(++runs * 10); };
  {
    sturdy::test::fragile::failing copies(sturdy::test::fragile::copy_fails);
    auto first = cache.execute("k", 1, work);
    ASSERT_TRUE(first.result.has_value());  // the caller keeps its own result
    EXPECT_EQ(first.result.value().v, 10);
    EXPECT_FALSE(first.replayed);
  }
  auto lost = events.of<sturdy::idempotency_outcome_not_stored>();
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_TRUE(lost[0].fenced);
  const sturdy::failure_info why{.code = {}, .exception = lost[0].exception};
  EXPECT_TRUE(why.exception_is<std::runtime_error>());
  EXPECT_EQ(cache.stats().outcomes_not_stored, 1U);
  // Past the lease, and almost to the TTL: every duplicate gets the distinct
  // error, and the work does not run again.
  for (const sturdy::duration step : {sturdy::duration(0s), sturdy::duration(11s), sturdy::duration(59min)}) {
    clock.advance(step);
    auto again = cache.execute("k", 1, work);
    EXPECT_TRUE(again.replayed);
    EXPECT_EQ(again.result.error(), errc::outcome_not_stored);
  }
  EXPECT_EQ(runs, 1);
  // The key's lifetime over, the key is free again.
  clock.advance(1min);
  auto fresh = cache.execute("k", 1, work);
  EXPECT_EQ(fresh.result.value().v, 20);
  EXPECT_EQ(runs, 2);
}

// A store whose `complete` throws for any outcome but an error code (like a
// codec whose encode throws): the fence, an error code, still goes through.
class throwing_store : public forwarding_store<true> {
 public:
  using forwarding_store::forwarding_store;
  sturdy::result<void> complete(std::string_view key, sturdy::fencing_token t, value_type v,
                                sturdy::duration ttl) {
    if (!v.has_error() || v.has_exception()) throw std::bad_alloc();
    return forwarding_store::complete(key, t, std::move(v), ttl);
  }
};
static_assert(sturdy::idempotency_store<throwing_store>);

// Fails on main before the fix: the store's bad_alloc replaced the caller's
// exception, and the key stayed in progress for a duplicate to run again.
TEST(IdempotencyCacheTest, Issue12_AThrowingStoreFencesTheKeyForSuccessesAndCachedExceptions) {
  using cache_t =
      sturdy::idempotency_cache<int, manual_clock, recording_sleeper, recording_listener, throwing_store>;
  manual_clock clock;
  recording_sleeper sleeper(clock);
  recording_listener events;
  cache_t cache({.ttl = 1h, .lease = 10s}, {.shards = 1, .max_entries = 16}, clock, sleeper, events);
  int runs = 0;
  auto ok = cache.execute("ok", 1, [&] { return ++runs; });
  EXPECT_EQ(ok.result.value(), 1);

  const sturdy::idempotency_policy cache_all{.failures = sturdy::failure_caching::cache};
  EXPECT_THROW((void)cache.execute("boom", 1, cache_all,
                                   [&]() -> int {
                                     ++runs;
                                     throw std::domain_error("the work failed");
                                   }),
               std::domain_error);
  clock.advance(11s);  // past the lease: nobody may take the keys over
  EXPECT_EQ(cache.execute("ok", 1, [&] { return ++runs; }).result.error(), errc::outcome_not_stored);
  EXPECT_EQ(cache.execute("boom", 1, cache_all, [&] { return ++runs; }).result.error(),
            errc::outcome_not_stored);
  EXPECT_EQ(runs, 2);
  auto lost = events.of<sturdy::idempotency_outcome_not_stored>();
  ASSERT_EQ(lost.size(), 2U);
  EXPECT_TRUE(lost[0].fenced && lost[1].fenced);
  EXPECT_EQ(cache.stats().outcomes_not_stored, 2U);
}

// --- Hardening: every duration option at 0, 1 ns and max (issue 12, item 7) ---

// The documented behaviour of each value of each duration option of the
// cache and the memory store; run under UBSan in CI (no signed overflow
// anywhere a duration meets a time point).
TEST(IdempotencyCacheTest, Issue12_EveryDurationOptionAtZeroOneNanosecondAndMax) {
  const sturdy::duration zero{0}, one{1}, max = sturdy::duration::max();
  const sturdy::duration century = std::chrono::hours(24 * 365 * 100);

  // ttl: 0 is invalid; 1 ns expires after 1 ns; max never expires.
  {
    fixture f;
    EXPECT_EQ(f.make({.ttl = zero})->validation_message(), "idempotency_options.ttl must be > 0");
    for (const sturdy::duration ttl : {one, max}) {
      fixture g;
      auto cache = g.make({.ttl = ttl});
      int runs = 0;
      (void)cache->execute("k", 1, [&] { return ++runs; });
      EXPECT_TRUE(cache->execute("k", 1, [&] { return ++runs; }).replayed);
      g.clock.advance(ttl == one ? one : century);
      EXPECT_EQ(cache->execute("k", 1, [&] { return ++runs; }).replayed, ttl == max);
    }
  }
  // lease: 0 is invalid; 1 ns is taken over after 1 ns; max is never taken over.
  {
    fixture f;
    EXPECT_EQ(f.make({.lease = zero})->validation_message(), "idempotency_options.lease must be > 0");
    for (const sturdy::duration lease : {one, max}) {
      fixture g;
      auto cache = g.make({.lease = lease});
      (void)cache->store().begin("k", 1, lease).value();
      g.clock.advance(lease == one ? one : century);
      auto r = cache->execute("k", 1, [] { return 1; });
      if (lease == one) {
        EXPECT_EQ(r.result.value(), 1);
        EXPECT_EQ(cache->stats().takeovers, 1U);
      } else {
        EXPECT_EQ(r.result.error(), errc::in_progress);
      }
    }
  }
  // wait_timeout: 0 gives up at once; 1 ns after one 1 ns sleep; max waits
  // until the owner completes.
  for (const sturdy::duration timeout : {zero, one, max}) {
    fixture f;
    auto cache = f.make();
    auto owner = cache->store().begin("k", 1, 30s).value();
    if (timeout == max) {
      f.sleeper.on_sleep([&](sturdy::duration) {
        ASSERT_TRUE(cache->store().complete("k", owner.token, sturdy::outcome<int>(5), 1h).has_value());
      });
    }
    auto r = cache->execute("k", 1, waiting(timeout), [] { return 0; });
    if (timeout == max) {
      EXPECT_EQ(r.result.value(), 5);
      EXPECT_LE(f.sleeper.delays().size(), 1U);
    } else {
      EXPECT_EQ(r.result.error(), errc::wait_timeout);
      EXPECT_EQ(f.sleeper.total(), timeout);
    }
  }
  // poll_initial / poll_max: 0 and values below the other bound are invalid,
  // naming the field; 1 ns and max poll as documented, doubling without
  // overflow up to max.
  {
    fixture f;
    EXPECT_EQ(f.make({.poll_initial = zero})->validation_message(),
              "idempotency_options.poll_initial must be > 0");
    EXPECT_EQ(f.make({.poll_initial = max})->validation_message(),
              "idempotency_options.poll_max must be >= poll_initial");
    EXPECT_EQ(f.make({.poll_max = zero})->validation_message(),
              "idempotency_options.poll_max must be >= poll_initial");
    EXPECT_EQ(f.make({.poll_max = one})->validation_message(),
              "idempotency_options.poll_max must be >= poll_initial");
    EXPECT_TRUE(f.make({.poll_initial = one, .poll_max = one})->validation_message().empty());
  }
  {
    manual_clock clock;
    recording_sleeper sleeper(clock);
    sturdy::idempotency_cache<int, manual_clock, recording_sleeper, sturdy::null_listener, polling_store>
        cache({.poll_initial = max / 3, .poll_max = max}, {.shards = 1, .max_entries = 16}, clock, sleeper);
    auto owner = cache.store().begin("k", 1, max, nullptr).value();
    int sleeps = 0;
    sleeper.on_sleep([&](sturdy::duration) {
      if (++sleeps == 2) (void)cache.store().complete("k", owner.token, sturdy::outcome<int>(6), max);
    });
    auto r = cache.execute("k", 1, waiting(max), [] { return 0; });
    EXPECT_EQ(r.result.value(), 6);
    const std::vector<sturdy::duration> expected{max / 3, max / 3 * 2};
    EXPECT_EQ(sleeper.delays(), expected);
  }
  // The memory store's own duration arguments: lease and ttl 0 are
  // invalid_options; max saturates (never runs out).
  {
    manual_clock clock;
    memory_store store({.shards = 1, .max_entries = 16}, clock);
    EXPECT_EQ(store.begin("k", 1, zero).error(), errc::invalid_options);
    auto b = store.begin("k", 1, max).value();
    EXPECT_EQ(store.complete("k", b.token, 1, zero).error(), errc::invalid_options);
    clock.advance(century);
    auto again = store.begin("k", 1, max).value();
    EXPECT_EQ(again.status, sturdy::begin_status::in_progress);
    EXPECT_GT(again.lease_remaining, century);
    ASSERT_TRUE(store.complete("k", b.token, 1, max).has_value());
    clock.advance(century);
    EXPECT_EQ(store.begin("k", 1, one).value().status, sturdy::begin_status::completed);
  }
}

// --- Hardening II: callbacks, start-up checks, deduction (issue 13) -------------

TEST(IdempotencyCacheTest, Issue13_IsPermanentTakesACapturingLambda) {
  const std::vector<std::error_code> permanent = {std::make_error_code(std::errc::invalid_argument)};
  const sturdy::idempotency_policy policy{.failures = sturdy::failure_caching::cache_if_permanent,
                                          .is_permanent = [permanent](const sturdy::failure_info& f) {
                                            return std::find(permanent.begin(), permanent.end(), f.code) !=
                                                   permanent.end();
                                          }};
  ASSERT_TRUE(policy.validate().has_value());
  sturdy::idempotency_cache<int> cache;
  int runs = 0;
  auto fail = [&](std::errc e) {
    return [&runs, e]() -> sturdy::result<int> {
      ++runs;
      return std::make_error_code(e);
    };
  };
  (void)cache.execute("bad", 1, policy, fail(std::errc::invalid_argument));
  EXPECT_TRUE(cache.execute("bad", 1, policy, fail(std::errc::invalid_argument)).replayed);
  (void)cache.execute("busy", 1, policy, fail(std::errc::device_or_resource_busy));
  EXPECT_FALSE(cache.execute("busy", 1, policy, fail(std::errc::device_or_resource_busy)).replayed);
  EXPECT_EQ(runs, 3);
}

TEST(IdempotencyCacheTest, Issue13_BracedEmptyOptionsAreNotAmbiguous) {
  sturdy::idempotency_cache<int> a({});
  sturdy::idempotency_cache<int> b({}, {});
  sturdy::idempotency_cache<std::string> c({.ttl = 1h});
  static_assert(!std::is_copy_constructible_v<sturdy::idempotency_cache<int>>);
  static_assert(!std::is_move_constructible_v<sturdy::idempotency_cache<int>>);
  EXPECT_TRUE(a.execute("k", 1, [] { return 1; }).result.has_value());
  EXPECT_TRUE(b.validation_message().empty());
  EXPECT_TRUE(c.options_status().has_value());
}

TEST(IdempotencyCacheTest, Issue13_MakeIdempotencyCacheDeducesTheListenerAndFailsAtStartUp) {
  recording_listener events;
  // The listener's type is deduced: no template argument besides T.
  auto made = sturdy::make_idempotency_cache<int>({.ttl = 1h}, {.shards = 4, .max_entries = 64}, events);
  ASSERT_TRUE(made.has_value());
  auto cache = std::move(made).value();
  static_assert(std::is_same_v<decltype(cache)::element_type::listener_type, recording_listener>);
  (void)cache->execute("k", 1, [] { return 1; });
  EXPECT_EQ(events.count<sturdy::idempotency_executed>(), 1U);

  // With a manual clock and a recording sleeper too.
  manual_clock clock;
  recording_sleeper sleeper(clock);
  auto with_clock = sturdy::make_idempotency_cache<int>({}, {}, clock, sleeper, events);
  ASSERT_TRUE(with_clock.has_value());
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(with_clock.value())>::element_type::clock_type,
                               manual_clock>);

  // Invalid options, the cache's or the store's: refused at start-up, the
  // field named in the event.
  recording_listener refused;
  EXPECT_EQ(sturdy::make_idempotency_cache<int>({.lease = 0s}, {}, refused).error(), errc::invalid_options);
  EXPECT_EQ(sturdy::make_idempotency_cache<int>({}, {.shards = 3}, refused).error(), errc::invalid_options);
  auto why = refused.of<sturdy::options_rejected>();
  ASSERT_EQ(why.size(), 2U);
  EXPECT_EQ(why[0].primitive, "idempotency_cache");
  EXPECT_EQ(why[0].message, "idempotency_options.lease must be > 0");
  EXPECT_EQ(why[1].message, "memory_store_options.shards must be a power of two in [1, 1024]");
}

// An error type that carries a message (like absl::Status with the adapter).
struct named_error {
  named_error(std::error_code c, std::string m) : code(c), message(std::move(m)) {}
  std::error_code code;
  std::string message;
};
std::error_code sturdy_to_error_code(const named_error& e) { return e.code; }
named_error sturdy_from_error_code(std::error_code ec, std::type_identity<named_error>) { return {ec, {}}; }
named_error sturdy_from_error_code(std::error_code ec, std::string_view message,
                                   std::type_identity<named_error>) {
  return {ec, std::string(message)};
}
using named_result =
    BOOST_OUTCOME_V2_NAMESPACE::basic_result<int, named_error, BOOST_OUTCOME_V2_NAMESPACE::policy::terminate>;

TEST(IdempotencyCacheTest, Issue13_RefusedOptionsEmitOneEventAndNameTheFieldInTheError) {
  fixture f;
  auto cache = f.make({.ttl = 0s});
  int runs = 0;
  for (int i = 0; i < 3; ++i) {
    named_result r = cache->execute("k", 1, [&]() -> named_result { return ++runs; }).result;
    ASSERT_TRUE(r.has_error());
    EXPECT_EQ(r.error().code, errc::invalid_options);
    EXPECT_EQ(r.error().message, "idempotency_options.ttl must be > 0");
  }
  // A result type without room for a message keeps the code.
  EXPECT_EQ(cache->execute("k", 1, [&] { return ++runs; }).result.error(), errc::invalid_options);
  EXPECT_EQ(runs, 0);
  auto rejected = f.events.of<sturdy::options_rejected>();
  ASSERT_EQ(rejected.size(), 1U);  // once, on the first refused call
  EXPECT_EQ(rejected[0].primitive, "idempotency_cache");
  EXPECT_EQ(rejected[0].message, "idempotency_options.ttl must be > 0");

  // A per-call policy that is invalid names its field as well.
  fixture g;
  auto ok = g.make();
  named_result p =
      ok->execute("k", 1, {.wait_timeout = -1s}, [&]() -> named_result { return ++runs; }).result;
  EXPECT_EQ(p.error().message, "idempotency_policy.wait_timeout must be >= 0");
  EXPECT_EQ(g.events.count<sturdy::options_rejected>(), 1U);
}

// --- A caller that has given up is refused before the store is asked -------

// A fired ctx.token (either reason) on a free key: its errc, nothing
// acquired, fn never called, no execution event and no counter but the
// refusal event; the key stays free for the next live caller.
TEST(IdempotencyCacheTest, Issue17_AFiredTokenNeverAcquiresAFreeKey) {
  for (const sturdy::cancel_reason why : {sturdy::cancel_reason::cancelled, sturdy::cancel_reason::deadline}) {
    SCOPED_TRACE(static_cast<int>(why));
    fixture f;
    auto cache = f.make();
    sturdy::cancel_source caller;
    ASSERT_TRUE(caller.request(why));
    sturdy::call_context ctx;
    ctx.token = caller.token();
    int runs = 0;
    auto fn = [&] { return ++runs; };
    auto r = cache->execute("k", 1, fn, ctx);
    ASSERT_FALSE(r.result.has_value()) << "the work ran";
    EXPECT_EQ(r.result.error(), sturdy::to_errc(why));
    EXPECT_FALSE(r.replayed);
    EXPECT_EQ(runs, 0);
    auto s = cache->stats();
    EXPECT_EQ(s.entries, 0U);  // the key is still free
    EXPECT_EQ(s.misses, 0U);
    EXPECT_EQ(s.rejections, 0U);  // `rejections` counts in_progress refusals only
    EXPECT_EQ(f.events.count<sturdy::idempotency_executed>(), 0U);
    auto rejected = f.events.of<sturdy::idempotency_rejected>();
    ASSERT_EQ(rejected.size(), 1U);
    EXPECT_EQ(rejected[0].reason, sturdy::to_errc(why));
    // A later call with a live token runs the work.
    sturdy::cancel_source live;
    sturdy::call_context ok;
    ok.token = live.token();
    auto later = cache->execute("k", 1, fn, ok);
    EXPECT_EQ(later.result.value(), 1);
    EXPECT_FALSE(later.replayed);
  }
}

// A completed key is not replayed to a caller whose token fired: the answer
// does not depend on the key's state (docs/idempotency.md, Guarantees).
TEST(IdempotencyCacheTest, Issue17_AFiredTokenGetsNoReplayEither) {
  fixture f;
  auto cache = f.make();
  ASSERT_EQ(cache->execute("k", 1, [] { return 7; }).result.value(), 7);
  sturdy::cancel_source caller;
  caller.request_stop();
  sturdy::call_context ctx;
  ctx.token = caller.token();
  auto r = cache->execute("k", 1, [] { return 8; }, ctx);
  ASSERT_FALSE(r.result.has_value()) << "replayed";
  EXPECT_EQ(r.result.error(), errc::cancelled);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(cache->stats().hits, 0U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_replayed>(), 0U);
}

// ctx.deadline already passed (at the deadline counts as passed): the same
// rule, errc::deadline_exceeded; 1 ns left still runs.
TEST(IdempotencyCacheTest, Issue17_APassedDeadlineNeverAcquiresAFreeKeyNorReplays) {
  fixture f;
  auto cache = f.make();
  const auto clock = sturdy::clock_ref::of(f.clock);
  int runs = 0;
  auto fn = [&] { return ++runs; };
  sturdy::call_context past;
  past.deadline = sturdy::deadline::at(f.clock.now() - 1s, clock);
  sturdy::call_context now;
  now.deadline = sturdy::deadline::at(f.clock.now(), clock);
  ASSERT_FALSE(cache->execute("k", 1, fn, past).result.has_value()) << "the work ran";
  EXPECT_EQ(cache->execute("k", 1, fn, past).result.error(), errc::deadline_exceeded);
  EXPECT_EQ(cache->execute("k", 1, fn, now).result.error(), errc::deadline_exceeded);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(cache->stats().entries, 0U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_executed>(), 0U);
  sturdy::call_context just;
  just.deadline = sturdy::deadline::after(1ns, clock, f.clock.now());
  EXPECT_EQ(cache->execute("k", 1, fn, just).result.value(), 1);
  // Completed now; a passed deadline still gets no replay.
  EXPECT_EQ(cache->execute("k", 1, fn, now).result.error(), errc::deadline_exceeded);
  EXPECT_EQ(cache->stats().hits, 0U);
  EXPECT_EQ(runs, 1);
}

// A waiter that oversleeps both its wait_timeout (1 s) and the caller's later
// deadline (1.5 s) is answered by the bound that came first: wait_timeout,
// counted, as before the fired-token check moved ahead of the store (review
// finding: it answered deadline_exceeded and lost the count).
TEST(IdempotencyCacheTest, Issue17_AnOversleptWaiterGetsTheBoundThatCameFirst) {
  fixture f;
  auto cache = f.make();
  const auto clock = sturdy::clock_ref::of(f.clock);
  auto owner = cache->store().begin("k", 1, 30s).value();
  (void)owner;
  sturdy::call_context ctx;
  ctx.deadline = sturdy::deadline::after(1500ms, clock, f.clock.now());
  f.sleeper.on_sleep([&](sturdy::duration) { f.clock.advance(1s); });  // wakes 1 s late
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(1s), [&] { return ++runs; }, ctx);
  ASSERT_FALSE(r.result.has_value()) << "the work ran";
  EXPECT_EQ(r.result.error(), errc::wait_timeout);
  EXPECT_EQ(cache->stats().wait_timeouts, 1U);
  EXPECT_EQ(runs, 0);
  // The caller's deadline first (0.5 s, wait_timeout 1 s): deadline_exceeded, not counted.
  sturdy::call_context early;
  early.deadline = sturdy::deadline::after(500ms, clock, f.clock.now());
  auto e = cache->execute("k", 1, waiting(1s), [&] { return ++runs; }, early);
  EXPECT_EQ(e.result.error(), errc::deadline_exceeded);
  EXPECT_EQ(cache->stats().wait_timeouts, 1U);
  EXPECT_EQ(runs, 0);
}

// A parked waiter whose token fires while the owner abandons the key (both
// wake it): it must not take the freed key and run the work.
TEST(IdempotencyCacheTest, Issue17_AWaiterWhoseTokenFiredDoesNotTakeAnAbandonedKey) {
  fixture f;
  auto cache = f.make();
  auto owner = cache->store().begin("k", 1, 30s).value();
  sturdy::cancel_source caller;
  sturdy::call_context ctx;
  ctx.token = caller.token();
  f.sleeper.on_sleep([&](sturdy::duration) {
    caller.request_stop();
    ASSERT_TRUE(cache->store().abandon("k", owner.token).has_value());
  });
  int runs = 0;
  auto r = cache->execute("k", 1, waiting(), [&] { return ++runs; }, ctx);
  ASSERT_FALSE(r.result.has_value()) << "the work ran";
  EXPECT_EQ(r.result.error(), errc::cancelled);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(cache->stats().entries, 0U);
  EXPECT_EQ(f.events.count<sturdy::idempotency_executed>(), 0U);
}

// The same for a store that cannot wake waiters (Redis): the poll sleep is
// cut short by the token, and the step after it does not ask the store, so
// the key the owner released meanwhile is not taken.
TEST(IdempotencyCacheTest, Issue17_APollingWaiterWhoseTokenFiredDoesNotTakeAReleasedKey) {
  polling_fixture p;
  auto& cache = p.cache;
  auto& sleeper = p.sleeper;
  auto owner = cache.store().begin("k", 1, 30s, nullptr).value();
  sturdy::cancel_source caller;
  sturdy::call_context ctx;
  ctx.token = caller.token();
  int sleeps = 0;
  sleeper.on_sleep([&](sturdy::duration) {
    if (++sleeps == 2) {
      caller.request_stop();
      ASSERT_TRUE(cache.store().abandon("k", owner.token).has_value());
    }
  });
  int runs = 0;
  auto r = cache.execute("k", 1, waiting(), [&] { return ++runs; }, ctx);
  ASSERT_FALSE(r.result.has_value()) << "the work ran";
  EXPECT_EQ(r.result.error(), errc::cancelled);
  EXPECT_EQ(runs, 0);
  EXPECT_EQ(sleeps, 2);
  EXPECT_EQ(cache.stats().entries, 0U);
}

TEST(FingerprintTest, StableFingerprintIsFnv1a64) {
  static_assert(sturdy::stable_fingerprint("") == 0xcbf29ce484222325ULL);
  EXPECT_EQ(sturdy::stable_fingerprint("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(sturdy::stable_fingerprint("foobar"), 0x85944171f73967e8ULL);
}

TEST(FingerprintTest, FieldsAreLengthPrefixedSoBoundariesMatter) {
  EXPECT_NE(sturdy::stable_fingerprint({"ab", "c"}), sturdy::stable_fingerprint({"a", "bc"}));
  EXPECT_EQ(sturdy::stable_fingerprint({"ab", "c"}), sturdy::stable_fingerprint({"ab", "c"}));
  EXPECT_EQ(sturdy::process_fingerprint("payload"), sturdy::process_fingerprint("payload"));
  EXPECT_NE(sturdy::process_fingerprint("payload"), sturdy::process_fingerprint("payloae"));
}

}  // namespace
