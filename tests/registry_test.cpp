// Tests of sturdy::registry: creation from per-key options, eviction only of
// quiescent (or idle busy) entries, the bounds under a hostile key flood,
// overflow policies, handles outliving eviction, the circuit breaker's
// quiescence, allocation-free lookup. A fake primitive with controllable
// quiescence keeps these tests independent of other primitives' code.
#include "sturdy/registry.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/testing/counting_allocator.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::quiescence;
using sturdy::testing::manual_clock;

struct fake_options {
  std::string key;
  std::size_t heap_bytes = 0;
};

// A primitive whose quiescence the test sets.
class fake_primitive {
 public:
  using options_type = fake_options;
  explicit fake_primitive(fake_options o) : options_(std::move(o)) {}
  [[nodiscard]] sturdy::quiescence quiescence(sturdy::time_point /*now*/) const noexcept { return state_.load(); }
  void set(sturdy::quiescence q) noexcept { state_.store(q); }
  [[nodiscard]] const fake_options& options() const noexcept { return options_; }

 private:
  fake_options options_;
  std::atomic<sturdy::quiescence> state_{sturdy::quiescence::quiescent};
};

[[maybe_unused]] std::size_t sturdy_heap_bytes(const fake_primitive& p) noexcept { return p.options().heap_bytes; }

using fake_registry = sturdy::registry<fake_primitive, manual_clock>;

// prefix + decimal n, built without std::string operator+ (which trips GCC
// 12's false -Wrestrict at -O3).
std::string numbered(std::string_view prefix, std::uint64_t n) {
  char buf[24];
  const int len = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  std::string out;
  out.reserve(prefix.size() + static_cast<std::size_t>(len));
  out.append(prefix);
  out.append(buf, static_cast<std::size_t>(len));
  return out;
}

sturdy::registry_options<fake_options> opts(std::size_t max_entries, std::size_t shards = 1) {
  return {.max_entries = max_entries,
          .idle_timeout = std::chrono::minutes(10),
          .shards = shards,
          .options_for = [](std::string_view key) { return fake_options{std::string(key)}; }};
}

TEST(RegistryTest, CreatesOnFirstUseFromPerKeyOptionsAndReturnsTheSameEntryAfter) {
  std::atomic<int> calls{0};
  auto o = opts(100);
  o.options_for = [&calls](std::string_view key) {
    ++calls;
    return fake_options{"built:" + std::string(key)};
  };
  fake_registry reg(o, manual_clock());
  auto a = reg.get("host-a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a.value()->options().key, "built:host-a");
  auto again = reg.get("host-a");
  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().get(), a.value().get());
  EXPECT_EQ(calls.load(), 1);
  auto b = reg.get("host-b");
  ASSERT_TRUE(b);
  EXPECT_NE(b.value().get(), a.value().get());
  EXPECT_EQ(reg.size(), 2U);
  const auto st = reg.stats();
  EXPECT_EQ(st.creations, 2U);
  EXPECT_EQ(st.hits, 1U);
  EXPECT_EQ(st.entries, 2U);
}

TEST(RegistryTest, EmptyOptionsFunctionBuildsDefaultOptions) {
  sturdy::registry<fake_primitive> reg({.max_entries = 8});
  auto a = reg.get("x");
  ASSERT_TRUE(a);
  EXPECT_EQ(a.value()->options().key, "");
}

TEST(RegistryTest, LookupOfAnExistingKeyAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  fake_registry reg(opts(100, 4), manual_clock());
  const std::string long_key(200, 'k');
  ASSERT_TRUE(reg.get("short"));
  ASSERT_TRUE(reg.get(long_key));
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    auto a = reg.get("short");
    auto b = reg.get(std::string_view(long_key));
    auto c = reg.find("short");
    ASSERT_TRUE(a && b && c);
  }
  EXPECT_EQ(scope.allocations(), 0U);
}

TEST(RegistryTest, LookupWithIdleTimeoutAllocatesNothingEither) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "counting allocator not installed";
  manual_clock clock;
  auto o = opts(100, 4);
  o.idle_timeout = 1s;
  fake_registry reg(o, clock);
  ASSERT_TRUE(reg.get("k"));
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    clock.advance(1ms);
    ASSERT_TRUE(reg.get("k"));
  }
  EXPECT_EQ(scope.allocations(), 0U);
}

