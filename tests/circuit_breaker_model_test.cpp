// Model-based test: thousands of fixed-seed random operation sequences are
// applied, single-threaded, to sturdy::circuit_breaker and to the simple
// sequential reference model below; state, generation, admissions and every
// count must match exactly after every step.
//
// The model is written from the documented semantics (docs/circuit_breaker.md)
// with plain containers: a deque for the count window, a map of buckets for
// the time window, a vector of probe slots.
#include "sturdy/circuit_breaker.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/manual_clock.hpp"

namespace {

using namespace std::chrono_literals;
using sturdy::breaker_state;
using sturdy::call_outcome;
using sturdy::duration;
using sturdy::time_point;
using sturdy::transition_reason;

struct event_counts {
  std::uint64_t changes = 0;
  std::uint64_t suppressed = 0;
  std::uint64_t lease_expired = 0;
  transition_reason last_reason{};
};

// Which reasons the sequences exercised, across all seeds (checked at the end
// so the test cannot pass by never reaching a rule).
std::map<transition_reason, std::uint64_t> reasons_seen;
std::uint64_t leases_expired_seen = 0;
std::uint64_t suppressed_seen = 0;

struct counting_listener {
  std::shared_ptr<event_counts> c = std::make_shared<event_counts>();
  void operator()(const sturdy::breaker_state_changed& e) const {
    ++c->changes;
    c->last_reason = e.reason;
    ++reasons_seen[e.reason];
  }
  void operator()(const sturdy::breaker_trip_suppressed&) const {
    ++c->suppressed;
    ++suppressed_seen;
  }
  void operator()(const sturdy::breaker_probe_lease_expired&) const {
    ++c->lease_expired;
    ++leases_expired_seen;
  }
  void operator()(const sturdy::breaker_call_rejected&) const {}
};

// ---------------------------------------------------------------------------
// The reference model.
class model {
 public:
  struct permit {
    std::uint64_t generation;
    breaker_state state;
    std::size_t slot = 0;
    time_point expiry{};
  };
  struct counts {
    std::uint64_t calls = 0, failures = 0, slow = 0;
  };

  model(sturdy::circuit_breaker_options o, time_point now) : o_(std::move(o)), since_(now) {
    slots_.resize(o_.half_open_probes);
    needed_ = static_cast<std::uint32_t>(std::ceil(o_.half_open_success_ratio * o_.half_open_probes));
    base_time_ = now;
  }

  std::optional<permit> acquire(time_point now) {
    if (state_ == breaker_state::open) {
      if (now < open_until_) return reject();
      transition(breaker_state::half_open, transition_reason::open_duration_elapsed, now);
    }
    switch (state_) {
      case breaker_state::forced_open:
        return reject();
      case breaker_state::half_open:
        for (std::size_t i = 0; i < slots_.size(); ++i) {
          slot& s = slots_[i];
          const bool expired = s.kind == slot::leased && s.expiry <= now;
          if (s.kind == slot::free || expired) {
            if (expired) ++lease_expired_;
            s = {slot::leased, now + o_.probe_lease};
            return permit{gen_, state_, i, s.expiry};
          }
        }
        return reject();
      default:
        return permit{gen_, state_};
    }
  }

