// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/retry.hpp                (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// `sturdy::asio::async_retry` retries an asynchronous operation on Asio
// without blocking a thread: the waits between attempts are timers on the
// operation's executor. It is a driver of the same decision core as the
// blocking `retry_policy::execute` (retry_policy::begin / on_failure /
// after_wait / on_success, see sturdy/retry.hpp): every rule about
// attempts, backoff, server hints, budgets, deadlines and cancellation is
// decided there, once; this file only attempts and waits.
//
//   async_retry<Timer>(policy, make_attempt, token)       -> void(R)
//   async_retry<Timer>(policy, ctx, make_attempt, token)  -> void(R)
//   async_retry<Timer>(policy, ctx, inner, make_attempt, token)
//                    -> void(R), circuit_open retried after inner's retry_after()
//   retry_layer<Policy, Timer>{policy}.async_run(ctx, make_inner, token)
//   retry_layer<Policy, Timer>{policy}.async_run(ctx, inner, make_inner, token)
//   async_retry<Timer>(std::shared_ptr<const Policy>, ...), retry_layer{shared_ptr}
//                    one policy for every call (shared_policy; see Ownership)
//
// `make_attempt(const sturdy::call_context& c)` starts nothing: it returns
// an Asio asynchronous operation, launched with async_retry's own handler
// and cancellation slot: a `boost::asio::awaitable<R>`, or a deferred
// operation (e.g. `socket.async_read_some(buf, boost::asio::deferred)`)
// completing with
//   void(R)                      R (any result type sturdy supports)
//   void(error_code, T)          sturdy::result<T>
//   void(error_code)             sturdy::result<void>
// `c` carries the attempt number, the deadline the loop plans against and a
// token that fires when the caller cancels; it stays valid until that
// attempt completes (a coroutine lambda may keep the reference). An
// exception escaping an awaitable attempt is a failure whose failure_info
// carries it (retry_if sees it); if the loop stops on it, the result is
// std::errc::state_not_recoverable.
//
// Any completion token: use_awaitable, a callback, use_future, deferred.
// The handler runs exactly once, through its associated executor, never
// inside the initiating function.
//
// Two drivers of the core, one behaviour: with `use_awaitable` (and an
// awaitable attempt on the same executor type, or a deferred one), and no
// `ctx.token` that can fire, async_retry is a coroutine that co_awaits the
// attempt and the backoff timer directly in the caller's coroutine: no
// state block, strand, co_spawn or completion post (a happy-path call costs
// about what a bare co_await of the attempt costs; docs/async.md). Every
// other token, or a stoppable `ctx.token`, runs `retry_op`: a state block
// whose steps run on a strand of the handler's executor.
//
// Cancellation: the caller's cancellation slot (and `ctx.token`, for the
// context overload) is forwarded to the running attempt (with the type
// emitted; `terminal` for the token) and to the attempt's own
// `call_context::token`. It is remembered: a signal that comes between two
// steps (before the first attempt, after an attempt returned, before a
// timer started) is applied when the next step would start, so it is never
// lost (Asio drops a signal emitted before an operation starts). During a
// backoff wait the call stops at once with errc::cancelled and the retry's
// budget ticket is refunded (so is it when the io_context is destroyed or
// shut down during the wait: the state's destructor refunds it, and emits
// no event). Cancellation is never counted as a failure of
// the callee (neutral for the budget). An attempt that completes despite
// the signal decides as in the blocking driver: a success is returned; a
// failure the loop would retry becomes errc::cancelled; a definitive one
// (such as operation_aborted, which equals std::errc::operation_canceled
// and is not retried by default) is returned unchanged. On the coroutine
// driver the caller's cancellation reaches the attempt's operations through
// the coroutine frame (Asio's forwarding, with the caller's cancellation
// filter, terminal by default); the attempt's `call_context::token` then
// fires from the next step (a coroutine cannot also route the frame's
// signal to it mid-attempt). The driver never co_awaits once the caller's
// cancellation state is set, so Asio's throw_if_cancelled never throws out
// of async_retry.
//
// Time: the policy's Clock decides (deadline, max_elapsed); the Timer waits.
// Give both the same time source: the defaults (steady_clock_source and
// boost::asio::steady_timer) agree; tests use
// `testing::asio_virtual_clock_source` with `testing::asio_virtual_timer`.
// The policy's Sleeper is not used.
//
// Example:
//
//   sturdy::retry_policy<> policy(sturdy::retry_options{
//       .max_attempts = 4,
//       .backoff = sturdy::backoff::exponential(std::chrono::milliseconds(50), std::chrono::seconds(2))});
//   sturdy::result<std::size_t> n = co_await sturdy::asio::async_retry(
//       policy,
//       [&](const sturdy::call_context&) {
//         return socket.async_read_some(boost::asio::buffer(buf), boost::asio::deferred);
//       },
//       boost::asio::use_awaitable);
//
// Ownership: the operation copies the policy (its options and seams; a
// budget is referenced as `retry_budget_ref` always does; pass a
// `std::shared_ptr<const Policy>` instead to run every call on the one
// policy, listener and engine state included: shared_policy) and moves
// `make_attempt` into its state; with `deferred`, the deferred operation
// holds its own copies until it is launched. The context's token must outlive the
// operation (tokens are handed down a call, as everywhere in sturdy). So
// must a budget: until the operation's state is destroyed, which for an
// operation still waiting in backoff is when its io_context is destroyed
// (the state then refunds its ticket into the budget). Declare the budget
// before the io_context, or give it longer life.
//
// Allocation: retry_op's first call allocates its state (one shared block
// holding the policy copy, the timer and the strand handle) and a strand;
// after that, a retry (timer wait plus the next attempt's handlers)
// allocates nothing of its own: the handlers use Asio's recycling allocator
// (what the attempts themselves allocate is theirs). The coroutine driver
// allocates only coroutine frames, from Asio's per-thread recycling cache:
// nothing once the thread has run one call. Proven by
// AsioRetryDriver.SteadyStateRetriesAllocateNothing (every driver).
//
// Defaults: those of the policy (3 attempts, exponential backoff from
// 100 ms). Timer: boost::asio::steady_timer.
//
// Thread safety: a policy may be shared by any number of concurrent
// operations on any number of threads (as for execute). retry_op runs its
// steps on a strand of its executor; the coroutine driver runs them in the
// caller's coroutine (sequential already). Emit the caller's cancellation on
// its executor (Asio's rule).