// Fills a one-shard registry of `n` entries "k0".."k{n-1}" and sets their
// quiescence; the handles are released.
void fill(fake_registry& reg, const std::vector<quiescence>& states) {
  for (std::size_t i = 0; i < states.size(); ++i) {
    auto h = reg.get(numbered("k", i));
    ASSERT_TRUE(h);
    h.value()->set(states[i]);
  }
}

bool present(fake_registry& reg, std::string_view key) { return static_cast<bool>(reg.find(key)); }

TEST(RegistryTest, EvictsOnlyQuiescentEntries) {
  auto o = opts(4);
  o.idle_timeout = sturdy::duration::max();
  fake_registry reg(o, manual_clock());
  fill(reg, {quiescence::pinned, quiescence::busy, quiescence::quiescent, quiescence::pinned});
  auto fresh = reg.get("new");
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(present(reg, "k2"));  // the only quiescent one
  EXPECT_TRUE(present(reg, "k0"));
  EXPECT_TRUE(present(reg, "k1"));
  EXPECT_TRUE(present(reg, "k3"));
  EXPECT_EQ(reg.size(), 4U);
  EXPECT_EQ(reg.stats().evictions, 1U);
}

TEST(RegistryTest, RefusesWithCapacityExceededWhenNothingIsEvictable) {
  auto o = opts(3);
  o.idle_timeout = sturdy::duration::max();
  fake_registry reg(o, manual_clock());
  fill(reg, {quiescence::pinned, quiescence::busy, quiescence::pinned});
  auto r = reg.get("new");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), sturdy::errc::capacity_exceeded);
  EXPECT_EQ(reg.size(), 3U);
  EXPECT_EQ(reg.stats().refusals, 1U);
  // Once one becomes quiescent, the next new key gets its place.
  reg.find("k1")->set(quiescence::quiescent);
  EXPECT_TRUE(reg.get("new"));
  EXPECT_FALSE(present(reg, "k1"));
}


TEST(RegistryTest, HeldEntriesAreNeverEvicted) {
  auto o = opts(2);
  fake_registry reg(o, manual_clock());
  auto held = reg.get("held").value();
  ASSERT_TRUE(reg.get("other"));
  reg.find("other")->set(quiescence::pinned);
  // "held" is quiescent but a caller holds it: it may be mid-call.
  auto r = reg.get("new");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), sturdy::errc::capacity_exceeded);
  held = {};
  EXPECT_TRUE(reg.get("new"));
  EXPECT_FALSE(present(reg, "held"));
}

TEST(RegistryTest, AnEntryRemovedWhileHeldStaysAliveForItsHolder) {
  fake_registry reg(opts(4), manual_clock());
  auto h = reg.get("k").value();
  h->set(quiescence::busy);
  EXPECT_TRUE(reg.erase("k"));
  EXPECT_FALSE(reg.erase("k"));
  EXPECT_EQ(reg.size(), 0U);
  EXPECT_EQ(h->quiescence(sturdy::time_point()), quiescence::busy);  // still valid
  EXPECT_EQ(h->options().key, "k");
  auto again = reg.get("k").value();
  EXPECT_NE(again.get(), h.get());
  EXPECT_EQ(again->quiescence(sturdy::time_point()), quiescence::quiescent);
}

TEST(RegistryTest, HandlesOutliveTheRegistry) {
  sturdy::registry_handle<fake_primitive> h;
  {
    fake_registry reg(opts(4), manual_clock());
    h = reg.get("k").value();
  }
  EXPECT_EQ(h->options().key, "k");
}

TEST(RegistryTest, RecentlyUsedQuiescentEntriesGetASecondChance) {
  fake_registry reg(opts(3), manual_clock());
  fill(reg, {quiescence::quiescent, quiescence::quiescent, quiescence::quiescent});
  // Entries start unreferenced; using k0 and k2 sets their CLOCK bit.
  ASSERT_TRUE(reg.get("k0"));
  ASSERT_TRUE(reg.get("k2"));
  ASSERT_TRUE(reg.get("new"));
  EXPECT_FALSE(present(reg, "k1"));
  EXPECT_TRUE(present(reg, "k0"));
  EXPECT_TRUE(present(reg, "k2"));
}

