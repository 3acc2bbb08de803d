// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/concurrency_limiter.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::concurrency_limiter` bounds how many calls run at once (a
// bulkhead), with a fixed limit or an adaptive one that finds the
// dependency's capacity from latency and drops (sturdy/limit_algorithms.hpp).
//
//   try_acquire() --(in flight < limit, nobody queued)--> permit
//                 --(otherwise)-------------------------> errc::limit_exceeded
//   acquire(max_wait, stop, deadline)
//                 --(a permit is free)------------------> permit
//                 --(queue has room)--> waits, FIFO (or LIFO):
//                      handed a released permit --------> permit
//                      max_wait ran out ----------------> errc::limit_exceeded
//                      deadline passed -----------------> errc::deadline_exceeded
//                      stop requested ------------------> errc::cancelled
//   permit.record_success() | record_dropped() | record_ignored() | ~permit
//                 --> frees the slot (or hands it to the next waiter) and,
//                     for adaptive algorithms, feeds the sample.
//
// A waiter that leaves (timeout, stop) unlinks itself under the lock that
// also hands permits over, so a permit can never be given to a waiter that
// left, and capacity can never shrink (the leaks of resilience4j #332 and
// Failsafe #393 are regression tests).
//
// Example:
//
//   sturdy::concurrency_limiter<sturdy::vegas_limit> limiter(
//       {.max_queue = 100, .max_wait = std::chrono::milliseconds(50)});
//   sturdy::result<Reply> call(const Request& req) {
//     // errc::limit_exceeded when no permit came within 50 ms.
//     return limiter.execute([&] { return backend.call(req); });
//   }
//
//   // Two-step form:
//   auto permit = limiter.try_acquire();
//   if (!permit) return permit.error();             // errc::limit_exceeded
//   auto r = send(req);
//   if (r) permit.value().record_success(); else permit.value().record_dropped();
//
// Decision core and drivers (STYLE 3.8): admission, queueing, hand-over,
// the waiter's verdict (granted / still waiting / left with which error) and
// limit updates all live in the limiter's non-blocking members
// (`try_acquire`, `enqueue`, `poll`, `leave`, `release`). `acquire` is the
// thin blocking driver: a `std::condition_variable` in a waiter node on the
// caller's stack, woken by a hand-over, a stop request or
// `recheck_waiters()`. An asynchronous driver uses the same members with its
// own node and wake-up function.
//
// Defaults: fixed limit 25 (resilience4j), no queue (`max_queue` 0 and
// `max_wait` 0, as resilience4j and Polly), FIFO, no partitions.
//
// Thread safety: every member function may be called from any number of
// threads. `try_acquire` and the release of a permit of a fixed-limit limiter
// are lock-free when nobody is queued (one atomic read-modify-write each:
// a fetch_add to admit; a fetch_sub to release, a compare-exchange when a
// queue is configured; refusals, events and hand-overs are out of line);
// queueing, hand-over and sample-fed limit updates take one internal
// `std::mutex`. No background thread: the limit changes on the releasing
// thread.
//
// Waiting: on steady_clock_source and coarse_steady_clock_source a waiter
// wakes when its time runs out (the coarse clock: within one tick after);
// on any other clock (sturdy::clock_ref, a wall clock) it re-reads the clock
// every 10 ms at most.
//
// Testing: use `sturdy::testing::manual_clock`; a waiter then checks its
// deadline only when woken, so advance the clock and call
// `recheck_waiters()`. Cancellation through `std::stop_token` needs no time.

#ifndef STURDY_CONCURRENCY_LIMITER_HPP_
#define STURDY_CONCURRENCY_LIMITER_HPP_

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/breaker_word.hpp"
#include "sturdy/detail/invoke_captured.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/limit_algorithms.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

namespace testing {
class manual_clock;  // sturdy/testing/manual_clock.hpp
class manual_timer;  // sturdy/testing/manual_timer.hpp
}  // namespace testing

// Which waiter gets a released permit: the oldest (fifo) or the newest
// (lifo: serves the freshest requests under overload, whose callers are
// most likely still waiting for the answer).
enum class queue_order : std::uint8_t { fifo, lifo };

// How a call went, as the permit reports it. `success`: completed, its
// latency is a sample. `dropped`: timed out or signalled overload:
// congestion. `ignored`: the caller cancelled; not a sample.
enum class limit_outcome : std::uint8_t { success, dropped, ignored };

// sturdy::default_limit_classifier(failure)
//
// How `execute` classifies a failed call when `classify` is empty:
// an exception or a cancellation (std::errc::operation_canceled) is
// ignored; a timeout (anything equal to std::errc::timed_out, such as
// errc::deadline_exceeded) or an overload signal from an inner layer
// (std::errc::resource_unavailable_try_again: errc::limit_exceeded,
// circuit_open, rate_limited) is dropped; any other error is a completed
// call whose latency is a valid sample (success).
[[nodiscard]] inline limit_outcome default_limit_classifier(const failure_info& f) noexcept {
  if (!f.code) return limit_outcome::ignored;
  if (f.code == std::errc::operation_canceled) return limit_outcome::ignored;
  if (f.code == std::errc::timed_out || f.code == std::errc::resource_unavailable_try_again) {
    return limit_outcome::dropped;
  }
  return limit_outcome::success;
}

// A named share of the limit (e.g. {"live", 0.9}, {"batch", 0.1}).
struct limiter_partition {
  std::string name;
  // Fraction of the limit guaranteed to this partition, in (0, 1]; it owns
  // max(1, ceil(share * limit)) permits.
  double share = 0.0;
};

// Index of a partition (the order of `concurrency_limiter_options::partitions`).
struct partition_id {
  std::uint32_t index = 0;
  friend bool operator==(partition_id, partition_id) = default;
};