  void record(const permit& p, call_outcome outcome, bool slow, time_point now) {
    if (p.state == breaker_state::half_open) {
      slot& s = slots_[p.slot];
      if (p.generation != gen_ || s.kind != slot::leased || s.expiry != p.expiry) {
        ++stale_;
        return;
      }
      if (outcome == call_outcome::ignored) {
        s = {};
        ++ignored_;
        return;
      }
      const bool bad = outcome == call_outcome::failure || slow;
      s.kind = bad ? slot::failed : slot::succeeded;
      ++totals_.calls;
      totals_.failures += outcome == call_outcome::failure;
      totals_.slow += slow;
      std::uint32_t ok = 0, failed = 0;
      for (const auto& x : slots_) {
        ok += x.kind == slot::succeeded;
        failed += x.kind == slot::failed;
      }
      if (ok >= needed_) {
        transition(breaker_state::closed, transition_reason::probes_succeeded, now);
      } else if (failed > o_.half_open_probes - needed_) {
        transition(breaker_state::open, transition_reason::probes_failed, now);
      }
      return;
    }
    if (p.generation != gen_) {
      ++stale_;
      return;
    }
    if (outcome == call_outcome::ignored) {
      ++ignored_;
      return;
    }
    const bool failed = outcome == call_outcome::failure;
    ++totals_.calls;
    totals_.failures += failed;
    totals_.slow += slow;
    if (!failed) {
      consecutive_ = 0;
      if (!slow) return;  // a plain success: nothing evaluated
    }
    if (state_ == breaker_state::disabled) return;
    if (failed) ++consecutive_;
    if (failed && o_.consecutive_failure_threshold != 0 && consecutive_ >= o_.consecutive_failure_threshold) {
      if (has_window()) drain(now, false);
      trip(transition_reason::consecutive_failures, now);
      return;
    }
    if (has_window()) {
      drain(now, true);
    } else {
      rearm();
    }
  }

  void manual(breaker_state to, time_point now) { transition(to, transition_reason::manual, now); }

  // What metrics() reports, with the windows brought up to date first.
  sturdy::breaker_metrics metrics(time_point now) {
    if (has_window()) drain(now, false);
    sturdy::breaker_metrics m;
    m.state = state_;
    m.generation = gen_;
    m.time_in_state = now - since_;
    m.retry_after = retry_after(now);
    m.calls = totals_.calls;
    m.failures = totals_.failures;
    m.slow_calls = totals_.slow;
    m.rejections = rejections_;
    m.ignored = ignored_;
    m.stale = stale_;
    // Each metric means one thing in every state.
    if (state_ == breaker_state::closed || state_ == breaker_state::metrics_only) m.consecutive_failures = consecutive_;
    if (state_ == breaker_state::open || state_ == breaker_state::half_open) m.consecutive_openings = openings_;
    if (state_ == breaker_state::closed || state_ == breaker_state::metrics_only ||
        state_ == breaker_state::disabled) {
      m.count_window = published_count_;
      m.time_window = published_time_;
    }
    return m;
  }

  duration retry_after(time_point now) const {
    switch (state_) {
      case breaker_state::open:
        return open_until_ > now ? open_until_ - now : duration::zero();
      case breaker_state::forced_open:
        return duration::max();
      case breaker_state::half_open: {
        std::optional<time_point> earliest;
        for (const auto& s : slots_) {
          if (s.kind == slot::free) return duration::zero();
          if (s.kind == slot::leased && (!earliest || s.expiry < *earliest)) earliest = s.expiry;
        }
        if (!earliest) return duration::zero();
        return *earliest > now ? *earliest - now : duration::zero();
      }
      default:
        return duration::zero();
    }
  }

  breaker_state state() const { return state_; }
  std::uint64_t generation() const { return gen_; }
  std::uint64_t changes() const { return changes_; }
  std::uint64_t suppressed() const { return suppressed_; }
  std::uint64_t lease_expired() const { return lease_expired_; }
  transition_reason last_reason() const { return last_reason_; }

 private:
  struct slot {
    enum kind_t { free, leased, succeeded, failed } kind = free;
    time_point expiry{};
  };
  struct outcome_flags {
    bool failed, slow;
  };

  std::optional<permit> reject() {
    ++rejections_;
    return std::nullopt;
  }

  bool has_window() const { return o_.count_window_size > 0 || o_.time_window > duration::zero(); }

  void trip(transition_reason reason, time_point now) {
    if (state_ == breaker_state::metrics_only) {
      if (!latched_) ++suppressed_;  // once per would-be opening
      latched_ = true;
      return;
    }
    transition(breaker_state::open, reason, now);
  }

