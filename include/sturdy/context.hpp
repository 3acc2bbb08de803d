// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/context.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::call_context` is what every layer hands to the layer (or the
// callable) inside it: a cancellation token, a deadline and the attempt
// number. A callable may take it as its only argument, by const reference;
// the choice is detected at compile time and `fn()` keeps working:
//
//   sturdy::timeout_policy<> limit({.timeout = std::chrono::milliseconds(50)});
//   auto r = limit.execute([&](const sturdy::call_context& ctx) {
//     return client.Get(url, ctx.remaining());    // the budget left
//   });
//
// The pieces:
//   - `cancel_token`: sturdy's own cancellation token. A token points at a
//     `cancel_source` (or a layer's internal state) and is fired once, with a
//     reason: `cancel_reason::cancelled` (the caller asked to stop) or
//     `cancel_reason::deadline` (a timer found the deadline passed). Firing,
//     reading and registering callbacks allocate nothing.
//   - `cancel_callback`: runs a function when a token fires (or at once, if
//     it has fired), like `std::stop_callback`, without allocating.
//   - `std_stop_bridge`: a `std::stop_token` for a callee that needs one
//     (std::jthread, std::condition_variable_any). It allocates once (the
//     `std::stop_source` shared state of libstdc++), only when asked for.
//   - `deadline`: an absolute time point *and the clock it belongs to*, so a
//     deadline is always compared on the clock that made it; combining two
//     deadlines on different clocks goes through the remaining duration, so
//     mixing a coarse and a precise clock cannot make time step back.
//
// Why sturdy has its own token: libstdc++'s `std::stop_source` allocates its
// shared state and cannot be reset once stopped, so a timeout built on it
// would allocate on every call. sturdy's token lives in the stack frame of the
// layer that owns it; a timeout allocates nothing whether or not it fires.
//
// Nesting: an inner layer can only shorten the deadline
// (`call_context::with_deadline` keeps the earlier one) and its token fires
// when the outer token fires (with the outer reason) or when its own timer
// fires, whichever is first.
//
// Thread safety: `cancel_source::request_stop`, `cancel_token` reads and
// `cancel_callback` construction/destruction may happen from any threads at
// once. A `cancel_callback`'s destructor waits for its callback if another
// thread is running it (as `std::stop_callback` does), so a callback must
// not wait for the thread that destroys it. `deadline` and `call_context`
// are plain values.

#ifndef STURDY_CONTEXT_HPP_
#define STURDY_CONTEXT_HPP_

#include <atomic>
#include <concepts>
#include <cstdint>
#include <functional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// cancel_reason: why a token fired. `none` while it has not.
enum class cancel_reason : std::uint8_t {
  none = 0,
  cancelled = 1,  // the caller asked to stop (reported as errc::cancelled)
  deadline = 2,   // the deadline passed (reported as errc::deadline_exceeded)
};

// The errc a layer reports for a token that fired for `r` (not none).
[[nodiscard]] constexpr errc to_errc(cancel_reason r) noexcept {
  return r == cancel_reason::deadline ? errc::deadline_exceeded : errc::cancelled;
}

namespace detail {

// A registration on a cancel_state: an intrusive list node, owned by the
// registrant (a cancel_callback, a layer's link to its parent).
struct cancel_node {
  cancel_node* prev = nullptr;
  cancel_node* next = nullptr;
  void (*fire)(cancel_node*, cancel_reason) noexcept = nullptr;
  void* owner = nullptr;  // what `fire` acts on
  bool linked = false;
};

// cancel_state: the shared state of one token. Fired at most once; the
// first reason wins. Registered callbacks run on the firing thread, outside
// the lock; a deregistration waits while its callback runs elsewhere.
class cancel_state {
 public:
  cancel_state() = default;
  cancel_state(const cancel_state&) = delete;
  cancel_state& operator=(const cancel_state&) = delete;

  [[nodiscard]] cancel_reason reason() const noexcept {
    return static_cast<cancel_reason>(word_.load(std::memory_order_acquire) & reason_mask);
  }
  [[nodiscard]] bool fired() const noexcept { return reason() != cancel_reason::none; }

