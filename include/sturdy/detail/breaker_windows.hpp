// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/breaker_windows.hpp
// -----------------------------------------------------------------------------
//
// The circuit breaker's sliding windows, as plain single-threaded data
// structures (the breaker updates them only while it holds its "drain" flag).
// They are fed in batches: "since the last update, `calls` calls ended, of
// which `failures` failed and `slow` were slow". Within a batch the failures
// (and the slow calls) are spread evenly, the last one at the end of the
// batch: call i of n (0-based) is a failure when floor((i+1)*f/n) >
// floor(i*f/n). A batch recorded by one thread holds exactly one bad call,
// its last, so this is exact single-threaded; a batch that piled up while the
// draining thread was descheduled keeps its failure rate instead of looking
// like a burst of failures.
//
// Functions take `now` explicitly; no clock is read here.

#ifndef STURDY_DETAIL_BREAKER_WINDOWS_HPP_
#define STURDY_DETAIL_BREAKER_WINDOWS_HPP_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "sturdy/clock.hpp"

namespace sturdy::detail {

// What a window holds right now.
struct window_counts {
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t slow = 0;
};

// Rates compare as `failures >= threshold * calls` in double arithmetic.
[[nodiscard]] inline bool rate_reached(std::uint64_t part, std::uint64_t calls, double threshold) noexcept {
  return calls > 0 && static_cast<double>(part) >= threshold * static_cast<double>(calls);
}

// count_window: the outcomes of the last `size` calls, exactly, as a ring of
// one byte per call (bit 0 failed, bit 1 slow).
class count_window {
 public:
  explicit count_window(std::uint32_t size) : ring_(size, 0) {}

  void reset() noexcept {
    std::fill(ring_.begin(), ring_.end(), std::uint8_t{0});
    head_ = 0;
    counts_ = {};
  }

  // Appends a batch of `calls` calls (see the file comment for where the
  // `failures` and `slow` ones go). O(min(calls, size)), no division per call.
  void add(std::uint64_t calls, std::uint64_t failures, std::uint64_t slow) noexcept {
    if (ring_.empty() || calls == 0) return;
    const std::uint64_t n = ring_.size();
    std::uint64_t first = 0;  // index within the batch of the first call to write
    if (calls > n) {          // only the last n calls of the batch survive
      first = calls - n;
      reset();
    }
    // Bresenham: call i is marked when acc + k crosses `calls`, where acc
    // tracks (i * k) mod calls; this equals floor((i+1)k/n) > floor(ik/n).
    std::uint64_t fail_acc = start_acc(first, failures, calls);
    std::uint64_t slow_acc = start_acc(first, slow, calls);
    for (std::uint64_t i = first; i < calls; ++i) {
      std::uint8_t flags = 0;
      fail_acc += failures;
      if (fail_acc >= calls) {
        fail_acc -= calls;
        flags |= 1;
      }
      slow_acc += slow;
      if (slow_acc >= calls) {
        slow_acc -= calls;
        flags |= 2;
      }
      push(flags);
    }
  }

  [[nodiscard]] window_counts counts() const noexcept { return counts_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return ring_.size(); }

 private:
  [[nodiscard]] static std::uint64_t start_acc(std::uint64_t first, std::uint64_t k, std::uint64_t n) noexcept {
    if (first == 0 || k == 0) return 0;
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::uint64_t>(static_cast<u128>(first) * k % n);
  }
  void push(std::uint8_t flags) noexcept {
    std::uint8_t& cell = ring_[head_];
    if (counts_.calls == ring_.size()) {  // full: evict the call this one replaces
      --counts_.calls;
      counts_.failures -= cell & 1;
      counts_.slow -= (cell >> 1) & 1;
    }
    cell = flags;
    ++counts_.calls;
    counts_.failures += flags & 1;
    counts_.slow += (flags >> 1) & 1;
    if (++head_ == ring_.size()) head_ = 0;
  }

  std::vector<std::uint8_t> ring_;
  std::size_t head_ = 0;  // where the next call goes
  window_counts counts_;
};

// time_window: `buckets` buckets of `span / buckets` each; the window at time
// t is the bucket holding t plus the buckets - 1 before it. Outcomes are
// counted without reading the clock, so a batch is spread evenly over the time
// since the previous update: of a count x, the k-th (k = 1..x) is placed at
// since + k * (now - since) / x, the last one exactly at `now`; the share that
// falls before the window is dropped. The one failure of a single-threaded
// batch therefore lands in the bucket of `now`.
//
// Any uptime, any clock: bucket indices are 64-bit floor divisions of the
// time stamp (never a wrapping epoch), and every difference of time stamps
// or bucket boundaries is computed in 128 bits, so a clock anywhere from
// time_point::min() to time_point::max() and a window of 1 ns buckets are
// exact (tests: CircuitBreakerTimeWindowTest.*).
class time_window {
 public:
  time_window(duration span, std::uint32_t buckets)
      : bucket_ns_(buckets == 0 ? 1 : span.count() / buckets), buckets_(buckets) {
    if (bucket_ns_ <= 0) bucket_ns_ = 1;
  }