  duration open_duration_for(std::uint32_t k) const {
    if (k == 0) return o_.open_duration;
    const double d = static_cast<double>(o_.open_duration.count()) * std::pow(o_.open_duration_growth, k);
    return d >= static_cast<double>(o_.max_open_duration.count()) ? o_.max_open_duration
                                                                  : duration(static_cast<std::int64_t>(d));
  }

  // In metrics_only, an evaluation that finds no rule holding re-arms the
  // suppressed-trip event.
  void rearm() {
    if (state_ != breaker_state::metrics_only) return;
    if (o_.consecutive_failure_threshold != 0 && consecutive_ >= o_.consecutive_failure_threshold) return;
    latched_ = false;
  }

  void transition(breaker_state to, transition_reason reason, time_point now) {
    const breaker_state from = state_;
    ++gen_;
    since_ = now;
    consecutive_ = 0;
    latched_ = false;
    if (to == breaker_state::open) {
      openings_ = from == breaker_state::half_open ? openings_ + 1 : 0;
      open_until_ = now + open_duration_for(openings_);
    } else if (to == breaker_state::half_open) {
      for (auto& s : slots_) s = {};
    } else {
      openings_ = 0;
      if (to != breaker_state::forced_open) {
        base_ = totals_;
        base_time_ = now;
      }
    }
    state_ = to;
    ++changes_;
    last_reason_ = reason;
  }

  // Folds the outcomes counted since the last drain into the windows.
  void drain(time_point now, bool evaluate) {
    if (state_ != breaker_state::closed && state_ != breaker_state::metrics_only &&
        state_ != breaker_state::disabled) {
      return;
    }
    if (window_gen_ != gen_) {
      window_gen_ = gen_;
      seen_ = base_;
      seen_time_ = base_time_;
      ring_.clear();
      buckets_.clear();
    }
    const std::uint64_t calls = totals_.calls - seen_.calls;
    const std::uint64_t failures = totals_.failures - seen_.failures;
    const std::uint64_t slow = totals_.slow - seen_.slow;
    seen_ = totals_;
    // Count window: the batch's failures (and slow calls) spread evenly over
    // it, the last one at its end.
    const auto marked = [](std::uint64_t i, std::uint64_t k, std::uint64_t n) {
      return (i + 1) * k / n > i * k / n;  // small numbers here: no overflow
    };
    if (o_.count_window_size > 0) {
      for (std::uint64_t i = 0; i < calls; ++i) push({marked(i, failures, calls), marked(i, slow, calls)});
    }
    // Time window: every count spread evenly over (seen_time_, now].
    if (o_.time_window > duration::zero()) {
      const std::int64_t width = o_.time_window.count() / o_.time_window_buckets;
      const auto bucket_of = [&](time_point t) {
        return static_cast<std::int64_t>(std::floor(static_cast<long double>(t.time_since_epoch().count()) / width));
      };
      const std::int64_t cur = bucket_of(now);
      const std::int64_t t0 = seen_time_.time_since_epoch().count();
      const std::int64_t t1 = now.time_since_epoch().count();
      if (t1 <= t0) {
        buckets_[cur].calls += calls;
        buckets_[cur].failures += failures;
        buckets_[cur].slow += slow;
      } else {
        // The k-th of x items (k = 1..x) sits at t0 + k * (t1 - t0) / x; a
        // bucket [a, b) takes those with a <= time < b. Plain loop: the
        // numbers in these sequences are small.
        const auto place = [&](std::uint64_t x, std::uint64_t counts::*field) {
          __extension__ using i128 = __int128;
          for (std::uint64_t k = 1; k <= x; ++k) {
            // Walk back from the bucket of now while the item lies before the
            // bucket's start: k * (t1 - t0) / x < i * width - t0.
            std::int64_t i = cur;
            while (i > cur - static_cast<std::int64_t>(o_.time_window_buckets) &&
                   static_cast<i128>(k) * (t1 - t0) < static_cast<i128>(x) * (i * width - t0)) {
              --i;
            }
            if (i > cur - static_cast<std::int64_t>(o_.time_window_buckets)) ++(buckets_[i].*field);
          }
        };
        place(calls, &counts::calls);
        place(failures, &counts::failures);
        place(slow, &counts::slow);
      }
      // Forget buckets that left the window.
      for (auto it = buckets_.begin(); it != buckets_.end();) {
        it = it->first <= cur - static_cast<std::int64_t>(o_.time_window_buckets) ? buckets_.erase(it) : std::next(it);
      }
      published_time_ = {};
      for (const auto& [i, c] : buckets_) {
        published_time_.calls += c.calls;
        published_time_.failures += c.failures;
        published_time_.slow_calls += c.slow;
      }
    }
    seen_time_ = now;
    published_count_ = {};
    for (const auto& f : ring_) {
      ++published_count_.calls;
      published_count_.failures += f.failed;
      published_count_.slow_calls += f.slow;
    }
    if (!evaluate || state_ == breaker_state::disabled) return;
    for (const auto* w : {&published_count_, &published_time_}) {
      if (w->calls < o_.minimum_calls) continue;
      if (o_.failure_rate_threshold > 0 &&
          static_cast<double>(w->failures) >= o_.failure_rate_threshold * static_cast<double>(w->calls)) {
        trip(transition_reason::failure_rate, now);
        return;
      }
      if (o_.slow_call_duration > duration::zero() &&
          static_cast<double>(w->slow_calls) >= o_.slow_call_rate_threshold * static_cast<double>(w->calls)) {
        trip(transition_reason::slow_call_rate, now);
        return;
      }
    }
    rearm();
  }

