// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/timeout.hpp              (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// Timeouts for asynchronous attempts, which, unlike synchronous calls, can
// really be cancelled: the attempt is raced against a Timer; when the timer
// wins, the attempt's cancellation slot is emitted (`options.cancel_type`,
// default terminal) and the attempt's own token fires with
// cancel_reason::deadline.
//
//   async_timeout<Timer>(options, [ctx,] make_attempt, token) -> void(R)
//
//   before the start: options invalid? ---------------> errc::invalid_options
//                     cancelled (slot or ctx.token)? --> errc::cancelled / the token's errc
//                     deadline = min(ctx.deadline, now + timeout)
//                     no time left? ---------------------> errc::deadline_exceeded
//   launch make_attempt(child_ctx); arm the timer at the deadline
//   the attempt returns before the timer ----------> its result, unchanged
//   the caller cancels (slot, or ctx.token) -------> forwarded to the attempt; then
//        success: unchanged; failure: errc::cancelled (or the token's errc)
//   the timer fires --------------------------------> the attempt is cancelled; when it returns:
//        failure ------------------------------------> errc::deadline_exceeded
//        success, late_result::pass_through ---------> the success (the default)
//        success, late_result::discard --------------> errc::deadline_exceeded (the value destroyed)
//   the attempt ignores the cancellation and
//   `abandon_after` passes after the deadline -----> errc::deadline_exceeded; its late
//                                                     completion is absorbed
//
// "Late" (as the blocking timeout's "the timer fired before the call
// returned"): the timer's handler ran on the operation's strand before the
// attempt's completion handler did. The strand runs handlers in the order
// they reach it, so at one instant a completion queued before the timer's
// handler is on time and one queued after it is late (docs/async.md,
// Timeouts, says why neither a deferred decision nor a clock comparison is
// used).
//
// These are the rules of the blocking `sturdy::timeout_policy` (the same
// decision core: decide_timeout_start / decide_timeout_end in
// sturdy/timeout.hpp). The call waits for the cancelled attempt to return
// (as Asio's own parallel_group and cancel_after do) because the attempt may
// use memory the caller frees when it is handed the result; `abandon_after`
// (default: never) lets a caller whose attempts own everything they touch
// stop waiting for one that ignores cancellation.
//
// The attempt: `make_attempt(const sturdy::call_context&)` (or
// `make_attempt()`) returns an Asio asynchronous operation that has not
// started (a deferred operation, or a boost::asio::awaitable<R>); its
// completion signature gives R as in sturdy/asio/hedge.hpp (void(R),
// void(error_code, T) -> result<T>, void(error_code) -> result<void>). The
// context it sees has the deadline tightened to the timeout and a token of
// the operation's own, linked to `ctx.token`; both stay valid until the
// attempt returns (a coroutine may keep the reference).
//
// Per attempt or overall is a matter of position in `sturdy::asio::compose`:
// inside a retry layer it bounds each attempt; outside, the whole call.
//
// Example:
//
//   sturdy::asio::async_timeout_options opts{.timeout = std::chrono::milliseconds(200)};
//   sturdy::result<std::size_t> n = co_await sturdy::asio::async_timeout(
//       opts,
//       [&](const sturdy::call_context&) { return socket.async_read_some(buf, boost::asio::deferred); },
//       boost::asio::use_awaitable);
//   if (!n && n.error() == sturdy::errc::deadline_exceeded) { /* gave up after 200 ms */ }
//
// Cancellation: the caller's cancellation slot is forwarded (with its
// type) to the attempt; a signal that arrives before the attempt starts is
// remembered (errc::cancelled, nothing launched). `ctx.token` firing is
// forwarded with `options.cancel_type`. The caller's `ctx.token` must stay
// valid until the handler runs (the operation unlinks from it first).
//
// Completion: the handler runs exactly once, through its associated
// executor, never inside async_timeout. The attempt runs on the handler's
// associated executor; the bookkeeping on a strand of it.
//
// Allocation: each call allocates its state (one shared block), a strand,
// the timer's wait and what the attempt allocates; a constant number per
// call (AsioTimeout.AllocationsPerCallAreConstant).
//
// Defaults: timeout 30 s, late successes passed through, cancellation type
// terminal (what every Asio operation supports, and Asio's cancel_after
// default), never abandon.
//
// Thread safety: options are copied into each call. Emit the caller's
// cancellation on the handler's executor (Asio's rule).

#ifndef STURDY_ASIO_TIMEOUT_HPP_
#define STURDY_ASIO_TIMEOUT_HPP_

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
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
#include "sturdy/clock.hpp"
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/timeout.hpp"

