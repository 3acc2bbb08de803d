// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/idempotency.hpp          (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// The idempotency cache on Asio: the work is an asynchronous operation, and
// a duplicate of a key in flight waits for it without blocking a thread.
//
//   async_execute<Timer>(cache, key, fingerprint, [policy, ctx,] make_op, token)
//       -> void(idempotency_result<R>)
//
//   the key is new --------------> launch make_op(ctx); store its outcome as
//                                  the blocking execute does; complete with it
//   the key is completed --------> the stored outcome, replayed (replayed = true)
//   the key is in flight, policy
//     reject --------------------> errc::in_progress
//     wait ----------------------> parked on the store's waiter list (a real
//                                  waiter: the owner's completion, abandon or
//                                  an eviction wakes it), then replays, or runs
//                                  the work itself if the owner's failure was
//                                  not cached (a retry); errc::wait_timeout
//                                  after wait_timeout; the earlier ctx.deadline
//                                  gives errc::deadline_exceeded
//
// The decisions are the cache's own (idempotency_cache::next_step and
// finish: the loop of the blocking execute, without its sleep), so the two
// drivers cannot drift apart: the same exactly-once and outcome-not-stored
// rules, refusals, events and counters. Stores that cannot wake waiters
// (Redis) are polled on the Timer, as the blocking driver polls.
//
// `make_op(const sturdy::call_context&)` (or `make_op()`) returns an Asio
// asynchronous operation that has not started (a deferred operation, or a
// boost::asio::awaitable<R>); R as in sturdy/asio/hedge.hpp. R's success
// type must convert to the cache's T and back (as for execute).
//
// Example:
//
//   sturdy::idempotency_cache<Receipt> payments({.policy = {.in_flight = sturdy::in_flight_policy::wait}});
//   auto r = co_await sturdy::asio::async_execute(
//       payments, key, sturdy::stable_fingerprint(body),
//       [&] { return gateway.async_charge(req, boost::asio::deferred); },   // void(error_code, Receipt)
//       boost::asio::use_awaitable);
//   if (r.replayed) log("replayed ", key);
//
// Cancellation: the caller's cancellation slot (any type). While waiting
// for a duplicate: the waiter leaves the store's list, errc::cancelled. While
// the work runs: forwarded to it (with its type); its outcome is then
// handled like any other (a failure that is not cached releases the key). A
// signal before the start is remembered (errc::cancelled, nothing run).
// `ctx.token` firing does the same (the work gets `terminal`); a token that
// fired, or a `ctx.deadline` that passed, before the start (or before a
// waiter's next step) gets its errc without the store being asked: no key
// acquired, nothing launched, no replay (as the blocking execute).
//
// Completion: the handler runs exactly once, through its associated
// executor, never inside async_execute. The work runs on the handler's
// associated executor; the bookkeeping on a strand of it.
//
// Lifetime: the cache, and ctx.token's state, must outlive the operation
// (until the handler runs). The key is copied. Destroying the io_context
// with the operation pending takes a parked waiter off the store's list; a
// key whose work had started stays in progress until its lease runs out
// (the work may have happened: exactly once wins over availability).
//
// Allocation: the immediate paths (a replay, a refusal) allocate the
// operation's state and a strand, like the other drivers; a parked waiter
// allocates its wake-up source once per wake-up, as the blocking driver.
//
// Thread safety: the cache may be shared by any number of threads and
// io_contexts (the blocking and the async drivers mixed). Emit the caller's
// cancellation on the handler's executor (Asio's rule).

#ifndef STURDY_ASIO_IDEMPOTENCY_HPP_
#define STURDY_ASIO_IDEMPOTENCY_HPP_

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sturdy/asio/detail/attempt.hpp"
#include "sturdy/asio/detail/common.hpp"
#include "sturdy/asio/timeout.hpp"
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/idempotency.hpp"

namespace sturdy::asio {

namespace detail {

template <class R, class Timer, class Cache, class MakeOp, class Handler>
class idempotency_op : public async_op_base<idempotency_op<R, Timer, Cache, MakeOp, Handler>, Handler> {
  using base = async_op_base<idempotency_op, Handler>;
  friend base;
  using wait_state = typename Cache::wait_state;
  using step_kind = typename Cache::step_kind;