TEST(RegistryTest, BusyEntriesAreEvictedOnlyAfterIdleTimeout) {
  manual_clock clock;
  auto o = opts(2);
  o.idle_timeout = 10s;
  fake_registry reg(o, clock);
  fill(reg, {quiescence::busy, quiescence::busy});
  clock.advance(9s);
  ASSERT_TRUE(reg.get("k1"));  // a use restarts k1's idle time
  EXPECT_EQ(reg.get("new").error(), sturdy::errc::capacity_exceeded);
  clock.advance(1s);  // k0 idle for 10 s, k1 for 1 s
  ASSERT_TRUE(reg.get("new"));
  EXPECT_FALSE(present(reg, "k0"));
  EXPECT_TRUE(present(reg, "k1"));
}

TEST(RegistryTest, AnEntryUsedJustBeforeASweepIsNotTakenForIdle) {
  manual_clock clock;
  auto o = opts(1);
  o.idle_timeout = 10s;
  fake_registry reg(o, clock);
  fill(reg, {quiescence::busy});
  clock.advance(30s);
  ASSERT_TRUE(reg.get("k0"));  // used at 30 s
  // The sweep at 31 s finds the bit, stamps 31 s, spares it.
  clock.advance(1s);
  EXPECT_EQ(reg.get("new").error(), sturdy::errc::capacity_exceeded);
  clock.advance(9s);  // idle >= 9 s only: still spared
  EXPECT_EQ(reg.get("new").error(), sturdy::errc::capacity_exceeded);
  clock.advance(1s);  // 10 s since the stamp
  EXPECT_TRUE(reg.get("new"));
  EXPECT_FALSE(present(reg, "k0"));
}

TEST(RegistryTest, PinnedEntriesAreNeverEvictedHoweverLongIdle) {
  manual_clock clock;
  auto o = opts(1);
  o.idle_timeout = 1s;
  fake_registry reg(o, clock);
  fill(reg, {quiescence::pinned});
  clock.advance(std::chrono::hours(24 * 365 * 100));
  EXPECT_EQ(reg.get("new").error(), sturdy::errc::capacity_exceeded);
  EXPECT_TRUE(present(reg, "k0"));
}

TEST(RegistryTest, IdleTimeoutExtremes) {
  for (const sturdy::duration idle : {sturdy::duration::zero(), sturdy::duration(1), sturdy::duration::max()}) {
    SCOPED_TRACE(idle.count());
    manual_clock clock;
    auto o = opts(1);
    o.idle_timeout = idle;
    fake_registry reg(o, clock);
    fill(reg, {quiescence::busy});
    clock.advance(1ns);
    const bool evicted = static_cast<bool>(reg.get("new"));
    EXPECT_EQ(evicted, idle != sturdy::duration::max());
    EXPECT_EQ(present(reg, "k0"), !evicted);
  }
}

TEST(RegistryTest, SharedOverflowEntryWhenFullOfLiveEntries) {
  auto o = opts(2);
  o.overflow = sturdy::registry_overflow::shared_entry;
  fake_registry reg(o, manual_clock());
  fill(reg, {quiescence::pinned, quiescence::pinned});
  auto a = reg.get("x").value();
  auto b = reg.get("y").value();
  EXPECT_TRUE(a.is_overflow());
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a->options().key, "");  // built from options_for("")
  EXPECT_FALSE(reg.get("k0").value().is_overflow());
  EXPECT_EQ(reg.size(), 2U);
  EXPECT_EQ(reg.stats().overflows, 2U);
  EXPECT_EQ(reg.stats().refusals, 0U);
}