#ifndef STURDY_ASIO_RETRY_HPP_
#define STURDY_ASIO_RETRY_HPP_

#include <atomic>
#include <concepts>
#include <cstddef>
#include <new>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "sturdy/asio/detail/common.hpp"
#include "sturdy/asio/detail/attempt.hpp"  // attempt_result_t, to_result, as_optional (shared with hedge, timeout)
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"

namespace sturdy::asio {

namespace detail {

// The hint a failed attempt carries: a thrown retry_after_error's (as the
// blocking driver reads it), else the ADL hook on the result's error value.
template <class R>
[[nodiscard]] retry_hint failure_hint(const std::exception_ptr& thrown, const R& r) {
  if (!thrown) return sturdy::detail::error_value_hint(r);
  try {
    std::rethrow_exception(thrown);
  } catch (const retry_after_error& e) {
    return e.hint();
  } catch (...) {
    return retry_hint{};
  }
}

// The message of an errc::invalid_options decision: the policy's own
// (shared_policy: also a null pointer), else its options' (naming the field).
template <class Policy>
[[nodiscard]] std::string_view invalid_message(const Policy& p) noexcept {
  if constexpr (requires { { p.validation_message() } -> std::convertible_to<std::string_view>; }) {
    return p.validation_message();
  } else {
    return p.options().validation_message();
  }
}

// Memory for one operation's own handlers (the attempt's completion, the
// backoff wait): two blocks, reused for every retry, so the steady state of
// a retry loop allocates nothing. A request that does not fit (too big, or
// both blocks in use) goes to operator new. The operation's own steps run
// one at a time, but the attempt's sub-operations may allocate through the
// handler's associated allocator (this arena) on several threads at once (a
// parallel_group inside the attempt on a multi-threaded io_context): each
// slot is claimed with an atomic exchange (acquire) and given back with a
// release store, so a block is never handed out twice and its reuse is
// ordered after its release. Uncontended, that is one exchange per
// allocation and one store per deallocation; a taken slot falls back to the
// heap. Proven by AsioRetryStress.AttemptSubOperationsShareTheHandlerArenaAcrossThreads (TSan).
class handler_arena {
 public:
  static constexpr std::size_t block_size = 512;
  handler_arena() = default;
  handler_arena(const handler_arena&) = delete;
  handler_arena& operator=(const handler_arena&) = delete;

  void* allocate(std::size_t n) {
    if (n <= block_size) {
      for (std::size_t i = 0; i < 2; ++i) {
        if (!used_[i].exchange(true, std::memory_order_acquire)) return blocks_[i].bytes;
      }
    }
    return ::operator new(n);
  }
  void deallocate(void* p, std::size_t n) noexcept {
    for (std::size_t i = 0; i < 2; ++i) {
      if (p == blocks_[i].bytes) {
        used_[i].store(false, std::memory_order_release);
        return;
      }
    }
    (void)n;
    ::operator delete(p);
  }

