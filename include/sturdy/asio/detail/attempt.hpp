// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// Internals shared by the Asio drivers that launch a caller's attempt
// (hedge, timeout, retry, compose): what R an attempt gives, and launching
// one so that its completion arrives as R.
//
// An attempt is an Asio asynchronous operation that has not started: a
// deferred operation (or any initiation taking a completion token) or a
// boost::asio::awaitable<R>. Completion signatures and the R they give:
//   void(R)                      R (any result type sturdy supports)
//   void(error_code, T)          sturdy::result<T>
//   void(error_code)             sturdy::result<void>
//   awaitable<R>                 R; an exception escaping it is a fatal
//                                failure (std::errc::state_not_recoverable)

#ifndef STURDY_ASIO_DETAIL_ATTEMPT_HPP_
#define STURDY_ASIO_DETAIL_ATTEMPT_HPP_

#include <concepts>
#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/system/error_code.hpp>

#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy::asio::detail {

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<boost::asio::awaitable<T, E>> : std::true_type {
  using value_type = T;
};

// R from an attempt's completion signature.
template <class Sig>
struct hedge_result_of {
  static_assert(sturdy::detail::always_false_v<Sig>,
                "An attempt's completion signature must be void(R), void(error_code, T) or void(error_code).");
};
template <class R>
struct hedge_result_of<void(R)> {
  using type = std::decay_t<R>;
};
template <>
struct hedge_result_of<void(boost::system::error_code)> {
  using type = result<void>;
};
template <>
struct hedge_result_of<void(std::error_code)> {
  using type = result<void>;
};
template <class T>
struct hedge_result_of<void(boost::system::error_code, T)> {
  using type = result<std::decay_t<T>>;
};
template <class T>
struct hedge_result_of<void(std::error_code, T)> {
  using type = result<std::decay_t<T>>;
};

// R of an attempt operation `Op` (deferred operation or awaitable).
template <class Op, bool = is_awaitable<Op>::value>
struct attempt_result {
  using type = typename hedge_result_of<boost::asio::completion_signature_of_t<Op>>::type;
};
template <class Op>
struct attempt_result<Op, true> {
  using type = typename is_awaitable<Op>::value_type;
};
template <class Op>
using attempt_result_t = typename attempt_result<std::decay_t<Op>>::type;

// The completion arguments of an attempt, as R.
template <class R>
R to_result(R&& r) {
  return std::move(r);
}
template <class R, class EC>
  requires(std::is_same_v<EC, boost::system::error_code> || std::is_same_v<EC, std::error_code>)
R to_result(const EC& ec) {
  if (ec) return make_failure<R>(std::error_code(ec));
  return R(BOOST_OUTCOME_V2_NAMESPACE::success());
}
template <class R, class EC, class T>
  requires(std::is_same_v<std::decay_t<EC>, boost::system::error_code> ||
           std::is_same_v<std::decay_t<EC>, std::error_code>)
R to_result(const EC& ec, T&& v) {
  if (ec) return make_failure<R>(std::error_code(ec));
  return R(std::in_place_type<typename R::value_type>, std::forward<T>(v));
}
// An awaitable attempt, spawned with co_spawn (see launch_attempt).
template <class R>
R to_result(std::exception_ptr e, std::optional<R> r) {
  if (e || !r) return make_failure<R>(std::make_error_code(std::errc::state_not_recoverable));
  return std::move(*r);
}

// co_spawn needs a default-constructible result: carry R in an optional.
template <class R, class E>
boost::asio::awaitable<std::optional<R>, E> as_optional(boost::asio::awaitable<R, E> a) {
  co_return std::optional<R>(co_await std::move(a));
}

// Calls fn(R) with an attempt's completion arguments normalised.
template <class R, class Fn>
struct to_result_handler {
  Fn fn;
  template <class... Args>
  void operator()(Args&&... args) {
    fn(to_result<R>(std::forward<Args>(args)...));
  }
};

// make_attempt(ctx) or make_attempt(): the attempt operation, from a maker
// that takes the call context or nothing.
template <class F>
decltype(auto) make_with_context(F& f, const call_context& ctx) {
  if constexpr (std::invocable<F&, const call_context&>) {
    return f(ctx);
  } else {
    return f();
  }
}
template <class F>
struct attempt_of {
  using type = std::decay_t<decltype(make_with_context(std::declval<F&>(), std::declval<const call_context&>()))>;
};

