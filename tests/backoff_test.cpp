#include "sturdy/backoff.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/random/bit_gen_ref.h"
#include "absl/random/random.h"

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using sturdy::backoff;
using sturdy::backoff_curve;
using sturdy::duration;
using sturdy::jitter;

constexpr std::array kJitters = {jitter::none,  jitter::full,         jitter::equal,
                                 jitter::ratio, jitter::decorrelated, jitter::decorrelated_smooth};
constexpr std::array kCurves = {backoff_curve::constant, backoff_curve::linear, backoff_curve::exponential};

double ns(duration d) { return static_cast<double>(d.count()); }

// Retry numbers that stress growth: small, around double/shift limits, and
// up to 2^32 and beyond.
std::vector<std::uint64_t> edge_retry_numbers() {
  return {0,    1,    2,          3,          10,         52,          53,         62,
          63,   64,   65,         1000,       1023,       1024,        1025,       4096,
          4097, 1u << 20, (1ull << 32) - 1, 1ull << 32, (1ull << 32) + 1, 1ull << 53,
          std::numeric_limits<std::uint64_t>::max()};
}

TEST(BackoffTest, EveryModeStaysWithinMinAndCapForAllRetryNumbers) {
  std::mt19937_64 gen(42);
  std::uniform_int_distribution<std::uint64_t> any_n(0, 1ull << 32);
  std::uint64_t samples = 0;
  for (const double mult : {1.0, 1.5, 2.0, 3.0, 1e6}) {
    for (const auto curve : kCurves) {
      for (const auto j : kJitters) {
        const backoff b{.curve = curve, .jitter = j, .base = milliseconds(100), .cap = seconds(10),
                        .min = milliseconds(20), .multiplier = mult, .ratio = 0.5};
        ASSERT_TRUE(b.validate()) << b.validation_message();
        // Sequential calls share a per-call state, as a retry loop does.
        backoff::state st;
        for (const std::uint64_t n : edge_retry_numbers()) {
          for (int rep = 0; rep < 50; ++rep) {
            const duration d = b.next_delay(n, st, gen);
            ASSERT_GE(d, b.min) << to_string(curve) << "/" << to_string(j) << " n=" << n;
            ASSERT_LE(d, b.cap) << to_string(curve) << "/" << to_string(j) << " n=" << n;
            ++samples;
          }
        }
        for (int i = 0; i < 20'000; ++i) {
          const std::uint64_t n = any_n(gen);
          const duration d = b.next_delay(n, st, gen);
          ASSERT_GE(d, b.min);
          ASSERT_LE(d, b.cap);
          ++samples;
        }
        // A fresh state per "call", retry numbers in order.
        for (int call = 0; call < 200; ++call) {
          backoff::state fresh;
          for (std::uint64_t n = 0; n < 40; ++n) {
            const duration d = b.next_delay(n, fresh, gen);
            ASSERT_GE(d, b.min);
            ASSERT_LE(d, b.cap);
            ++samples;
          }
        }
      }
    }
  }
  EXPECT_GT(samples, 2'000'000u);
}

TEST(BackoffTest, ExtremeDurationsNeverOverflow) {
  std::mt19937_64 gen(7);
  for (const auto curve : kCurves) {
    for (const auto j : kJitters) {
      // The largest representable cap and base: all arithmetic must
      // saturate, and the conversion back to an integer must stay defined.
      const backoff b{.curve = curve, .jitter = j, .base = duration::max() / 2, .cap = duration::max(),
                      .multiplier = 2.0, .ratio = 1.0};
      ASSERT_TRUE(b.validate());
      backoff::state st;
      for (const std::uint64_t n : edge_retry_numbers()) {
        const duration d = b.next_delay(n, st, gen);
        EXPECT_GE(d, duration::zero());
        EXPECT_LE(d, duration::max());
      }
      const backoff zero{.curve = curve, .jitter = j, .base = duration::zero(), .cap = duration::zero()};
      backoff::state zst;
      for (const std::uint64_t n : edge_retry_numbers()) EXPECT_EQ(zero.next_delay(n, zst, gen), duration::zero());
    }
  }
}