 private:
  struct alignas(std::max_align_t) block {
    unsigned char bytes[block_size];
  };
  block blocks_[2];
  std::atomic<bool> used_[2] = {false, false};
};

template <class T>
struct arena_allocator {
  using value_type = T;
  handler_arena* arena;
  explicit arena_allocator(handler_arena* a) noexcept : arena(a) {}
  template <class U>
  arena_allocator(const arena_allocator<U>& o) noexcept : arena(o.arena) {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) { return static_cast<T*>(arena->allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { arena->deallocate(p, n * sizeof(T)); }
  template <class U>
  friend bool operator==(const arena_allocator& a, const arena_allocator<U>& b) noexcept {
    return a.arena == b.arena;
  }
};

// The handler's associated executor, by its own type (a strand over a
// concrete type dispatches without the polymorphic wrapper's allocations).
template <class Handler>
using handler_executor_t = std::decay_t<boost::asio::associated_executor_t<Handler>>;

template <class R, class Timer, class Policy, class MakeAttempt, class Handler, class Executor>
class retry_op : public async_op_base<retry_op<R, Timer, Policy, MakeAttempt, Handler, Executor>, Handler, Executor> {
  using base = async_op_base<retry_op, Handler, Executor>;
  friend base;

 public:
  using executor_type = Executor;
  retry_op(const Policy& policy, const call_context& ctx, retry_after_source inner, MakeAttempt make, Handler handler,
           const executor_type& ex)
      : base(std::move(handler), ex),
        policy_(policy),
        inner_(inner),
        make_(std::move(make)),
        ex_(ex),
        timer_(ex),
        src_(ctx.token),
        ctx_{src_.token(), ctx.deadline, 1} {}

  // Destroyed while a backoff wait is pending: the io_context was destroyed
  // or shut down, and its handlers (which own this state) were destroyed
  // without running. The retry the wait was for never runs: its budget
  // ticket is refunded (retry_policy::abandon; no event, no user code).
  ~retry_op() {
    if (waiting_ && !done_) policy_.abandon(state_);
  }
  void start() {
    this->start_on_strand([](retry_op& op) { op.begin(); });
  }

 private:
  // The caller's sturdy token fired (on the firing thread): interrupt on
  // the strand. The op is alive while this runs (the callback's destructor,
  // run by the op's, waits for it).
  struct on_token {
    retry_op* op;
    void operator()() const noexcept {
      if (std::shared_ptr<retry_op> self = op->weak_from_this().lock()) {
        auto& strand = self->strand_;
        boost::asio::post(strand, [self = std::move(self)] { self->interrupt(boost::asio::cancellation_type::terminal); });
      }
    }
  };

  struct attempt_handler {
    std::shared_ptr<retry_op> self;
    template <class... Args>
    void operator()(Args&&... args) {
      self->on_attempt(nullptr, to_result<R>(std::forward<Args>(args)...));
    }
    void operator()(std::exception_ptr e, std::optional<R> r) {
      if (e || !r) {
        return self->on_attempt(e, make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
      }
      self->on_attempt(nullptr, std::move(*r));
    }
  };

  // The Asio signal (recorded by the base) as a stop of our token.
  void on_cancelled() {
    src_.request(cancel_reason::cancelled);
    interrupt(this->cancel_requested());
  }
  // A signal recorded but not yet delivered to the strand counts now.
  [[nodiscard]] cancel_reason stop_reason() {
    if (this->cancel_requested() != boost::asio::cancellation_type::none) src_.request(cancel_reason::cancelled);
    return src_.reason();
  }
  // Forwards a stop to what is running: the attempt, or the backoff timer.
  void interrupt(boost::asio::cancellation_type_t type) {
    if (done_) return;
    if (type == boost::asio::cancellation_type::none) type = boost::asio::cancellation_type::terminal;
    if (attempting_) signal_.emit(type);
    if (waiting_) timer_.cancel();
  }

  void begin() {
    watch_.emplace(src_.token(), on_token{this});
    (void)stop_reason();
    handle(policy_.begin(state_, ctx_));
  }

  void handle(retry_decision d) {
    switch (d.what) {
      case retry_decision::kind::attempt:
        return launch();
      case retry_decision::kind::wait:
        return wait(d.delay);
      case retry_decision::kind::return_last:
        return finish(std::move(*last_));
      case retry_decision::kind::fail:
        if (d.code == errc::invalid_options) {
          return finish(make_failure<R>(make_error_code(d.code), invalid_message(policy_)));
        }
        return finish(make_failure<R>(d.code));
    }
  }

  void launch() {
    attempt_ctx_ = policy_.attempt_context(state_, ctx_);  // lives until the attempt completes
    // A maker that throws (before any operation starts) is an attempt that
    // threw, as in the coroutine driver and the blocking execute.
    std::optional<std::invoke_result_t<MakeAttempt&, const call_context&>> op;
    try {
      op.emplace(make_(static_cast<const call_context&>(attempt_ctx_)));
    } catch (...) {
      return on_attempt(std::current_exception(),
                        make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
    }
    attempting_ = true;
    auto token = boost::asio::bind_cancellation_slot(
        signal_.slot(), boost::asio::bind_executor(this->strand_, boost::asio::bind_allocator(
                                                                      arena_allocator<void>(&arena_),
                                                                      attempt_handler{this->shared_from_this()})));
    if constexpr (is_awaitable<std::decay_t<decltype(*op)>>::value) {
      boost::asio::co_spawn(ex_, as_optional(std::move(*op)), std::move(token));
    } else {
      std::move(*op)(std::move(token));
    }
  }

  void on_attempt(std::exception_ptr thrown, R r) {
    attempting_ = false;
    if (done_) return;
    if (!thrown && succeeded(r)) {
      policy_.on_success(state_);
      return finish(std::move(r));
    }
    failure_ = thrown ? failure_info{.code = {}, .exception = thrown} : failure_of(r);
    const retry_hint hint = failure_hint(thrown, r);
    last_.emplace(std::move(r));
    handle(policy_.on_failure(state_, failure_, hint, stop_reason(), inner_));
  }

  void wait(duration delay) {
    // A stop that came before the timer starts is applied now (Asio would
    // drop a signal emitted before the wait began).
    if (const cancel_reason why = stop_reason(); why != cancel_reason::none) {
      return handle(policy_.after_wait(state_, failure_, false, why));
    }
    waiting_ = true;
    timer_.expires_after(to_timer_duration<Timer>(delay));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, boost::asio::bind_allocator(
                           arena_allocator<void>(&arena_),
                           [self = this->shared_from_this()](const boost::system::error_code& ec) { self->on_timer(ec); })));
  }

  void on_timer(const boost::system::error_code& ec) {
    waiting_ = false;
    if (done_) return;
    const cancel_reason why = stop_reason();
    handle(policy_.after_wait(state_, failure_, !ec && why == cancel_reason::none, why));
  }

  void finish(R r) {
    if (done_) return;
    done_ = true;
    watch_.reset();
    src_.unlink();  // nothing refers to the caller's token after the handler runs
    this->complete(std::move(r));
  }

  handler_arena arena_;  // first: outlives every handler allocated in it
  Policy policy_;
  retry_after_source inner_;  // a view: its object is owned by make_ (detail::keep_alive, or compose's layers)
  MakeAttempt make_;
  executor_type ex_;
  Timer timer_;
  linked_cancel_source src_;  // the caller's token, plus the Asio signal
  call_context ctx_;          // {our token, the caller's deadline}
  std::optional<cancel_callback<on_token>> watch_;
  boost::asio::cancellation_signal signal_;
  typename Policy::state_type state_{};
  call_context attempt_ctx_{};
  failure_info failure_{};
  std::optional<R> last_;
  bool attempting_ = false;
  bool waiting_ = false;
  bool done_ = false;
};

template <class R, class Timer>
struct initiate_retry {
  template <class Handler, class Policy, class MakeAttempt>
  void operator()(Handler&& handler, const Policy& policy, const call_context& ctx, retry_after_source inner,
                  MakeAttempt&& make) const {
    const handler_executor_t<Handler> ex = boost::asio::get_associated_executor(handler);
    if constexpr (std::is_same_v<handler_executor_t<Handler>, boost::asio::any_io_executor>) {
      // The polymorphic executor of use_awaitable & co.: when it wraps an
      // io_context's, run the strand over that type (no allocation per
      // dispatch for the polymorphic wrapper's queries).
      if (const auto* io = ex.template target<boost::asio::io_context::executor_type>()) {
        return launch<boost::asio::io_context::executor_type>(*io, std::forward<Handler>(handler), policy, ctx, inner,
                                                               std::forward<MakeAttempt>(make));
      }
    }
    launch<handler_executor_t<Handler>>(ex, std::forward<Handler>(handler), policy, ctx, inner,
                                        std::forward<MakeAttempt>(make));
  }

 private:
  template <class Executor, class Handler, class Policy, class MakeAttempt>
  static void launch(const Executor& ex, Handler&& handler, const Policy& policy, const call_context& ctx,
                     retry_after_source inner, MakeAttempt&& make) {
    using op_type = retry_op<R, Timer, Policy, std::decay_t<MakeAttempt>, std::decay_t<Handler>, Executor>;
    auto op = std::make_shared<op_type>(policy, ctx, inner, std::forward<MakeAttempt>(make),
                                        std::forward<Handler>(handler), ex);
    op->start();
  }
};

// retry_op as an awaitable (the coroutine driver's fallback).
template <class R, class Timer, class Executor, class Policy, class MakeAttempt>
boost::asio::awaitable<R, Executor> retry_op_awaitable(const Policy& policy, const call_context& ctx,
                                                      retry_after_source inner, MakeAttempt&& make) {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<Executor>&, void(R)>(
      initiate_retry<R, Timer>{}, boost::asio::use_awaitable_t<Executor>{}, policy, ctx, inner, std::move(make));
}

// The coroutine driver's backoff wait: true when the delay elapsed, false
// when the caller's cancellation ended it. Its own frame (with the timer),
// so the driver's frame stays small enough for Asio's recycling cache
// (blocks up to 1,020 bytes); frames come and go LIFO, so the cache serves
// every wait of the steady state.
template <class Timer, class Executor>
boost::asio::awaitable<bool, Executor> backoff_wait(duration delay) {
  Timer timer(co_await boost::asio::this_coro::executor);
  timer.expires_after(to_timer_duration<Timer>(delay));
  const auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable_t<Executor>{}));
  co_return !ec;
}

// Refunds the pending wait's ticket if the coroutine frame is destroyed
// while it waits (retry_policy::abandon); disarmed when the wait returns.
template <class Policy>
struct abandon_guard {
  const Policy* policy;
  typename Policy::state_type* state;
  abandon_guard(const Policy* p, typename Policy::state_type* s) noexcept : policy(p), state(s) {}
  abandon_guard(const abandon_guard&) = delete;
  abandon_guard& operator=(const abandon_guard&) = delete;
  ~abandon_guard() {
    if (policy != nullptr) policy->abandon(*state);
  }
};

// The coroutine driver: `use_awaitable` with an awaitable attempt (of the
// same executor type) or a deferred one. The same decision core as
// retry_op, run inside the caller's coroutine: the attempt is co_awaited
// directly (no co_spawn, no strand, no completion post) and so is the
// backoff wait (backoff_wait). Asio's awaitable frame forwards the caller's
// cancellation to whatever is awaited (the attempt's operations, the
// timer), through the caller's cancellation state, whose `cancelled()` is
// sticky: read before every step, it remembers a signal Asio would drop.
// Every co_await below happens only while that state is not cancelled, so
// Asio's throw_if_cancelled never throws here. A caller's sturdy token that
// can fire goes to retry_op (which forwards it into the running attempt;
// a coroutine cannot re-route the frame's cancellation to it).
template <class R, class Timer, class Policy, class MakeAttempt, class Executor>
boost::asio::awaitable<R, Executor> retry_coroutine(Policy policy, call_context ctx, retry_after_source inner,
                                                    MakeAttempt make) {
  if (ctx.token.stop_possible()) {
    co_return co_await retry_op_awaitable<R, Timer, Executor>(policy, ctx, inner, std::move(make));
  }
  const boost::asio::cancellation_state cs = co_await boost::asio::this_coro::cancellation_state;
  cancel_source src;  // the attempts' token: fires (from the next step) when the caller cancels
  ctx.token = src.token();
  typename Policy::state_type state{};
  failure_info failure{};
  std::optional<R> last;
  // A signal recorded by the caller's cancellation state counts from now.
  const auto stop_reason = [&cs, &src]() noexcept {
    if (cs.cancelled() != boost::asio::cancellation_type::none) src.request_stop();
    return src.reason();
  };
  (void)stop_reason();
  retry_decision d = policy.begin(state, ctx);
  for (;;) {
    switch (d.what) {
      case retry_decision::kind::attempt: {
        const call_context attempt_ctx = policy.attempt_context(state, ctx);  // lives until the attempt completes
        std::exception_ptr thrown;
        try {
          if constexpr (is_awaitable<std::invoke_result_t<MakeAttempt&, const call_context&>>::value) {
            last.emplace(co_await make(attempt_ctx));
          } else {  // a deferred operation: its completion arguments, as R
            last.emplace(std::apply([](auto&&... args) { return to_result<R>(std::forward<decltype(args)>(args)...); },
                                    co_await make(attempt_ctx)(
                                        boost::asio::as_tuple(boost::asio::use_awaitable_t<Executor>{}))));
          }
        } catch (...) {
          thrown = std::current_exception();
          last.emplace(make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
        }
        if (!thrown && succeeded(*last)) {
          policy.on_success(state);
          co_return std::move(*last);
        }
        failure = thrown ? failure_info{.code = {}, .exception = thrown} : failure_of(*last);
        const retry_hint hint = failure_hint(thrown, *last);
        d = policy.on_failure(state, failure, hint, stop_reason(), inner);
        break;
      }
      case retry_decision::kind::wait: {
        // A stop that came before the timer starts is applied now.
        if (const cancel_reason why = stop_reason(); why != cancel_reason::none) {
          d = policy.after_wait(state, failure, false, why);
          break;
        }
        // The frame destroyed while waiting (io_context destroyed or shut
        // down): the ticket is refunded, as in retry_op's destructor.
        abandon_guard<Policy> guard{&policy, &state};
        const bool elapsed = co_await backoff_wait<Timer, Executor>(d.delay);
        guard.policy = nullptr;
        const cancel_reason why = stop_reason();
        d = policy.after_wait(state, failure, elapsed && why == cancel_reason::none, why);
        break;
      }
      case retry_decision::kind::return_last:
        co_return std::move(*last);
      case retry_decision::kind::fail:
        if (d.code == errc::invalid_options) {
          co_return make_failure<R>(make_error_code(d.code), invalid_message(policy));
        }
        co_return make_failure<R>(d.code);
    }
  }
}

// Whether async_retry runs as retry_coroutine: the token is use_awaitable
// and the attempt an awaitable on the same executor type, or a deferred
// operation (launched with as_tuple(use_awaitable)).
template <class Token, class Attempt>
struct runs_as_coroutine : std::false_type {};
template <class Executor, class Attempt>
struct runs_as_coroutine<boost::asio::use_awaitable_t<Executor>, Attempt>
    : std::bool_constant<std::is_invocable_v<Attempt&&,
                                             boost::asio::as_tuple_t<boost::asio::use_awaitable_t<Executor>>>> {
  using executor_type = Executor;
};
template <class Executor, class T, class AttemptExecutor>
struct runs_as_coroutine<boost::asio::use_awaitable_t<Executor>, boost::asio::awaitable<T, AttemptExecutor>>
    : std::is_same<Executor, AttemptExecutor> {
  using executor_type = Executor;
};

// What both drivers call on a policy (retry_policy, shared_policy): a type
// missing one is refused at the constraint, not deep in a driver.
template <class P>
concept retry_core = requires(const P& p, typename P::state_type& s, const call_context& ctx, const failure_info& f,
                              retry_hint h, cancel_reason why, const retry_after_source& inner) {
  { p.begin(s, ctx) } -> std::same_as<retry_decision>;
  { p.attempt_context(s, ctx) } -> std::same_as<call_context>;
  { p.on_failure(s, f, h, why, inner) } -> std::same_as<retry_decision>;
  { p.after_wait(s, f, true, why) } -> std::same_as<retry_decision>;
  p.on_success(s);
  p.abandon(s);
};

}  // namespace detail

// shared_policy<Policy>
//
// A retry policy held by shared ownership, as a decision core that
// async_retry and retry_layer copy per call (a pointer copy, no
// allocation): every call runs
// on the one policy, so a by-value listener counts every call and a seeded
// value engine draws one sequence across calls. A null pointer refuses every
// call (errc::invalid_options). The policy's seams must then be safe to use
// from concurrent calls (the defaults, a listener that synchronises; an
// engine used by one call at a time, or shared by a single thread).
template <class Policy>
class shared_policy {
 public:
  using state_type = typename Policy::state_type;
  shared_policy(std::shared_ptr<const Policy> p) noexcept : p_(std::move(p)) {}  // NOLINT(google-explicit-constructor)
  shared_policy(std::shared_ptr<Policy> p) noexcept : p_(std::move(p)) {}        // NOLINT(google-explicit-constructor)