  // Fires with `r` (not none); returns false if it had fired already.
  bool request(cancel_reason r) noexcept {
    std::uint32_t w = lock();
    if ((w & reason_mask) != 0) {
      unlock(w);
      return false;
    }
    w |= static_cast<std::uint32_t>(r);
    word_.store(w | locked_bit, std::memory_order_release);  // readers see the reason now
    firing_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    while (cancel_node* n = head_) {
      head_ = n->next;
      if (head_ != nullptr) head_->prev = nullptr;
      n->linked = false;
      running_.store(n, std::memory_order_relaxed);
      unlock(w);
      n->fire(n, r);  // must not touch n afterwards: its owner may be gone once running_ moves on
      running_.store(nullptr, std::memory_order_release);
      w = lock();
    }
    unlock(w);
    return true;
  }

  // Registers `n`; returns false (not registered) when already fired: the
  // caller then runs its callback itself.
  bool add(cancel_node* n) noexcept {
    const std::uint32_t w = lock();
    if ((w & reason_mask) != 0) {
      unlock(w);
      return false;
    }
    n->prev = nullptr;
    n->next = head_;
    if (head_ != nullptr) head_->prev = n;
    head_ = n;
    n->linked = true;
    unlock(w);
    return true;
  }

  // Deregisters `n`. If its callback is running on another thread, waits
  // for it to return; on the firing thread itself (a callback removing its
  // own registration) it returns at once.
  void remove(cancel_node* n) noexcept {
    const std::uint32_t w = lock();
    if (n->linked) {
      if (n->prev != nullptr) n->prev->next = n->next; else head_ = n->next;
      if (n->next != nullptr) n->next->prev = n->prev;
      n->linked = false;
      unlock(w);
      return;
    }
    const bool running_here = running_.load(std::memory_order_relaxed) == n;
    unlock(w);
    if (running_here && firing_thread_.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      for (int spins = 0; running_.load(std::memory_order_acquire) == n; ++spins) {
        if (spins > 64) std::this_thread::yield();
      }
    }
  }

 private:
  static constexpr std::uint32_t reason_mask = 3;
  static constexpr std::uint32_t locked_bit = 4;

  std::uint32_t lock() noexcept {
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    for (int spins = 0;; ++spins) {
      if ((w & locked_bit) == 0 &&
          word_.compare_exchange_weak(w, w | locked_bit, std::memory_order_acquire, std::memory_order_relaxed)) {
        return w;
      }
      if (spins > 64) std::this_thread::yield();
      w = word_.load(std::memory_order_relaxed);
    }
  }
  void unlock(std::uint32_t w) noexcept { word_.store(w & ~locked_bit, std::memory_order_release); }

  std::atomic<std::uint32_t> word_{0};
  cancel_node* head_ = nullptr;                 // guarded by the lock bit
  std::atomic<cancel_node*> running_{nullptr};  // the callback being run
  std::atomic<std::thread::id> firing_thread_{};
};

}  // namespace detail

// cancel_token
//
// A cheap, copyable view of a cancellation state (one pointer). A
// default-built token never fires. The state it points at must outlive it:
// tokens are handed *down* a call, never stored past it.
class cancel_token {
 public:
  constexpr cancel_token() noexcept = default;
  constexpr explicit cancel_token(detail::cancel_state* s) noexcept : s_(s) {}

  // Whether stop was requested (for any reason).
  [[nodiscard]] bool stop_requested() const noexcept { return s_ != nullptr && s_->fired(); }
  // Why it fired; none while it has not.
  [[nodiscard]] cancel_reason reason() const noexcept { return s_ != nullptr ? s_->reason() : cancel_reason::none; }
  // Whether it can ever fire.
  [[nodiscard]] bool stop_possible() const noexcept { return s_ != nullptr; }

  [[nodiscard]] detail::cancel_state* state() const noexcept { return s_; }
  friend bool operator==(const cancel_token&, const cancel_token&) = default;

 private:
  detail::cancel_state* s_ = nullptr;
};

// cancel_source
//
// Owns a cancellation state; pinned (tokens point into it). `request_stop`
// fires it with `cancel_reason::cancelled`, once.
class cancel_source {
 public:
  cancel_source() = default;
  cancel_source(const cancel_source&) = delete;
  cancel_source& operator=(const cancel_source&) = delete;

  [[nodiscard]] cancel_token token() noexcept { return cancel_token(&state_); }
  // Returns false if it had fired already.
  bool request_stop() noexcept { return state_.request(cancel_reason::cancelled); }
  // Fires with an explicit reason (a deadline your own timer found passed).
  bool request(cancel_reason r) noexcept { return r != cancel_reason::none && state_.request(r); }
  [[nodiscard]] bool stop_requested() const noexcept { return state_.fired(); }
  [[nodiscard]] cancel_reason reason() const noexcept { return state_.reason(); }