namespace sturdy::asio {

// async_timeout_options
//
// Aggregate; fill with designated initializers.
struct async_timeout_options {
  // The longest the attempt may take. Default 30 s. >= 0; 0 never starts
  // the attempt (errc::deadline_exceeded); duration::max(): no timeout of
  // its own (an enclosing deadline still applies).
  duration timeout = std::chrono::seconds(30);
  // What to do with a success that arrives after the deadline (as the
  // blocking timeout). Default late_result::pass_through.
  late_result on_late = late_result::pass_through;
  // How the attempt is cancelled when the timer fires (and when ctx.token
  // fires). terminal, partial or total. Default terminal.
  boost::asio::cancellation_type_t cancel_type = boost::asio::cancellation_type::terminal;
  // After the deadline, how long to wait for the cancelled attempt before
  // completing with errc::deadline_exceeded anyway. >= 0. Default
  // duration::max(): always wait (the attempt may use the caller's memory).
  duration abandon_after = duration::max();

  // Empty when valid; otherwise "async_timeout_options.<field> must ...".
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (timeout < duration::zero()) return "async_timeout_options.timeout must be >= 0";
    if (on_late != late_result::pass_through && on_late != late_result::discard) {
      return "async_timeout_options.on_late must be late_result::pass_through or late_result::discard";
    }
    if (cancel_type != boost::asio::cancellation_type::terminal &&
        cancel_type != boost::asio::cancellation_type::partial && cancel_type != boost::asio::cancellation_type::total) {
      return "async_timeout_options.cancel_type must be terminal, partial or total";
    }
    if (abandon_after < duration::zero()) return "async_timeout_options.abandon_after must be >= 0";
    return {};
  }
};

namespace detail {

// The Timer's clock as a sturdy clock_source (the steady clock is sturdy's
// own, so deadlines on it compare on one clock).
template <class Clock>
struct timer_clock_source {
  [[nodiscard]] time_point now() const noexcept {
    return time_point(std::chrono::duration_cast<duration>(Clock::now().time_since_epoch()));
  }
};
template <class Timer>
using timer_clock_t = std::conditional_t<std::is_same_v<typename Timer::clock_type, std::chrono::steady_clock>,
                                         steady_clock_source, timer_clock_source<typename Timer::clock_type>>;

template <class R, class Timer, class MakeAttempt, class Handler>
class timeout_op : public async_op_base<timeout_op<R, Timer, MakeAttempt, Handler>, Handler> {
  using base = async_op_base<timeout_op, Handler>;
  friend base;

 public:
  timeout_op(const async_timeout_options& options, const call_context& ctx, MakeAttempt make, Handler handler,
             const boost::asio::any_io_executor& ex)
      : base(std::move(handler), ex), options_(options), parent_(ctx), make_(std::move(make)), ex_(ex), timer_(ex) {}

  void start() {
    this->start_on_strand([](timeout_op& op) { op.begin(); });
  }

 private:
  enum class phase : std::uint8_t { idle, running, abandoned, done };

  struct attempt_done {
    std::shared_ptr<timeout_op> self;
    void operator()(R r) { self->on_attempt(std::move(r)); }
  };
  // ctx.token fired (any thread): forward on the strand.
  struct on_parent {
    std::weak_ptr<timeout_op> op;
    void operator()() const noexcept {
      if (std::shared_ptr<timeout_op> self = op.lock()) {
        auto& strand = self->strand_;
        boost::asio::post(strand, [self = std::move(self)] { self->cancel_attempt(self->options_.cancel_type); });
      }
    }
  };

  void on_cancelled() {
    if (phase_ != phase::running) return;  // idle: begin() reads it; otherwise over
    // The Asio signal first: an inner layer that sees both (this signal, then
    // the token) forwards the caller's cancellation type, not its own.
    cancel_attempt(this->cancel_requested());
    (void)source_->request(cancel_reason::cancelled);
  }

  void begin() {
    if (this->cancel_requested() != boost::asio::cancellation_type::none) {
      return deliver(make_failure<R>(make_error_code(errc::cancelled)));
    }
    timer_clock_t<Timer> clock{};
    const timeout_start s =
        decide_timeout_start(options_.timeout, parent_, clock_ref::of(clock), clock.now());
    if (!s.run) return deliver(make_failure<R>(make_error_code(s.code)));
    source_.emplace(parent_.token);
    child_ = call_context{source_->token(), s.deadline, parent_.attempt};
    phase_ = phase::running;
    if (parent_.token.stop_possible()) parent_link_.emplace(parent_.token, on_parent{this->weak_from_this()});
    if (s.budget != duration::max()) arm(s.budget);
    try {
      launch_attempt<R>(ex_, make_with_context(make_, static_cast<const call_context&>(child_)), signal_.slot(),
                        this->strand_, attempt_done{this->shared_from_this()});
    } catch (...) {  // make_attempt threw: a fatal failure, as an exception escaping an awaitable attempt
      if (phase_ == phase::running) deliver(make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
    }
  }

  void arm(duration d) {
    ++generation_;
    timer_.expires_after(to_timer_duration<Timer>(d));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, [self = this->shared_from_this(), g = generation_](const boost::system::error_code& ec) {
          if (!ec && g == self->generation_) self->on_timer();
        }));
  }