  [[nodiscard]] retry_decision begin(state_type& s, const call_context& ctx) const {
    if (p_ == nullptr) return {.what = retry_decision::kind::fail, .code = errc::invalid_options};
    return p_->begin(s, ctx);
  }
  [[nodiscard]] call_context attempt_context(const state_type& s, const call_context& ctx) const noexcept {
    return p_->attempt_context(s, ctx);
  }
  void on_success(const state_type& s) const noexcept { p_->on_success(s); }
  [[nodiscard]] retry_decision on_failure(state_type& s, const failure_info& f, retry_hint h, cancel_reason stop,
                                          const retry_after_source& inner) const {
    return p_->on_failure(s, f, h, stop, inner);
  }
  [[nodiscard]] retry_decision after_wait(state_type& s, const failure_info& f, bool completed,
                                          cancel_reason stop) const {
    return p_->after_wait(s, f, completed, stop);
  }
  void abandon(state_type& s) const noexcept { p_->abandon(s); }
  void report_invalid_options() const {
    if (p_ != nullptr) p_->report_invalid_options();
  }
  [[nodiscard]] std::string_view validation_message() const noexcept {
    return p_ == nullptr ? std::string_view("async_retry: the shared retry policy must not be null")
                         : p_->options().validation_message();
  }
  [[nodiscard]] const std::shared_ptr<const Policy>& get() const noexcept { return p_; }

