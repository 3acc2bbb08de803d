// The behavioural test suite of the `sturdy::idempotency_store` concept, as a
// GoogleTest typed-test-suite-P: every store (the in-memory one, the Redis
// one) must pass it unchanged.
//
// To run it against a store `S`, specialise `sturdy::test::store_harness<S>`:
//
//   template <> struct sturdy::test::store_harness<MyStore> {
//     using value_type = MyStore::value_type;
//     std::unique_ptr<MyStore> make();                 // a fresh, empty store
//     void advance(sturdy::duration d);                // let d pass for the store
//     static value_type value(int v);                  // a stored value holding v
//     static int read(const value_type& v);            // and back
//   };
//
// then, in a test file:
//
//   using Stores = ::testing::Types<MyStore>;
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, IdempotencyStoreTest, Stores);
//
// A harness whose store cannot be woken (`wakes_waiters == false`) skips the
// waiter tests. Time only moves through `advance`.
#ifndef STURDY_TESTS_SUPPORT_IDEMPOTENCY_STORE_SUITE_HPP_
#define STURDY_TESTS_SUPPORT_IDEMPOTENCY_STORE_SUITE_HPP_

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "sturdy/idempotency.hpp"

namespace sturdy::test {

template <class S>
struct store_harness;  // specialise per store (see above)

// `prefix` followed by `n` in decimal ("k" + 7 -> "k7"), built by appending:
// GCC 12 at -O3 raises a false -Wrestrict on `"literal" + std::to_string(n)`.
inline std::string numbered(std::string_view prefix, long long n) {
  std::string out(prefix);
  out += std::to_string(n);
  return out;
}

// A value whose copy (or, through a store's codec, whose encoding) throws
// while its flag is set: storing the outcome fails after the work has run.
struct fragile {
  static inline bool copy_fails = false;
  static inline bool encode_fails = false;  // for codecs (the Redis tests)
  int v = 0;
  explicit fragile(int x) : v(x) {}
  fragile(const fragile& o) : v(o.v) {
    if (copy_fails) throw std::runtime_error("copy failed");
  }
  fragile(fragile&&) noexcept = default;
  fragile& operator=(const fragile&) = default;
  fragile& operator=(fragile&&) noexcept = default;
  ~fragile() = default;

  // Sets a flag for its lifetime.
  class failing {
   public:
    explicit failing(bool& flag) : flag_(flag) { flag_ = true; }
    ~failing() { flag_ = false; }
    failing(const failing&) = delete;
    failing& operator=(const failing&) = delete;

   private:
    bool& flag_;
  };
};

template <class S>
class IdempotencyStoreTest : public ::testing::Test {
 protected:
  using harness = store_harness<S>;
  IdempotencyStoreTest() : store_(h_.make()) {}

  S& store() { return *store_; }
  auto begin(std::string_view key, std::uint64_t fp = 7, duration lease = std::chrono::seconds(10),
             idempotency_waiter* w = nullptr) {
    auto r = store_->begin(key, fp, lease, w);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return std::move(r).value();
  }