TEST(RegistryTest, HostileFloodStaysWithinTheBoundAndLegitimateKeysStillGetEntries) {
  constexpr std::size_t max_entries = 1024;
  auto o = opts(max_entries, 16);
  o.max_bytes = 256 * 1024;
  fake_registry reg(o, manual_clock());
  // Legitimate keys in use: one tripped (pinned), the others used often.
  auto tripped = reg.get("legit-tripped").value();
  tripped->set(quiescence::pinned);
  tripped = {};
  std::vector<std::string> legit;
  for (int i = 0; i < 8; ++i) legit.push_back(numbered("legit-", i));
  std::mt19937_64 gen(42);
  constexpr int flood = STURDY_TSAN ? 100'000 : 1'000'000;
  std::size_t refused = 0;
  for (int i = 0; i < flood; ++i) {
    const std::string key = numbered("evil-", gen());
    auto r = reg.get(key);
    if (!r) ++refused;
    if (i % 64 == 0) {
      for (const auto& k : legit) ASSERT_TRUE(reg.get(k));
    }
    if (i % 4096 == 0) {
      const auto st = reg.stats();
      ASSERT_LE(st.entries, max_entries);
      ASSERT_LE(st.bytes, o.max_bytes);
    }
  }
  const auto st = reg.stats();
  EXPECT_LE(st.entries, max_entries);
  EXPECT_LE(st.bytes, o.max_bytes);
  EXPECT_EQ(refused, 0U);  // fresh hostile entries are quiescent: they evict each other
  EXPECT_GE(st.evictions, static_cast<std::uint64_t>(flood) - max_entries);
  // The tripped key kept its state; the used keys kept their entries.
  ASSERT_TRUE(present(reg, "legit-tripped"));
  EXPECT_EQ(reg.find("legit-tripped")->quiescence({}), quiescence::pinned);
  for (const auto& k : legit) EXPECT_TRUE(present(reg, k)) << k;
  // New legitimate keys still get entries.
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(reg.get(numbered("after-", i))) << i;
}

TEST(RegistryTest, ByteBoundCountsKeysAndPrimitiveHeapBytes) {
  using reg_t = fake_registry;
  const std::size_t per_entry = reg_t::entry_overhead + 1000;
  auto o = opts(100);
  o.max_bytes = 3 * per_entry;
  o.max_key_length = 1 << 20;
  o.options_for = [](std::string_view key) { return fake_options{std::string(key), 1000}; };
  reg_t reg(o, manual_clock());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(reg.get(numbered("k", i)));
  EXPECT_EQ(reg.size(), 3U);
  EXPECT_EQ(reg.stats().bytes, 3 * per_entry);
  // A key whose entry alone exceeds the shard's bytes is refused, evicting nothing.
  EXPECT_EQ(reg.get(std::string(3 * per_entry, 'x')).error(), sturdy::errc::capacity_exceeded);
  EXPECT_EQ(reg.size(), 3U);
}

TEST(RegistryTest, KeyLongerThanTheLimitIsRefused) {
  auto o = opts(10);
  o.max_key_length = 4;
  fake_registry reg(o, manual_clock());
  EXPECT_TRUE(reg.get("abcd"));
  EXPECT_EQ(reg.get("abcde").error(), sturdy::errc::invalid_key);
}

TEST(RegistryTest, InvalidOptionsAreRefusedNamingTheField) {
  auto o = opts(0);
  EXPECT_EQ(o.validation_message(), "registry_options.max_entries must be >= 1");
  fake_registry reg(o, manual_clock());
  EXPECT_EQ(reg.get("k").error(), sturdy::errc::invalid_options);
  EXPECT_EQ(reg.options_status().error(), sturdy::errc::invalid_options);
  EXPECT_FALSE(reg.find("k"));
  EXPECT_FALSE(reg.erase("k"));
  auto s = opts(100, 3);
  EXPECT_EQ(s.validation_message(), "registry_options.shards must be 0 or a power of two <= 4096");
  auto s2 = opts(4, 8);
  EXPECT_EQ(s2.validation_message(), "registry_options.shards must be <= max_entries");
  auto i = opts(4);
  i.idle_timeout = -1ns;
  EXPECT_EQ(i.validation_message(), "registry_options.idle_timeout must be >= 0");
  auto k = opts(4);
  k.max_key_length = 0;
  EXPECT_EQ(k.validation_message(), "registry_options.max_key_length must be >= 1");
  EXPECT_TRUE(opts(4).validate());
}