 private:
  std::shared_ptr<const Policy> p_;
};

// The result type of async_retry for a make_attempt.
template <class MakeAttempt>
using retry_result_t = detail::attempt_result_t<std::invoke_result_t<MakeAttempt&, const call_context&>>;

namespace detail {

// The driver entry of every async_retry overload: `inner` is a view; its
// pointee must outlive the call (the public overloads make it so: an owning
// pointer kept in the maker, keep_alive below).
template <class Timer = boost::asio::steady_timer, class Policy, class MakeAttempt, class CompletionToken>
  requires(retry_core<Policy> && std::invocable<MakeAttempt&, const call_context&>)
auto async_retry_with(const Policy& policy, const call_context& ctx, retry_after_source inner,
                      MakeAttempt&& make_attempt, CompletionToken&& token) {
  using R = retry_result_t<MakeAttempt>;
  static_assert(result_like<R>, "An attempt must complete with a result type sturdy supports (or error_code, T).");
  using coroutine = runs_as_coroutine<std::decay_t<CompletionToken>,
                                              std::decay_t<std::invoke_result_t<MakeAttempt&, const call_context&>>>;
  // Invalid options are reported on the caller's policy, before it is
  // copied into the call: options_rejected once per policy, not per call.
  if constexpr (requires { policy.report_invalid_options(); }) policy.report_invalid_options();
  if constexpr (coroutine::value) {  // the coroutine driver (see the banner)
    using executor_type = typename coroutine::executor_type;
    return retry_coroutine<R, Timer, Policy, std::decay_t<MakeAttempt>, executor_type>(
        policy, ctx, inner, std::forward<MakeAttempt>(make_attempt));
  } else {
    // The policy by reference: an immediate token copies it once, into the
    // operation; a deferred one keeps its own copy until launched.
    return boost::asio::async_initiate<CompletionToken, void(R)>(initiate_retry<R, Timer>{}, token, policy,
                                                                 ctx, inner, std::forward<MakeAttempt>(make_attempt));
  }
}

// A maker that also owns the object a retry_after_source views, so that
// object lives exactly as long as the call's maker does (in retry_op's
// state, the coroutine frame or a deferred operation).
template <class Inner, class MakeAttempt>
struct keep_alive {
  std::shared_ptr<Inner> inner;
  MakeAttempt make;
  decltype(auto) operator()(const call_context& c) { return make(c); }
};

template <class Inner>
[[nodiscard]] retry_after_source source_of(const std::shared_ptr<Inner>& inner) noexcept {
  return inner == nullptr ? retry_after_source() : retry_after_source(*inner);
}

}  // namespace detail

// async_retry<Timer>(policy, ctx, inner, make_attempt, token) -> void(R)
//
// See the banner. `ctx`: the caller's deadline (the earlier of it and the
// policy's max_elapsed applies) and cancel token (forwarded like the
// cancellation slot). `inner`: shared ownership of what sits inside the
// attempt and can refuse it without calling the dependency (anything with
// `retry_after()`: a circuit breaker, a composed pipeline of layers; null:
// none): an attempt that fails with errc::circuit_open is retried after
// `inner->retry_after()` plus the backoff's delay, within the deadline and
// max_server_delay, exactly as the blocking `execute(fn, ctx, inner)` does
// (sturdy::retry_after_source, sturdy/pipeline.hpp); without one the call
// gives up on circuit_open. The call holds `inner` until it completes (an
// aliasing shared_ptr views a member of a shared object without
// allocating: that is what `sturdy::asio::compose` hands retry_layer).
// Invalid options: make_failure<R>(errc::invalid_options) with the message
// naming the field, nothing attempted.
template <class Timer = boost::asio::steady_timer, class Policy, class Inner, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<Policy> && sturdy::detail::has_retry_after<Inner> &&
           std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(const Policy& policy, const call_context& ctx, std::shared_ptr<Inner> inner,
                 MakeAttempt&& make_attempt, CompletionToken&& token) {
  const retry_after_source source = detail::source_of(inner);
  return detail::async_retry_with<Timer>(
      policy, ctx, source,
      detail::keep_alive<Inner, std::decay_t<MakeAttempt>>{std::move(inner), std::forward<MakeAttempt>(make_attempt)},
      std::forward<CompletionToken>(token));
}

// async_retry<Timer>(policy, ctx, make_attempt, token) -> void(R)
//
// The same with no inner source: circuit_open is not retried.
template <class Timer = boost::asio::steady_timer, class Policy, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<Policy> && std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(const Policy& policy, const call_context& ctx, MakeAttempt&& make_attempt, CompletionToken&& token) {
  return detail::async_retry_with<Timer>(policy, ctx, retry_after_source(), std::forward<MakeAttempt>(make_attempt),
                                         std::forward<CompletionToken>(token));
}

// async_retry<Timer>(std::shared_ptr<[const] Policy>, [ctx, [inner,]] make_attempt, token) -> void(R)
//
// The same on a policy shared by every call (not copied per call: the call
// holds the pointer): a by-value listener counts every call, a seeded
// value engine draws one sequence across calls (docs/async.md). Its seams
// are then used by concurrent calls. A null pointer: errc::invalid_options,
// nothing attempted.
template <class Timer = boost::asio::steady_timer, class Policy, class Inner, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<std::remove_const_t<Policy>> && sturdy::detail::has_retry_after<Inner> &&
           std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(std::shared_ptr<Policy> policy, const call_context& ctx, std::shared_ptr<Inner> inner,
                 MakeAttempt&& make_attempt, CompletionToken&& token) {
  return async_retry<Timer>(shared_policy<std::remove_const_t<Policy>>(std::move(policy)), ctx, std::move(inner),
                            std::forward<MakeAttempt>(make_attempt), std::forward<CompletionToken>(token));
}
template <class Timer = boost::asio::steady_timer, class Policy, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<std::remove_const_t<Policy>> && std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(std::shared_ptr<Policy> policy, const call_context& ctx, MakeAttempt&& make_attempt,
                 CompletionToken&& token) {
  return async_retry<Timer>(shared_policy<std::remove_const_t<Policy>>(std::move(policy)), ctx,
                            std::forward<MakeAttempt>(make_attempt), std::forward<CompletionToken>(token));
}
template <class Timer = boost::asio::steady_timer, class Policy, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<std::remove_const_t<Policy>> && std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(std::shared_ptr<Policy> policy, MakeAttempt&& make_attempt, CompletionToken&& token) {
  return async_retry<Timer>(shared_policy<std::remove_const_t<Policy>>(std::move(policy)), call_context{},
                            std::forward<MakeAttempt>(make_attempt), std::forward<CompletionToken>(token));
}

// async_retry<Timer>(policy, make_attempt, token) -> void(R)
//
// The same with a default context (no deadline but max_elapsed, no token
// but the cancellation slot).
template <class Timer = boost::asio::steady_timer, class Policy, class MakeAttempt, class CompletionToken>
  requires(detail::retry_core<Policy> && std::invocable<MakeAttempt&, const call_context&>)
auto async_retry(const Policy& policy, MakeAttempt&& make_attempt, CompletionToken&& token) {
  return async_retry<Timer>(policy, call_context{}, std::forward<MakeAttempt>(make_attempt),
                            std::forward<CompletionToken>(token));
}

// retry_layer<Policy, Timer>
//
// The retry as a layer of `sturdy::asio::compose` (the async layer shape:
// `async_run(ctx, make_inner, token)`, `make_inner(const call_context&)`
// returning an Asio operation, completing with void(R)). Owns a copy of
// the policy. Put an attempt timeout inside it and a total timeout outside.
//
//   sturdy::asio::retry_layer retry{sturdy::retry_policy<>(sturdy::retry_options{.max_attempts = 3})};
//   auto r = co_await retry.async_run(ctx, make_inner, boost::asio::use_awaitable);
template <class Policy, class Timer = boost::asio::steady_timer>
  requires detail::retry_core<Policy>
class retry_layer {
 public:
  explicit retry_layer(Policy policy) : policy_(std::move(policy)) {}

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return async_retry<Timer>(policy_, ctx, std::forward<MakeInner>(make_inner),
                              std::forward<CompletionToken>(token));
  }
  // With the layers inside it, held by shared ownership (what
  // sturdy::asio::compose passes when an inner layer has retry_after(), a
  // breaker_layer: an aliasing pointer into its layers): circuit_open is
  // retried after their retry_after(). See async_retry.
  template <class Inner, class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, std::shared_ptr<Inner> inner, MakeInner&& make_inner,
                 CompletionToken&& token) const {
    return async_retry<Timer>(policy_, ctx, std::move(inner), std::forward<MakeInner>(make_inner),
                              std::forward<CompletionToken>(token));
  }

  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }

 private:
  Policy policy_;
};
// retry_layer{std::make_shared<const P>(...)}: every call on the one policy
// (shared_policy<P>): a by-value listener counts all of the layer's calls.
template <class P>
retry_layer(std::shared_ptr<P>) -> retry_layer<shared_policy<std::remove_const_t<P>>>;

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_RETRY_HPP_
