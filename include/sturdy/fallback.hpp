// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/fallback.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::fallback_policy` answers for a failed call: when the inner call
// fails with a failure its predicate selects, it returns a value, or the
// result of a function (which may take the failure), instead.
//
//   fn(ctx) / fn() succeeds --------------------------> that result
//   fails (error or exception) with cancellation -----> that failure, always
//       (errc::cancelled, anything equal to std::errc::operation_canceled,
//        a std::system_error carrying it, or the caller's token fired)
//   fails, handle_if(failure) false ------------------> that failure (rethrown if thrown)
//   fails, handle_if(failure) true -------------------> [fallback_applied], then
//       the value (copied each time) / action(failure) or action()
//
// A fallback never hides cancellation: the caller who asked to stop learns
// that it stopped, whatever the predicate says. `errc::deadline_exceeded`
// and `errc::circuit_open` are ordinary failures here, the usual reasons to
// fall back.
//
// Example:
//
//   auto cached = sturdy::fallback_to(Price{0}, {.handle_if = [](const sturdy::failure_info& f) {
//     return f.code == sturdy::errc::circuit_open || f.code == sturdy::errc::deadline_exceeded;
//   }});
//   sturdy::result<Price> p = cached.execute([&] { return pricing.Get(sku); });
//
//   auto stale = sturdy::fallback_with([&](const sturdy::failure_info& f) {
//     log(f.code.message());
//     return cache.Get(sku);                       // a result<Price> of its own
//   });
//
// Put it outermost (`compose(fallback, retry, timeout, breaker)`): inside a
// retry it would turn every failed attempt into a success.
//
// Cost: nothing on the success path beyond the call; the predicate and the
// action run only on failure. A stored value is copied into each fallback
// result. Values are owned: a non-owning type is refused at compile time.
//
// Thread safety: `execute` is const; the policy may run from many threads
// at once when its action, predicate and listener may be called
// concurrently (sturdy only calls them through const references).

#ifndef STURDY_FALLBACK_HPP_
#define STURDY_FALLBACK_HPP_

#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sturdy/callback.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/ownership.hpp"

namespace sturdy {

// fallback_options
//
// Aggregate; fill with designated initializers.
struct fallback_options {
  // Which failures fall back. Default (empty): every failure. Cancellation
  // never falls back, whatever this says (see the banner).
  callback<bool(const failure_info&)> handle_if{};
};

// The inner call failed and the fallback answered instead (emitted before
// the action runs).
struct fallback_applied {
  failure_info failure;
  std::uint32_t attempt;  // from the context
};

// sturdy::is_cancellation(f)
//
// Whether a failure means "the caller asked to stop": an error code equal to
// std::errc::operation_canceled (errc::cancelled is), or a thrown
// std::system_error carrying one (costs a rethrow; failure paths only).
[[nodiscard]] inline bool is_cancellation(const failure_info& f) noexcept {
  if (f.code == std::errc::operation_canceled) return true;
  bool cancelled = false;
  if (f.exception) {
    f.visit_exception<std::system_error>(
        [&](const std::system_error& e) noexcept { cancelled = e.code() == std::errc::operation_canceled; });
  }
  return cancelled;
}

namespace detail {
// The action of `fallback_to(value)`: a copy of the value each time.
template <class T>
struct fallback_value {
  T value;
  const T& operator()() const noexcept { return value; }
};
}  // namespace detail

// fallback_policy<Action, Listener>
//
// A copyable value. `Action` is called as `action(failure)` when it takes a
// `const failure_info&`, else as `action()`, and returns the callee's
// result type or anything it can be built from (a `T` for `result<T>`).
template <class Action, class Listener = null_listener>
class fallback_policy {
  static_assert(std::is_invocable_v<const Action&, const failure_info&> || std::is_invocable_v<const Action&>,
                "sturdy::fallback_policy needs an action callable with a `const sturdy::failure_info&` or with "
                "no arguments.");

 public:
  explicit fallback_policy(Action action, fallback_options options = {}, Listener listener = Listener())
      : action_(std::move(action)), options_(std::move(options)), listener_(std::move(listener)) {}

