// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/admission.hpp            (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// Asynchronous admission: the Asio drivers of the concurrency limiter, the
// rate limiter and the circuit breaker. Nothing blocks a thread: a limiter
// that must wait does so in its waiter queue or on a timer.
//
//   async_acquire<Timer>(concurrency_limiter, max_wait, token)
//       -> void(result<concurrency_limiter::permit>)
//       a free permit at once; otherwise queued (FIFO/LIFO as configured)
//       until handed a released permit, or max_wait runs out
//       (errc::limit_exceeded), or the operation is cancelled
//       (errc::cancelled)
//   async_acquire<Timer>(rate_limiter, max_wait, token)
//       -> void(rate_limit_decision)
//       reserves the earliest turn within max_wait (rate_limiter::reserve),
//       then waits for it on a Timer; cancelled: the reservation is given
//       back and the decision says `cancelled`
//   async_acquire(circuit_breaker, token)
//       -> void(result<breaker_permit>)
//       the breaker never waits: its try_acquire, completed through the
//       token (record the outcome with breaker.record(permit, outcome))
//
// Any completion token works (a callback, use_awaitable, use_future,
// deferred). The operation runs on the handler's associated executor (bind
// one with boost::asio::bind_executor for a plain callback; a coroutine's is
// its own). `Timer` is the timer type (default boost::asio::steady_timer);
// tests use sturdy::testing::asio_virtual_timer with a limiter on
// asio_virtual_clock_source.
//
// Example:
//
//   sturdy::concurrency_limiter<> limiter({.max_queue = 100});
//   boost::asio::awaitable<void> handle(Request req) {
//     auto permit = co_await sturdy::asio::async_acquire(limiter, std::chrono::milliseconds(50),
//                                                        boost::asio::use_awaitable);
//     if (!permit) co_return reply_busy(permit.error());   // errc::limit_exceeded
//     auto r = co_await backend.async_call(req, boost::asio::use_awaitable);
//     permit.value().record_success();
//   }
//
// Cancellation: through the handler's per-operation cancellation slot; every
// type (terminal, partial, total) is honoured, and leaving the queue has no
// other effect. A signal that arrives after the call but before the wait
// starts is remembered (Asio would lose it). Whatever the moment of the
// cancellation, no permit or reservation leaks: a permit handed over while
// the cancellation was on its way is released at once.
//
// Each handler runs exactly once, always through its associated executor
// (never inside async_acquire). Destroying the io_context with a waiter
// queued takes the waiter out of the queue.
//
// Allocation: the immediate paths (a free permit, a refusal, a turn that is
// due now) allocate nothing after the first operation on a thread (the
// completion is posted through Asio's recycling allocator). A wait
// allocates its state (one shared block) and a strand.
//
// Thread safety: the limiters and the breaker may be shared by any number of
// threads and io_contexts. Emit a cancellation on the handler's executor
// (Asio's rule).

#ifndef STURDY_ASIO_ADMISSION_HPP_
#define STURDY_ASIO_ADMISSION_HPP_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "sturdy/asio/detail/common.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/rate_limiter.hpp"

namespace sturdy::asio {

namespace detail {

template <class L>
concept queueing_limiter = requires(L& l, limiter_waiter& node, duration d) {
  { l.try_admit() };
  { l.enqueue(node, d) } -> std::same_as<wait_status>;
  { l.adopt(node) };
};

template <class L>
concept reserving_limiter = requires(L& l, duration d, const rate_limit_decision& dec) {
  { l.reserve(std::uint64_t{1}, d) } -> std::same_as<rate_limit_reservation>;
  { l.give_back(dec) } -> std::same_as<bool>;
};

[[nodiscard]] inline errc errc_of(wait_status s) noexcept {
  switch (s) {
    case wait_status::deadline_exceeded: return errc::deadline_exceeded;
    case wait_status::cancelled: return errc::cancelled;
    case wait_status::invalid_options: return errc::invalid_options;
    default: return errc::limit_exceeded;
  }
}

// The state of one queued async_acquire on a concurrency limiter. Every
// step runs on `strand_`; the limiter's wake-up (any thread, under the
// limiter's lock) and the cancellation slot only post to it.
template <class Limiter, class Timer, class Handler>
class limiter_wait_op : public async_op_base<limiter_wait_op<Limiter, Timer, Handler>, Handler> {
  using base = async_op_base<limiter_wait_op, Handler>;
  friend base;