TEST(BackoffTest, CurvesWithoutJitterFollowTheirFormulas) {
  std::mt19937_64 gen(1);
  backoff::state st;
  const auto expo = backoff::exponential(milliseconds(100), seconds(10), jitter::none);
  EXPECT_EQ(expo.next_delay(0, st, gen), milliseconds(100));
  EXPECT_EQ(expo.next_delay(1, st, gen), milliseconds(200));
  EXPECT_EQ(expo.next_delay(3, st, gen), milliseconds(800));
  EXPECT_EQ(expo.next_delay(6, st, gen), milliseconds(6400));
  EXPECT_EQ(expo.next_delay(7, st, gen), seconds(10));  // 12.8 s capped
  EXPECT_EQ(expo.next_delay(1ull << 32, st, gen), seconds(10));

  const auto triple = backoff::exponential(milliseconds(10), seconds(10), jitter::none, 3.0);
  EXPECT_EQ(triple.next_delay(2, st, gen), milliseconds(90));

  const auto lin = backoff::linear(milliseconds(100), seconds(1), jitter::none);
  EXPECT_EQ(lin.next_delay(0, st, gen), milliseconds(100));
  EXPECT_EQ(lin.next_delay(4, st, gen), milliseconds(500));
  EXPECT_EQ(lin.next_delay(20, st, gen), seconds(1));

  const auto flat = backoff::constant(milliseconds(250));
  EXPECT_EQ(flat.next_delay(0, st, gen), milliseconds(250));
  EXPECT_EQ(flat.next_delay(std::numeric_limits<std::uint64_t>::max(), st, gen), milliseconds(250));

  const backoff floor{.jitter = jitter::none, .base = milliseconds(1), .cap = seconds(1), .min = milliseconds(5)};
  EXPECT_EQ(floor.next_delay(0, st, gen), milliseconds(5));
  EXPECT_EQ(floor.next_delay(3, st, gen), milliseconds(8));
}

// Mean of U(0, T) is T/2 and of T/2 + U(0, T/2) is 3T/4. With 400k samples
// the standard error is below 0.05 % of T; allow 0.25 %.
TEST(BackoffTest, FullAndEqualJitterHaveTheirAnalyticMeans) {
  std::mt19937_64 gen(2024);
  constexpr int kSamples = 400'000;
  for (const std::uint64_t n : {0ull, 3ull, 20ull}) {
    const auto full = backoff::exponential(milliseconds(100), seconds(10), jitter::full);
    const auto equal = backoff::exponential(milliseconds(100), seconds(10), jitter::equal);
    const double t = full.capped_raw_ns(n);
    backoff::state st;
    double sum_full = 0;
    double sum_equal = 0;
    for (int i = 0; i < kSamples; ++i) {
      sum_full += ns(full.next_delay(n, st, gen));
      sum_equal += ns(equal.next_delay(n, st, gen));
    }
    EXPECT_NEAR(sum_full / kSamples / t, 0.5, 0.0025) << "n=" << n;
    EXPECT_NEAR(sum_equal / kSamples / t, 0.75, 0.0025) << "n=" << n;
  }
}