// --- events (see sturdy/listener.hpp) --------------------------------------

// A call was refused: `reason` is limit_exceeded (no permit, queue full or
// max_wait ran out), deadline_exceeded or cancelled.
struct limiter_rejected {
  errc reason;
  partition_id partition;
  std::uint32_t limit;
};
// The algorithm changed the limit.
struct limiter_limit_changed {
  std::uint32_t from;
  std::uint32_t to;
};

// concurrency_limiter_options
//
// Aggregate; fill with designated initializers. A limiter built from invalid
// options (or an algorithm with invalid options) refuses every call with
// errc::invalid_options and emits `options_rejected` once.
struct concurrency_limiter_options {
  // Waiters at most, in [0, 2^30]; 0 = `acquire` never waits. Default 0
  // (resilience4j maxWaitDuration 0, Polly QueueLimit 0).
  std::uint32_t max_queue = 0;
  // How long `execute` waits for a permit (`acquire` takes its own), >= 0.
  // Default 0.
  duration max_wait = duration::zero();
  // Default fifo.
  queue_order order = queue_order::fifo;
  // Named shares of the limit; empty = one partition. At most 64, names
  // non-empty and unique, shares in (0, 1] summing to at most 1. A partition
  // may borrow permits its siblings leave idle; a released permit goes first
  // to a waiter of a partition below its share (the borrowed capacity is
  // given back under contention). Default empty.
  std::vector<limiter_partition> partitions{};
  // How `execute` classifies a failed call. Default empty:
  // `sturdy::default_limit_classifier`.
  callback<limit_outcome(const failure_info&)> classify{};

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (max_queue > detail::max_concurrency_limit) return "concurrency_limiter_options.max_queue must be <= 2^30";
    if (max_wait < duration::zero()) return "concurrency_limiter_options.max_wait must be >= 0";
    if (order != queue_order::fifo && order != queue_order::lifo)
      return "concurrency_limiter_options.order must be fifo or lifo";
    if (partitions.size() > 64) return "concurrency_limiter_options.partitions must hold at most 64 partitions";
    double sum = 0.0;
    for (std::size_t i = 0; i < partitions.size(); ++i) {
      const limiter_partition& p = partitions[i];
      if (p.name.empty()) return "concurrency_limiter_options.partitions must have non-empty names";
      if (!(p.share > 0.0 && p.share <= 1.0)) return "concurrency_limiter_options.partitions share must be in (0, 1]";
      for (std::size_t j = 0; j < i; ++j) {
        if (partitions[j].name == p.name) return "concurrency_limiter_options.partitions must have unique names";
      }
      sum += p.share;
    }
    if (sum > 1.0 + 1e-9) return "concurrency_limiter_options.partitions shares must sum to at most 1";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// A snapshot; totals count since construction.
struct concurrency_limiter_metrics {
  std::uint32_t limit = 0;
  std::uint32_t in_flight = 0;
  std::uint32_t queued = 0;
  std::uint64_t rejected = 0;   // every refusal: limit_exceeded, deadline, cancelled
  std::uint64_t timed_out = 0;  // waiters whose max_wait or deadline ran out
  std::uint64_t cancelled = 0;  // waiters (or callers) that stopped
  std::uint64_t dropped = 0;    // permits reported dropped
  std::uint64_t samples = 0;    // samples fed to the algorithm (success + dropped; 0 for fixed_limit)
  std::uint64_t completed = 0;  // permits reported success or dropped, whatever the algorithm
  std::uint64_t ignored = 0;    // permits reported ignored or destroyed unreported
};

// limiter_waiter
//
// A waiter node: lives wherever the driver keeps it (the blocking driver:
// on the caller's stack); linked into the limiter's queue by `enqueue` and
// unlinked by a hand-over or by `poll` / `leave`. `wake(node)` is called
// under the limiter's lock when a queued node is handed a permit (exactly
// once; never when `enqueue` itself grants) or `recheck_waiters()` runs: it
// must not block or call back into the limiter (notify a condition
// variable, post a completion). A node may be reused once it has left or
// its permit was adopted.
class limiter_waiter {
 public:
  using wake_fn = void (*)(limiter_waiter&) noexcept;
  explicit limiter_waiter(wake_fn wake, void* context = nullptr) noexcept : wake_(wake), context_(context) {}
  limiter_waiter(const limiter_waiter&) = delete;
  limiter_waiter& operator=(const limiter_waiter&) = delete;
  [[nodiscard]] void* context() const noexcept { return context_; }

 private:
  template <limit_algorithm, clock_source, class>
  friend class concurrency_limiter;
  enum class state : std::uint8_t { idle, queued, granted, left };
  limiter_waiter* prev_ = nullptr;
  limiter_waiter* next_ = nullptr;
  wake_fn wake_;
  void* context_;
  time_point until_{};
  errc until_code_ = errc::limit_exceeded;
  std::uint32_t partition_ = 0;
  std::uint32_t in_flight_ = 0;
  state state_ = state::idle;
};

// What `enqueue` and `poll` decide for a waiter.
enum class wait_status : std::uint8_t {
  granted,            // it holds a permit: take it with `adopt`
  waiting,            // still queued
  limit_exceeded,     // refused or left: queue full, no waiting, max_wait ran out
  deadline_exceeded,  // refused or left: the deadline passed
  cancelled,          // left: stop requested
  invalid_options,    // the limiter's options are invalid
};

// limiter_permit<Limiter>
//
// The right to run one call. Move-only; report the outcome once with
// `record_*` (later reports do nothing). Destroyed unreported, it is
// released as `ignored` (no sample). Must not outlive its limiter. A limiter
// in a sturdy::registry is kept while it has permits out (neither evicted
// nor erased), so a permit taken through a temporary handle stays valid
// while the entry is in the registry (see sturdy/registry.hpp).
template <class Limiter>
class limiter_permit {
 public:
  limiter_permit() noexcept = default;
  limiter_permit(limiter_permit&& o) noexcept
      : limiter_(std::exchange(o.limiter_, nullptr)), start_(o.start_), partition_(o.partition_), in_flight_(o.in_flight_) {}
  limiter_permit& operator=(limiter_permit&& o) noexcept {
    if (this != &o) {
      record(limit_outcome::ignored);
      limiter_ = std::exchange(o.limiter_, nullptr);
      start_ = o.start_;
      partition_ = o.partition_;
      in_flight_ = o.in_flight_;
    }
    return *this;
  }
  limiter_permit(const limiter_permit&) = delete;
  limiter_permit& operator=(const limiter_permit&) = delete;
  ~limiter_permit() { record(limit_outcome::ignored); }

