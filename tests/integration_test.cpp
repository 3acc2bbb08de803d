// The primitives together: the compensation scope retrying undos through the
// real retry_policy, and compose() ordering with real policies.
#include <chrono>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/sturdy.hpp"
#include "sturdy/testing/manual_clock.hpp"
#include "sturdy/testing/recording_sleeper.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::errc;
using sturdy::result;
using sturdy::testing::manual_clock;
using sturdy::testing::recording_sleeper;

// A deterministic generator for the policy's jitter.
struct seeded_gen {
  std::mt19937_64 gen{7};
  using result_type = std::uint64_t;
  static constexpr result_type min() { return std::mt19937_64::min(); }
  static constexpr result_type max() { return std::mt19937_64::max(); }
  result_type operator()() { return gen(); }
};

using test_retry = sturdy::retry_policy<sturdy::backoff, manual_clock, recording_sleeper, sturdy::null_listener,
                                        seeded_gen>;

test_retry make_retry(const manual_clock& clock, const recording_sleeper& sleeper, int attempts) {
  return test_retry({.max_attempts = static_cast<std::uint32_t>(attempts),
                     .backoff = sturdy::backoff::exponential(100ms, 1s, sturdy::jitter::none)},
                    clock, sleeper);
}

TEST(IntegrationTest, CompensationRetriesUndosWithTheRealRetryPolicy) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  auto retry = make_retry(clock, sleeper, 3);
  sturdy::dead_letter_queue dlq;
  int flaky = 0;
  int dead = 0;
  {
    sturdy::compensation_scope scope(dlq, retry, clock);
    (void)scope.add("flaky", [&]() -> result<void> {
      if (++flaky < 3) return errc::store_unavailable;
      return sturdy::success();
    });
    (void)scope.add("dead", [&]() -> result<void> {
      ++dead;
      throw std::runtime_error("role service down");
    });
  }  // not committed: rolls back, last-registered first
  EXPECT_EQ(dead, 3);
  EXPECT_EQ(flaky, 3);
  // dead: 100, 200 ms between its three attempts; flaky: 100, 200 ms.
  EXPECT_EQ(sleeper.delays(), (std::vector<sturdy::duration>{100ms, 200ms, 100ms, 200ms}));
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq.list()[0].step, "dead");
  EXPECT_EQ(dlq.list()[0].exception_text, "role service down");
}

TEST(IntegrationTest, RetryOutsideAnOpenGateRetriesOnlyWhatThePredicateAllows) {
  manual_clock clock;
  recording_sleeper sleeper(clock);
  // A retry whose predicate refuses to retry circuit_open.
  test_retry retry({.max_attempts = 4,
                    .backoff = sturdy::backoff::constant(10ms, sturdy::jitter::none),
                    .retry_if = [](const sturdy::failure_info& f) { return f.code != errc::circuit_open; }},
                   clock, sleeper);
  int admitted = 0;
  bool open = true;
  auto gate = sturdy::make_policy([&](auto&& next) -> result<int> {
    if (open) return errc::circuit_open;
    ++admitted;
    return next();
  });
  auto p = sturdy::compose(retry, gate);
  auto r = p.execute([]() -> result<int> { return 1; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::circuit_open);
  EXPECT_EQ(sleeper.count(), 0u);  // not retried
  open = false;
  int calls = 0;
  auto ok = p.execute([&]() -> result<int> {
    if (++calls < 3) return errc::store_unavailable;
    return 5;
  });
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok.value(), 5);
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(sleeper.delays(), (std::vector<sturdy::duration>{10ms, 10ms}));
}

}  // namespace