 public:
  using permit = typename Limiter::permit;

  limiter_wait_op(Limiter& limiter, Handler handler, const boost::asio::any_io_executor& ex)
      : base(std::move(handler), ex), limiter_(limiter), timer_(ex) {}
  ~limiter_wait_op() {
    // Only when the io_context is destroyed with the wait pending: leave the
    // queue (a permit handed over meanwhile is released by ~permit).
    if (!done_ && queued_ && !limiter_.leave(node_)) (void)limiter_.adopt(node_);
  }

  void start(duration max_wait) {
    this->start_on_strand([max_wait](limiter_wait_op& op) { op.begin(max_wait); });
  }

 private:
  void on_cancelled() { step(false); }

  static void on_wake(limiter_waiter& node) noexcept {
    auto* op = static_cast<limiter_wait_op*>(node.context());
    if (auto self = op->weak_from_this().lock()) {
      boost::asio::post(op->strand_, [self = std::move(self)] { self->step(false); });
    }
  }

  void begin(duration max_wait) {
    // A cancellation that came before the wait started is remembered.
    if (this->cancel_requested() != boost::asio::cancellation_type::none) {
      return finish(make_error_code(errc::cancelled));
    }
    const wait_status s = limiter_.enqueue(node_, max_wait);
    if (s != wait_status::waiting) {
      if (s == wait_status::granted) return finish(limiter_.adopt(node_));
      return finish(make_error_code(errc_of(s)));
    }
    queued_ = true;
    arm(max_wait);
  }

  void arm(duration d) {
    timer_.expires_after(to_timer_duration<Timer>(d));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, [self = this->shared_from_this()](const boost::system::error_code& ec) {
          if (!ec) self->step(true);
        }));
  }

  void step(bool timer_fired) {
    if (done_) return;
    if (!queued_) return;  // begin has not run yet: it reads the flag
    if (this->cancel_requested() != boost::asio::cancellation_type::none) {
      queued_ = false;
      if (!limiter_.leave(node_)) (void)limiter_.adopt(node_);  // handed over meanwhile: release it
      return finish(make_error_code(errc::cancelled));
    }
    const wait_status s = limiter_.poll(node_, false);
    if (s == wait_status::waiting) {
      // The timer's clock ran ahead of the limiter's: look again shortly.
      if (timer_fired) arm(std::chrono::milliseconds(1));
      return;
    }
    queued_ = false;
    if (s == wait_status::granted) return finish(limiter_.adopt(node_));
    finish(make_error_code(errc_of(s)));
  }

  void finish(result<permit> r) {
    done_ = true;
    timer_.cancel();
    this->complete(std::move(r));
  }

  Limiter& limiter_;
  Timer timer_;
  limiter_waiter node_{&on_wake, this};
  bool queued_ = false;
  bool done_ = false;
};

template <class Timer>
struct initiate_limiter_acquire {
  template <class Handler, class Limiter>
  void operator()(Handler&& handler, Limiter* limiter, duration max_wait) const {
    using permit = typename Limiter::permit;
    if (std::optional<permit> p = limiter->try_admit()) {
      return post_completion(std::forward<Handler>(handler), result<permit>(std::move(*p)));
    }
    if (max_wait <= duration::zero()) {
      return post_completion(std::forward<Handler>(handler), limiter->try_acquire());
    }
    using op_type = limiter_wait_op<Limiter, Timer, std::decay_t<Handler>>;
    boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
    auto op = std::make_shared<op_type>(*limiter, std::forward<Handler>(handler), ex);
    op->start(max_wait);
  }
};

// The state of one rate-limiter turn being waited for.
template <class Limiter, class Timer, class Handler>
class rate_wait_op : public async_op_base<rate_wait_op<Limiter, Timer, Handler>, Handler> {
  using base = async_op_base<rate_wait_op, Handler>;
  friend base;

 public:
  rate_wait_op(Limiter& limiter, Handler handler, const boost::asio::any_io_executor& ex, rate_limit_reservation r)
      : base(std::move(handler), ex), limiter_(limiter), timer_(ex), reservation_(r) {}
  ~rate_wait_op() {
    if (!done_) (void)limiter_.give_back(reservation_.decision);  // io_context destroyed while waiting
  }