 private:
  detail::cancel_state state_;
};

// cancel_callback<F>
//
// Runs `f(reason)` (or `f()`) once when the token fires, on the firing
// thread; at once, in the constructor, if it has fired already. Pinned. The
// destructor deregisters, waiting if the callback is running on another
// thread. `f` must not throw (the program terminates if it does) and should
// be short: it may run on the timer thread.
template <class F>
class cancel_callback {
  static_assert(std::is_invocable_v<F&, cancel_reason> || std::is_invocable_v<F&>,
                "sturdy::cancel_callback needs a callable taking a sturdy::cancel_reason or nothing.");

 public:
  template <class G>
  cancel_callback(cancel_token token, G&& f) : f_(std::forward<G>(f)), state_(token.state()) {
    node_.fire = &fire;
    node_.owner = this;
    if (state_ == nullptr) return;
    if (!state_->add(&node_)) {
      call(state_->reason());
      state_ = nullptr;
    }
  }
  cancel_callback(const cancel_callback&) = delete;
  cancel_callback& operator=(const cancel_callback&) = delete;
  ~cancel_callback() {
    if (state_ != nullptr) state_->remove(&node_);
  }

 private:
  static void fire(detail::cancel_node* n, cancel_reason r) noexcept {
    static_cast<cancel_callback*>(n->owner)->call(r);
  }
  void call(cancel_reason r) noexcept {
    if constexpr (std::is_invocable_v<F&, cancel_reason>) {
      f_(r);
    } else {
      f_();
    }
  }

  detail::cancel_node node_;
  F f_;
  detail::cancel_state* state_;
};

template <class G>
cancel_callback(cancel_token, G) -> cancel_callback<G>;

// linked_cancel_source
//
// A cancellation state of a layer's own, linked to the caller's: it fires
// when `parent` fires (with the parent's reason), when the `std::stop_token`
// is requested (`cancel_reason::cancelled`), or when `request` is called
// (a timer, with `cancel_reason::deadline`), whichever comes first. Linking
// allocates nothing (an intrusive node on the parent; a `std::stop_callback`,
// which registers nothing for a token without state). Pinned; lives in the
// layer's stack frame. `unlink()` (also run by the destructor) detaches it,
// waiting for a parent callback running on another thread, so nothing
// refers to it afterwards. This is what a layer that hands its callee a
// token of its own builds (the timeout; in phase 2 the pipeline's and the
// retry's `std::stop_token` wrappers).
class linked_cancel_source {
 public:
  explicit linked_cancel_source(cancel_token parent, const std::stop_token& stop = {})
      : std_link_(stop, on_std_stop{&state_}) {
    link_.fire = &on_parent;
    link_.owner = &state_;
    if (parent.stop_possible()) {
      parent_ = parent.state();
      if (!parent_->add(&link_)) {
        state_.request(parent_->reason());
        parent_ = nullptr;
      }
    }
  }
  linked_cancel_source(const linked_cancel_source&) = delete;
  linked_cancel_source& operator=(const linked_cancel_source&) = delete;
  ~linked_cancel_source() { unlink(); }

  [[nodiscard]] cancel_token token() noexcept { return cancel_token(&state_); }
  [[nodiscard]] cancel_reason reason() const noexcept { return state_.reason(); }
  // Fires with `r` (not none); false if it had fired already.
  bool request(cancel_reason r) noexcept { return r != cancel_reason::none && state_.request(r); }
  // Detaches from the parent token. A `std::stop_token` request arriving
  // later still sets the reason (harmless: the state is alive until the
  // destructor, which deregisters that link too).
  void unlink() noexcept {
    if (parent_ != nullptr) {
      parent_->remove(&link_);
      parent_ = nullptr;
    }
  }
  // For a timer entry's callback: fires `*static_cast<linked_cancel_source*>(self)`
  // with cancel_reason::deadline.
  static void fire_deadline(void* self) noexcept {
    static_cast<linked_cancel_source*>(self)->state_.request(cancel_reason::deadline);
  }