TEST(RegistryTest, AutomaticShardsKeepAtLeast64EntriesPerShard) {
  EXPECT_EQ(sturdy::registry_options<fake_options>{.max_entries = 1}.shard_count(), 1U);
  EXPECT_EQ(sturdy::registry_options<fake_options>{.max_entries = 128}.shard_count(), 2U);
  EXPECT_EQ(sturdy::registry_options<fake_options>{.max_entries = 10'000}.shard_count(), 64U);
}

TEST(RegistryTest, AnExceptionFromTheOptionsFunctionLeavesTheRegistryUnchanged) {
  auto o = opts(4);
  o.options_for = [](std::string_view key) -> fake_options {
    if (key == "bad") throw std::runtime_error("no config");
    return fake_options{std::string(key)};
  };
  fake_registry reg(o, manual_clock());
  ASSERT_TRUE(reg.get("good"));
  EXPECT_THROW((void)reg.get("bad"), std::runtime_error);
  EXPECT_EQ(reg.size(), 1U);
  EXPECT_EQ(reg.stats().creations, 1U);
  EXPECT_TRUE(reg.get("good"));
}

TEST(RegistryTest, SnapshotEnumeratesEntriesWithQuiescenceAndIdleTime) {
  manual_clock clock;
  auto o = opts(10);
  o.idle_timeout = 1min;
  fake_registry reg(o, clock);
  fill(reg, {quiescence::quiescent, quiescence::busy, quiescence::pinned});
  clock.advance(5s);
  ASSERT_TRUE(reg.get("k1"));
  clock.advance(2s);
  auto snap = reg.snapshot();
  ASSERT_EQ(snap.size(), 3U);
  std::set<std::string> keys;
  for (const auto& e : snap) {
    keys.insert(e.key);
    EXPECT_TRUE(e.handle);
    if (e.key == "k0") {
      EXPECT_EQ(e.state, quiescence::quiescent);
    }
    if (e.key == "k1") {
      EXPECT_EQ(e.state, quiescence::busy);
      EXPECT_EQ(e.idle, 0s);  // looked up since the last sweep
    }
    if (e.key == "k2") {
      EXPECT_EQ(e.state, quiescence::pinned);
      EXPECT_EQ(e.idle, 7s);
    }
  }
  EXPECT_EQ(keys, (std::set<std::string>{"k0", "k1", "k2"}));
}

// --- the circuit breaker ------------------------------------------------------

using breaker = sturdy::circuit_breaker<manual_clock>;

TEST(RegistryTest, BreakerQuiescenceFollowsItsStateAndWindows) {
  manual_clock clock;
  breaker b({.consecutive_failure_threshold = 2, .count_window_size = 10, .minimum_calls = 10}, clock);
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::quiescent);
  auto p = b.try_acquire().value();
  b.record(p, sturdy::call_outcome::success);
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::quiescent);  // successes only
  p = b.try_acquire().value();
  b.record(p, sturdy::call_outcome::failure);
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::busy);  // a failure in its window
  p = b.try_acquire().value();
  b.record(p, sturdy::call_outcome::failure);
  ASSERT_EQ(b.state(), sturdy::breaker_state::open);
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::pinned);
  b.reset();
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::quiescent);
  b.force_open();
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::pinned);
  b.disable();
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::pinned);
}

TEST(RegistryTest, ABreakerBuiltFromInvalidOptionsIsQuiescentLikeAFreshOne) {
  manual_clock clock;
  breaker b({.open_duration = sturdy::duration::zero()}, clock);  // invalid: forced open from birth
  ASSERT_FALSE(b.options_status());
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::quiescent);
}

TEST(RegistryTest, BreakerWithSlowCallsInATimeWindowIsBusy) {
  manual_clock clock;
  breaker b({.consecutive_failure_threshold = 0,
             .slow_call_duration = 1s,
             .count_window_size = 0,
             .time_window = 10s,
             .minimum_calls = 100},
            clock);
  auto p = b.try_acquire().value();
  b.record(p, sturdy::call_outcome::success, 2s);
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::busy);
  clock.advance(11s);  // the time window empties
  EXPECT_EQ(sturdy::quiescence_of(b, clock.now()), quiescence::quiescent);
}

TEST(RegistryTest, ATrippedBreakerIsNeverEvictedWhileOpen) {
  manual_clock clock;
  sturdy::registry<breaker, manual_clock> reg(
      {.max_entries = 64,
       .idle_timeout = 1s,
       .shards = 1,
       .options_for = [](std::string_view) {
         return sturdy::circuit_breaker_options{.consecutive_failure_threshold = 1,
                                                .open_duration = std::chrono::hours(1),
                                                .max_open_duration = std::chrono::hours(1)};
       }},
      clock);
  {
    auto b = reg.get("down.example").value();
    b->record(b->try_acquire().value(), sturdy::call_outcome::failure);
    ASSERT_EQ(b->state(), sturdy::breaker_state::open);
  }
  clock.advance(std::chrono::minutes(30));  // idle far beyond idle_timeout
  for (int i = 0; i < 10'000; ++i) ASSERT_TRUE(reg.get(numbered("flood-", i)));
  auto b = reg.find("down.example");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->state(), sturdy::breaker_state::open);
  EXPECT_EQ(reg.get("x").value()->options().open_duration, std::chrono::hours(1));
}

