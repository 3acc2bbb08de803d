// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/timeout.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::timeout_policy` bounds how long a call may take, honestly: C++
// cannot abort a running function, so the policy gives the callee a deadline
// and a cancellation token that a shared timer fires when the time is up,
// and decides what to do with a result that arrives after that.
//
//   before the call: options invalid? ----------------> errc::invalid_options
//                    caller's token fired? ------------> its errc (cancelled / deadline_exceeded) [timeout_rejected]
//                    deadline = min(ctx deadline, now + timeout)
//                    deadline already passed? ---------> errc::deadline_exceeded [timeout_rejected]
//   arm the timer at the deadline; call fn(ctx) or fn(); disarm
//   returned before the token fired ---------------> the result, unchanged
//   token fired by the caller (cancel) ------------> success: unchanged; failure: errc::cancelled
//   token fired by the deadline -------------------> [timeout_expired], then
//        failure ----------------------------------> errc::deadline_exceeded
//        success, late_result::pass_through -------> the success (the default)
//        success, late_result::discard ------------> errc::deadline_exceeded (the value destroyed)
//   fn throws --------------------------------------> the exception ([timeout_expired] first if late)
//
// "Late" means the timer fired before the call returned: the disarm decides
// the race, so one deadline is judged once, on the timer service's clock.
// `errc::deadline_exceeded` ("we gave up") and `errc::cancelled` ("you asked
// us to stop") stay distinct. The callable sees the deadline and the token
// when it takes `const sturdy::call_context&` (see sturdy/context.hpp).
//
// Per attempt or overall is a matter of position: inside a retry it bounds
// each attempt; outside, the whole call; both may be used at once, and an
// inner timeout can only shorten the deadline it receives.
//
// Example:
//
//   sturdy::timeout_policy<> limit({.timeout = std::chrono::milliseconds(200)});
//   sturdy::result<Reply> r = limit.execute([&](const sturdy::call_context& ctx) {
//     return client.Call(req, ctx.remaining());      // honour the budget
//   });
//   if (!r && r.error() == sturdy::errc::deadline_exceeded) { /* gave up */ }
//
// Cost: one clock read, one arm and one disarm of the timer (each an
// uncontended spin lock on the calling thread's shard), no allocation,
// whether or not the timeout fires. Composes with `sturdy::compose` like
// any layer; the policy is a copyable value that refers to its timer
// service (which must outlive it).
//
// Decision core and driver: `decide_start` and `decide_end` hold every
// decision and read no clock; `execute` is the blocking driver (arms,
// calls, disarms).
//
// Thread safety: `execute` is const and may run from many threads at once
// when the Listener is safe to share (the default is).
//
// Testing: build the policy on `sturdy::testing::manual_timer::service()`
// and `advance()` the manual timer inside the callee.

#ifndef STURDY_TIMEOUT_HPP_
#define STURDY_TIMEOUT_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <stop_token>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/timer_wheel.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/timer.hpp"