 private:
  static void on_parent(detail::cancel_node* n, cancel_reason r) noexcept {
    static_cast<detail::cancel_state*>(n->owner)->request(r);
  }
  struct on_std_stop {
    detail::cancel_state* s;
    void operator()() const noexcept { s->request(cancel_reason::cancelled); }
  };

  detail::cancel_state state_;  // first: everything below may fire it
  detail::cancel_node link_;
  detail::cancel_state* parent_ = nullptr;
  std::stop_callback<on_std_stop> std_link_;
};

// std_stop_bridge
//
// A `std::stop_token` that is requested when a sturdy token fires, for a
// callee that needs the standard type. Building one allocates once (the
// `std::stop_source` state); nothing else in this header allocates. Pinned;
// keep it alive while the std::stop_token is in use.
//
//   sturdy::std_stop_bridge bridge(ctx.token);
//   cv.wait_until(lock, bridge.get(), until, pred);   // condition_variable_any
class std_stop_bridge {
 public:
  explicit std_stop_bridge(cancel_token token) : link_(token, on_fire{&source_}) {}
  [[nodiscard]] std::stop_token get() const noexcept { return source_.get_token(); }

 private:
  struct on_fire {
    std::stop_source* s;
    void operator()() const noexcept { s->request_stop(); }
  };
  std::stop_source source_;  // declared first: the callback uses it
  cancel_callback<on_fire> link_;
};

// ----------------------------------------------------------------------------
// Clocks and deadlines
// ----------------------------------------------------------------------------

// clock_ref
//
// A non-owning reference to a `clock_source` (two pointers). A stateless
// clock (the steady and coarse sources) is referenced without an object, so
// two references to the same stateless clock compare equal. The clock
// object of a stateful clock (`testing::manual_clock`) must outlive the
// reference; the layers that build one reference their own member.
class clock_ref {
 public:
  // The steady clock.
  constexpr clock_ref() noexcept = default;

  template <clock_source C>
  [[nodiscard]] static clock_ref of(C& c) noexcept {
    if constexpr (std::is_empty_v<C> && std::is_default_constructible_v<C>) {
      (void)c;
      return clock_ref(&read_empty<C>, nullptr);
    } else {
      return clock_ref(&read_object<C>, &c);
    }
  }
  template <clock_source C>
    requires(std::is_empty_v<C> && std::is_default_constructible_v<C>)
  [[nodiscard]] static clock_ref of() noexcept {
    return clock_ref(&read_empty<C>, nullptr);
  }

  [[nodiscard]] time_point now() const noexcept { return read_(obj_); }

  friend bool operator==(const clock_ref&, const clock_ref&) = default;

 private:
  using read_fn = time_point (*)(void*) noexcept;
  constexpr clock_ref(read_fn r, void* o) noexcept : read_(r), obj_(o) {}

  template <class C>
  static time_point read_empty(void*) noexcept {
    C c{};
    return c.now();
  }
  template <class C>
  static time_point read_object(void* o) noexcept {
    return static_cast<C*>(o)->now();
  }

  read_fn read_ = &read_empty<steady_clock_source>;
  void* obj_ = nullptr;
};

// deadline
//
// An absolute time on a named clock, or none (`deadline()`): a time point
// `at()` of `clock()`. Every comparison reads that clock, never another.
// Arithmetic saturates: `deadline::after(duration::max())` is none.
class deadline {
 public:
  // No deadline.
  constexpr deadline() noexcept = default;

  [[nodiscard]] static deadline at(time_point t, clock_ref clock = {}) noexcept {
    deadline d;
    d.at_ = t;
    d.clock_ = clock;
    return d;
  }
  // `budget` from now on `clock` (saturating: never wraps into the past).
  // A negative budget is treated as zero (already expired).
  [[nodiscard]] static deadline after(duration budget, clock_ref clock = {}) noexcept {
    return after(budget, clock, clock.now());
  }
  // The same, from a `now` already read from `clock`.
  [[nodiscard]] static deadline after(duration budget, clock_ref clock, time_point now) noexcept {
    if (budget < duration::zero()) budget = duration::zero();
    return at(detail::saturating_add(now, budget), clock);
  }

  [[nodiscard]] bool is_none() const noexcept { return at_ == time_point::max(); }
  [[nodiscard]] time_point at() const noexcept { return at_; }
  [[nodiscard]] clock_ref clock() const noexcept { return clock_; }