  // The call completed: its latency (now - admission) is a sample.
  void record_success() noexcept { record(limit_outcome::success); }
  // The call timed out or signalled overload: congestion.
  void record_dropped() noexcept { record(limit_outcome::dropped); }
  // The caller cancelled: no sample.
  void record_ignored() noexcept { record(limit_outcome::ignored); }
  void record(limit_outcome o) noexcept {
    if (Limiter* l = std::exchange(limiter_, nullptr)) l->release(partition_, start_, in_flight_, o);
  }

  // True until the outcome is reported (or the permit moved from).
  [[nodiscard]] bool active() const noexcept { return limiter_ != nullptr; }
  explicit operator bool() const noexcept { return active(); }
  [[nodiscard]] partition_id partition() const noexcept { return {partition_}; }
  // Calls in flight when this one was admitted, itself included.
  [[nodiscard]] std::uint32_t in_flight_at_admission() const noexcept { return in_flight_; }

 private:
  template <limit_algorithm, clock_source, class>
  friend class concurrency_limiter;
  limiter_permit(Limiter* l, time_point start, std::uint32_t partition, std::uint32_t in_flight) noexcept
      : limiter_(l), start_(start), partition_(partition), in_flight_(in_flight) {}

  Limiter* limiter_ = nullptr;
  time_point start_{};
  std::uint32_t partition_ = 0;
  std::uint32_t in_flight_ = 0;
};

namespace detail {

// Clocks the blocking driver only waits on until woken: their time moves
// when a test says so, and the test calls `recheck_waiters()`.
template <class Clock>
inline constexpr bool limiter_test_clock =
    std::is_same_v<Clock, testing::manual_clock> || std::is_same_v<Clock, testing::manual_timer>;

// Clocks whose time points are std::chrono::steady_clock's (same epoch,
// same rate): the driver waits on the steady clock for their deadlines.
template <class Clock>
inline constexpr bool limiter_steady_epoch_clock =
    std::is_same_v<Clock, steady_clock_source> || std::is_same_v<Clock, coarse_steady_clock_source>;

// Real-time slice after which a waiter on a clock of unknown epoch re-reads
// it (sturdy::clock_ref, a wall clock, a user's clock).
inline constexpr duration limiter_wait_slice = std::chrono::milliseconds(10);

// The blocking driver's wait: until woken, or until `until` (the caller
// re-checks the clock after every return):
//   - a clock with `wait_until(cv, lock, t)` waits for its own time;
//   - steady_clock_source and coarse_steady_clock_source: a timed wait on
//     the steady clock, for the coarse clock until `until` plus its
//     resolution (it lags the steady clock by less than that, so it has
//     passed `until` when the wait returns; no spinning through the lag);
//   - testing::manual_clock / manual_timer: until woken (`recheck_waiters()`);
//   - any other clock: real-time slices of at most `limiter_wait_slice`,
//     re-reading the clock after each.
template <class Clock>
void limiter_wait(Clock& clock, std::condition_variable& cv, std::unique_lock<std::mutex>& lock, time_point until) {
  if constexpr (requires { clock.wait_until(cv, lock, until); }) {
    clock.wait_until(cv, lock, until);
  } else if constexpr (limiter_test_clock<Clock>) {
    cv.wait(lock);
  } else if (until == time_point::max()) {
    cv.wait(lock);  // only a hand-over or a stop ends it
  } else if constexpr (limiter_steady_epoch_clock<Clock>) {
    time_point end = until;
    if constexpr (std::is_same_v<Clock, coarse_steady_clock_source>) {
      end = detail::saturating_add(end, Clock::resolution());
    }
    const time_point cap = detail::saturating_add(std::chrono::steady_clock::now(), std::chrono::hours(24 * 365));
    cv.wait_until(lock, std::min(end, cap));
  } else {
    const duration left = detail::time_between(clock.now(), until);
    cv.wait_for(lock, std::clamp(left, duration(1), limiter_wait_slice));
  }
}

// report_counters: how many permits were reported completed (success or
// dropped) and ignored, counted on the release fast path without a locked
// instruction. Stripe i (i < stripes) is written only by the live thread
// whose detail::thread_index() is i (indices are unique among live threads,
// and a reused index is handed over with release/acquire), so it is bumped
// with a relaxed load and store; threads with a higher index share the last
// stripe and use fetch_add. Reads sum the stripes (not one atomic snapshot).
// 64-bit: never wraps in practice. Stripes: the hardware threads rounded up
// to a power of two, at most 16 (2 KiB per limiter at most).
class report_counters {
 public:
  report_counters()
      : stripes_(std::min<std::uint32_t>(16, std::bit_ceil(std::max(1U, std::thread::hardware_concurrency())))),
        c_(std::make_unique<stripe[]>(stripes_ + 1)) {}