// Calls h(Tag{}, args...): tells a composed operation's steps apart
// (forwards every associator of h, as to_result_handler does).
template <class Tag, class H>
struct tagged_handler {
  H fn;
  template <class... Args>
  void operator()(Args&&... args) {
    std::move(fn)(Tag{}, std::forward<Args>(args)...);
  }
};
template <class Tag, class H>
tagged_handler<Tag, std::decay_t<H>> tagged(H&& h) {
  return {std::forward<H>(h)};
}

// start_attempt<R>(ex, op, handler)
//
// Starts the attempt `op` (an awaitable is co_spawned on `ex`); its
// completion runs `handler(R)`, through the handler's associated executor,
// with the handler's cancellation slot (to_result_handler forwards every
// associator).
template <class R, class Op, class Handler>
void start_attempt(const boost::asio::any_io_executor& ex, Op&& op, Handler&& handler) {
  to_result_handler<R, std::decay_t<Handler>> h{std::forward<Handler>(handler)};
  if constexpr (is_awaitable<std::decay_t<Op>>::value) {
    boost::asio::co_spawn(ex, as_optional(std::forward<Op>(op)), std::move(h));
  } else {
    std::forward<Op>(op)(std::move(h));
  }
}

// launch_attempt<R>(ex, op, slot, handler_ex, fn)
//
// Starts the attempt `op` (an awaitable is co_spawned on `ex`) with the
// cancellation slot `slot`; its completion runs `fn(R)` through
// `handler_ex` (a strand, usually).
template <class R, class Op, class HandlerExecutor, class Fn>
void launch_attempt(const boost::asio::any_io_executor& ex, Op&& op, boost::asio::cancellation_slot slot,
                    const HandlerExecutor& handler_ex, Fn fn) {
  auto token = boost::asio::bind_cancellation_slot(
      slot, boost::asio::bind_executor(handler_ex, to_result_handler<R, Fn>{std::move(fn)}));
  if constexpr (is_awaitable<std::decay_t<Op>>::value) {
    boost::asio::co_spawn(ex, as_optional(std::forward<Op>(op)), std::move(token));
  } else {
    std::forward<Op>(op)(std::move(token));
  }
}

}  // namespace sturdy::asio::detail

// to_result_handler and tagged_handler have the executor, allocator and
// cancellation slot of the handler they wrap (as Asio's own append/prepend
// handlers do).
template <template <typename, typename> class Associator, class R, class Fn, class DefaultCandidate>
struct boost::asio::associator<Associator, sturdy::asio::detail::to_result_handler<R, Fn>, DefaultCandidate>
    : Associator<Fn, DefaultCandidate> {
  static typename Associator<Fn, DefaultCandidate>::type get(
      const sturdy::asio::detail::to_result_handler<R, Fn>& h) noexcept {
    return Associator<Fn, DefaultCandidate>::get(h.fn);
  }
  static auto get(const sturdy::asio::detail::to_result_handler<R, Fn>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Fn, DefaultCandidate>::get(h.fn, c)) {
    return Associator<Fn, DefaultCandidate>::get(h.fn, c);
  }
};

template <template <typename, typename> class Associator, class Tag, class Fn, class DefaultCandidate>
struct boost::asio::associator<Associator, sturdy::asio::detail::tagged_handler<Tag, Fn>, DefaultCandidate>
    : Associator<Fn, DefaultCandidate> {
  static typename Associator<Fn, DefaultCandidate>::type get(
      const sturdy::asio::detail::tagged_handler<Tag, Fn>& h) noexcept {
    return Associator<Fn, DefaultCandidate>::get(h.fn);
  }
  static auto get(const sturdy::asio::detail::tagged_handler<Tag, Fn>& h, const DefaultCandidate& c) noexcept
      -> decltype(Associator<Fn, DefaultCandidate>::get(h.fn, c)) {
    return Associator<Fn, DefaultCandidate>::get(h.fn, c);
  }
};

#endif  // STURDY_ASIO_DETAIL_ATTEMPT_HPP_
