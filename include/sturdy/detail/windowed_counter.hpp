// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/windowed_counter.hpp
// -----------------------------------------------------------------------------
//
// Internal: a lock-free count of events over a sliding time window, split
// into `slots` slices. Each slice is one 64-bit atomic word holding
// (slice epoch : 32 | count : 32); a slice whose epoch is stale is reset by
// the first writer of the new epoch (one CAS). A writer whose epoch is
// older than the slice's (a thread that read its `now` a whole window ago
// and was descheduled) drops its increment rather than wipe the newer
// slice: the event belongs to a slice that has already left the window.
// `sum` adds the slices whose epoch lies within the window. Time is passed
// in explicitly (no clock here). Epochs compare modulo 2^32 (a signed
// difference), so the counter is exact for 2^31 slices after its origin
// and never misbehaves beyond (a wrapped epoch looks old or new, never UB).
//
// Thread safety: every member function is lock-free and safe to call
// concurrently. No stability promise.

#ifndef STURDY_DETAIL_WINDOWED_COUNTER_HPP_
#define STURDY_DETAIL_WINDOWED_COUNTER_HPP_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "sturdy/clock.hpp"

namespace sturdy::detail {

template <std::size_t Slots>
class windowed_counter {
  static_assert(Slots >= 2, "a sliding window needs at least two slices");

 public:
  windowed_counter() noexcept {
    for (auto& s : slots_) s.store(0, std::memory_order_relaxed);
  }
  windowed_counter(const windowed_counter&) = delete;
  windowed_counter& operator=(const windowed_counter&) = delete;

  // The epoch (slice index since the origin) of `elapsed`, for slice width
  // `width` (> 0).
  [[nodiscard]] static std::uint32_t epoch_of(duration elapsed, duration width) noexcept {
    if (elapsed <= duration::zero()) return 0;
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(elapsed / width));
  }

  // Adds one to the slice of `epoch`; saturates at 2^32 - 1 per slice. An
  // `epoch` older than the one the slot holds now is dropped (see the
  // banner): resetting the slot would lose the newer slice's counts.
  void increment(std::uint32_t epoch) noexcept {
    auto& slot = slots_[epoch % Slots];
    std::uint64_t cur = slot.load(std::memory_order_relaxed);
    for (;;) {
      std::uint64_t next = 0;
      if (epoch_part(cur) == epoch) {
        if (count_part(cur) == 0xffffffffu) return;
        next = cur + 1;
      } else if (is_older(epoch, epoch_part(cur))) {
        return;
      } else {
        next = pack(epoch, 1);
      }
      if (slot.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
    }
  }

  // Removes one from the slice of `epoch` if that slice still belongs to
  // `epoch` and is non-zero (undoes a tentative increment).
  void decrement(std::uint32_t epoch) noexcept {
    auto& slot = slots_[epoch % Slots];
    std::uint64_t cur = slot.load(std::memory_order_relaxed);
    while (epoch_part(cur) == epoch && count_part(cur) > 0) {
      if (slot.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) return;
    }
  }

  // The total over the slices of epochs (epoch - Slots, epoch].
  [[nodiscard]] std::uint64_t sum(std::uint32_t epoch) const noexcept {
    std::uint64_t total = 0;
    for (const auto& s : slots_) {
      const std::uint64_t w = s.load(std::memory_order_relaxed);
      const std::uint32_t age = epoch - epoch_part(w);  // modular: future slices look ancient
      if (age < Slots) total += count_part(w);
    }
    return total;
  }

 private:
  static constexpr std::uint64_t pack(std::uint32_t epoch, std::uint32_t count) noexcept {
    return (static_cast<std::uint64_t>(epoch) << 32) | count;
  }
  static constexpr std::uint32_t epoch_part(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w >> 32);
  }
  static constexpr std::uint32_t count_part(std::uint64_t w) noexcept {
    return static_cast<std::uint32_t>(w);
  }
  // Whether epoch `a` precedes epoch `b` (modulo 2^32).
  static constexpr bool is_older(std::uint32_t a, std::uint32_t b) noexcept {
    return static_cast<std::int32_t>(a - b) < 0;
  }

  std::array<std::atomic<std::uint64_t>, Slots> slots_;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_WINDOWED_COUNTER_HPP_