  // Time left: zero once passed, duration::max() for none.
  [[nodiscard]] duration remaining() const noexcept {
    return is_none() ? duration::max() : remaining_at(clock_.now());
  }
  // The same, for a `now` read from `clock()`.
  [[nodiscard]] duration remaining_at(time_point now) const noexcept {
    return is_none() ? duration::max() : detail::time_between(now, at_);
  }
  [[nodiscard]] bool expired() const noexcept { return !is_none() && clock_.now() >= at_; }
  [[nodiscard]] bool expired_at(time_point now) const noexcept { return !is_none() && now >= at_; }

  // The earlier of `*this` and `other`, on this deadline's clock (for none,
  // `other` as it is). `now` must be this clock's reading. When the clocks
  // differ, `other` is carried over as a remaining duration, read from its
  // own clock: the result never lies later than either deadline.
  [[nodiscard]] deadline earliest(const deadline& other, time_point now) const noexcept {
    if (other.is_none()) return *this;
    if (is_none() && other.clock_ == clock_) return other;
    const time_point o = other.clock_ == clock_ ? other.at_ : detail::saturating_add(now, other.remaining());
    return o < at_ ? at(o, clock_) : *this;
  }

  // Equal when both are none, or same time on the same clock.
  friend bool operator==(const deadline& a, const deadline& b) noexcept {
    return a.at_ == b.at_ && (a.is_none() || a.clock_ == b.clock_);
  }

 private:
  time_point at_ = time_point::max();
  clock_ref clock_{};
};

// ----------------------------------------------------------------------------
// call_context
// ----------------------------------------------------------------------------

// call_context
//
// Handed down every layer to the callable. Cheap to copy (four pointers and
// a number); build one per call. The default is "no token, no deadline,
// attempt 1", which is what `execute(fn)` forwards.
struct call_context {
  // Fires on the caller's cancellation or at the deadline.
  cancel_token token{};
  // The earliest deadline of every enclosing layer; none by default.
  sturdy::deadline deadline{};
  // 1 for the first call; a retry layer counts its attempts here.
  std::uint32_t attempt = 1;

  [[nodiscard]] bool stop_requested() const noexcept { return token.stop_requested(); }
  // Time left before the deadline (duration::max() without one).
  [[nodiscard]] duration remaining() const noexcept { return deadline.remaining(); }

  // A copy whose deadline is the earlier of this one and `d` (an inner
  // layer can only shorten it). `now` is a reading of `d.clock()`.
  [[nodiscard]] call_context with_deadline(const sturdy::deadline& d, time_point now) const noexcept {
    call_context c = *this;
    c.deadline = d.earliest(deadline, now);
    return c;
  }
};

// context_callable<F>: `fn(const call_context&)` works; such callables are
// handed the context, every other callable is called as `fn()`.
template <class F>
concept context_callable = std::invocable<F, const call_context&>;

// context_invocable<F>: callable either way.
template <class F>
concept context_invocable = context_callable<F> || std::invocable<F>;

namespace detail {
template <class F, bool = context_callable<F>>
struct context_invoke_result {
  using type = std::invoke_result_t<F, const call_context&>;
};
template <class F>
struct context_invoke_result<F, false> {
  static_assert(std::invocable<F>,
                "sturdy calls a callable with no arguments or with one `const sturdy::call_context&`: "
                "this one takes neither.");
  using type = std::invoke_result_t<F>;
};
}  // namespace detail

// What the callable returns, called either way.
template <class F>
using context_invoke_result_t = typename detail::context_invoke_result<F>::type;

// What a layer's `execute` returns for `F` (`F`'s result, or `result<T>`
// around a plain value), called either way.
template <class F>
using context_execute_result_t = wrapped_t<context_invoke_result_t<F>>;

// sturdy::invoke_with_context(fn, ctx)
//
// `fn(ctx)` when `fn` takes the context, else `fn()`; the outcome wrapped
// like `invoke_wrapped` does (a plain value moved into `result<T>`).
template <class F>
[[nodiscard]] context_execute_result_t<F> invoke_with_context(F&& fn, const call_context& ctx) {
  if constexpr (context_callable<F>) {
    return invoke_wrapped([&]() -> decltype(auto) { return std::invoke(std::forward<F>(fn), ctx); });
  } else {
    return invoke_wrapped(std::forward<F>(fn));
  }
}

}  // namespace sturdy

#endif  // STURDY_CONTEXT_HPP_
