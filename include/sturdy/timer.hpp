// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/timer.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::timer_service` is the timer facility that fires timeouts'
// cancellation tokens. Three ways to have one:
//   - `timer_service::shared()`: one per process, its thread started lazily
//     (on the first call of `shared()`), stopped and joined at exit; what
//     `timeout_policy` uses by default;
//   - your own: `timer_service my_timers({.resolution = 10ms});` with its own
//     thread (pinned; it must outlive every policy that uses it);
//   - a manual one for tests: `sturdy::testing::manual_timer`, driven by a
//     `testing::manual_clock`, fires timers on `advance()`, on the test's
//     thread, at exactly their deadline.
//
// Inside: `shards` hashed timing wheels (sturdy/detail/timer_wheel.hpp), each
// on its own cache line behind a spin lock. A thread arms and disarms on its
// own shard (picked once per thread), so two threads never share timer state
// on a call; arming and disarming are O(1) whatever the number of armed
// timers. The timer thread wakes once per `resolution` while any timer is
// armed (parking after 64 idle ticks; the next arm wakes it) and fires every
// timer whose deadline has passed: a timer fires no earlier than its deadline
// and, with a running thread, typically less than one `resolution` after it.
//
// Example:
//
//   sturdy::timer_service& timers = sturdy::timer_service::shared();
//   sturdy::detail::timer_entry e(&on_fire, &state);   // in your frame
//   timers.arm(e, timers.now() + std::chrono::milliseconds(50));
//   ... work ...
//   if (!timers.disarm(e)) { /* it fired; its callback has returned */ }
//
// (Layers use it for you: see sturdy/timeout.hpp.)
//
// Exit: the shared service is a function-local static; its destructor stops
// and joins the thread. Do not arm it from destructors of other static
// objects that may run after it.
//
// Thread safety: `arm`, `disarm`, `poll` and `now` may be called from any
// threads at once.

#ifndef STURDY_TIMER_HPP_
#define STURDY_TIMER_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/timer_wheel.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"