  harness h_;
  std::unique_ptr<S> store_;
};

TYPED_TEST_SUITE_P(IdempotencyStoreTest);

using namespace std::chrono_literals;

TYPED_TEST_P(IdempotencyStoreTest, AbsentKeyIsAcquiredWithANonZeroToken) {
  auto b = this->begin("k");
  EXPECT_EQ(b.status, begin_status::acquired);
  EXPECT_NE(b.token.value, 0U);
  EXPECT_FALSE(b.took_over);
}

TYPED_TEST_P(IdempotencyStoreTest, SecondBeginSeesInProgressWithTheRemainingLease) {
  (void)this->begin("k", 7, 10s);
  this->h_.advance(4s);
  auto b = this->begin("k", 7, 10s);
  EXPECT_EQ(b.status, begin_status::in_progress);
  EXPECT_GT(b.lease_remaining, duration::zero());
  EXPECT_LE(b.lease_remaining, duration(6s));
}

TYPED_TEST_P(IdempotencyStoreTest, CompletedKeyReplaysItsValue) {
  auto b = this->begin("k");
  ASSERT_TRUE(this->store().complete("k", b.token, TestFixture::harness::value(42), 1h).has_value());
  auto r = this->begin("k");
  ASSERT_EQ(r.status, begin_status::completed);
  ASSERT_TRUE(r.value.has_value());
  EXPECT_EQ(TestFixture::harness::read(*r.value), 42);
  auto again = this->begin("k");
  EXPECT_EQ(TestFixture::harness::read(*again.value), 42);
}

TYPED_TEST_P(IdempotencyStoreTest, AnotherFingerprintIsAMismatchWhetherInProgressOrCompleted) {
  auto b = this->begin("k", 1);
  EXPECT_EQ(this->begin("k", 2).status, begin_status::mismatch);
  ASSERT_TRUE(this->store().complete("k", b.token, TestFixture::harness::value(1), 1h).has_value());
  EXPECT_EQ(this->begin("k", 2).status, begin_status::mismatch);
  EXPECT_EQ(this->begin("k", 1).status, begin_status::completed);
}

TYPED_TEST_P(IdempotencyStoreTest, AbandonReleasesTheKeyForANewOwnerWithANewerToken) {
  auto first = this->begin("k");
  ASSERT_TRUE(this->store().abandon("k", first.token).has_value());
  auto second = this->begin("k");
  EXPECT_EQ(second.status, begin_status::acquired);
  EXPECT_GT(second.token, first.token);
  // The released owner cannot act on the key any more.
  EXPECT_EQ(this->store().abandon("k", first.token).error(), errc::stale_token);
  EXPECT_EQ(this->store().complete("k", first.token, TestFixture::harness::value(1), 1h).error(),
            errc::stale_token);
}

TYPED_TEST_P(IdempotencyStoreTest, ExpiredLeaseIsTakenOverAndTheStaleOwnerIsRefused) {
  auto old_owner = this->begin("k", 7, 10s);
  this->h_.advance(11s);
  auto new_owner = this->begin("k", 7, 10s);
  ASSERT_EQ(new_owner.status, begin_status::acquired);
  EXPECT_TRUE(new_owner.took_over);
  EXPECT_GT(new_owner.token, old_owner.token);
  // The old owner finishes late: refused, never overwriting the newer run.
  EXPECT_EQ(this->store().complete("k", old_owner.token, TestFixture::harness::value(1), 1h).error(),
            errc::stale_token);
  EXPECT_EQ(this->store().abandon("k", old_owner.token).error(), errc::stale_token);
  ASSERT_TRUE(this->store().complete("k", new_owner.token, TestFixture::harness::value(2), 1h).has_value());
  auto r = this->begin("k");
  ASSERT_EQ(r.status, begin_status::completed);
  EXPECT_EQ(TestFixture::harness::read(*r.value), 2);
  EXPECT_EQ(this->store().stats().takeovers, 1U);
}

// An in-progress key stays bound to its fingerprint after its lease ran out:
// only a retry of the same payload may take it over (IETF 422 otherwise).
TYPED_TEST_P(IdempotencyStoreTest, ExpiredLeaseIsTakenOverOnlyWithTheSameFingerprint) {
  auto crashed = this->begin("k", 1, 10s);
  this->h_.advance(10s);
  EXPECT_EQ(this->begin("k", 2, 10s).status, begin_status::mismatch);
  auto retry = this->begin("k", 1, 10s);
  ASSERT_EQ(retry.status, begin_status::acquired);
  EXPECT_TRUE(retry.took_over);
  EXPECT_GT(retry.token, crashed.token);
}

TYPED_TEST_P(IdempotencyStoreTest, CompletedEntryExpiresAfterItsTtl) {
  auto b = this->begin("k", 1);
  ASSERT_TRUE(this->store().complete("k", b.token, TestFixture::harness::value(5), 60s).has_value());
  this->h_.advance(59s);
  EXPECT_EQ(this->begin("k", 1).status, begin_status::completed);
  this->h_.advance(1s);
  auto again = this->begin("k", 2);  // expired: absent, so no mismatch either
  EXPECT_EQ(again.status, begin_status::acquired);
  EXPECT_GT(again.token, b.token);
}

TYPED_TEST_P(IdempotencyStoreTest, CompletingTwiceOrWithAForeignTokenIsRefused) {
  auto b = this->begin("k");
  EXPECT_EQ(this->store()
                .complete("k", fencing_token{b.token.value + 1000}, TestFixture::harness::value(1), 1h)
                .error(),
            errc::stale_token);
  ASSERT_TRUE(this->store().complete("k", b.token, TestFixture::harness::value(1), 1h).has_value());
  EXPECT_EQ(this->store().complete("k", b.token, TestFixture::harness::value(2), 1h).error(),
            errc::stale_token);
  EXPECT_EQ(this->store().abandon("k", b.token).error(), errc::stale_token);
  EXPECT_EQ(this->store().complete("absent", b.token, TestFixture::harness::value(2), 1h).error(),
            errc::stale_token);
}

TYPED_TEST_P(IdempotencyStoreTest, KeysAreIndependentAndCompareByBytes) {
  auto a = this->begin("a");
  auto b = this->begin(std::string("a\0b", 3));
  EXPECT_EQ(a.status, begin_status::acquired);
  EXPECT_EQ(b.status, begin_status::acquired);
  const std::string long_key(200, 'x');
  EXPECT_EQ(this->begin(long_key).status, begin_status::acquired);
  EXPECT_EQ(this->begin(long_key).status, begin_status::in_progress);
}

TYPED_TEST_P(IdempotencyStoreTest, ParkedWaiterIsWokenByCompletionAndByAbandon) {
  if constexpr (!TypeParam::wakes_waiters) {
    GTEST_SKIP() << "this store does not wake waiters";
  } else {
    auto owner = this->begin("k");
    idempotency_waiter w;
    EXPECT_EQ(this->begin("k", 7, 10s, &w).status, begin_status::in_progress);
    EXPECT_TRUE(w.linked);
    ASSERT_TRUE(w.wake.stop_possible());
    EXPECT_FALSE(w.wake.stop_requested());
    ASSERT_TRUE(this->store().abandon("k", owner.token).has_value());
    EXPECT_TRUE(w.wake.stop_requested());
    EXPECT_FALSE(w.linked);
    this->store().cancel_wait("k", w);  // harmless once woken

    auto owner2 = this->begin("k");
    idempotency_waiter w2;
    EXPECT_EQ(this->begin("k", 7, 10s, &w2).status, begin_status::in_progress);
    ASSERT_TRUE(this->store().complete("k", owner2.token, TestFixture::harness::value(3), 1h).has_value());
    EXPECT_TRUE(w2.wake.stop_requested());
    EXPECT_FALSE(w2.linked);
  }
}

TYPED_TEST_P(IdempotencyStoreTest, CancelledWaiterIsNotWoken) {
  if constexpr (!TypeParam::wakes_waiters) {
    GTEST_SKIP() << "this store does not wake waiters";
  } else {
    auto owner = this->begin("k");
    idempotency_waiter a, b;
    (void)this->begin("k", 7, 10s, &a);
    (void)this->begin("k", 7, 10s, &b);
    this->store().cancel_wait("k", a);
    EXPECT_FALSE(a.linked);
    ASSERT_TRUE(this->store().complete("k", owner.token, TestFixture::harness::value(3), 1h).has_value());
    EXPECT_FALSE(a.wake.stop_requested());
    EXPECT_TRUE(b.wake.stop_requested());
  }
}

TYPED_TEST_P(IdempotencyStoreTest, StatsCountHitsMissesMismatchesAndEntries) {
  auto b = this->begin("k", 1);
  ASSERT_TRUE(this->store().complete("k", b.token, TestFixture::harness::value(1), 1h).has_value());
  (void)this->begin("k", 1);
  (void)this->begin("k", 1);
  (void)this->begin("k", 9);
  (void)this->begin("other", 1);
  const idempotency_store_stats s = this->store().stats();
  EXPECT_EQ(s.misses, 2U);
  EXPECT_EQ(s.hits, 2U);
  EXPECT_EQ(s.mismatches, 1U);
  EXPECT_EQ(s.entries, 2U);
}

REGISTER_TYPED_TEST_SUITE_P(IdempotencyStoreTest, AbsentKeyIsAcquiredWithANonZeroToken,
                            SecondBeginSeesInProgressWithTheRemainingLease, CompletedKeyReplaysItsValue,
                            AnotherFingerprintIsAMismatchWhetherInProgressOrCompleted,
                            AbandonReleasesTheKeyForANewOwnerWithANewerToken,
                            ExpiredLeaseIsTakenOverAndTheStaleOwnerIsRefused,
                            ExpiredLeaseIsTakenOverOnlyWithTheSameFingerprint,
                            CompletedEntryExpiresAfterItsTtl, CompletingTwiceOrWithAForeignTokenIsRefused,
                            KeysAreIndependentAndCompareByBytes, ParkedWaiterIsWokenByCompletionAndByAbandon,
                            CancelledWaiterIsNotWoken, StatsCountHitsMissesMismatchesAndEntries);

}  // namespace sturdy::test

#endif  // STURDY_TESTS_SUPPORT_IDEMPOTENCY_STORE_SUITE_HPP_
