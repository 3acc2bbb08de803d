// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/breaker_word.hpp
// -----------------------------------------------------------------------------
//
// Internals of `sturdy::circuit_breaker`; no stability promise.
//
//   - the state word: one 64-bit atomic holding the state (3 bits), a
//     "transition in progress" bit, the state being entered (3 bits, only
//     while that bit is set) and a 56-bit generation. The hot path only ever
//     loads it; it changes twice per state transition (locked, published).
//   - counter stripes: 128-byte blocks of monotonic counters. Each
//     thread writes the stripe picked by its thread index, so two threads
//     recording successes at the same time write different cache lines.
//   - probe slot values for the half-open state.

#ifndef STURDY_DETAIL_BREAKER_WORD_HPP_
#define STURDY_DETAIL_BREAKER_WORD_HPP_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"

namespace sturdy::detail {

// --- the state word ---------------------------------------------------------
inline constexpr std::uint64_t word_state_mask = 0x7;
inline constexpr std::uint64_t word_locked_bit = 0x8;
inline constexpr int word_generation_shift = 8;

[[nodiscard]] constexpr std::uint64_t make_word(std::uint64_t state, std::uint64_t generation) noexcept {
  return (generation << word_generation_shift) | (state & word_state_mask);
}
[[nodiscard]] constexpr std::uint64_t word_state(std::uint64_t w) noexcept { return w & word_state_mask; }
[[nodiscard]] constexpr std::uint64_t word_generation(std::uint64_t w) noexcept {
  return w >> word_generation_shift;
}
[[nodiscard]] constexpr bool word_locked(std::uint64_t w) noexcept { return (w & word_locked_bit) != 0; }

// While a transition is being published the word is `from | locked | target
// << 4`; the word it will publish is known in advance, so a call admitted
// meanwhile can be given a permit of the new generation.
inline constexpr int word_target_shift = 4;
[[nodiscard]] constexpr std::uint64_t make_locked_word(std::uint64_t from, std::uint64_t target) noexcept {
  return from | word_locked_bit | ((target & word_state_mask) << word_target_shift);
}
[[nodiscard]] constexpr std::uint64_t word_target(std::uint64_t locked) noexcept {
  return (locked >> word_target_shift) & word_state_mask;
}
[[nodiscard]] constexpr std::uint64_t word_after_transition(std::uint64_t locked) noexcept {
  return make_word(word_target(locked), word_generation(locked) + 1);
}

// --- counter stripes --------------------------------------------------------
// Each stripe spans two cache lines: Intel's spatial (adjacent-line)
// prefetcher fetches 64-byte lines in aligned 128-byte pairs, so two threads
// writing neighbouring 64-byte stripes would still trade the pair.
inline constexpr std::size_t counter_stripe_size = 2 * cache_line_size;

// Monotonic counters, written with relaxed increments. Every counted call
// increments exactly one of the first four, so any snapshot of them is a
// consistent set of whole calls (no call is ever seen with its failure but
// without its slowness, or counted as a call before its failure shows).
struct alignas(counter_stripe_size) counter_stripe {
  std::atomic<std::uint64_t> good{0};         // successes, not slow
  std::atomic<std::uint64_t> failed{0};       // failures, not slow
  std::atomic<std::uint64_t> slow_good{0};    // successes, slow
  std::atomic<std::uint64_t> slow_failed{0};  // failures, slow
  std::atomic<std::uint64_t> rejections{0};   // calls rejected (open, forced open, no probe slot)
  std::atomic<std::uint64_t> ignored{0};      // outcomes recorded as call_outcome::ignored
  std::atomic<std::uint64_t> stale{0};        // outcomes dropped: permit from an older generation