  void push(outcome_flags f) {
    ring_.push_back(f);
    if (ring_.size() > o_.count_window_size) ring_.pop_front();
  }

  sturdy::circuit_breaker_options o_;
  breaker_state state_ = breaker_state::closed;
  std::uint64_t gen_ = 0;
  time_point since_;
  time_point open_until_{};
  std::uint32_t openings_ = 0;
  std::uint32_t consecutive_ = 0;
  bool latched_ = false;  // metrics_only: a suppressed trip announced, rule still holding
  std::uint32_t needed_ = 1;
  std::vector<slot> slots_;
  counts totals_;
  std::uint64_t rejections_ = 0, ignored_ = 0, stale_ = 0;
  std::uint64_t changes_ = 0, suppressed_ = 0, lease_expired_ = 0;
  transition_reason last_reason_{};
  counts base_;
  time_point base_time_{};
  std::uint64_t window_gen_ = ~std::uint64_t{0};
  counts seen_;
  time_point seen_time_{};
  std::deque<outcome_flags> ring_;
  std::map<std::int64_t, counts> buckets_;
  sturdy::breaker_window_stats published_count_, published_time_;
};

// ---------------------------------------------------------------------------

template <class T>
const T& pick(std::mt19937_64& gen, const std::vector<T>& v) {
  return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(gen)];
}