  void count(bool completed) noexcept {
    const std::uint32_t i = thread_index();
    if (STURDY_LIKELY(i < stripes_)) {
      std::atomic<std::uint64_t>& c = completed ? c_[i].completed : c_[i].ignored;
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    } else {
      (completed ? c_[stripes_].completed : c_[stripes_].ignored).fetch_add(1, std::memory_order_relaxed);
    }
  }
  [[nodiscard]] std::uint64_t completed() const noexcept { return sum(&stripe::completed); }
  [[nodiscard]] std::uint64_t ignored() const noexcept { return sum(&stripe::ignored); }

 private:
  struct alignas(counter_stripe_size) stripe {
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> ignored{0};
  };
  [[nodiscard]] std::uint64_t sum(std::atomic<std::uint64_t> stripe::*field) const noexcept {
    std::uint64_t n = 0;
    for (std::uint32_t i = 0; i <= stripes_; ++i) n += (c_[i].*field).load(std::memory_order_relaxed);
    return n;
  }
  const std::uint32_t stripes_;
  const std::unique_ptr<stripe[]> c_;
};

// Result types that can carry a message get the validation sentence.
template <class R>
[[nodiscard]] R limiter_failure(std::error_code ec, std::string_view message) {
  if constexpr (requires { typename outcome_traits<R>::error_type; }) {
    using E = typename outcome_traits<R>::error_type;
    if constexpr (std::is_constructible_v<R, decltype(failure(from_error_code<E>(ec, message)))>) {
      return R(failure(from_error_code<E>(ec, message)));
    } else {
      return make_failure<R>(ec);
    }
  } else {
    return make_failure<R>(ec);
  }
}

}  // namespace detail

// concurrency_limiter<Algorithm, Clock, Listener>
//
// Pinned: not copyable or movable; share it by reference (compose() holds
// an lvalue limiter by reference).
template <limit_algorithm Algorithm = fixed_limit, clock_source Clock = steady_clock_source,
          class Listener = null_listener>
class concurrency_limiter {
 public:
  using permit = limiter_permit<concurrency_limiter>;
  using algorithm_type = Algorithm;

  explicit concurrency_limiter(concurrency_limiter_options options = {}, Algorithm algorithm = Algorithm(),
                               Clock clock = Clock(), Listener listener = Listener())
      : options_(std::move(options)),
        algorithm_(std::move(algorithm)),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        message_(first_message(options_, algorithm_)),
        valid_(message_.empty()),
        parts_(std::max<std::size_t>(1, options_.partitions.size())),
        queueless_(options_.max_queue == 0),
        partitions_(std::make_unique<partition_state[]>(parts_)) {
    initial_limit_ = valid_ ? algorithm_.limit() : 0;
    limit_.store(initial_limit_, std::memory_order_relaxed);
    for (std::size_t i = 0; i < options_.partitions.size(); ++i) partitions_[i].share = options_.partitions[i].share;
    if (options_.partitions.empty()) partitions_[0].share = 1.0;
  }
  concurrency_limiter(const concurrency_limiter&) = delete;
  concurrency_limiter& operator=(const concurrency_limiter&) = delete;
  // All permits must have been released and no waiter may remain.
  ~concurrency_limiter() = default;

  // --- the decision core (never blocks) --------------------------------------

  // concurrency_limiter::try_acquire()
  //
  // A permit if one is free and nobody is queued (queued callers are not
  // overtaken); otherwise errc::limit_exceeded. Never blocks; lock-free:
  // one fetch_add to admit. A refusal takes its increment back, so while
  // one is in progress in_flight() may read one above the limit and,
  // exactly at the limit, another caller may be refused too.
  [[nodiscard]] result<permit> try_acquire(partition_id p = {}) noexcept {
    if (STURDY_UNLIKELY(!valid_ || p.index >= parts_)) return refuse_invalid();
    std::uint32_t in_flight = 0;
    if (STURDY_LIKELY(admit(in_flight))) return make_permit(p.index, in_flight);
    return reject(errc::limit_exceeded, p);
  }

  // concurrency_limiter::try_admit()
  //
  // `try_acquire` for a driver that will queue when refused: a permit if one
  // is free and nobody is queued, otherwise nothing (not counted, not
  // reported: the driver's `enqueue` decides). Never blocks; lock-free.
  [[nodiscard]] std::optional<permit> try_admit(partition_id p = {}) noexcept {
    if (STURDY_UNLIKELY(!valid_ || p.index >= parts_)) return std::nullopt;
    std::uint32_t in_flight = 0;
    if (STURDY_LIKELY(admit(in_flight))) return make_permit(p.index, in_flight);
    return std::nullopt;
  }

  // concurrency_limiter::enqueue(node, max_wait, deadline, partition)
  //
  // Admits at once (granted), queues the node (waiting) to be handed a
  // permit until min(now + max_wait, deadline), or refuses it (queue full,
  // max_wait 0, deadline passed). A refusal is counted and reported.
  [[nodiscard]] wait_status enqueue(limiter_waiter& node, duration max_wait, time_point deadline = time_point::max(),
                                    partition_id p = {}) {
    wait_status s{};
    {
      std::lock_guard lock(mu_);
      s = enqueue_locked(node, clock_.now(), max_wait, deadline, p);
    }
    return after_refusal(s, p);
  }

  // concurrency_limiter::poll(node, stop_requested)
  //
  // The verdict for a queued node, as of now: granted, still waiting, or
  // left (unlinked and counted) because of a stop or its time ran out.
  [[nodiscard]] wait_status poll(limiter_waiter& node, bool stop_requested) {
    wait_status s{};
    {
      std::lock_guard lock(mu_);
      s = poll_locked(node, clock_.now(), stop_requested);
    }
    return after_refusal(s, {node.partition_});
  }