// Pearson's chi-square over 50 equal bins: for 49 degrees of freedom the
// 0.1 % critical value is 85.35. Run for a 32-bit, a 64-bit and Abseil's
// generator.
template <class Gen>
double full_jitter_chi_square(Gen& gen) {
  constexpr int kBins = 50;
  constexpr int kSamples = 250'000;
  const auto b = backoff::exponential(milliseconds(100), seconds(10), jitter::full);
  const double t = b.capped_raw_ns(4);
  std::array<int, kBins> bins{};
  backoff::state st;
  for (int i = 0; i < kSamples; ++i) {
    const double x = ns(b.next_delay(4, st, gen)) / t;
    bins[static_cast<std::size_t>(std::min(kBins - 1, static_cast<int>(x * kBins)))]++;
  }
  const double expected = static_cast<double>(kSamples) / kBins;
  double chi = 0;
  for (int c : bins) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

TEST(BackoffTest, FullJitterIsUniform) {
  std::mt19937 g32(11);
  std::mt19937_64 g64(12);
  absl::BitGen gabsl(std::seed_seq{13});
  EXPECT_LT(full_jitter_chi_square(g32), 85.35);
  EXPECT_LT(full_jitter_chi_square(g64), 85.35);
  EXPECT_LT(full_jitter_chi_square(gabsl), 85.35);
  // And the statistic is not vacuous: a skewed sample fails it.
  struct skewed {
    using result_type = std::uint64_t;
    std::mt19937_64 inner{5};
    static constexpr result_type min() { return 0; }
    static constexpr result_type max() { return ~0ull; }
    result_type operator()() {
      const auto a = inner();
      const auto b = inner();
      return a < b ? a : b;  // min of two: biased low
    }
  } bad;
  EXPECT_GT(full_jitter_chi_square(bad), 85.35);
}

TEST(BackoffTest, DecorrelatedFollowsTheAwsRecurrence) {
  const auto b = backoff::decorrelated(milliseconds(100), seconds(5));
  std::mt19937_64 gen(99);
  std::mt19937_64 shadow(99);  // replays the same uniforms
  backoff::state st;
  double prev = ns(b.base);
  bool reached_cap = false;
  for (std::uint64_t n = 0; n < 60; ++n) {
    const double u = sturdy::detail::uniform01(shadow);
    const double expected = std::min(ns(b.cap), ns(b.base) + (3 * prev - ns(b.base)) * u);
    const duration d = b.next_delay(n, st, gen);
    EXPECT_NEAR(ns(d), expected, 1.0) << "n=" << n;
    EXPECT_GE(d, b.base);
    EXPECT_LE(ns(d), std::min(ns(b.cap), 3 * prev) + 1);
    reached_cap = reached_cap || d == b.cap;
    prev = expected;  // the recurrence carries the exact value, not the rounded one
  }
  EXPECT_TRUE(reached_cap);
}

TEST(BackoffTest, DecorrelatedStateIsPerCall) {
  const auto b = backoff::decorrelated(milliseconds(100), seconds(5));
  std::mt19937_64 gen(3);
  backoff::state a;
  for (int i = 0; i < 20; ++i) (void)b.next_delay(static_cast<std::uint64_t>(i), a, gen);
  // A fresh call starts again from base: its first delay is in [base, 3*base].
  for (int i = 0; i < 1000; ++i) {
    backoff::state fresh;
    const duration d = b.next_delay(0, fresh, gen);
    ASSERT_GE(d, milliseconds(100));
    ASSERT_LE(d, milliseconds(300));
  }
}

TEST(BackoffTest, DecorrelatedSmoothFollowsPollyV2Curve) {
  const auto b = backoff::decorrelated_smooth(milliseconds(100), duration::max());
  std::mt19937_64 gen(5);
  std::mt19937_64 shadow(5);
  backoff::state st;
  double prev = 0;
  for (std::uint64_t n = 0; n < 30; ++n) {
    const double x = static_cast<double>(n) + sturdy::detail::uniform01(shadow);
    const double f = std::exp2(x) * std::tanh(std::sqrt(4 * x));
    const double expected = (f - prev) / 1.4 * ns(b.base);
    prev = f;
    EXPECT_NEAR(ns(b.next_delay(n, st, gen)), expected, expected * 1e-12 + 1) << "n=" << n;
  }
  // Medians (measured for this curve): about 0.9 base for the first retry
  // and 0.5 * base * 2^n from the third on; smooth, no outliers at zero.
  constexpr int kCalls = 20'001;
  for (std::uint64_t target : {0ull, 4ull, 8ull}) {
    std::vector<double> d;
    d.reserve(kCalls);
    for (int c = 0; c < kCalls; ++c) {
      backoff::state s;
      double last = 0;
      for (std::uint64_t n = 0; n <= target; ++n) last = ns(b.next_delay(n, s, gen));
      d.push_back(last);
    }
    std::nth_element(d.begin(), d.begin() + kCalls / 2, d.end());
    const double median = d[kCalls / 2] / ns(b.base);
    const double want = target == 0 ? 0.90 : 0.5 * std::exp2(static_cast<double>(target));
    EXPECT_NEAR(median / want, 1.0, 0.05) << "n=" << target;
  }
}

TEST(BackoffTest, DecorrelatedSmoothSaturatesWithoutNaN) {
  const auto b = backoff::decorrelated_smooth(milliseconds(100), seconds(30));
  std::mt19937_64 gen(8);
  backoff::state st;
  for (std::uint64_t n = 0; n < 3000; ++n) {
    const duration d = b.next_delay(n, st, gen);
    ASSERT_GE(d, duration::zero());
    ASSERT_LE(d, seconds(30));
    if (n > 40) {
      ASSERT_EQ(d, seconds(30)) << n;  // far past the cap
    }
  }
}

TEST(BackoffTest, RatioJitterStaysJitteredAtTheCap) {
  const backoff b{.jitter = jitter::ratio, .base = seconds(1), .cap = seconds(4), .ratio = 0.2};
  std::mt19937_64 gen(4);
  backoff::state st;
  // Below the cap: U(0.8 T, 1.2 T).
  double lo = 1e30;
  double hi = 0;
  for (int i = 0; i < 100'000; ++i) {
    const double d = ns(b.next_delay(1, st, gen));
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, 1.6e9);
  EXPECT_LE(hi, 2.4e9);
  EXPECT_LT(lo, 1.61e9);
  EXPECT_GT(hi, 2.39e9);
  // At the cap: U(0.8 cap, cap): never above, and not piled onto the cap.
  int at_cap = 0;
  for (int i = 0; i < 100'000; ++i) {
    const duration d = b.next_delay(10, st, gen);
    ASSERT_LE(d, seconds(4));
    ASSERT_GE(d, milliseconds(3200));
    at_cap += d == seconds(4) ? 1 : 0;
  }
  EXPECT_LT(at_cap, 10);
}

// The header promises [0, max(cap, 0)] even for options that fail
// validate(); min > cap used to return min.
TEST(BackoffTest, InvalidOptionsStillStayWithinZeroAndCap) {
  std::mt19937_64 gen(5);
  const std::array<backoff, 4> bad = {
      backoff{.base = milliseconds(1), .cap = milliseconds(2), .min = milliseconds(50)},
      backoff{.jitter = jitter::none, .base = milliseconds(0), .cap = milliseconds(2), .min = seconds(1)},
      backoff{.jitter = jitter::decorrelated, .base = milliseconds(-5), .cap = milliseconds(-1),
              .min = milliseconds(3)},
      backoff{.base = seconds(20), .cap = seconds(10), .min = milliseconds(-7)},
  };
  for (const backoff& b : bad) {
    ASSERT_FALSE(b.validate());
    const duration hi = std::max(b.cap, duration::zero());
    for (const jitter j : kJitters) {
      backoff v = b;
      v.jitter = j;
      backoff::state st;
      for (const std::uint64_t n : edge_retry_numbers()) {
        const duration d = v.next_delay(n, st, gen);
        ASSERT_GE(d, duration::zero()) << sturdy::to_string(j) << " n=" << n;
        ASSERT_LE(d, hi) << sturdy::to_string(j) << " n=" << n;
      }
    }
  }
}

TEST(BackoffTest, ValidationNamesTheBadField) {
  EXPECT_TRUE(backoff{}.validate());
  const auto bad = [](backoff b) {
    EXPECT_FALSE(b.validation_message().empty());
    auto r = b.validate();
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error(), sturdy::errc::invalid_options);
    }
    return b.validation_message();
  };
  EXPECT_NE(bad({.base = milliseconds(-1)}).find("base"), std::string_view::npos);
  EXPECT_NE(bad({.min = milliseconds(-1)}).find("min"), std::string_view::npos);
  EXPECT_NE(bad({.cap = milliseconds(1), .min = milliseconds(2)}).find("cap"), std::string_view::npos);
  EXPECT_NE(bad({.base = seconds(20), .cap = seconds(10)}).find("base"), std::string_view::npos);
  EXPECT_NE(bad({.multiplier = 0.5}).find("multiplier"), std::string_view::npos);
  EXPECT_NE(bad({.multiplier = std::nan("")}).find("multiplier"), std::string_view::npos);
  EXPECT_NE(bad({.multiplier = std::numeric_limits<double>::infinity()}).find("multiplier"), std::string_view::npos);
  EXPECT_NE(bad({.ratio = 1.5}).find("ratio"), std::string_view::npos);
  EXPECT_NE(bad({.ratio = std::nan("")}).find("ratio"), std::string_view::npos);
  EXPECT_NE(bad({.jitter = static_cast<jitter>(77)}).find("jitter"), std::string_view::npos);
  EXPECT_NE(bad({.curve = static_cast<backoff_curve>(9)}).find("curve"), std::string_view::npos);
}