sturdy::circuit_breaker_options random_options(std::mt19937_64& gen) {
  sturdy::circuit_breaker_options o;
  o.consecutive_failure_threshold = pick<std::uint32_t>(gen, {0, 1, 2, 3, 5});
  o.failure_rate_threshold = pick<double>(gen, {0.0, 0.3, 0.5, 1.0});
  o.count_window_size = pick<std::uint32_t>(gen, {0, 1, 3, 10});
  o.time_window = pick<duration>(gen, {0s, 10s, 3s});
  o.time_window_buckets = pick<std::uint32_t>(gen, {1, 5, 10});
  o.minimum_calls = pick<std::uint32_t>(gen, {1, 2, 5});
  o.slow_call_duration = pick<duration>(gen, {0ms, 100ms});
  o.slow_call_rate_threshold = pick<double>(gen, {0.5, 1.0});
  o.open_duration = pick<duration>(gen, {1s, 10s});
  o.open_duration_growth = pick<double>(gen, {1.0, 1.5, 2.0});
  o.max_open_duration = 40s;
  o.half_open_probes = pick<std::uint32_t>(gen, {1, 2, 3});
  o.half_open_success_ratio = pick<double>(gen, {1.0, 0.5});
  o.probe_lease = pick<duration>(gen, {2s, 60s});
  if (o.count_window_size == 0 && o.time_window == 0s) {
    o.failure_rate_threshold = 0;
    o.slow_call_duration = 0s;
  }
  // Rules that could never trip are refused by validate(): keep the minimum
  // within the count window, and at least one rule on.
  if (o.count_window_size > 0) o.minimum_calls = std::min(o.minimum_calls, o.count_window_size);
  if (o.failure_rate_threshold == 0 && o.slow_call_duration == 0s && o.consecutive_failure_threshold == 0) {
    o.consecutive_failure_threshold = 2;
  }
  return o;
}

void run_sequence(std::uint64_t seed, int steps, bool metrics_every_step) {
  std::mt19937_64 gen(seed);
  const sturdy::circuit_breaker_options o = random_options(gen);
  ASSERT_TRUE(o.validate()) << o.validation_message();
  sturdy::testing::manual_clock clock(time_point(std::chrono::hours(1)));
  counting_listener events;
  sturdy::circuit_breaker<sturdy::testing::manual_clock, counting_listener> b(o, clock, events);
  model m(o, clock.now());
  std::vector<std::pair<sturdy::breaker_permit, model::permit>> outstanding;
  std::uniform_int_distribution<int> percent(0, 99);

  for (int step = 0; step < steps; ++step) {
    const int op = percent(gen);
    std::string what;
    if (op < 35) {
      what = "acquire";
      auto real = b.try_acquire();
      auto expected = m.acquire(clock.now());
      ASSERT_EQ(real.has_value(), expected.has_value()) << "seed " << seed << " step " << step;
      if (real) {
        EXPECT_EQ(real.value().generation(), expected->generation);
        EXPECT_EQ(real.value().state(), expected->state);
        if (outstanding.size() < 8) outstanding.emplace_back(real.value(), *expected);
        // else: the permit is dropped, never reported (leases must cope)
      } else {
        EXPECT_EQ(real.error(), sturdy::errc::circuit_open);
      }
    } else if (op < 72) {
      what = "record";
      if (outstanding.empty()) continue;
      const std::size_t i = std::uniform_int_distribution<std::size_t>(0, outstanding.size() - 1)(gen);
      const auto [rp, mp] = outstanding[i];
      outstanding.erase(outstanding.begin() + static_cast<std::ptrdiff_t>(i));
      const int r = percent(gen);
      const call_outcome outcome =
          r < 55 ? call_outcome::success : (r < 90 ? call_outcome::failure : call_outcome::ignored);
      if (percent(gen) < 50) {
        const duration took = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 200)(gen));
        b.record(rp, outcome, took);
        m.record(mp, outcome, o.slow_call_duration > 0s && took > o.slow_call_duration, clock.now());
      } else {
        b.record(rp, outcome);
        m.record(mp, outcome, false, clock.now());
      }
    } else if (op < 90) {
      what = "advance";
      clock.advance(pick<duration>(gen, {0ms, 1ms, 100ms, 700ms, 1s, 2500ms, 5s, 11s}));
    } else if (op < 97) {
      what = "metrics";
      const auto real = b.metrics();
      const auto expected = m.metrics(clock.now());
      ASSERT_EQ(real.calls, expected.calls) << "seed " << seed << " step " << step;
      EXPECT_EQ(real.count_window.calls, expected.count_window.calls) << "seed " << seed << " step " << step;
      EXPECT_EQ(real.count_window.failures, expected.count_window.failures);
      EXPECT_EQ(real.count_window.slow_calls, expected.count_window.slow_calls);
      ASSERT_EQ(real.time_window.calls, expected.time_window.calls) << "seed " << seed << " step " << step;
      EXPECT_EQ(real.time_window.failures, expected.time_window.failures);
      EXPECT_EQ(real.time_window.slow_calls, expected.time_window.slow_calls);
      EXPECT_EQ(real.time_in_state, expected.time_in_state);
    } else {
      what = "manual";
      const breaker_state to = pick<breaker_state>(
          gen, {breaker_state::closed, breaker_state::forced_open, breaker_state::disabled,
                breaker_state::metrics_only, breaker_state::closed});
      switch (to) {
        case breaker_state::forced_open: b.force_open(); break;
        case breaker_state::disabled: b.disable(); break;
        case breaker_state::metrics_only: b.metrics_only(); break;
        default: b.reset(); break;
      }
      m.manual(to, clock.now());
    }
    // After every step.
    ASSERT_EQ(b.state(), m.state()) << "seed " << seed << " step " << step << " after " << what;
    ASSERT_EQ(b.generation(), m.generation()) << "seed " << seed << " step " << step << " after " << what;
    ASSERT_EQ(b.retry_after(), m.retry_after(clock.now())) << "seed " << seed << " step " << step;
    ASSERT_EQ(events.c->changes, m.changes()) << "seed " << seed << " step " << step;
    ASSERT_EQ(events.c->suppressed, m.suppressed()) << "seed " << seed << " step " << step;
    ASSERT_EQ(events.c->lease_expired, m.lease_expired()) << "seed " << seed << " step " << step;
    if (m.changes() > 0) {
      ASSERT_EQ(events.c->last_reason, m.last_reason());
    }
    if (metrics_every_step) {
      const auto real = b.metrics();
      const auto expected = m.metrics(clock.now());
      ASSERT_EQ(real.calls, expected.calls) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.failures, expected.failures) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.slow_calls, expected.slow_calls) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.rejections, expected.rejections) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.ignored, expected.ignored) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.stale, expected.stale) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.consecutive_failures, expected.consecutive_failures) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.consecutive_openings, expected.consecutive_openings) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.count_window.calls, expected.count_window.calls) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.count_window.failures, expected.count_window.failures) << "seed " << seed;
      ASSERT_EQ(real.time_window.calls, expected.time_window.calls) << "seed " << seed << " step " << step;
      ASSERT_EQ(real.time_window.failures, expected.time_window.failures) << "seed " << seed;
      ASSERT_EQ(real.time_window.slow_calls, expected.time_window.slow_calls) << "seed " << seed;
      ASSERT_EQ(real.retry_after, expected.retry_after);
    }
  }
}