 public:
  idempotency_op(Cache& cache, std::string_view key, std::uint64_t fingerprint, const idempotency_policy& policy,
                 bool default_policy, const call_context& ctx, MakeOp make, Handler handler,
                 const boost::asio::any_io_executor& ex)
      : base(std::move(handler), ex),
        cache_(cache),
        key_(key),
        fingerprint_(fingerprint),
        policy_(policy),
        default_policy_(default_policy),
        ctx_(ctx),
        make_(std::move(make)),
        ex_(ex),
        timer_(ex) {}
  ~idempotency_op() {
    // Only when the io_context is destroyed with the operation pending.
    wake_link_.reset();
    ctx_link_.reset();
    if (linked_) cache_.store().cancel_wait(key_, waiter_);
  }

  void start() {
    this->start_on_strand([](idempotency_op& op) { op.begin(); });
  }

 private:
  enum class phase : std::uint8_t { idle, waiting, running, done };

  struct attempt_done {
    std::shared_ptr<idempotency_op> self;
    void operator()(R r) { self->on_result(std::move(r)); }
  };
  // A wake-up from another thread (the store's completion, ctx.token): post
  // to the strand.
  struct wake {
    std::weak_ptr<idempotency_op> op;
    std::uint64_t generation;
    void operator()() const noexcept {
      if (std::shared_ptr<idempotency_op> self = op.lock()) {
        auto& strand = self->strand_;
        const std::uint64_t g = generation;
        boost::asio::post(strand, [self = std::move(self), g] { self->on_wake(g); });
      }
    }
  };

  void on_cancelled() {
    const boost::asio::cancellation_type_t type = this->cancel_requested();
    if (phase_ == phase::waiting) {
      end_wait();
      return deliver({make_failure<R>(make_error_code(errc::cancelled)), false});
    }
    if (phase_ == phase::running) signal_.emit(type);
  }

  void begin() {
    if (this->cancel_requested() != boost::asio::cancellation_type::none) {
      return deliver({make_failure<R>(make_error_code(errc::cancelled)), false});
    }
    ws_.poll = cache_.options().poll_initial;
    if (ctx_.token.stop_possible()) ctx_link_.emplace(ctx_.token, wake{this->weak_from_this(), 0});
    step();
  }

  void step() {
    auto s = cache_.template next_step<R>(key_, fingerprint_, policy_, &waiter_, ws_, ctx_, default_policy_);
    switch (s.kind) {
      case step_kind::finished:
        return deliver(std::move(*s.result));
      case step_kind::acquired:
        token_ = s.token;
        phase_ = phase::running;
        try {
          launch_attempt<R>(ex_, make_with_context(make_, static_cast<const call_context&>(ctx_)), signal_.slot(),
                            this->strand_, attempt_done{this->shared_from_this()});
        } catch (...) {  // make_op threw: a fatal failure (the key is handled as for any failure)
          if (phase_ == phase::running) on_result(make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
        }
        return;
      case step_kind::wait:
        break;
    }
    phase_ = phase::waiting;
    ++generation_;
    linked_ = Cache::store_type::wakes_waiters && policy_.in_flight == in_flight_policy::wait;
    if (linked_) wake_link_.emplace(waiter_.wake.get_token(), wake{this->weak_from_this(), generation_});
    timer_.expires_after(to_timer_duration<Timer>(s.sleep));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, [self = this->shared_from_this(), g = generation_](const boost::system::error_code& ec) {
          if (!ec) self->on_wake(g);
        }));
  }

  // Woken (generation g; 0: ctx.token), or the wait's timer fired.
  void on_wake(std::uint64_t g) {
    if (phase_ == phase::running && g == 0) return signal_.emit(boost::asio::cancellation_type::terminal);
    if (phase_ != phase::waiting || (g != 0 && g != generation_)) return;
    end_wait();
    step();
  }