  // fallback_policy::execute()
  //
  // See the banner. The context overload hands `ctx` to `fn` (when it takes
  // one) and never falls back once the caller's token fired with
  // `cancel_reason::cancelled`; the `std::stop_token` overload likewise.
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn) const {
    return run(fn, call_context{});
  }
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, const call_context& ctx) const {
    return run(fn, ctx);
  }
  template <class F>
  [[nodiscard]] context_execute_result_t<F> execute(F&& fn, std::stop_token stop) const {
    linked_cancel_source source(cancel_token{}, stop);  // the callee sees it as ctx.token
    return run(fn, call_context{.token = source.token()});
  }

  // fallback_policy::should_fall_back()
  //
  // The decision core: whether `failure` falls back, given whether the
  // caller cancelled.
  [[nodiscard]] bool should_fall_back(const failure_info& failure, bool caller_cancelled) const {
    if (caller_cancelled || is_cancellation(failure)) return false;
    return !options_.handle_if || options_.handle_if(failure);
  }

  [[nodiscard]] const fallback_options& options() const noexcept { return options_; }
  [[nodiscard]] const Action& action() const noexcept { return action_; }

 private:
  template <class R>
  [[nodiscard]] R answer(const failure_info& failure) const {
    auto call = [&]() -> decltype(auto) {
      if constexpr (std::is_invocable_v<const Action&, const failure_info&>) {
        return std::invoke(action_, failure);
      } else {
        return std::invoke(action_);
      }
    };
    using A = std::remove_cvref_t<decltype(call())>;
    if constexpr (std::is_same_v<A, R>) {
      return call();
    } else if constexpr (std::is_constructible_v<R, decltype(call())>) {
      return R(call());
    } else {
      static_assert(std::is_constructible_v<R, decltype(call())>,
                    "sturdy::fallback_policy's action must return the callee's result type, or a value that "
                    "type can be built from.");
      return make_failure<R>(errc::invalid_options);
    }
  }

  template <class F>
  [[nodiscard]] context_execute_result_t<F> run(F& fn, const call_context& ctx) const {
    using R = context_execute_result_t<F>;
    const auto caller_cancelled = [&]() noexcept { return ctx.token.reason() == cancel_reason::cancelled; };
    failure_info failure;
    try {
      R r = invoke_with_context(fn, ctx);
      if (STURDY_LIKELY(succeeded(r))) return r;
      failure = failure_of(r);
      if (!should_fall_back(failure, caller_cancelled())) return r;
    } catch (...) {
      failure = failure_info{.code = {}, .exception = std::current_exception()};
      if (!should_fall_back(failure, caller_cancelled())) throw;
    }
    emit(listener_, fallback_applied{failure, ctx.attempt});
    return answer<R>(failure);
  }

  Action action_;
  fallback_options options_;
  STURDY_NO_UNIQUE_ADDRESS mutable Listener listener_;
};

// sturdy::fallback_to(value[, options[, listener]])
//
// Falls back to a copy of `value`. The value is owned: non-owning types
// (pointers, string_view, span, ...) are refused at compile time.
template <class T, class Listener = null_listener>
[[nodiscard]] fallback_policy<detail::fallback_value<std::decay_t<T>>, Listener> fallback_to(
    T&& value, fallback_options options = {}, Listener listener = Listener()) {
  static_assert(!non_owning<std::decay_t<T>>,
                "sturdy::fallback_to stores its value: pass an owning type (std::string, not std::string_view "
                "or a pointer).");
  return fallback_policy<detail::fallback_value<std::decay_t<T>>, Listener>(
      detail::fallback_value<std::decay_t<T>>{std::forward<T>(value)}, std::move(options), std::move(listener));
}

// sturdy::fallback_with(action[, options[, listener]])
//
// Falls back to `action(failure)` or `action()`.
template <class F, class Listener = null_listener>
[[nodiscard]] fallback_policy<std::decay_t<F>, Listener> fallback_with(F&& action, fallback_options options = {},
                                                                       Listener listener = Listener()) {
  return fallback_policy<std::decay_t<F>, Listener>(std::forward<F>(action), std::move(options),
                                                    std::move(listener));
}

}  // namespace sturdy

#endif  // STURDY_FALLBACK_HPP_