TEST(CircuitBreakerModelTest, MatchesTheReferenceModelWithSparseSnapshots) {
  for (std::uint64_t seed = 1; seed <= 3000; ++seed) {
    run_sequence(seed, 300, false);
    if (HasFatalFailure()) return;
  }
}

TEST(CircuitBreakerModelTest, MatchesTheReferenceModelWithASnapshotAfterEveryStep) {
  for (std::uint64_t seed = 100'001; seed <= 102'000; ++seed) {
    run_sequence(seed, 200, true);
    if (HasFatalFailure()) return;
  }
}

TEST(CircuitBreakerModelTest, SequencesReachEveryRuleAndTransition) {
  for (std::uint64_t seed = 1; seed <= 300; ++seed) run_sequence(seed, 300, false);
  for (auto r : {transition_reason::consecutive_failures, transition_reason::failure_rate,
                 transition_reason::slow_call_rate, transition_reason::open_duration_elapsed,
                 transition_reason::probes_succeeded, transition_reason::probes_failed,
                 transition_reason::manual}) {
    EXPECT_GT(reasons_seen[r], 10u) << sturdy::to_string(r);
  }
  EXPECT_GT(leases_expired_seen, 10u);
  EXPECT_GT(suppressed_seen, 10u);
}

}  // namespace