namespace sturdy {

// timer_service_options
//
// Aggregate; fill with designated initializers.
struct timer_service_options {
  // The wheel's tick: timers fire at tick boundaries, never before their
  // deadline. Default 1 ms. Must be > 0, and >= 1 us when the service runs
  // its own thread (1 ns works without one: the manual timer uses it). A
  // resolution near duration::max() is valid: timers then fire only at
  // ticks that far apart, i.e. practically never.
  duration resolution = std::chrono::milliseconds(1);
  // Number of wheels; each thread uses one. 0 (the default) means the next
  // power of two >= max(4, std::thread::hardware_concurrency()), at most 64.
  // Otherwise a power of two from 1 to 1024.
  std::uint32_t shards = 0;
  // Slots per wheel; a power of two from 1 to 2^20. Default 1024. Timers
  // further than slots * resolution away wait in their slot for their turn.
  std::uint32_t slots = 1024;
  // Whether the service runs its own thread. Default true; false for a
  // service you drive with `poll()` (the manual timer).
  bool start_thread = true;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (resolution <= duration::zero()) return "timer_service_options.resolution must be > 0";
    if (start_thread && resolution < std::chrono::microseconds(1)) {
      return "timer_service_options.resolution must be >= 1 us for a service with its own thread "
             "(a finer tick would keep the thread spinning; the manual timer, without a thread, uses 1 ns)";
    }
    if (shards > 1024 || (shards & (shards - 1)) != 0) {
      return "timer_service_options.shards must be 0 (automatic) or a power of two <= 1024";
    }
    if (slots == 0 || slots > (1u << 20) || (slots & (slots - 1)) != 0) {
      return "timer_service_options.slots must be a power of two from 1 to 1048576";
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

class timer_service {
 public:
  // A service on `clock` (the steady clock by default). Invalid options give
  // a service that arms nothing and reports `valid() == false`; timeouts
  // built on it refuse to run (errc::invalid_options).
  template <clock_source C = steady_clock_source>
  explicit timer_service(timer_service_options options = {}, C clock = C())
      : options_(options), valid_(options.validation_message().empty()) {
    if constexpr (std::is_empty_v<C> && std::is_default_constructible_v<C>) {
      clock_ = clock_ref::of<C>();
    } else {
      auto holder = std::make_unique<clock_holder<C>>(std::move(clock));
      clock_ = clock_ref::of(holder->clock);
      holder_ = std::move(holder);
    }
    if (!valid_) return;
    const std::uint32_t n = options_.shards != 0 ? options_.shards : automatic_shards();
    mask_ = n - 1;
    const std::int64_t start = floor_tick(clock_.now());
    wheels_ = std::make_unique<std::unique_ptr<detail::timer_wheel>[]>(n);
    for (std::uint32_t i = 0; i < n; ++i) wheels_[i] = std::make_unique<detail::timer_wheel>(options_.slots, start);
    if (options_.start_thread) thread_ = std::thread([this] { run(); });
  }
  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;
  ~timer_service() {
    if (thread_.joinable()) {
      {
        std::lock_guard lock(mu_);
        stop_ = true;
        parked_.store(false, std::memory_order_relaxed);
      }
      cv_.notify_all();
      thread_.join();
    }
  }

  // The process-wide service (steady clock, default options). Its thread
  // starts on the first call.
  [[nodiscard]] static timer_service& shared() {
    static timer_service instance{};
    return instance;
  }

  [[nodiscard]] bool valid() const noexcept { return valid_; }
  [[nodiscard]] const timer_service_options& options() const noexcept { return options_; }
  // The service's clock: deadlines armed here are compared on it.
  [[nodiscard]] clock_ref clock() const noexcept { return clock_; }
  [[nodiscard]] time_point now() const noexcept { return clock_.now(); }

  // timer_service::arm()
  //
  // Fires `e.fire(e.arg)` once the clock reaches `deadline` (at the next
  // poll or tick if it has already). `deadline` == time_point::max() arms
  // nothing and returns false. `e` must be idle (new, disarmed or fired).
  bool arm(detail::timer_entry& e, time_point deadline) noexcept {
    if (!valid_ || deadline == time_point::max()) return false;
    e.shard = my_shard();
    if (wheels_[e.shard]->arm(e, ceil_tick(deadline), &parked_)) wake();
    return true;
  }

  // timer_service::disarm()
  //
  // True: `e` was armed and will never fire. False: it has fired (its
  // callback has returned by the time this returns; if it was running on
  // the timer thread, this waits for it) or it was not armed.
  bool disarm(detail::timer_entry& e) noexcept {
    if (e.state.load(std::memory_order_relaxed) == detail::timer_entry::idle) return false;
    return wheels_[e.shard]->disarm(e);
  }

  // timer_service::poll()
  //
  // Fires, on the calling thread, every timer due at `now()`. Returns how
  // many fired. The manual timer's driver; harmless on a threaded service.
  std::size_t poll() noexcept {
    if (!valid_) return 0;
    const std::int64_t tick = floor_tick(clock_.now());
    std::size_t n = 0;
    for (std::uint32_t i = 0; i <= mask_; ++i) n += wheels_[i]->advance(tick);
    return n;
  }

  // How many timers are armed (a snapshot; takes every shard's lock).
  [[nodiscard]] std::size_t armed() const noexcept {
    std::size_t n = 0;
    if (!valid_) return 0;
    for (std::uint32_t i = 0; i <= mask_; ++i) n += wheels_[i]->armed();
    return n;
  }
  [[nodiscard]] std::uint32_t shard_count() const noexcept { return valid_ ? mask_ + 1 : 0; }
  // Which shard the calling thread arms on.
  [[nodiscard]] std::uint32_t my_shard() const noexcept { return thread_seed() & mask_; }

 private:
  struct clock_holder_base {
    virtual ~clock_holder_base() = default;
  };
  template <class C>
  struct clock_holder final : clock_holder_base {
    explicit clock_holder(C c) : clock(std::move(c)) {}
    C clock;
  };

  static std::uint32_t automatic_shards() noexcept {
    const std::uint32_t hw = std::max(4u, std::thread::hardware_concurrency());
    std::uint32_t n = 1;
    while (n < hw && n < 64) n <<= 1;
    return n;
  }
  // A number per thread, given out in turn, so threads spread over shards.
  static std::uint32_t thread_seed() noexcept {
    static std::atomic<std::uint32_t> next{0};
    thread_local const std::uint32_t seed = next.fetch_add(1, std::memory_order_relaxed);
    return seed;
  }

  [[nodiscard]] std::int64_t floor_tick(time_point t) const noexcept {
    const std::int64_t ns = t.time_since_epoch().count();
    const std::int64_t r = options_.resolution.count();
    const std::int64_t q = ns / r;
    return (ns % r != 0 && ns < 0) ? q - 1 : q;
  }
  [[nodiscard]] std::int64_t ceil_tick(time_point t) const noexcept {
    const std::int64_t ns = t.time_since_epoch().count();
    const std::int64_t r = options_.resolution.count();
    const std::int64_t q = ns / r;
    return (ns % r != 0 && ns > 0) ? q + 1 : q;
  }

  void wake() {
    {
      std::lock_guard lock(mu_);
      parked_.store(false, std::memory_order_relaxed);
    }
    cv_.notify_one();
  }

  bool all_empty() noexcept {
    for (std::uint32_t i = 0; i <= mask_; ++i) {
      if (!wheels_[i]->empty()) return false;
    }
    return true;
  }

  // The timer thread: tick while anything is armed; park when idle.
  void run() {
    constexpr int park_after_idle_ticks = 64;
    int idle = 0;
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      poll();
      if (all_empty()) {
        ++idle;
      } else {
        idle = 0;
      }
      if (idle >= park_after_idle_ticks) {
        // Dekker with arm(): publish "parked", then look once more (under
        // each shard's lock); an arm that linked before we looked keeps us
        // awake, one that links after sees the flag and wakes us.
        parked_.store(true, std::memory_order_relaxed);
        const bool empty = all_empty();
        lock.lock();
        if (empty) {
          cv_.wait(lock, [&] { return stop_ || !parked_.load(std::memory_order_relaxed); });
        } else {
          parked_.store(false, std::memory_order_relaxed);
        }
        idle = 0;
        continue;
      }
      // Sleep to the next tick boundary, in chunks of at most an hour: with
      // a resolution near duration::max() neither `(ns % r) + r` nor the
      // condition variable's `now + wait` may overflow.
      const std::int64_t r = options_.resolution.count();
      const std::int64_t ns = clock_.now().time_since_epoch().count();
      std::int64_t into = ns % r;
      if (into < 0) into += r;
      const duration to_tick(r - into);
      lock.lock();
      cv_.wait_for(lock, std::min<duration>(to_tick, std::chrono::hours(1)), [&] { return stop_; });
    }
  }

  timer_service_options options_;
  bool valid_;
  clock_ref clock_{};
  std::unique_ptr<clock_holder_base> holder_;
  std::uint32_t mask_ = 0;
  std::unique_ptr<std::unique_ptr<detail::timer_wheel>[]> wheels_;
  alignas(cache_line_size) std::atomic<bool> parked_{false};  // read by every arm: its own line
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sturdy

#endif  // STURDY_TIMER_HPP_
