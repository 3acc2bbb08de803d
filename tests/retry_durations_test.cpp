// Issue 12 item 7, for retry, backoff and the retry budgets: every duration
// option at 0, 1 ns and duration::max() behaves as documented (a validation
// error naming the field where the value is refused), with saturating
// arithmetic. A property test: run under UBSan (the sanitizer stage builds
// every test with -fsanitize=undefined), where any overflow fails it.
#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/backoff.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using sturdy::duration;
using sturdy::errc;
using sturdy::time_point;
using sturdy::testing::manual_clock;

const duration kExtremes[] = {duration::zero(), duration(1), duration::max()};
const std::error_code kUnavailable = std::make_error_code(std::errc::resource_unavailable_try_again);

// Records each delay and advances the clock by it, saturating (a manual
// clock must not wrap when asked to sleep for duration::max()).
struct saturating_sleeper {
  manual_clock clock;
  std::vector<duration>* delays;
  bool sleep_for(duration d, std::stop_token) const {
    delays->push_back(d);
    clock.set(sturdy::detail::saturating_add(clock.now(), d));
    return true;
  }
};

using policy_t = sturdy::retry_policy<sturdy::backoff, manual_clock, saturating_sleeper,
                                      sturdy::null_listener, sturdy::detail::urbg_ref<std::mt19937_64>>;

struct run_result {
  sturdy::result<int> r;
  int calls;
  std::vector<duration> delays;
};

run_result run(const sturdy::retry_options& opts, time_point start) {
  manual_clock clock(start);
  std::vector<duration> delays;
  std::mt19937_64 gen(7);
  const policy_t p(opts, clock, saturating_sleeper{clock, &delays}, {}, sturdy::detail::urbg_ref(gen));
  int calls = 0;
  auto r = p.execute([&]() -> sturdy::result<int> {
    ++calls;
    return kUnavailable;
  });
  return {r, calls, delays};
}

// The delays of a two-attempt call whose first attempt suggests `suggested`.
std::vector<duration> delays_with_hint(const sturdy::retry_options& opts, duration suggested) {
  manual_clock clock;
  std::vector<duration> delays;
  std::mt19937_64 gen(7);
  const policy_t p(opts, clock, saturating_sleeper{clock, &delays}, {}, sturdy::detail::urbg_ref(gen));
  try {
    (void)p.execute([&]() -> sturdy::result<int> {
      throw sturdy::retry_after_error(sturdy::retry_hint::after(suggested));
    });
  } catch (const sturdy::retry_after_error&) {
  }
  return delays;
}

// The clocks every property is checked from: the epoch, and near both ends.
const time_point kStarts[] = {time_point{}, time_point::min() + seconds(1), time_point::max() - seconds(1)};

TEST(RetryDurationsTest, MaxElapsedAtZeroOneNanosecondAndMax) {
  for (const time_point start : kStarts) {
    for (const duration d : kExtremes) {
      SCOPED_TRACE(d.count());
      const sturdy::retry_options opts{
          .max_attempts = 3, .backoff = sturdy::backoff::constant(milliseconds(1)), .max_elapsed = d};
      ASSERT_TRUE(opts.validate());
      const run_result out = run(opts, start);
      if (d == duration(1)) {  // room for the first attempt only
        EXPECT_EQ(out.r.error(), errc::deadline_exceeded);
        EXPECT_EQ(out.calls, 1);
      } else if (start == time_point::max() - seconds(1) && d == duration::zero()) {
        EXPECT_EQ(out.r.error(), kUnavailable);  // no limit: every attempt
        EXPECT_EQ(out.calls, 3);
      } else {  // 0 = no limit; max = a deadline that saturates at time_point::max()
        EXPECT_EQ(out.r.error(), kUnavailable);
        EXPECT_EQ(out.calls, 3);
        EXPECT_EQ(out.delays, (std::vector<duration>{milliseconds(1), milliseconds(1)}));
      }
    }
  }
  EXPECT_NE(sturdy::retry_options{.max_elapsed = duration(-1)}.validation_message().find(
                "retry_options.max_elapsed"),
            std::string_view::npos);
}

TEST(RetryDurationsTest, ServerDelayBoundsAtZeroOneNanosecondAndMax) {
  for (const duration lo : kExtremes) {
    for (const duration hi : kExtremes) {
      SCOPED_TRACE(std::to_string(lo.count()) + " " + std::to_string(hi.count()));
      const sturdy::retry_options opts{.max_attempts = 2, .min_server_delay = lo, .max_server_delay = hi};
      if (hi < lo) {
        EXPECT_NE(opts.validation_message().find("retry_options.max_server_delay"), std::string_view::npos);
        EXPECT_EQ(run(opts, time_point{}).r.error(), errc::invalid_options);
        EXPECT_EQ(run(opts, time_point{}).calls, 0);
        continue;
      }
      ASSERT_TRUE(opts.validate());
      for (const duration suggested : kExtremes) {
        const std::vector<duration> delays = delays_with_hint(opts, suggested);
        ASSERT_EQ(delays.size(), 1u);
        const duration want = suggested < lo ? lo : suggested > hi ? hi : suggested;
        EXPECT_EQ(delays[0], want);  // clamped into [min, max], exactly
      }
    }
  }
}