  // Leaves the store's waiter list; a woken source is renewed lazily by the
  // store (as in the blocking driver).
  void end_wait() {
    ++generation_;
    phase_ = phase::idle;
    timer_.cancel();
    wake_link_.reset();
    if (linked_) {
      linked_ = false;
      cache_.store().cancel_wait(key_, waiter_);
    }
    if (waiter_.wake.stop_requested()) waiter_.wake = std::stop_source(std::nostopstate);
  }

  void on_result(R r) {
    if (phase_ != phase::running) return;
    deliver(cache_.template finish<R>(key_, fingerprint_, token_, policy_, std::move(r)));
  }

  void deliver(idempotency_result<R> r) {
    phase_ = phase::done;
    ctx_link_.reset();
    this->complete(std::move(r));
  }

  Cache& cache_;
  std::string key_;
  std::uint64_t fingerprint_;
  idempotency_policy policy_;
  bool default_policy_;
  call_context ctx_;
  MakeOp make_;
  boost::asio::any_io_executor ex_;
  Timer timer_;
  boost::asio::cancellation_signal signal_;
  idempotency_waiter waiter_;
  wait_state ws_{};
  fencing_token token_{};
  std::optional<std::stop_callback<wake>> wake_link_;  // after waiter_: destroyed first
  std::optional<cancel_callback<wake>> ctx_link_;
  std::uint64_t generation_ = 0;
  phase phase_ = phase::idle;
  bool linked_ = false;
};

template <class R, class Timer>
struct initiate_idempotency {
  template <class Handler, class Cache, class MakeOp>
  void operator()(Handler&& handler, Cache* cache, std::string key, std::uint64_t fingerprint,
                  const idempotency_policy& policy, bool default_policy, const call_context& ctx,
                  MakeOp&& make) const {
    using op_type = idempotency_op<R, Timer, Cache, std::decay_t<MakeOp>, std::decay_t<Handler>>;
    boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
    auto op = std::make_shared<op_type>(*cache, key, fingerprint, policy, default_policy, ctx,
                                        std::forward<MakeOp>(make), std::forward<Handler>(handler), ex);
    op->start();
  }
};

template <class C>
concept idempotency_cache_like = requires(C& c) {
  typename C::store_type;
  typename C::wait_state;
  { c.options() } -> std::same_as<const idempotency_options&>;
};

}  // namespace detail

// The result type of async_execute for a make_op.
template <class MakeOp>
using async_execute_result_t = timeout_result_t<MakeOp>;

// async_execute<Timer>(cache, key, fingerprint, policy, ctx, make_op, token)
//     -> void(idempotency_result<R>)
//
// See the banner. The key is copied; the policy too (validated as for
// execute(key, fingerprint, policy, fn)).
template <class Timer = boost::asio::steady_timer, detail::idempotency_cache_like Cache, class MakeOp,
          class CompletionToken>
auto async_execute(Cache& cache, std::string_view key, std::uint64_t fingerprint, const idempotency_policy& policy,
                   const call_context& ctx, MakeOp&& make_op, CompletionToken&& token) {
  using R = async_execute_result_t<MakeOp>;
  static_assert(result_like<R>, "The work must complete with a result type sturdy supports (or error_code, T).");
  return boost::asio::async_initiate<CompletionToken, void(idempotency_result<R>)>(
      detail::initiate_idempotency<R, Timer>{}, token, &cache, std::string(key), fingerprint, policy, false, ctx,
      std::forward<MakeOp>(make_op));
}

// async_execute<Timer>(cache, key, fingerprint, make_op, token): the
// cache's default policy, no enclosing context.
template <class Timer = boost::asio::steady_timer, detail::idempotency_cache_like Cache, class MakeOp,
          class CompletionToken>
auto async_execute(Cache& cache, std::string_view key, std::uint64_t fingerprint, MakeOp&& make_op,
                   CompletionToken&& token) {
  using R = async_execute_result_t<MakeOp>;
  static_assert(result_like<R>, "The work must complete with a result type sturdy supports (or error_code, T).");
  return boost::asio::async_initiate<CompletionToken, void(idempotency_result<R>)>(
      detail::initiate_idempotency<R, Timer>{}, token, &cache, std::string(key), fingerprint, cache.options().policy,
      true, call_context{}, std::forward<MakeOp>(make_op));
}

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_IDEMPOTENCY_HPP_