namespace sturdy {

// late_result: what a timeout does with a success that arrives after its
// deadline. See docs/timeout.md for why pass_through is the default.
enum class late_result : std::uint8_t {
  pass_through,  // return the late success (Polly, folly timeoutNoDiscard)
  discard,       // destroy it and return errc::deadline_exceeded (Failsafe, folly timeout)
};

// timeout_options
//
// Aggregate; fill with designated initializers.
struct timeout_options {
  // The longest a call may take. Default 30 s. Must be >= 0; 0 never starts
  // the call (errc::deadline_exceeded); duration::max() means no timeout of
  // its own (an enclosing deadline still applies).
  duration timeout = std::chrono::seconds(30);
  // What to do with a success that arrives after the deadline. Default
  // late_result::pass_through.
  late_result on_late = late_result::pass_through;

  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (timeout < duration::zero()) return "timeout_options.timeout must be >= 0";
    if (on_late != late_result::pass_through && on_late != late_result::discard) {
      return "timeout_options.on_late must be late_result::pass_through or late_result::discard";
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept { return detail::validation_result(validation_message()); }
};

// Events (delivered to the policy's Listener, on the calling thread).

// The deadline passed before the callee returned (emitted after it returned
// or threw, whatever was done with the result).
struct timeout_expired {
  duration timeout;        // the policy's own limit
  duration budget;         // the time the call was given (<= timeout under an earlier deadline)
  std::uint32_t attempt;   // from the context
  bool late_success;       // the callee returned a success, late
  late_result action;      // what was done with a late success
  failure_info failure;    // the late failure (empty for a success)
};
// The call was not started: the caller's token had fired, or no time was
// left. `code` is what was returned.
struct timeout_rejected {
  errc code;
  std::uint32_t attempt;
};

// What `decide_start` says.
struct timeout_start {
  bool run;                  // false: return `code` without calling
  errc code;                 // when !run
  sturdy::deadline deadline; // when run: the deadline to arm and hand down
  duration budget;           // when run: deadline - now
};
// What `decide_end` says.
struct timeout_end {
  bool replace;  // return `code` instead of the callee's result
  errc code;
  bool late;     // emit timeout_expired
};

// decide_timeout_start() / decide_timeout_end()
//
// The decision core of every timeout driver (the blocking policy below and
// sturdy::asio::async_timeout): no clock read, no I/O. `now` is a reading
// of `clock`; `stopped`: the caller's std::stop_token was requested;
// `fired` is how the callee's token ended up. Options are validated by the
// caller.
[[nodiscard]] inline timeout_start decide_timeout_start(duration timeout, const call_context& ctx, clock_ref clock,
                                                        time_point now, bool stopped = false) noexcept {
  const cancel_reason r = stopped ? cancel_reason::cancelled : ctx.token.reason();
  if (STURDY_UNLIKELY(r != cancel_reason::none)) return {false, to_errc(r), {}, {}};
  const sturdy::deadline own = sturdy::deadline::after(timeout, clock, now);
  const sturdy::deadline d = own.earliest(ctx.deadline, now);
  if (STURDY_UNLIKELY(d.expired_at(now))) return {false, errc::deadline_exceeded, {}, {}};
  return {true, errc{}, d, d.remaining_at(now)};
}
[[nodiscard]] constexpr timeout_end decide_timeout_end(late_result on_late, cancel_reason fired,
                                                       bool succeeded) noexcept {
  switch (fired) {
    case cancel_reason::none:
      return {false, errc{}, false};
    case cancel_reason::cancelled:
      return {!succeeded, errc::cancelled, false};
    case cancel_reason::deadline:
      break;
  }
  const bool keep = succeeded && on_late == late_result::pass_through;
  return {!keep, errc::deadline_exceeded, true};
}

namespace detail {
// A flag that copies as unset: each copy of a policy reports once.
struct report_once {
  report_once() = default;
  report_once(const report_once&) noexcept {}
  report_once& operator=(const report_once&) noexcept { return *this; }
  bool first() const noexcept { return !done.exchange(true, std::memory_order_relaxed); }
  mutable std::atomic<bool> done{false};
};
}  // namespace detail

// timeout_policy<Listener>
//
// A copyable value: options, a reference to a timer service, a listener.
template <class Listener = null_listener>
class timeout_policy {
 public:
  explicit timeout_policy(timeout_options options = {}, timer_service& timers = timer_service::shared(),
                          Listener listener = Listener())
      : options_(options),
        timers_(&timers),
        listener_(std::move(listener)),
        valid_(options_.validation_message().empty() && timers.valid()) {}