  void start() {
    this->start_on_strand([](rate_wait_op& op) { op.begin(); });
  }

 private:
  void on_cancelled() { cancel(); }

  void begin() {
    if (this->cancel_requested() != boost::asio::cancellation_type::none) return cancel();
    started_ = true;
    timer_.expires_after(to_timer_duration<Timer>(reservation_.wait));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, [self = this->shared_from_this()](const boost::system::error_code& ec) {
          if (!ec && !self->done_) {
            rate_limit_decision d = self->reservation_.decision;
            d.waited = self->reservation_.wait;
            self->finish(d);
          }
        }));
  }

  void cancel() {
    if (done_) return;
    (void)limiter_.give_back(reservation_.decision);
    rate_limit_decision d = reservation_.decision;
    d.allowed = false;
    d.ticket = 0;
    d.reason = rate_limit_reason::cancelled;
    d.retry_after = duration::zero();
    finish(d);
  }

  void finish(const rate_limit_decision& d) {
    done_ = true;
    if (started_) timer_.cancel();
    this->complete(d);
  }

  Limiter& limiter_;
  Timer timer_;
  rate_limit_reservation reservation_;
  bool started_ = false;
  bool done_ = false;
};

template <class Timer>
struct initiate_rate_acquire {
  template <class Handler, class Limiter>
  void operator()(Handler&& handler, Limiter* limiter, duration max_wait) const {
    const rate_limit_reservation r = limiter->reserve(1, max_wait);
    if (!r.decision.allowed || r.wait == duration::zero()) {
      return post_completion(std::forward<Handler>(handler), r.decision);
    }
    using op_type = rate_wait_op<Limiter, Timer, std::decay_t<Handler>>;
    boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
    auto op = std::make_shared<op_type>(*limiter, std::forward<Handler>(handler), ex, r);
    op->start();
  }
};

struct initiate_breaker_acquire {
  template <class Handler, class Breaker>
  void operator()(Handler&& handler, Breaker* breaker) const {
    post_completion(std::forward<Handler>(handler), breaker->try_acquire());
  }
};

}  // namespace detail

// async_acquire(concurrency_limiter, max_wait, token) -> void(result<permit>)
//
// See the banner. max_wait <= 0: try_acquire (no queueing). Errors:
// errc::limit_exceeded (no permit within max_wait, queue full),
// errc::cancelled, errc::invalid_options.
template <class Timer = boost::asio::steady_timer, class Limiter, class CompletionToken>
  requires detail::queueing_limiter<Limiter>
auto async_acquire(Limiter& limiter, duration max_wait, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(result<typename Limiter::permit>)>(
      detail::initiate_limiter_acquire<Timer>{}, token, &limiter, max_wait);
}

// async_acquire(rate_limiter, max_wait, token) -> void(rate_limit_decision)
//
// One request's turn, waited for up to max_wait (see rate_limiter::reserve
// for the refusals). Cancelled while waiting: reason `cancelled`, and the
// reservation is given back when no later request reserved after it.
template <class Timer = boost::asio::steady_timer, class Limiter, class CompletionToken>
  requires detail::reserving_limiter<Limiter>
auto async_acquire(Limiter& limiter, duration max_wait, CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(rate_limit_decision)>(detail::initiate_rate_acquire<Timer>{},
                                                                                token, &limiter, max_wait);
}

// async_acquire(breaker, token) -> void(decltype(breaker.try_acquire()))
//
// The breaker's admission, completed through the token (it never waits):
// record the outcome with breaker.record(permit, outcome).
template <class Breaker, class CompletionToken>
  requires(!detail::queueing_limiter<Breaker> && !detail::reserving_limiter<Breaker> &&
           requires(Breaker& b) { b.try_acquire(); })
auto async_acquire(Breaker& breaker, CompletionToken&& token) {
  using result_type = decltype(breaker.try_acquire());
  return boost::asio::async_initiate<CompletionToken, void(result_type)>(detail::initiate_breaker_acquire{}, token,
                                                                        &breaker);
}

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_ADMISSION_HPP_