TEST(RetryDurationsTest, BackoffDurationsAtZeroOneNanosecondAndMax) {
  const sturdy::jitter modes[] = {sturdy::jitter::none,         sturdy::jitter::full,
                                  sturdy::jitter::equal,        sturdy::jitter::ratio,
                                  sturdy::jitter::decorrelated, sturdy::jitter::decorrelated_smooth};
  const sturdy::backoff_curve curves[] = {sturdy::backoff_curve::constant, sturdy::backoff_curve::linear,
                                          sturdy::backoff_curve::exponential};
  const std::uint64_t retries[] = {
      0, 1, 62, 63, 64, 1023, 1024, 1'000'000, std::numeric_limits<std::uint64_t>::max()};
  std::mt19937_64 gen(11);
  int valid = 0;
  for (const duration base : kExtremes) {
    for (const duration cap : kExtremes) {
      for (const duration min : kExtremes) {
        for (const auto curve : curves) {
          for (const auto mode : modes) {
            const sturdy::backoff b{.curve = curve, .jitter = mode, .base = base, .cap = cap, .min = min};
            const std::string_view msg = b.validation_message();
            if (cap < min) {
              EXPECT_EQ(msg, "backoff.cap must be >= backoff.min");
            } else if (base > cap) {
              EXPECT_EQ(msg, "backoff.base must be <= backoff.cap");
            } else {
              EXPECT_TRUE(msg.empty()) << msg;
            }
            sturdy::backoff::state st;
            for (const std::uint64_t n : retries) {
              const duration d = b.next_delay(n, st, gen);
              if (msg.empty()) {
                EXPECT_GE(d, min);
                EXPECT_LE(d, cap);
              } else {  // documented: still within [0, max(cap, 0)]
                EXPECT_GE(d, duration::zero());
                EXPECT_LE(d, cap);
              }
            }
            if (msg.empty()) {
              ++valid;
              // A policy with it runs and never sleeps outside [min, cap].
              const run_result out = run({.max_attempts = 3, .backoff = b}, time_point{});
              EXPECT_EQ(out.calls, 3);
              for (const duration d : out.delays) {
                EXPECT_GE(d, min);
                EXPECT_LE(d, cap);
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(valid, 0);
}

TEST(RetryDurationsTest, BudgetWindowsAtZeroOneNanosecondAndMax) {
  for (const time_point start : kStarts) {
    for (const duration w : kExtremes) {
      SCOPED_TRACE(w.count());
      manual_clock clock(start);
      const sturdy::ratio_budget_options ro{.ratio = 1, .window = w, .min_retries_per_second = 0};
      const sturdy::adaptive_throttle_options to{.k = 2, .window = w};
      sturdy::ratio_budget<manual_clock> ratio(ro, clock);
      sturdy::adaptive_throttle<manual_clock> throttle(to, clock);
      if (w != duration::max()) {
        EXPECT_EQ(ro.validation_message(), "ratio_budget_options.window must be >= 10 ms");
        EXPECT_EQ(to.validation_message(), "adaptive_throttle_options.window must be >= 12 ms");
        ratio.on_attempt(false);
        EXPECT_FALSE(ratio.try_retry(0));  // documented: an invalid budget denies every retry
        EXPECT_FALSE(throttle.try_retry(~std::uint64_t{0}));
        continue;
      }
      ASSERT_TRUE(ro.validate());
      ASSERT_TRUE(to.validate());
      // A window of duration::max() never forgets, from any start to the end
      // of time: one request allows exactly one retry, ever.
      ratio.on_attempt(false);
      throttle.on_outcome(sturdy::attempt_outcome::failure);
      for (const duration step :
           {duration::zero(), duration(seconds(1)), duration(std::chrono::hours(24 * 365 * 100))}) {
        clock.set(sturdy::detail::saturating_add(clock.now(), step));
        EXPECT_EQ(ratio.requests_in_window(clock.now()), 1u);
        EXPECT_DOUBLE_EQ(throttle.rejection_probability(), 0.5);
      }
      EXPECT_TRUE(ratio.try_retry(0));
      EXPECT_FALSE(ratio.try_retry(0));
      clock.set(time_point::max());
      EXPECT_LE(ratio.retries_in_window(clock.now()), 1u);
    }
  }
}

}  // namespace