  // timeout_policy::execute()
  //
  // Calls `fn(ctx)` (or `fn()`) under the timeout; see the banner. The
  // overloads take the caller's context (its token and deadline apply) or a
  // `std::stop_token` (today's `pipeline::execute(fn, token)`; linked, not
  // copied: no allocation).
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn) const {
    return run(fn, call_context{}, std::stop_token{});
  }
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) const {
    return run(fn, ctx, std::stop_token{});
  }
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, std::stop_token stop) const {
    return run(fn, call_context{}, stop);
  }

  // timeout_policy::decide_start() / decide_end()
  //
  // The decision core. `now` is a reading of `clock()`; `stopped`: the
  // caller's std::stop_token was requested; `fired` is how the call's token
  // ended up.
  [[nodiscard]] timeout_start decide_start(const call_context& ctx, time_point now,
                                           bool stopped = false) const noexcept {
    if (STURDY_UNLIKELY(!valid_)) return {false, errc::invalid_options, {}, {}};
    return decide_timeout_start(options_.timeout, ctx, timers_->clock(), now, stopped);
  }
  [[nodiscard]] timeout_end decide_end(cancel_reason fired, bool succeeded) const noexcept {
    return decide_timeout_end(options_.on_late, fired, succeeded);
  }

  [[nodiscard]] const timeout_options& options() const noexcept { return options_; }
  [[nodiscard]] bool valid() const noexcept { return valid_; }
  [[nodiscard]] timer_service& timers() const noexcept { return *timers_; }
  [[nodiscard]] clock_ref clock() const noexcept { return timers_->clock(); }

 private:
  // The per-call state: the token the callee sees (linked to the caller's)
  // and its timer. Lives on the driver's stack; finish() (and the
  // destructor) disarms and unlinks, waiting for a callback running on
  // another thread, so nothing refers to it once execute returns.
  class frame {
   public:
    frame(timer_service& timers, cancel_token parent, const std::stop_token& stop)
        : timers_(timers), source_(parent, stop) {}
    frame(const frame&) = delete;
    frame& operator=(const frame&) = delete;
    ~frame() { finish(); }

    void arm(time_point at) noexcept { armed_ = timers_.arm(entry_, at); }
    void finish() noexcept {
      if (armed_) {
        timers_.disarm(entry_);
        armed_ = false;
      }
      source_.unlink();
    }
    [[nodiscard]] cancel_token token() noexcept { return source_.token(); }
    [[nodiscard]] cancel_reason reason() const noexcept { return source_.reason(); }

   private:
    timer_service& timers_;
    linked_cancel_source source_;
    detail::timer_entry entry_{&linked_cancel_source::fire_deadline, &source_};
    bool armed_ = false;
  };

  template <class F>
  [[nodiscard]] context_execute_result_t<F> run(F& fn, const call_context& ctx, const std::stop_token& stop) const {
    using R = context_execute_result_t<F>;
    const time_point now = timers_->now();
    const timeout_start s = decide_start(ctx, now, stop.stop_requested());
    if (STURDY_UNLIKELY(!s.run)) {
      if (s.code == errc::invalid_options) {
        if (rejected_.first()) {
          emit(listener_, options_rejected{"timeout_policy", options_.validation_message().empty()
                                                                 ? std::string_view("timer_service options are invalid")
                                                                 : options_.validation_message()});
        }
      } else {
        emit(listener_, timeout_rejected{s.code, ctx.attempt});
      }
      return make_failure<R>(s.code);
    }
    frame f(*timers_, ctx.token, stop);
    f.arm(s.deadline.at());
    const call_context child{f.token(), s.deadline, ctx.attempt};
    try {
      R r = invoke_with_context(fn, child);
      f.finish();
      const bool ok = succeeded(r);
      const timeout_end e = decide_end(f.reason(), ok);
      if (STURDY_UNLIKELY(e.late)) {
        emit(listener_, timeout_expired{options_.timeout, s.budget, ctx.attempt, ok, options_.on_late,
                                        ok ? failure_info{} : failure_of(r)});
      }
      if constexpr (std::is_move_assignable_v<R>) {
        if (STURDY_UNLIKELY(e.replace)) r = make_failure<R>(e.code);  // the late value is destroyed here
        return r;
      } else {
        if (STURDY_UNLIKELY(e.replace)) return make_failure<R>(e.code);  // ... or here, on return
        return r;
      }
    } catch (...) {
      f.finish();
      if (f.reason() == cancel_reason::deadline) {
        emit(listener_, timeout_expired{options_.timeout, s.budget, ctx.attempt, false, options_.on_late,
                                        failure_info{.code = {}, .exception = std::current_exception()}});
      }
      throw;
    }
  }

  timeout_options options_;
  timer_service* timers_;
  STURDY_NO_UNIQUE_ADDRESS mutable Listener listener_;
  bool valid_;
  detail::report_once rejected_;
};

}  // namespace sturdy

#endif  // STURDY_TIMEOUT_HPP_