  void count(bool failure, bool slow) noexcept {
    auto& c = failure ? (slow ? slow_failed : failed) : (slow ? slow_good : good);
    c.fetch_add(1, std::memory_order_relaxed);
  }
};
static_assert(sizeof(counter_stripe) == counter_stripe_size);

struct counter_totals {
  std::uint64_t calls = 0;
  std::uint64_t failures = 0;
  std::uint64_t slow = 0;
  std::uint64_t rejections = 0;
  std::uint64_t ignored = 0;
  std::uint64_t stale = 0;
};

// A small per-thread index shared by every breaker: thread i uses stripe
// i & mask. Live threads get distinct indices, the lowest free ones (an index
// is returned to the pool when its thread exits), so as long as no more
// threads than stripes record at once, no two share a stripe. The hot path
// reads one constant-initialised thread_local (no TLS guard); only a thread's
// first call takes the slow path that claims an index.
inline constexpr std::uint32_t thread_index_pool_words = 64;  // 4096 recyclable indices
inline std::atomic<std::uint64_t> thread_index_pool[thread_index_pool_words] = {};
inline std::atomic<std::uint32_t> thread_index_overflow{thread_index_pool_words * 64};
inline thread_local std::uint32_t this_thread_index = 0;  // index + 1; 0 = none yet

[[nodiscard]] inline std::uint32_t claim_thread_index() noexcept {
  for (std::uint32_t w = 0; w < thread_index_pool_words; ++w) {
    std::uint64_t v = thread_index_pool[w].load(std::memory_order_relaxed);
    while (~v != 0) {
      const int bit = std::countr_one(v);
      // acquire: sees every write the index's previous owner made before it
      // released the index (per-thread stripes written without RMW rely on it).
      if (thread_index_pool[w].compare_exchange_weak(v, v | (std::uint64_t{1} << bit), std::memory_order_acquire,
                                                     std::memory_order_relaxed)) {
        return w * 64 + static_cast<std::uint32_t>(bit);
      }
    }
  }
  return thread_index_overflow.fetch_add(1, std::memory_order_relaxed);  // > 4096 live threads
}

inline void release_thread_index(std::uint32_t i) noexcept {
  if (i < thread_index_pool_words * 64) {
    thread_index_pool[i / 64].fetch_and(~(std::uint64_t{1} << (i % 64)), std::memory_order_release);
  }
}

struct thread_index_holder {
  std::uint32_t index;
  thread_index_holder() noexcept : index(claim_thread_index()) {}
  thread_index_holder(const thread_index_holder&) = delete;
  thread_index_holder& operator=(const thread_index_holder&) = delete;
  ~thread_index_holder() {
    release_thread_index(index);
    // Later calls on this thread (other thread_local destructors) must not
    // use the released index, which another thread may claim: they get a
    // shared overflow index.
    this_thread_index = std::numeric_limits<std::uint32_t>::max();
  }
};

inline std::uint32_t assign_thread_index() noexcept {
  static thread_local const thread_index_holder holder;
  this_thread_index = holder.index + 1;
  return holder.index;
}

[[nodiscard]] inline std::uint32_t thread_index() noexcept {
  const std::uint32_t i = this_thread_index;
  if (STURDY_UNLIKELY(i == 0)) return assign_thread_index();
  return i - 1;
}

// --- half-open probe slots --------------------------------------------------
// A slot is free (0), reported (1 = success, 2 = failure) or leased: then it
// holds the lease's expiry, biased so that it is >= 3 and unique per slot
// (each new lease starts at `now + lease` with now >= the previous lease's
// start, and leases are > 0), which makes stale reports fail their CAS.
inline constexpr std::uint64_t slot_free = 0;
inline constexpr std::uint64_t slot_succeeded = 1;
inline constexpr std::uint64_t slot_failed = 2;
inline constexpr std::uint64_t slot_bias = std::uint64_t{1} << 63;

[[nodiscard]] constexpr bool slot_leased(std::uint64_t v) noexcept { return v > slot_failed; }

[[nodiscard]] constexpr std::uint64_t encode_expiry(time_point t) noexcept {
  const std::uint64_t v = static_cast<std::uint64_t>(t.time_since_epoch().count()) + slot_bias;
  return v > slot_failed ? v : slot_failed + 1;  // only for times near the int64 minimum
}
[[nodiscard]] constexpr time_point decode_expiry(std::uint64_t v) noexcept {
  return time_point(duration(static_cast<std::int64_t>(v - slot_bias)));
}

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_BREAKER_WORD_HPP_