  void reset() noexcept {
    for (auto& b : buckets_) b = bucket{};
  }

  void add(std::uint64_t calls, std::uint64_t failures, std::uint64_t slow, time_point since,
           time_point now) noexcept {
    if (buckets_.empty() || calls == 0) return;
    const std::int64_t cur = index_of(now);
    const std::int64_t t0 = since.time_since_epoch().count();
    const std::int64_t t1 = now.time_since_epoch().count();
    if (t1 <= t0) {
      bucket& b = at(cur);
      b.counts.calls += calls;
      b.counts.failures += failures;
      b.counts.slow += slow;
      return;
    }
    // t1 > t0, so the true difference is in (0, 2^64): exact in unsigned.
    const std::uint64_t total = static_cast<std::uint64_t>(t1) - static_cast<std::uint64_t>(t0);
    const std::int64_t first = std::max(index_of(since), oldest_index(cur));
    // Counted by offset, not `++i <= cur`, which would overflow at cur = max.
    const auto n = static_cast<std::uint64_t>(cur - first);  // < buckets
    for (std::uint64_t k = 0; k <= n; ++k) {
      const std::int64_t i = first + static_cast<std::int64_t>(k);
      const u128 start = elapsed_to(i, 0, t0);
      const u128 end = elapsed_to(i, 1, t0);
      window_counts& c = at(i).counts;
      c.calls += before(calls, end, total) - before(calls, start, total);
      c.failures += before(failures, end, total) - before(failures, start, total);
      c.slow += before(slow, end, total) - before(slow, start, total);
    }
  }

  // The counts of the buckets in the window that ends at `now`.
  [[nodiscard]] window_counts counts(time_point now) const noexcept {
    window_counts c;
    if (buckets_.empty()) return c;
    const std::int64_t cur = index_of(now);
    const std::int64_t oldest = oldest_index(cur);
    for (const auto& b : buckets_) {
      if (b.index >= oldest && b.index <= cur) {
        c.calls += b.counts.calls;
        c.failures += b.counts.failures;
        c.slow += b.counts.slow;
      }
    }
    return c;
  }

  [[nodiscard]] duration bucket_width() const noexcept { return duration(bucket_ns_); }

 private:
  struct bucket {
    std::int64_t index = INT64_MIN;
    window_counts counts;
  };

  [[nodiscard]] std::int64_t index_of(time_point t) const noexcept {
    const std::int64_t c = t.time_since_epoch().count();
    std::int64_t q = c / bucket_ns_;
    if (c % bucket_ns_ < 0) --q;  // floor division
    return q;
  }
  bucket& at(std::int64_t index) noexcept {
    const auto n = static_cast<std::int64_t>(buckets_.size());
    std::int64_t slot = index % n;
    if (slot < 0) slot += n;
    bucket& b = buckets_[static_cast<std::size_t>(slot)];
    if (b.index != index) b = bucket{index, {}};
    return b;
  }
  // The first bucket index of a window whose newest bucket is `cur`
  // (saturating at the lowest index).
  [[nodiscard]] std::int64_t oldest_index(std::int64_t cur) const noexcept {
    const auto span = static_cast<std::int64_t>(buckets_.size()) - 1;
    return cur < std::numeric_limits<std::int64_t>::min() + span ? std::numeric_limits<std::int64_t>::min()
                                                                  : cur - span;
  }
  __extension__ using u128 = unsigned __int128;
  __extension__ using i128 = __int128;

  // Time from t0 to the start of bucket `index + extra` (extra 0 or 1: its
  // end), clamped at 0; in 128 bits, since a bucket boundary may lie outside
  // the 64-bit time range near time_point::min()/max().
  [[nodiscard]] u128 elapsed_to(std::int64_t index, int extra, std::int64_t t0) const noexcept {
    const i128 d = (static_cast<i128>(index) + extra) * bucket_ns_ - t0;
    return d <= 0 ? 0 : static_cast<u128>(d);
  }
  // Of `x` items at offsets T/x, 2T/x, ..., T after `since`, how many lie
  // strictly before offset `e`: the k with k*T < x*e, at most x.
  [[nodiscard]] static std::uint64_t before(std::uint64_t x, u128 e128, std::uint64_t total) noexcept {
    if (x == 0 || e128 == 0) return 0;
    if (e128 > total) return x;
    const auto e = static_cast<std::uint64_t>(e128);
    std::uint64_t xe = 0;
    if (!__builtin_mul_overflow(x, e, &xe)) return (xe - 1) / total;  // 64-bit fast path
    return static_cast<std::uint64_t>((static_cast<u128>(x) * e - 1) / total);
  }

  std::int64_t bucket_ns_;
  std::vector<bucket> buckets_;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_BREAKER_WINDOWS_HPP_