  void on_timer() {
    if (phase_ != phase::running) return;
    if (!timer_fired_) {  // the deadline
      timer_fired_ = true;
      (void)source_->request(cancel_reason::deadline);  // the first reason wins (a caller's cancel stays one)
      cancel_attempt(options_.cancel_type);
      if (options_.abandon_after != duration::max()) arm(options_.abandon_after);
      return;
    }
    // abandon_after passed: stop waiting for an attempt that ignores cancellation.
    phase_ = phase::abandoned;
    finish_links();
    this->complete(make_failure<R>(make_error_code(errc::deadline_exceeded)));
  }

  void cancel_attempt(boost::asio::cancellation_type_t type) {
    if (phase_ != phase::running || type == boost::asio::cancellation_type::none) return;
    signal_.emit(type);
  }

  void on_attempt(R r) {
    if (phase_ != phase::running) return;  // abandoned: absorbed
    const timeout_end e = decide_timeout_end(options_.on_late, source_->reason(), succeeded(r));
    if (e.replace) return deliver(make_failure<R>(make_error_code(e.code)));  // a late value destroyed here
    deliver(std::move(r));
  }

  void finish_links() {
    ++generation_;
    timer_.cancel();
    parent_link_.reset();
    if (source_) source_->unlink();
  }

  void deliver(R r) {
    phase_ = phase::done;
    finish_links();
    this->complete(std::move(r));
  }

  async_timeout_options options_;
  call_context parent_;
  MakeAttempt make_;
  boost::asio::any_io_executor ex_;
  Timer timer_;
  boost::asio::cancellation_signal signal_;
  std::optional<linked_cancel_source> source_;  // the attempt's token (pinned: the op never moves)
  call_context child_{};
  std::optional<cancel_callback<on_parent>> parent_link_;
  std::uint64_t generation_ = 0;
  phase phase_ = phase::idle;
  bool timer_fired_ = false;
};

template <class R, class Timer>
struct initiate_timeout {
  template <class Handler, class MakeAttempt>
  void operator()(Handler&& handler, const async_timeout_options& options, const call_context& ctx,
                  MakeAttempt&& make) const {
    if (!options.validation_message().empty()) {
      return post_completion(std::forward<Handler>(handler), make_failure<R>(make_error_code(errc::invalid_options)));
    }
    using op_type = timeout_op<R, Timer, std::decay_t<MakeAttempt>, std::decay_t<Handler>>;
    boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
    auto op = std::make_shared<op_type>(options, ctx, std::forward<MakeAttempt>(make),
                                        std::forward<Handler>(handler), ex);
    op->start();
  }
};

}  // namespace detail

// The result type of async_timeout for a make_attempt.
template <class MakeAttempt>
using timeout_result_t = detail::attempt_result_t<typename detail::attempt_of<std::decay_t<MakeAttempt>>::type>;

// async_timeout<Timer>(options, ctx, make_attempt, token) -> void(R)
//
// See the banner. Invalid options: make_failure<R>(errc::invalid_options),
// nothing launched (the message: options.validation_message()).
template <class Timer = boost::asio::steady_timer, class MakeAttempt, class CompletionToken>
auto async_timeout(const async_timeout_options& options, const call_context& ctx, MakeAttempt&& make_attempt,
                   CompletionToken&& token) {
  using R = timeout_result_t<MakeAttempt>;
  static_assert(result_like<R>, "An attempt must complete with a result type sturdy supports (or error_code, T).");
  // Options and context by value: a deferred operation may be launched after they are gone.
  return boost::asio::async_initiate<CompletionToken, void(R)>(detail::initiate_timeout<R, Timer>{}, token, options, ctx,
                                                               std::forward<MakeAttempt>(make_attempt));
}

// async_timeout<Timer>(options, make_attempt, token): no enclosing context.
template <class Timer = boost::asio::steady_timer, class MakeAttempt, class CompletionToken>
  requires(!std::same_as<std::decay_t<MakeAttempt>, call_context>)
auto async_timeout(const async_timeout_options& options, MakeAttempt&& make_attempt, CompletionToken&& token) {
  return async_timeout<Timer>(options, call_context{}, std::forward<MakeAttempt>(make_attempt),
                              std::forward<CompletionToken>(token));
}

// timeout_layer<Timer>: async_timeout as a layer of sturdy::asio::compose
// (see sturdy/asio/compose.hpp for the layer shape).
template <class Timer = boost::asio::steady_timer>
struct timeout_layer {
  async_timeout_options options{};

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return async_timeout<Timer>(options, ctx, std::forward<MakeInner>(make_inner),
                                std::forward<CompletionToken>(token));
  }
};

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_TIMEOUT_HPP_