TEST(RegistryTest, BreakerHeapBytesAreCharged) {
  manual_clock clock;
  breaker b({.count_window_size = 1000, .counter_stripes = 4}, clock);
  EXPECT_GE(sturdy::sturdy_heap_bytes(b), 4 * sturdy::detail::counter_stripe_size + 1000);
}

TEST(RegistryTest, QuiescenceToString) {
  EXPECT_EQ(sturdy::to_string(quiescence::quiescent), "quiescent");
  EXPECT_EQ(sturdy::to_string(quiescence::busy), "busy");
  EXPECT_EQ(sturdy::to_string(quiescence::pinned), "pinned");
}

// A type reporting quiescence through the bool member form.
struct bool_form {
  using options_type = int;
  explicit bool_form(int v) : v_(v) {}
  [[nodiscard]] bool quiescent(sturdy::time_point) const noexcept { return v_ == 0; }
  int v_;
};

TEST(RegistryTest, BoolQuiescentMemberMeansQuiescentOrBusy) {
  EXPECT_EQ(sturdy::quiescence_of(bool_form(0), {}), quiescence::quiescent);
  EXPECT_EQ(sturdy::quiescence_of(bool_form(1), {}), quiescence::busy);
  sturdy::registry<bool_form> reg({.max_entries = 1, .options_for = [](std::string_view k) { return int(k.size()); }});
  ASSERT_TRUE(reg.get("a"));  // busy (1)
  // Busy, and not idle for the default 10 minutes: no room.
  EXPECT_EQ(reg.get("b").error(), sturdy::errc::capacity_exceeded);
}

TEST(RegistryTest, RateLimiterEntriesInDebtAreNeverEvictedEvenWhenIdle) {
  // A 10-per-hour tenant that used its burst must not get a fresh quota by
  // being evicted after the idle timeout (review finding r10).
  manual_clock clock;
  sturdy::registry<sturdy::rate_limiter<manual_clock>, manual_clock> reg(
      {.max_entries = 1,
       .idle_timeout = std::chrono::minutes(10),
       .overflow = sturdy::registry_overflow::refuse,
       .options_for = [](std::string_view) {
         return sturdy::rate_limiter_options{.rate = 10, .period = std::chrono::hours(1), .burst = 10};
       }},
      clock);
  int admitted = 0;
  {
    auto a = reg.get("tenant-a");
    ASSERT_TRUE(a);
    for (int i = 0; i < 20; ++i) admitted += a.value()->try_acquire().allowed ? 1 : 0;
  }
  EXPECT_EQ(admitted, 10);
  EXPECT_EQ(sturdy::quiescence_of(*reg.find("tenant-a").get(), clock.now()), sturdy::quiescence::pinned);
  clock.advance(std::chrono::minutes(11));  // idle longer than idle_timeout, bucket still in debt
  EXPECT_FALSE(reg.get("tenant-b")) << "evicting a limiter in debt would reset the tenant's quota";
  {
    auto a = reg.get("tenant-a");
    ASSERT_TRUE(a);
    for (int i = 0; i < 20; ++i) admitted += a.value()->try_acquire().allowed ? 1 : 0;
  }
  EXPECT_EQ(admitted, 11) << "11 minutes at 10 per hour refill one request";
  clock.advance(std::chrono::hours(2));  // full again: like a fresh limiter
  EXPECT_EQ(sturdy::quiescence_of(*reg.find("tenant-a").get(), clock.now()), sturdy::quiescence::quiescent);
  EXPECT_TRUE(reg.get("tenant-b"));
}

TEST(RegistryTest, ConcurrencyLimiterEntriesArePinnedWhilePermitsAreOut) {
  sturdy::registry<sturdy::concurrency_limiter<>> reg({.max_entries = 1, .overflow = sturdy::registry_overflow::refuse});
  sturdy::concurrency_limiter<>::permit permit;
  {
    auto db = reg.get("db-1");
    ASSERT_TRUE(db);
    auto p = db.value()->try_acquire();
    ASSERT_TRUE(p);
    permit = std::move(p).value();
  }
  EXPECT_FALSE(reg.get("db-2")) << "evicting a limiter with a permit out would admit past its limit";
  permit.record_success();
  EXPECT_TRUE(reg.get("db-2"));
}

}  // namespace