TEST(BackoffTest, IsARegularValue) {
  const auto a = backoff::exponential(milliseconds(5), seconds(1));
  backoff b = a;
  EXPECT_EQ(a, b);
  b.ratio = 0.3;
  EXPECT_NE(a, b);
}

// A user strategy plugs in through the concept.
struct fibonacci_backoff {
  duration unit = milliseconds(10);
  struct state {
    duration a{0};
    duration b{1};
  };
  template <std::uniform_random_bit_generator Gen>
  duration next_delay(std::uint64_t, state& s, Gen&) const {
    const duration next = s.a + s.b;
    s.a = s.b;
    s.b = next;
    return next * unit.count();
  }
};
struct not_a_strategy {
  int next_delay(int) const { return 0; }
};
static_assert(sturdy::backoff_strategy<fibonacci_backoff>);
static_assert(!sturdy::backoff_strategy<not_a_strategy>);

TEST(ThreadLocalRandomTest, IsAGeneratorWithIndependentPerThreadStreams) {
  static_assert(std::uniform_random_bit_generator<sturdy::thread_local_random>);
  static_assert(std::is_empty_v<sturdy::thread_local_random>);
  sturdy::thread_local_random r;
  std::set<std::uint64_t> mine;
  for (int i = 0; i < 1000; ++i) mine.insert(r());
  EXPECT_EQ(mine.size(), 1000u);
  std::vector<std::uint64_t> theirs;
  std::thread t([&] {
    sturdy::thread_local_random r2;
    for (int i = 0; i < 1000; ++i) theirs.push_back(r2());
  });
  t.join();
  int overlap = 0;
  for (auto v : theirs) overlap += mine.count(v) > 0 ? 1 : 0;
  EXPECT_EQ(overlap, 0);
  // Uniform enough for jitter: the top bit is set about half the time.
  int top = 0;
  for (int i = 0; i < 100'000; ++i) top += (r() >> 63) != 0 ? 1 : 0;
  EXPECT_NEAR(top, 50'000, 1'000);
}

TEST(BackoffTest, WorksWithAbseilGenerators) {
  absl::BitGen gen(std::seed_seq{42});
  absl::BitGenRef ref(gen);
  const auto b = backoff::exponential(milliseconds(100), seconds(10), jitter::equal);
  backoff::state st;
  for (std::uint64_t n = 0; n < 100; ++n) {
    const duration d1 = b.next_delay(n, st, gen);
    const duration d2 = b.next_delay(n, st, ref);
    EXPECT_LE(d1, seconds(10));
    EXPECT_LE(d2, seconds(10));
    EXPECT_GE(ns(d1), b.capped_raw_ns(n) / 2 - 1);
  }
}

}  // namespace
