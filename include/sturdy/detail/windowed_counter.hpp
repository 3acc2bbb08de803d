// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/windowed_counter.hpp
// -----------------------------------------------------------------------------
//
// Internal: a lock-free count of events over a sliding time window, split
// into `Slots` slices of width `width`. Each slice is one 64-bit atomic word
// holding (slice epoch : E bits | count : 64 - E bits), where an epoch is
// the slice index counted from the origin, and E is just wide enough for the
// largest epoch a `sturdy::time_point` can reach: (2^64 - 1) / width. So
// epochs are absolute and compare as plain integers: nothing wraps, for any
// uptime and any clock from `time_point::min()` to `time_point::max()`.
// The count then has about log2(width in ns) bits: capacity for one event
// per nanosecond of the slice (a 1 ms slice holds 2^19 events, a 1 s slice
// 2^29); a slice that fills up saturates (never wraps).
//
// A slice whose epoch is older than the writer's is reset by the first
// writer of the new epoch (one CAS). A writer whose epoch is older than the
// slice's (a thread that read its `now` a whole window ago and was
// descheduled) drops its increment rather than wipe the newer slice: the
// event belongs to a slice that has already left the window. `sum` adds the
// slices whose epoch lies within the window. Time is passed in explicitly
// (no clock here).
//
// Thread safety: every member function is lock-free and safe to call
// concurrently. No stability promise.

#ifndef STURDY_DETAIL_WINDOWED_COUNTER_HPP_
#define STURDY_DETAIL_WINDOWED_COUNTER_HPP_

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "sturdy/clock.hpp"

namespace sturdy::detail {

template <std::size_t Slots>
class windowed_counter {
  static_assert(Slots >= 2, "a sliding window needs at least two slices");

 public:
  // Slices narrower than this are widened to it, so that a count keeps at
  // least 10 bits (only invalid options ever ask for less: every budget
  // validates its window to whole milliseconds per slice).
  static constexpr duration min_width = duration(1024);

  // `width`: the width of one slice (widened to `min_width`).
  explicit windowed_counter(duration width) noexcept
      : width_(static_cast<std::uint64_t>(width < min_width ? min_width.count() : width.count())),
        count_bits_(static_cast<unsigned>(64 - std::bit_width(std::numeric_limits<std::uint64_t>::max() / width_))),
        count_max_((std::uint64_t{1} << count_bits_) - 1) {
    for (auto& s : slots_) s.store(0, std::memory_order_relaxed);
  }
  windowed_counter(const windowed_counter&) = delete;
  windowed_counter& operator=(const windowed_counter&) = delete;

  // The epoch (slice index since `origin`) of `now`; 0 when `now` is not
  // after `origin`. Exact for every pair of time points (the difference is
  // taken in unsigned 64-bit arithmetic, where it always fits).
  [[nodiscard]] std::uint64_t epoch(time_point origin, time_point now) const noexcept {
    const auto o = static_cast<std::uint64_t>(origin.time_since_epoch().count());
    const auto n = static_cast<std::uint64_t>(now.time_since_epoch().count());
    if (now <= origin) return 0;
    return (n - o) / width_;  // n - o < 2^64: no wrap
  }

  // The largest count one slice holds (it saturates there).
  [[nodiscard]] std::uint64_t slice_capacity() const noexcept { return count_max_; }
  [[nodiscard]] duration width() const noexcept { return duration(static_cast<duration::rep>(width_)); }

  // Adds one to the slice of `epoch`; saturates at `slice_capacity()`. An
  // `epoch` older than the one the slot holds now is dropped (see the
  // banner): resetting the slot would lose the newer slice's counts.
  void increment(std::uint64_t epoch) noexcept {
    auto& slot = slots_[epoch % Slots];
    std::uint64_t cur = slot.load(std::memory_order_relaxed);
    for (;;) {
      std::uint64_t next = 0;
      const std::uint64_t e = epoch_part(cur);
      if (e == epoch) {
        if (count_part(cur) == count_max_) return;
        next = cur + 1;
      } else if (epoch < e) {
        return;
      } else {
        next = pack(epoch, 1);
      }
      if (slot.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
    }
  }

  // Removes one from the slice of `epoch` if that slice still belongs to
  // `epoch` and is non-zero (undoes a tentative increment).
  void decrement(std::uint64_t epoch) noexcept {
    auto& slot = slots_[epoch % Slots];
    std::uint64_t cur = slot.load(std::memory_order_relaxed);
    while (epoch_part(cur) == epoch && count_part(cur) > 0) {
      if (slot.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) return;
    }
  }

  // The total over the slices of epochs (epoch - Slots, epoch].
  [[nodiscard]] std::uint64_t sum(std::uint64_t epoch) const noexcept {
    std::uint64_t total = 0;
    for (const auto& s : slots_) {
      const std::uint64_t w = s.load(std::memory_order_relaxed);
      const std::uint64_t e = epoch_part(w);
      if (e <= epoch && epoch - e < Slots) total += count_part(w);  // a future slice is not counted
    }
    return total;
  }

 private:
  [[nodiscard]] std::uint64_t pack(std::uint64_t epoch, std::uint64_t count) const noexcept {
    return (epoch << count_bits_) | count;
  }
  [[nodiscard]] std::uint64_t epoch_part(std::uint64_t w) const noexcept {
    return w >> count_bits_;
  }
  [[nodiscard]] std::uint64_t count_part(std::uint64_t w) const noexcept { return w & count_max_; }

  const std::uint64_t width_;
  const unsigned count_bits_;  // 64 - bits of the largest epoch: in [10, 63]
  const std::uint64_t count_max_;
  std::array<std::atomic<std::uint64_t>, Slots> slots_;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_WINDOWED_COUNTER_HPP_