  // concurrency_limiter::leave(node)
  //
  // Unlinks a queued node (the caller gave up: cancelled). Returns false
  // when the node had already been granted a permit: `adopt` it then.
  bool leave(limiter_waiter& node) {
    wait_status s{};
    {
      std::lock_guard lock(mu_);
      s = poll_locked(node, clock_.now(), true);
    }
    return after_refusal(s, {node.partition_}) != wait_status::granted;
  }

  // The permit a granted node holds.
  [[nodiscard]] permit adopt(limiter_waiter& node) noexcept {
    node.state_ = limiter_waiter::state::idle;
    return make_permit_granted(node.partition_, node.in_flight_);
  }

  // Wakes every queued node so it re-checks its deadline (for clocks the
  // blocking driver cannot wait on, such as testing::manual_clock).
  void recheck_waiters() {
    std::lock_guard lock(mu_);
    for (limiter_waiter* w = head_; w != nullptr; w = w->next_) w->wake_(*w);
  }

  // --- the blocking driver ---------------------------------------------------

  // concurrency_limiter::acquire(max_wait, stop, deadline, partition)
  //
  // A permit, waiting in the queue up to min(now + max_wait, deadline).
  // Errors: limit_exceeded (queue full, max_wait ran out), deadline_exceeded
  // (the deadline passed first or had passed), cancelled (stop requested,
  // before or while waiting). Allocates nothing.
  [[nodiscard]] result<permit> acquire(duration max_wait, std::stop_token stop = {},
                                       time_point deadline = time_point::max(), partition_id p = {}) {
    return acquire_with(max_wait, stop, deadline, p);
  }
  // The same under a call context: its token (a wait cut short by a token
  // fired for a deadline is errc::deadline_exceeded, by the caller
  // errc::cancelled) and its deadline (read on this limiter's clock).
  // Allocates nothing.
  [[nodiscard]] result<permit> acquire(duration max_wait, const call_context& ctx, partition_id p = {}) {
    time_point deadline = time_point::max();
    if (!ctx.deadline.is_none()) {
      deadline = ctx.deadline.clock() == clock_ref::of(clock_)
                     ? ctx.deadline.at()
                     : detail::saturating_add(clock_.now(), ctx.deadline.remaining());
    }
    result<permit> r = acquire_with(max_wait, ctx.token, deadline, p);
    if (STURDY_UNLIKELY(!r) && r.error() == errc::cancelled && ctx.token.reason() == cancel_reason::deadline) {
      return make_error_code(errc::deadline_exceeded);
    }
    return r;
  }

 private:
  template <class Token>
  [[nodiscard]] result<permit> acquire_with(duration max_wait, const Token& stop, time_point deadline,
                                            partition_id p) {
    if (STURDY_UNLIKELY(!valid_ || p.index >= parts_)) return refuse_invalid();
    if (stop.stop_requested()) return reject(errc::cancelled, p);
    if (deadline != time_point::max() && deadline <= clock_.now()) return reject(errc::deadline_exceeded, p);
    std::uint32_t in_flight = 0;
    if (admit(in_flight)) return make_permit(p.index, in_flight);
    struct blocking_node {
      std::condition_variable cv;
      limiter_waiter node{[](limiter_waiter& w) noexcept { static_cast<blocking_node*>(w.context())->cv.notify_one(); },
                          this};
    } waiter;
    wait_status s = enqueue(waiter.node, max_wait, deadline, p);
    if (s != wait_status::waiting) return finish(waiter.node, s);
    // The stop callback takes the lock to wake the waiter; it is built with
    // the lock released (it runs at once if stop was already requested),
    // and destroyed after the lock is released (its destructor waits for a
    // callback running on another thread).
    auto wake = [&]() noexcept {
      std::lock_guard lock(mu_);
      waiter.cv.notify_one();
    };
    using wake_fn = decltype(wake);
    using callback = std::conditional_t<std::is_same_v<Token, std::stop_token>, std::stop_callback<wake_fn>,
                                        cancel_callback<wake_fn>>;
    const callback on_stop(stop, std::move(wake));
    std::unique_lock lock(mu_);
    for (;;) {
      s = poll_locked(waiter.node, clock_.now(), stop.stop_requested());
      if (s != wait_status::waiting) break;
      detail::limiter_wait(clock_, waiter.cv, lock, waiter.node.until_);
    }
    lock.unlock();
    return finish(waiter.node, after_refusal(s, p));
  }

 public:

