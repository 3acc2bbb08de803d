// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/timer_wheel.hpp
// -----------------------------------------------------------------------------
//
// Internal: the decision core of sturdy's timer facility, one shard of it.
// A hashed timing wheel: `slots` intrusive doubly linked lists indexed by
// `tick & (slots - 1)`. It never reads a clock and never starts a thread: the
// driver (`sturdy::timer_service`) converts time to ticks and calls
// `advance(now_tick)`, which fires every entry whose tick is due on the
// calling thread.
//
//   arm(entry, tick)   O(1): link at the head of its slot (under the shard lock)
//   disarm(entry)      O(1): unlink; true = it will never fire. If the entry is
//                      being fired on another thread, waits until its callback
//                      has returned, then reports false.
//   advance(now_tick)  visits the slots of the ticks since the last advance
//                      (each slot at most once), unlinks the due entries under
//                      the lock, then runs their callbacks outside it.
//
// Entries live in their owner's stack frame; nothing is allocated after
// construction. An entry must be disarmed (or have fired, i.e. `disarm`
// returned false) before its owner's frame ends.
//
// Thread safety: every member may be called from any threads at once; a
// spin lock (one atomic exchange to take, one store to release) guards the
// lists. Callbacks must be short and must not arm or disarm on the same
// wheel (they run without the lock, but `disarm` of the firing entry waits).
// No stability promise.

#ifndef STURDY_DETAIL_TIMER_WHEEL_HPP_
#define STURDY_DETAIL_TIMER_WHEEL_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>

#include "sturdy/config.hpp"

namespace sturdy::detail {

// One armed timer. Pinned; owned by whoever arms it.
struct timer_entry {
  enum : std::uint8_t { idle = 0, armed = 1, firing = 2, fired = 3 };

  timer_entry() = default;
  timer_entry(void (*f)(void*) noexcept, void* a) noexcept : fire(f), arg(a) {}
  timer_entry(const timer_entry&) = delete;
  timer_entry& operator=(const timer_entry&) = delete;

  timer_entry* prev = nullptr;  // guarded by the shard lock
  timer_entry* next = nullptr;
  std::int64_t tick = 0;
  std::uint32_t slot = 0;
  std::uint32_t shard = 0;  // set by the driver
  void (*fire)(void*) noexcept = nullptr;
  void* arg = nullptr;
  std::atomic<std::uint8_t> state{idle};
};

// A test-and-test-and-set spin lock: cheaper than std::mutex uncontended
// (no function call, one atomic exchange), yields when it spins.
class spin_lock {
 public:
  void lock() noexcept {
    for (int spins = 0;; ++spins) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) std::this_thread::yield();
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

class alignas(cache_line_size) timer_wheel {
 public:
  // `slots` must be a power of two; `start_tick` is the tick "now".
  timer_wheel(std::uint32_t slots, std::int64_t start_tick)
      : mask_(slots - 1), processed_(start_tick), heads_(std::make_unique<timer_entry*[]>(slots)) {
    for (std::uint32_t i = 0; i < slots; ++i) heads_[i] = nullptr;
  }
  timer_wheel(const timer_wheel&) = delete;
  timer_wheel& operator=(const timer_wheel&) = delete;

  // Links `e` to fire at `tick` (a tick already processed fires at the next
  // advance). Returns `watch->load()` read inside the critical section (the
  // driver's "is the timer thread parked" flag), or false without a watch.
  bool arm(timer_entry& e, std::int64_t tick, const std::atomic<bool>* watch = nullptr) noexcept {
    lock_.lock();
    e.tick = tick;
    const std::int64_t at = tick > processed_ ? tick : processed_ + 1;
    e.slot = static_cast<std::uint32_t>(static_cast<std::uint64_t>(at) & mask_);
    e.prev = nullptr;
    e.next = heads_[e.slot];
    if (e.next != nullptr) e.next->prev = &e;
    heads_[e.slot] = &e;
    e.state.store(timer_entry::armed, std::memory_order_relaxed);
    ++armed_;
    const bool seen = watch != nullptr && watch->load(std::memory_order_relaxed);
    lock_.unlock();
    return seen;
  }

  // True: `e` was armed and now never fires. False: it fired (its callback
  // has returned by now) or was not armed.
  bool disarm(timer_entry& e) noexcept {
    lock_.lock();
    if (e.state.load(std::memory_order_relaxed) == timer_entry::armed) {
      unlink(e);
      e.state.store(timer_entry::idle, std::memory_order_relaxed);
      --armed_;
      lock_.unlock();
      return true;
    }
    lock_.unlock();
    for (int spins = 0; e.state.load(std::memory_order_acquire) == timer_entry::firing; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
    return false;
  }

  // Fires, on this thread, every entry due at `now_tick`. Returns how many.
  std::size_t advance(std::int64_t now_tick) noexcept {
    timer_entry* due = nullptr;
    std::size_t n = 0;
    lock_.lock();
    if (now_tick > processed_) {
      const std::uint64_t span = static_cast<std::uint64_t>(now_tick - processed_);
      const std::uint64_t visits = span > mask_ ? mask_ + 1 : span;
      for (std::uint64_t i = 1; i <= visits; ++i) {
        const std::uint64_t slot = (static_cast<std::uint64_t>(processed_) + i) & mask_;
        for (timer_entry* e = heads_[slot]; e != nullptr;) {
          timer_entry* next = e->next;
          if (e->tick <= now_tick) {
            unlink(*e);
            e->state.store(timer_entry::firing, std::memory_order_relaxed);
            e->next = due;
            due = e;
            ++n;
          }
          e = next;
        }
      }
      processed_ = now_tick;
      armed_ -= n;
    }
    lock_.unlock();
    while (due != nullptr) {
      timer_entry* next = due->next;  // read before the owner may reuse it
      due->fire(due->arg);
      due->state.store(timer_entry::fired, std::memory_order_release);
      due = next;
    }
    return n;
  }

  // Whether no entry is armed (takes the lock: the driver's park check).
  [[nodiscard]] bool empty() noexcept {
    lock_.lock();
    const bool e = armed_ == 0;
    lock_.unlock();
    return e;
  }
  [[nodiscard]] std::size_t armed() noexcept {
    lock_.lock();
    const std::size_t a = armed_;
    lock_.unlock();
    return a;
  }

 private:
  void unlink(timer_entry& e) noexcept {
    if (e.prev != nullptr) {
      e.prev->next = e.next;
    } else {
      heads_[e.slot] = e.next;
    }
    if (e.next != nullptr) e.next->prev = e.prev;
    e.prev = e.next = nullptr;
  }

  spin_lock lock_;
  std::uint64_t mask_;
  std::int64_t processed_;  // the last tick advanced to
  std::size_t armed_ = 0;
  std::unique_ptr<timer_entry*[]> heads_;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_TIMER_WHEEL_HPP_
