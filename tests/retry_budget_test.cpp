#include "sturdy/retry_budget.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using sturdy::attempt_outcome;
using sturdy::time_point;
using sturdy::testing::manual_clock;

// ---------------------------------------------------------------------------
// Token bucket (gRFC A6)
// ---------------------------------------------------------------------------

// gRFC A6: token_count starts at max_tokens; each failed attempt subtracts
// 1 (not below 0); each success adds token_ratio (not above max); retries
// are allowed while token_count > max_tokens / 2.
TEST(TokenBucketBudgetTest, FollowsTheGrpcArithmeticByHand) {
  sturdy::token_bucket_budget b({.max_tokens = 10, .token_ratio = 0.1});
  EXPECT_EQ(b.milli_tokens(), 10'000u);
  EXPECT_TRUE(b.allows_retry());
  for (int i = 0; i < 4; ++i) b.record_failure();  // 10 -> 6
  EXPECT_EQ(b.milli_tokens(), 6'000u);
  EXPECT_TRUE(b.allows_retry());  // 6 > 5
  b.record_failure();             // 5
  EXPECT_EQ(b.milli_tokens(), 5'000u);
  EXPECT_FALSE(b.allows_retry());  // 5 > 5 is false: throttled at exactly half
  b.record_success();              // 5.1
  EXPECT_EQ(b.milli_tokens(), 5'100u);
  EXPECT_TRUE(b.allows_retry());
  b.record_failure();  // 4.1
  EXPECT_FALSE(b.allows_retry());
  for (int i = 0; i < 9; ++i) b.record_success();  // 4.1 + 0.9 = 5.0
  EXPECT_EQ(b.milli_tokens(), 5'000u);
  EXPECT_FALSE(b.allows_retry());
  b.record_success();  // 5.1
  EXPECT_TRUE(b.allows_retry());
  EXPECT_DOUBLE_EQ(b.tokens(), 5.1);
}

TEST(TokenBucketBudgetTest, NeverLeavesZeroToMax) {
  sturdy::token_bucket_budget b({.max_tokens = 3, .token_ratio = 0.75});
  for (int i = 0; i < 10; ++i) b.record_failure();
  EXPECT_EQ(b.milli_tokens(), 0u);
  b.record_success();  // 0.75
  b.record_failure();  // 1 taken from 0.75: floor at 0
  EXPECT_EQ(b.milli_tokens(), 0u);
  for (int i = 0; i < 3; ++i) b.record_success();  // 2.25
  EXPECT_EQ(b.milli_tokens(), 2'250u);
  b.record_success();  // 3.0
  b.record_success();  // stays 3.0
  EXPECT_EQ(b.milli_tokens(), 3'000u);
  // Odd max: retries while > 1.5.
  b.record_failure();  // 2
  EXPECT_TRUE(b.allows_retry());
  b.record_failure();  // 1
  EXPECT_FALSE(b.allows_retry());
}

TEST(TokenBucketBudgetTest, ProtocolMapsOutcomesToTokens) {
  sturdy::token_bucket_budget b({.max_tokens = 10, .token_ratio = 1});
  b.on_attempt(false);
  b.on_outcome(attempt_outcome::failure);
  b.on_outcome(attempt_outcome::neutral);  // non-retryable failures do not count (gRFC A6)
  EXPECT_EQ(b.milli_tokens(), 9'000u);
  b.on_outcome(attempt_outcome::success);
  EXPECT_EQ(b.milli_tokens(), 10'000u);
  EXPECT_TRUE(b.try_retry(0));
}

TEST(TokenBucketBudgetTest, ValidationNamesTheFieldAndInvalidBucketsDenyRetries) {
  EXPECT_TRUE(sturdy::token_bucket_options{}.validate());
  EXPECT_TRUE((sturdy::token_bucket_options{.max_tokens = 1000, .token_ratio = 0.125}.validate()));
  const auto msg = [](sturdy::token_bucket_options o) { return o.validation_message(); };
  EXPECT_NE(msg({.max_tokens = 0}).find("max_tokens"), std::string_view::npos);
  EXPECT_NE(msg({.max_tokens = 1001}).find("max_tokens"), std::string_view::npos);
  EXPECT_NE(msg({.token_ratio = 0}).find("token_ratio"), std::string_view::npos);
  EXPECT_NE(msg({.token_ratio = std::nan("")}).find("token_ratio"), std::string_view::npos);
  EXPECT_NE(msg({.token_ratio = 0.0001}).find("three decimal"), std::string_view::npos);
  EXPECT_NE(msg({.max_tokens = 2, .token_ratio = 3}).find("token_ratio"), std::string_view::npos);
  sturdy::token_bucket_budget bad({.max_tokens = 0});
  EXPECT_FALSE(bad.valid());
  EXPECT_FALSE(bad.allows_retry());
}

// ---------------------------------------------------------------------------
// Ratio budget (Finagle / SRE)
// ---------------------------------------------------------------------------

TEST(RatioBudgetTest, AllowsRatioOfRequestsPlusFloor) {
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> b({.ratio = 0.2, .window = seconds(10), .min_retries_per_second = 0}, clock);
  EXPECT_FALSE(b.try_acquire_retry());  // no requests, no floor
  for (int i = 0; i < 10; ++i) b.record_request();
  EXPECT_TRUE(b.try_acquire_retry());
  EXPECT_TRUE(b.try_acquire_retry());
  EXPECT_FALSE(b.try_acquire_retry());  // 3 > 0.2 * 10
  EXPECT_EQ(b.retries_in_window(clock.now()), 2u);  // the denied one was undone
  for (int i = 0; i < 5; ++i) b.record_request();
  EXPECT_TRUE(b.try_acquire_retry());  // 3 <= 0.2 * 15
  EXPECT_FALSE(b.try_acquire_retry());
}

TEST(RatioBudgetTest, FloorAllowsRetriesWithoutTraffic) {
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> b({.ratio = 0.1, .window = seconds(10), .min_retries_per_second = 2}, clock);
  int granted = 0;
  for (int i = 0; i < 100; ++i) granted += b.try_acquire_retry() ? 1 : 0;
  EXPECT_EQ(granted, 20);  // 2/s * 10 s
}

TEST(RatioBudgetTest, CountsExpireWithTheWindow) {
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> b({.ratio = 0.5, .window = seconds(10), .min_retries_per_second = 0}, clock);
  for (int i = 0; i < 10; ++i) b.record_request();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.try_acquire_retry());
  EXPECT_FALSE(b.try_acquire_retry());
  clock.advance(seconds(5));
  EXPECT_EQ(b.requests_in_window(clock.now()), 10u);
  EXPECT_FALSE(b.try_acquire_retry());
  clock.advance(seconds(5));  // the first slice has left the window
  EXPECT_EQ(b.requests_in_window(clock.now()), 0u);
  EXPECT_EQ(b.retries_in_window(clock.now()), 0u);
  EXPECT_FALSE(b.try_acquire_retry());
  b.record_request();
  b.record_request();
  EXPECT_TRUE(b.try_acquire_retry());
  // Far in the future every slice is stale.
  clock.advance(std::chrono::hours(24 * 365));
  EXPECT_EQ(b.requests_in_window(clock.now()), 0u);
}

// A sustained outage: every call fails and wants up to 3 retries, at a
// steady rate for a minute. In every window the budget tracks, retries
// never exceed ratio * requests + floor, and the budget does allow retries
// (it is not just denying everything).
TEST(RatioBudgetTest, SustainedOutageNeverExceedsTheShare) {
  manual_clock clock;
  const sturdy::ratio_budget_options opts{.ratio = 0.1, .window = seconds(10), .min_retries_per_second = 1};
  sturdy::ratio_budget<manual_clock> b(opts, clock);
  const auto width = b.slice_width();
  std::vector<std::uint64_t> req_per_slice(700, 0);
  std::vector<std::uint64_t> retry_per_slice(700, 0);
  std::mt19937_64 gen(3);
  std::uniform_int_distribution<int> jitter_ms(1, 20);
  while (clock.now() - b.origin() < seconds(60)) {
    const auto slice = static_cast<std::size_t>((clock.now() - b.origin()) / width);
    b.on_attempt(false);
    ++req_per_slice[slice];
    for (int r = 0; r < 3; ++r) {
      if (!b.try_retry(0)) break;
      ++retry_per_slice[slice];
    }
    clock.advance(milliseconds(jitter_ms(gen)));
  }
  std::uint64_t total_req = 0;
  std::uint64_t total_retry = 0;
  for (std::size_t end = 0; end < 600; ++end) {
    std::uint64_t req = 0;
    std::uint64_t ret = 0;
    for (std::size_t s = end >= 9 ? end - 9 : 0; s <= end; ++s) {
      req += req_per_slice[s];
      ret += retry_per_slice[s];
    }
    ASSERT_LE(static_cast<double>(ret), opts.ratio * static_cast<double>(req) + 1.0 * 10) << "window ending " << end;
    total_req += req_per_slice[end];
    total_retry += retry_per_slice[end];
  }
  EXPECT_GT(total_req, 5000u);
  // Close to the allowed share over a minute: ratio * requests + floor per
  // window, six windows.
  EXPECT_GT(static_cast<double>(total_retry), 0.9 * 0.1 * static_cast<double>(total_req));
}

// Review finding B7: a writer whose `now` is a whole window old (read before
// it was descheduled) lands on the slot of a newer slice. It must not reset
// that slot and wipe the newer counts; its event is simply too old to count.
TEST(WindowedCounterTest, AStaleWriterNeverWipesANewerSlice) {
  sturdy::detail::windowed_counter<10> c(milliseconds(1));
  for (int i = 0; i < 3; ++i) c.increment(15);
  c.increment(5);  // same slot (5 % 10 == 15 % 10), one window older
  EXPECT_EQ(c.sum(15), 3u);
  c.decrement(5);  // an undo of the stale increment touches nothing either
  EXPECT_EQ(c.sum(15), 3u);
  c.increment(25);  // a newer epoch still resets the slot
  EXPECT_EQ(c.sum(25), 1u);
  // Epochs are absolute: nothing wraps at 2^32.
  c.increment(0xffffffffu);               // slot 5
  c.increment((std::uint64_t{1} << 32) + 4);  // slot 0
  c.increment(5);  // slot 5, older than what it holds: dropped
  EXPECT_EQ(c.sum((std::uint64_t{1} << 32) + 4), 2u);
  EXPECT_EQ(c.sum(5), 0u);  // the slots hold newer slices
}

// Issue 12 item 4: epochs compared modulo 2^32 expired every slot after
// 2^31 slices without a write (24.9 days with 1 ms slices): increments were
// dropped and sums ignored the slot, so a ratio-0 budget admitted every
// retry. Checked at 2^31 and 2^32 slices (and a few slices around them)
// with the smallest windows the options allow, for the ratio budget, the
// throttle, and through the retry protocol.
std::vector<std::uint64_t> far_slices() {
  std::vector<std::uint64_t> v;
  for (const std::uint64_t base : {std::uint64_t{1} << 31, std::uint64_t{1} << 32, std::uint64_t{1} << 33}) {
    // Checkpoints more than a window (12 slices at most) apart.
    for (const std::uint64_t d : {std::uint64_t{0}, std::uint64_t{30}, std::uint64_t{53}, std::uint64_t{77}}) {
      v.push_back(base - 30 + d);
    }
  }
  return v;
}

TEST(RatioBudgetTest, Issue12_CountsForAnyUptimeAt2To31And2To32Slices) {
  manual_clock clock;
  const sturdy::ratio_budget_options strict{.ratio = 0, .window = milliseconds(10), .min_retries_per_second = 0};
  const sturdy::ratio_budget_options one_each{.ratio = 1, .window = milliseconds(10), .min_retries_per_second = 0};
  sturdy::ratio_budget<manual_clock> none(strict, clock);
  sturdy::ratio_budget<manual_clock> b(one_each, clock);
  const time_point t0 = b.origin();
  ASSERT_EQ(b.slice_width(), milliseconds(1));
  // Write every slot once near the origin.
  for (int i = 0; i < 10; ++i) {
    clock.set(t0 + milliseconds(i));
    b.record_request();
    ASSERT_TRUE(b.try_acquire_retry());
  }
  std::uint64_t last = 0;
  for (const std::uint64_t slice : far_slices()) {
    if (slice <= last) continue;
    last = slice;
    const time_point t = t0 + milliseconds(static_cast<std::int64_t>(slice));
    clock.set(t);
    SCOPED_TRACE(slice);
    EXPECT_FALSE(none.try_acquire_retry()) << "ratio 0, no floor: never a retry";
    EXPECT_EQ(b.requests_in_window(t), 0u) << "old slices are outside the window";
    EXPECT_EQ(b.retries_in_window(t), 0u);
    EXPECT_FALSE(b.try_acquire_retry()) << "no request in the window yet";
    b.on_attempt(false);
    EXPECT_EQ(b.requests_in_window(t), 1u);
    EXPECT_TRUE(b.try_retry(0));
    EXPECT_FALSE(b.try_retry(0)) << "1 retry per request";
    EXPECT_EQ(b.retries_in_window(t), 1u);
  }
}

TEST(AdaptiveThrottleTest, Issue12_CountsForAnyUptimeAt2To31And2To32Slices) {
  manual_clock clock;
  sturdy::adaptive_throttle<manual_clock> t({.k = 2, .window = milliseconds(12)}, clock);
  const time_point t0 = clock.now();
  for (int i = 0; i < 12; ++i) {
    clock.set(t0 + milliseconds(i));
    t.record_outcome(true);
  }
  std::uint64_t last = 0;
  for (const std::uint64_t slice : far_slices()) {
    if (slice <= last) continue;
    last = slice;
    const time_point now = t0 + milliseconds(static_cast<std::int64_t>(slice));
    clock.set(now);
    SCOPED_TRACE(slice);
    EXPECT_EQ(t.requests_in_window(now), 0u);
    for (int i = 0; i < 10; ++i) t.on_outcome(attempt_outcome::failure);
    EXPECT_EQ(t.requests_in_window(now), 10u);
    EXPECT_EQ(t.accepts_in_window(now), 0u);
    EXPECT_DOUBLE_EQ(t.rejection_probability(), 10.0 / 11.0);
    EXPECT_FALSE(t.try_retry(0));  // u = 0 < p
  }
}

// The same from a clock that starts near time_point::min() and runs to near
// time_point::max(): the whole range of the time type, with no overflow
// (UBSan) and exact windows all along.
TEST(RatioBudgetTest, Issue12_ClockFromNearMinToNearMax) {
  const time_point start = time_point::min() + milliseconds(5);
  manual_clock clock(start);
  sturdy::ratio_budget<manual_clock> b({.ratio = 1, .window = milliseconds(10), .min_retries_per_second = 0},
                                       clock);
  sturdy::adaptive_throttle<manual_clock> t({.k = 2, .window = milliseconds(12)}, clock);
  const auto step = std::chrono::duration_cast<sturdy::duration>(std::chrono::hours(24 * 365 * 17));
  for (time_point now = start;; now += step) {
    clock.set(now);
    SCOPED_TRACE(now.time_since_epoch().count());
    EXPECT_EQ(b.requests_in_window(now), 0u);
    b.on_attempt(false);
    EXPECT_TRUE(b.try_retry(0));
    EXPECT_FALSE(b.try_retry(0));
    EXPECT_EQ(t.requests_in_window(now), 0u);
    t.on_outcome(attempt_outcome::failure);
    EXPECT_DOUBLE_EQ(t.rejection_probability(), 1.0 / 2.0);
    if (now > time_point::max() - step - milliseconds(5)) break;
  }
  const time_point end = time_point::max() - milliseconds(1);
  clock.set(end);
  EXPECT_EQ(b.requests_in_window(end), 0u);
  b.on_attempt(false);
  EXPECT_TRUE(b.try_retry(0));
  EXPECT_FALSE(b.try_retry(0));
}

TEST(RatioBudgetTest, AStaleRequestNeverErasesNewerRequests) {
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> b({.ratio = 0.5, .window = seconds(10), .min_retries_per_second = 0}, clock);
  const time_point t0 = b.origin();
  for (int i = 0; i < 4; ++i) b.record_request(t0 + milliseconds(15'500));
  b.record_request(t0 + milliseconds(5'500));  // a slow thread's now, a window late
  EXPECT_EQ(b.requests_in_window(t0 + milliseconds(15'500)), 4u);
  EXPECT_TRUE(b.try_acquire_retry(t0 + milliseconds(15'600)));
  EXPECT_TRUE(b.try_acquire_retry(t0 + milliseconds(15'600)));
  EXPECT_FALSE(b.try_acquire_retry(t0 + milliseconds(15'600)));  // 3 > 0.5 * 4
}

TEST(RatioBudgetTest, ValidationAndInvalidBudgets) {
  EXPECT_TRUE(sturdy::ratio_budget_options{}.validate());
  const auto msg = [](sturdy::ratio_budget_options o) { return o.validation_message(); };
  EXPECT_NE(msg({.ratio = -0.1}).find("ratio"), std::string_view::npos);
  EXPECT_NE(msg({.ratio = std::nan("")}).find("ratio"), std::string_view::npos);
  EXPECT_NE(msg({.window = milliseconds(5)}).find("window"), std::string_view::npos);
  EXPECT_NE(msg({.min_retries_per_second = -1}).find("min_retries_per_second"), std::string_view::npos);
  EXPECT_NE(msg({.min_retries_per_second = std::numeric_limits<double>::infinity()}).find("min_retries"),
            std::string_view::npos);
  manual_clock clock;
  sturdy::ratio_budget<manual_clock> bad({.window = sturdy::duration::zero()}, clock);
  EXPECT_FALSE(bad.valid());
  EXPECT_FALSE(bad.try_acquire_retry());
}

// ---------------------------------------------------------------------------
// Adaptive throttle (SRE book)
// ---------------------------------------------------------------------------

TEST(AdaptiveThrottleTest, RejectionProbabilityFollowsTheFormula) {
  manual_clock clock;
  sturdy::adaptive_throttle<manual_clock> t({.k = 2, .window = std::chrono::minutes(2)}, clock);
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 0.0);
  for (int i = 0; i < 10; ++i) t.record_request();
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 10.0 / 11.0);  // (10 - 2*0) / (10 + 1)
  for (int i = 0; i < 3; ++i) t.record_accept();
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 4.0 / 11.0);  // (10 - 6) / 11
  for (int i = 0; i < 2; ++i) t.record_accept();
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 0.0);  // 10 - 10 <= 0
  t.record_accept();
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 0.0);  // clamped at 0
}

TEST(AdaptiveThrottleTest, AdmitsByEntropyAgainstTheProbability) {
  manual_clock clock;
  sturdy::adaptive_throttle<manual_clock> t({}, clock);
  for (int i = 0; i < 99; ++i) t.record_request();
  // After counting the admission request itself: 100 requests, p = 100/101.
  EXPECT_FALSE(t.try_admit(0));                            // u = 0 < p
  EXPECT_TRUE(t.try_admit(~std::uint64_t{0}));             // u ~ 1 >= p
  EXPECT_EQ(t.requests_in_window(clock.now()), 101u);      // both counted as requests
  // Statistically: p ~ 0.5 when accepts = requests / 4.
  sturdy::adaptive_throttle<manual_clock> half({.k = 2}, clock);
  for (int i = 0; i < 100'000; ++i) half.record_request();
  for (int i = 0; i < 25'000; ++i) half.record_accept();
  std::mt19937_64 gen(17);
  int admitted = 0;
  for (int i = 0; i < 20'000; ++i) admitted += half.try_admit_with(gen) ? 1 : 0;
  // p drifts from 0.5 to ~0.55 as the 20k admissions count as requests.
  EXPECT_GT(admitted, 20'000 * 0.40);
  EXPECT_LT(admitted, 20'000 * 0.52);
}

TEST(AdaptiveThrottleTest, ProtocolCountsRequestsAndAccepts) {
  manual_clock clock;
  sturdy::adaptive_throttle<manual_clock> t({}, clock);
  t.on_attempt(false);
  t.on_outcome(attempt_outcome::failure);
  EXPECT_FALSE(t.try_retry(0));  // p = (2 - 0) / 3 after counting the retry
  t.on_attempt(false);
  t.on_outcome(attempt_outcome::neutral);  // answered: accepted
  t.on_attempt(false);
  t.on_outcome(attempt_outcome::success);
  EXPECT_EQ(t.requests_in_window(clock.now()), 4u);
  EXPECT_EQ(t.accepts_in_window(clock.now()), 2u);
  clock.advance(std::chrono::minutes(3));
  EXPECT_EQ(t.requests_in_window(clock.now()), 0u);
  EXPECT_DOUBLE_EQ(t.rejection_probability(), 0.0);
}

TEST(AdaptiveThrottleTest, Validation) {
  const auto msg = [](sturdy::adaptive_throttle_options o) { return o.validation_message(); };
  EXPECT_TRUE(msg({}).empty());
  EXPECT_NE(msg({.k = 0.5}).find(".k"), std::string_view::npos);
  EXPECT_NE(msg({.k = std::nan("")}).find(".k"), std::string_view::npos);
  EXPECT_NE(msg({.window = milliseconds(1)}).find("window"), std::string_view::npos);
}

// ---------------------------------------------------------------------------
// retry_budget_ref
// ---------------------------------------------------------------------------

TEST(RetryBudgetRefTest, EmptyAllowsAndForwardsOtherwise) {
  sturdy::retry_budget_ref none;
  EXPECT_FALSE(none);
  none.on_attempt(false);
  none.on_outcome(attempt_outcome::failure);
  EXPECT_TRUE(none.try_retry(0));
  sturdy::token_bucket_budget bucket({.max_tokens = 2, .token_ratio = 1});
  sturdy::retry_budget_ref ref = bucket;
  EXPECT_TRUE(ref);
  ref.on_outcome(attempt_outcome::failure);
  EXPECT_FALSE(ref.try_retry(0));  // 1 > 1 is false
  EXPECT_EQ(bucket.milli_tokens(), 1'000u);
  EXPECT_EQ(ref, sturdy::retry_budget_ref(bucket));
  static_assert(sizeof(sturdy::retry_budget_ref) == 2 * sizeof(void*));
}

}  // namespace