  // concurrency_limiter::execute(fn[, stop[, deadline]])
  //
  // Runs `fn` under a permit, waiting up to `options.max_wait`; reports the
  // outcome (success with its latency, or as `classify` says). Returns
  // `execute_result_t<F>`; sturdy's refusals come back in it. An exception
  // from `fn` is classified (ignored by default) and rethrown.
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) {
    return execute_in(partition_id{}, std::forward<F>(fn), std::stop_token{}, time_point::max());
  }
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop) {
    return execute_in(partition_id{}, std::forward<F>(fn), std::move(stop), time_point::max());
  }
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop, time_point deadline) {
    return execute_in(partition_id{}, std::forward<F>(fn), std::move(stop), deadline);
  }
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute_in(partition_id p, F&& fn, std::stop_token stop = {},
                                               time_point deadline = time_point::max()) {
    return run_permitted<execute_result_t<F>>(acquire(options_.max_wait, std::move(stop), deadline, p), fn);
  }
  // The context overloads (what `compose` calls): the wait for a permit
  // ends at `ctx.deadline` or when `ctx.token` fires; `fn` receives `ctx`
  // when it takes `const sturdy::call_context&`.
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) {
    return execute_in(partition_id{}, std::forward<F>(fn), ctx);
  }
  template <context_invocable F>
  [[nodiscard]] context_execute_result_t<F> execute_in(partition_id p, F&& fn, const call_context& ctx) {
    using R = context_execute_result_t<F>;
    auto call = [&]() -> R { return invoke_with_context(fn, ctx); };
    return run_permitted<R>(acquire(options_.max_wait, ctx, p), call);
  }

 private:
  template <class R, class F>
  [[nodiscard]] R run_permitted(result<permit> acquired, F& fn) {
    if (!acquired) {
      if (acquired.error() == errc::invalid_options) return detail::limiter_failure<R>(acquired.error(), message_);
      return make_failure<R>(acquired.error());
    }
    permit held = std::move(acquired).value();
    std::exception_ptr thrown;
    R r = detail::invoke_captured(fn, thrown, errc::limit_exceeded);
    if (STURDY_UNLIKELY(thrown)) {
      held.record(classify(failure_info{.code = {}, .exception = thrown}));
      std::rethrow_exception(thrown);
    }
    if (STURDY_LIKELY(succeeded(r))) {
      held.record_success();
    } else {
      held.record(classify(failure_of(r)));
    }
    return r;
  }

 public:
  // --- observation -----------------------------------------------------------

  [[nodiscard]] std::uint32_t limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
  // The algorithm's limit at construction (0 when the options are invalid).
  [[nodiscard]] std::uint32_t initial_limit() const noexcept { return initial_limit_; }
  // True while a permit is out or a caller is queued. Read under the lock a
  // release with waiters holds to its end, so once it says false no release
  // is still touching the limiter: an owner may destroy it (sturdy::registry
  // asks this before evicting or erasing an entry).
  [[nodiscard]] bool in_use() const noexcept {
    std::lock_guard lock(mu_);
    return word_.load(std::memory_order_acquire) != 0;
  }
  [[nodiscard]] std::uint32_t in_flight() const noexcept { return low(word_.load(std::memory_order_relaxed)); }
  [[nodiscard]] std::uint32_t queued() const noexcept { return high(word_.load(std::memory_order_relaxed)); }
  [[nodiscard]] concurrency_limiter_metrics metrics() const noexcept {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    return {.limit = limit(),
            .in_flight = low(w),
            .queued = high(w),
            .rejected = rejected_.load(std::memory_order_relaxed),
            .timed_out = timed_out_.load(std::memory_order_relaxed),
            .cancelled = cancelled_.load(std::memory_order_relaxed),
            .dropped = dropped_.load(std::memory_order_relaxed),
            .samples = samples_.load(std::memory_order_relaxed),
            .completed = reports_.completed(),
            .ignored = reports_.ignored()};
  }
  // Permits held by a partition's calls (0 for an unknown partition; with no
  // partitions configured, partition 0 is not counted separately: read
  // in_flight()).
  [[nodiscard]] std::uint32_t in_flight(partition_id p) const noexcept {
    return p.index < parts_ ? partitions_[p.index].in_flight.load(std::memory_order_relaxed) : 0;
  }
  // The permits a partition is guaranteed at the current limit.
  [[nodiscard]] std::uint32_t partition_limit(partition_id p) const noexcept {
    return p.index < parts_ ? share_permits(partitions_[p.index].share, limit()) : 0;
  }
  // The partition called `name`, if any.
  [[nodiscard]] std::optional<partition_id> find_partition(std::string_view name) const noexcept {
    for (std::size_t i = 0; i < options_.partitions.size(); ++i) {
      if (options_.partitions[i].name == name) return partition_id{static_cast<std::uint32_t>(i)};
    }
    return std::nullopt;
  }
  [[nodiscard]] bool valid() const noexcept { return valid_; }
  // Empty when valid; otherwise the sentence naming the invalid field.
  [[nodiscard]] std::string_view validation_message() const noexcept { return message_; }
  [[nodiscard]] const concurrency_limiter_options& options() const noexcept { return options_; }
  // How `execute` records a failure (options().classify, or
  // default_limit_classifier): for drivers that hold the permit themselves
  // (sturdy::asio::limiter_layer).
  [[nodiscard]] limit_outcome classify_failure(const failure_info& f) const { return classify(f); }
  // The algorithm's state (read it only while no permit is being released).
  [[nodiscard]] const Algorithm& algorithm() const noexcept { return algorithm_; }

 private:
  friend class limiter_permit<concurrency_limiter>;
  static constexpr std::uint64_t one_queued = std::uint64_t{1} << 32;
  static std::uint32_t low(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
  static std::uint32_t high(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w >> 32); }
  static std::uint32_t share_permits(double share, std::uint32_t limit) noexcept {
    const double v = std::ceil(share * static_cast<double>(limit));
    return v < 1.0 ? 1u : static_cast<std::uint32_t>(v);
  }
  static std::string_view first_message(const concurrency_limiter_options& o, const Algorithm& a) noexcept {
    const std::string_view m = o.validation_message();
    return m.empty() ? std::string_view(a.validation_message()) : m;
  }

  struct alignas(cache_line_size) partition_state {
    std::atomic<std::uint32_t> in_flight{0};
    double share = 1.0;
  };

  // The lock-free admission: in_flight + 1 when below the limit and nobody
  // is queued. One fetch_add and no retry loop (two threads on one cache
  // line never retry); a refused caller takes its increment back
  // (`undo_admit`). So in_flight never exceeds the limit by an admitted
  // call, but may read one above it per refusal in progress, and a caller
  // may be refused while another's refusal is being undone (a window of a
  // few instructions, at the limit only).
  bool admit(std::uint32_t& in_flight) noexcept {
    const std::uint64_t w = word_.fetch_add(1, std::memory_order_acquire);
    if (STURDY_LIKELY(high(w) == 0 && low(w) < limit_.load(std::memory_order_relaxed))) {
      in_flight = low(w) + 1;
      return true;
    }
    undo_admit();
    return false;
  }
  // Takes a refused admission's increment back. Waiters queued: a hand-over
  // may have found no room because of it, so serve them under the lock
  // (the caller, inside try_acquire or acquire, keeps the limiter alive).
  [[gnu::noinline, gnu::cold]] void undo_admit() noexcept {
    if (high(word_.fetch_sub(1, std::memory_order_relaxed)) == 0) return;
    std::lock_guard lock(mu_);
    release_locked();
  }

  permit make_permit(std::uint32_t p, std::uint32_t in_flight) noexcept {
    if (parts_ > 1) partitions_[p].in_flight.fetch_add(1, std::memory_order_relaxed);
    return make_permit_granted(p, in_flight);
  }
  permit make_permit_granted(std::uint32_t p, std::uint32_t in_flight) noexcept {
    time_point start{};
    if constexpr (Algorithm::uses_samples) start = clock_.now();
    return permit(this, start, p, in_flight);
  }

  // Invalid options (reported once), or a partition_id out of range.
  [[gnu::noinline, gnu::cold]] result<permit> refuse_invalid() noexcept {
    if (!valid_ && !reported_.exchange(true, std::memory_order_relaxed)) {
      emit(listener_, options_rejected{"concurrency_limiter", message_});
    }
    return make_error_code(errc::invalid_options);
  }
  [[gnu::noinline, gnu::cold]] result<permit> reject(errc why, partition_id p) noexcept {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    if (why == errc::cancelled) cancelled_.fetch_add(1, std::memory_order_relaxed);
    emit(listener_, limiter_rejected{why, p, limit()});
    return make_error_code(why);
  }
  // Counts and reports a refusal decided under the lock (outside it).
  wait_status after_refusal(wait_status s, partition_id p) noexcept {
    switch (s) {
      case wait_status::limit_exceeded:
      case wait_status::deadline_exceeded:
      case wait_status::cancelled:
        rejected_.fetch_add(1, std::memory_order_relaxed);
        emit(listener_, limiter_rejected{to_errc(s), p, limit()});
        break;
      case wait_status::invalid_options:
        (void)refuse_invalid();
        break;
      default:
        break;
    }
    return s;
  }
  static errc to_errc(wait_status s) noexcept {
    switch (s) {
      case wait_status::deadline_exceeded: return errc::deadline_exceeded;
      case wait_status::cancelled: return errc::cancelled;
      case wait_status::invalid_options: return errc::invalid_options;
      default: return errc::limit_exceeded;
    }
  }
  result<permit> finish(limiter_waiter& node, wait_status s) noexcept {
    if (s == wait_status::granted) return adopt(node);
    return make_error_code(to_errc(s));
  }

  // --- under mu_ -------------------------------------------------------------

  wait_status enqueue_locked(limiter_waiter& node, time_point now, duration max_wait, time_point deadline,
                             partition_id p) noexcept {
    if (!valid_ || p.index >= parts_ || node.state_ == limiter_waiter::state::queued ||
        node.state_ == limiter_waiter::state::granted) {
      return wait_status::invalid_options;  // a node in use cannot be queued twice
    }
    if (deadline <= now) return wait_status::deadline_exceeded;
    node.partition_ = p.index;
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      if (high(w) == 0 && low(w) < limit_.load(std::memory_order_relaxed)) {
        if (word_.compare_exchange_weak(w, w + 1, std::memory_order_acquire, std::memory_order_relaxed)) {
          grant_locked(node, low(w) + 1, false);  // the caller learns it from the return value
          return wait_status::granted;
        }
        continue;
      }
      if (max_wait <= duration::zero() || high(w) >= options_.max_queue) return wait_status::limit_exceeded;
      if (word_.compare_exchange_weak(w, w + one_queued, std::memory_order_relaxed)) break;
    }
    const time_point wait_end = detail::saturating_add(now, max_wait);
    node.until_ = std::min(wait_end, deadline);
    node.until_code_ = deadline <= wait_end ? errc::deadline_exceeded : errc::limit_exceeded;
    node.state_ = limiter_waiter::state::queued;
    node.next_ = nullptr;
    node.prev_ = tail_;
    (tail_ != nullptr ? tail_->next_ : head_) = &node;
    tail_ = &node;
    return wait_status::waiting;
  }

  wait_status poll_locked(limiter_waiter& node, time_point now, bool stop_requested) noexcept {
    if (node.state_ == limiter_waiter::state::granted) return wait_status::granted;
    if (node.state_ != limiter_waiter::state::queued) return wait_status::invalid_options;
    wait_status s = wait_status::waiting;
    if (stop_requested) {
      s = wait_status::cancelled;
      cancelled_.fetch_add(1, std::memory_order_relaxed);
    } else if (now >= node.until_) {
      s = node.until_code_ == errc::deadline_exceeded ? wait_status::deadline_exceeded : wait_status::limit_exceeded;
      timed_out_.fetch_add(1, std::memory_order_relaxed);
    } else {
      return s;
    }
    unlink(node);
    node.state_ = limiter_waiter::state::left;
    word_.fetch_sub(one_queued, std::memory_order_relaxed);
    return s;
  }

  void unlink(limiter_waiter& node) noexcept {
    (node.prev_ != nullptr ? node.prev_->next_ : head_) = node.next_;
    (node.next_ != nullptr ? node.next_->prev_ : tail_) = node.prev_;
    node.prev_ = node.next_ = nullptr;
  }

  // Hands a permit to `node`; wakes it unless it is the caller (enqueue).
  void grant_locked(limiter_waiter& node, std::uint32_t in_flight, bool wake = true) noexcept {
    node.state_ = limiter_waiter::state::granted;
    node.in_flight_ = in_flight;
    if (parts_ > 1) partitions_[node.partition_].in_flight.fetch_add(1, std::memory_order_relaxed);
    if (wake) node.wake_(node);
  }

  // The waiter to serve next: with partitions, the first (in queue order)
  // whose partition is below its share; otherwise the queue's end.
  limiter_waiter* choose_locked(std::uint32_t limit) noexcept {
    const bool fifo = options_.order == queue_order::fifo;
    limiter_waiter* first = fifo ? head_ : tail_;
    if (parts_ > 1) {
      for (limiter_waiter* w = first; w != nullptr; w = fifo ? w->next_ : w->prev_) {
        const partition_state& ps = partitions_[w->partition_];
        if (ps.in_flight.load(std::memory_order_relaxed) < share_permits(ps.share, limit)) return w;
      }
    }
    return first;
  }

  // After a permit was returned (in_flight - 1): serves waiters while the
  // limit leaves room. A releaser that saw waiters comes here; meanwhile no
  // caller can take the freed permit (nobody overtakes a queue).
  void release_locked() noexcept { drain_locked(limit_.load(std::memory_order_relaxed)); }
  void drain_locked(std::uint32_t lim) noexcept {
    for (;;) {
      const std::uint64_t w = word_.load(std::memory_order_relaxed);
      if (high(w) == 0 || low(w) >= lim) return;
      limiter_waiter* next = choose_locked(lim);
      unlink(*next);
      word_.fetch_add(1 - one_queued, std::memory_order_relaxed);
      grant_locked(*next, low(w) + 1);
    }
  }

  // A permit's release. Returning its slot (in_flight - 1) is the last
  // access to *this: an owner that destroys the limiter once nothing is in
  // flight (sturdy::registry evicting or erasing it) may do so right after,
  // so the limit update and its event come first.
  void release(std::uint32_t p, time_point start, std::uint32_t in_flight, limit_outcome o) noexcept {
    if (parts_ > 1) partitions_[p].in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (o == limit_outcome::dropped) dropped_.fetch_add(1, std::memory_order_relaxed);
    reports_.count(o != limit_outcome::ignored);
    if constexpr (Algorithm::uses_samples) {
      if (o != limit_outcome::ignored) {
        const time_point now = clock_.now();
        const limit_sample sample{.rtt = detail::time_between(start, now),
                                  .in_flight = in_flight,
                                  .dropped = o == limit_outcome::dropped,
                                  .now = now};
        std::uint32_t from = 0;
        std::uint32_t to = 0;
        {
          std::lock_guard lock(mu_);
          from = limit_.load(std::memory_order_relaxed);
          to = std::max<std::uint32_t>(1, update_algorithm(sample));
          limit_.store(to, std::memory_order_relaxed);
          samples_.fetch_add(1, std::memory_order_relaxed);
        }
        if (from != to) emit(listener_, limiter_limit_changed{from, to});
      }
    }
    return_slot(in_flight);
  }

  // in_flight - 1, the last access. No queue configured: one fetch_sub.
  // Nobody queued: one CAS (its first guess is the word as this permit's
  // admission left it, right when calls do not overlap, which saves a
  // load). Waiters: under the lock, which then hands the slot over (or, if
  // the limit rose, more); `in_use()` takes the same lock, so an owner never
  // sees the limiter idle before this returns.
  void return_slot(std::uint32_t in_flight_at_admission) noexcept {
    if (queueless_) {
      word_.fetch_sub(1, std::memory_order_release);
      return;
    }
    std::uint64_t w = in_flight_at_admission;
    while (STURDY_LIKELY(high(w) == 0)) {
      if (word_.compare_exchange_weak(w, w - 1, std::memory_order_release, std::memory_order_relaxed)) return;
    }
    return_slot_to_waiters();
  }
  [[gnu::noinline]] void return_slot_to_waiters() noexcept {
    std::lock_guard lock(mu_);
    word_.fetch_sub(1, std::memory_order_release);
    release_locked();
  }

  std::uint32_t update_algorithm(const limit_sample& s) noexcept {
    try {
      return algorithm_.update(s);
    } catch (...) {  // no algorithm here throws; a user's might: keep the limit
      return limit_.load(std::memory_order_relaxed);
    }
  }

  limit_outcome classify(const failure_info& f) const {
    return options_.classify ? options_.classify(f) : default_limit_classifier(f);
  }

  // Read on every call.
  alignas(cache_line_size) std::atomic<std::uint64_t> word_{0};  // in_flight | queued << 32
  std::atomic<std::uint32_t> limit_{0};
  const concurrency_limiter_options options_;
  Algorithm algorithm_;  // guarded by mu_
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  const std::string_view message_;
  const bool valid_;
  const std::uint32_t parts_;
  // max_queue 0: nobody is ever queued (enqueue refuses), so a release has
  // no waiter to serve and returns its slot with one fetch_sub.
  const bool queueless_;
  const std::unique_ptr<partition_state[]> partitions_;
  std::uint32_t initial_limit_ = 0;

  // The queue, and the lock that serialises queueing, hand-over and limit
  // updates.
  alignas(cache_line_size) mutable std::mutex mu_;
  limiter_waiter* head_ = nullptr;
  limiter_waiter* tail_ = nullptr;

  // Counters written off the fast path.
  alignas(cache_line_size) std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> timed_out_{0};
  std::atomic<std::uint64_t> cancelled_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> samples_{0};
  std::atomic<bool> reported_{false};
  // Every reported permit, on the release fast path.
  detail::report_counters reports_;
};

}  // namespace sturdy

#endif  // STURDY_CONCURRENCY_LIMITER_HPP_
