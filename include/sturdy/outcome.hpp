// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/outcome.hpp
// -----------------------------------------------------------------------------
//
// The outcome adapters: one trait, `sturdy::outcome_traits<R>`, that tells
// every primitive's `execute(fn)` whether the value `fn()` returned is a
// success or a failure, and with what error, without copying the value.
//
// Supported out of the box (`R` is what `fn()` returns):
//   - `sturdy::result<T>` and every Boost.Outcome `basic_result<T, E, P>`
//     (`std_result`, `boost_result`, your own `result<T, MyError>`);
//   - every Boost.Outcome `basic_outcome<T, EC, EP, P>` (may hold an
//     exception);
//   - `std::expected<T, E>` when the standard library has it
//     (`STURDY_HAS_STD_EXPECTED`);
//   - `absl::Status` and `absl::StatusOr<T>` after including
//     `sturdy/adapters/absl_status.hpp` (opt in: it needs `absl::status`);
//   - anything else, including `void`: a plain value, where failure is an
//     exception. `execute` then returns `sturdy::result<T>` (or
//     `result<void>`), which carries sturdy's own errors such as
//     `errc::circuit_open`; exceptions thrown by `fn` propagate to the caller
//     after the primitive has recorded them.
//
// Error types: an error `E` is turned into a `std::error_code` when it is one,
// converts to one (e.g. `boost::system::error_code`), is an error-code enum,
// or when ADL finds `sturdy_to_error_code(const E&)`. A primitive that must
// return its own error (a breaker rejecting, a retry giving up) inside `R`
// builds `E` from a `std::error_code` when `E` is constructible from one, or
// through ADL's `sturdy_from_error_code(std::error_code, std::type_identity<E>)`.
//
// Adding your own type: specialize `sturdy::outcome_traits<MyResult>` with
//
//   template <> struct sturdy::outcome_traits<MyResult> {
//     static constexpr bool is_result_like = true;
//     using value_type = Payload;                       // what a success holds
//     static bool has_value(const MyResult& r) noexcept { return r.ok(); }
//     static sturdy::failure_info failure(const MyResult& r) {
//       return {.code = r.code(), .exception = {}};
//     }
//     static MyResult from_error(std::error_code ec) { return MyResult(ec); }
//   };
//
// and every primitive accepts callables returning `MyResult`.
//
// What no synchronous `execute` accepts (refused at compile time, with a
// `static_assert` whose message is the first error line; asynchronous work
// belongs to the asynchronous layer, and a deferred result would be taken
// for a successful plain value: nothing retried, a breaker recording a
// success for work that has not happened yet):
//   - a callable returning a reference (the primitive would keep or hand
//     back a reference it cannot keep alive);
//   - a callable returning a deferred result, `sturdy::deferred_result<R>`:
//     `std::future`, `std::shared_future`, anything awaitable (a member or
//     free `operator co_await`, or members `await_ready` and
//     `await_resume`, e.g. `boost::asio::awaitable`), Boost.Asio deferred
//     operations (`boost::asio::deferred` and its compositions), and any
//     type you mark by specialising `sturdy::is_deferred_result<T>`.
// The check lives in `execute_result_t` (so in every primitive's `execute`
// and in `compose`); see docs/foundation.md.
//
// Thread safety: stateless.

#ifndef STURDY_OUTCOME_HPP_
#define STURDY_OUTCOME_HPP_

#include <concepts>
#include <exception>
#include <functional>
#include <future>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/outcome/basic_outcome.hpp>
#include <boost/outcome/basic_result.hpp>
#include <boost/version.hpp>

#include "sturdy/config.hpp"
#include "sturdy/error.hpp"

#if STURDY_HAS_STD_EXPECTED
#include <expected>
#endif

// Boost.Asio's deferred operation templates, declared (not defined) so that
// `sturdy::deferred_result` recognises them without including Asio: a type
// can only be one of these when the program included Asio itself. The
// declarations match Boost 1.80 and later.
#if BOOST_VERSION >= 108000
namespace boost::asio {
template <typename Signature, typename Initiation, typename... InitArgs>
class deferred_async_operation;
template <typename Head, typename Tail>
class deferred_sequence;
template <typename OnTrue, typename OnFalse>
class deferred_conditional;
template <typename... Values>
class deferred_values;
template <typename Function>
class deferred_function;
}  // namespace boost::asio
#endif

namespace sturdy {

// failure_info
//
// What a failed call looked like, as handed to predicates and events: an
// error code, an exception, or (for a `basic_outcome` holding both) both.
struct failure_info {
  std::error_code code;          // empty when the failure is only an exception
  std::exception_ptr exception;  // null unless an exception was thrown/stored

  [[nodiscard]] bool is_exception() const noexcept { return exception != nullptr; }

  // Whether the stored exception is an `Ex` (or derives from it):
  //   if (f.exception_is<std::logic_error>()) return false;  // a bug: do not retry
  // Costs a rethrow; meant for failure paths only.
  template <class Ex>
  [[nodiscard]] bool exception_is() const noexcept {
    return visit_exception<Ex>([](const Ex&) {});
  }

  // Calls `fn(const Ex&)` with the stored exception when it is an `Ex`;
  // returns whether it did. The reference is valid only inside `fn` (some
  // ABIs rethrow a copy), so no pointer to it is ever handed out.
  template <class Ex, class Fn>
  bool visit_exception(Fn&& fn) const noexcept(std::is_nothrow_invocable_v<Fn, const Ex&>) {
    if (!exception) return false;
    try {
      std::rethrow_exception(exception);
    } catch (const Ex& e) {
      std::forward<Fn>(fn)(e);
      return true;
    } catch (...) {
      return false;
    }
  }

  friend bool operator==(const failure_info&, const failure_info&) = default;
};

namespace detail {
template <class>
inline constexpr bool always_false_v = false;
}  // namespace detail

// sturdy::to_error_code(e)
//
// Turns an error value into a `std::error_code` (see the banner).
template <class E>
[[nodiscard]] std::error_code to_error_code(const E& e) {
  if constexpr (std::is_same_v<E, std::error_code>) {
    return e;
  } else if constexpr (std::is_enum_v<E> && requires { { make_error_code(e) } -> std::same_as<std::error_code>; }) {
    return make_error_code(e);  // error-code enums, and std::errc
  } else if constexpr (std::is_convertible_v<const E&, std::error_code>) {
    return static_cast<std::error_code>(e);
  } else if constexpr (requires { { sturdy_to_error_code(e) } -> std::convertible_to<std::error_code>; }) {
    return sturdy_to_error_code(e);
  } else {
    static_assert(detail::always_false_v<E>,
                  "sturdy cannot turn this error type into a std::error_code: make it convertible "
                  "to std::error_code or provide sturdy_to_error_code(const E&) found by ADL.");
    return {};
  }
}

// sturdy::can_make_error<E>: whether `from_error_code<E>` compiles.
template <class E>
inline constexpr bool can_make_error =
    std::is_same_v<E, std::error_code> || std::is_constructible_v<E, std::error_code> ||
    requires(std::error_code ec) { { sturdy_from_error_code(ec, std::type_identity<E>{}) } -> std::convertible_to<E>; };

// sturdy::from_error_code<E>(ec)
//
// Builds an error value of type `E` that carries `ec` (see the banner).
template <class E>
[[nodiscard]] E from_error_code(std::error_code ec) {
  if constexpr (std::is_same_v<E, std::error_code>) {
    return ec;
  } else if constexpr (std::is_constructible_v<E, std::error_code>) {
    return E(ec);
  } else if constexpr (can_make_error<E>) {
    return sturdy_from_error_code(ec, std::type_identity<E>{});
  } else {
    static_assert(detail::always_false_v<E>,
                  "sturdy must report its own errors (circuit_open, retries_exhausted, ...) inside "
                  "your result type, but its error type cannot be built from a std::error_code: make "
                  "it constructible from one or provide sturdy_from_error_code(ec, "
                  "std::type_identity<E>) found by ADL.");
  }
}

// sturdy::from_error_code<E>(ec, message)
//
// Like `from_error_code<E>(ec)`, for error types that can carry a message
// (e.g. `absl::Status`): when ADL finds
// `sturdy_from_error_code(ec, message, std::type_identity<E>)`, the message
// (a static sentence such as an options validation message naming the field)
// goes into the error; otherwise it is dropped and only `ec` is kept.
template <class E>
[[nodiscard]] E from_error_code(std::error_code ec, std::string_view message) {
  if constexpr (requires { { sturdy_from_error_code(ec, message, std::type_identity<E>{}) } -> std::convertible_to<E>; }) {
    return sturdy_from_error_code(ec, message, std::type_identity<E>{});
  } else {
    return from_error_code<E>(ec);
  }
}

// outcome_traits<R>
//
// The primary template describes a plain value: not result-like; `execute`
// wraps it in `sturdy::result<R>`.
template <class R>
struct outcome_traits {
  static constexpr bool is_result_like = false;
};

// Boost.Outcome basic_result<T, E, P> (includes sturdy::result<T>).
template <class T, class E, class P>
struct outcome_traits<BOOST_OUTCOME_V2_NAMESPACE::basic_result<T, E, P>> {
  using type = BOOST_OUTCOME_V2_NAMESPACE::basic_result<T, E, P>;
  static constexpr bool is_result_like = true;
  using value_type = T;
  using error_type = E;
  [[nodiscard]] static bool has_value(const type& r) noexcept { return r.has_value(); }
  [[nodiscard]] static failure_info failure(const type& r) {
    if (r.has_error()) return {.code = to_error_code(r.assume_error()), .exception = {}};
    return {};
  }
  [[nodiscard]] static type from_error(std::error_code ec) {
    return type(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<E>(ec)));
  }
};

// Boost.Outcome basic_outcome<T, EC, EP, P>: an error, an exception, or both.
template <class T, class EC, class EP, class P>
struct outcome_traits<BOOST_OUTCOME_V2_NAMESPACE::basic_outcome<T, EC, EP, P>> {
  using type = BOOST_OUTCOME_V2_NAMESPACE::basic_outcome<T, EC, EP, P>;
  static constexpr bool is_result_like = true;
  using value_type = T;
  using error_type = EC;
  [[nodiscard]] static bool has_value(const type& r) noexcept { return r.has_value(); }
  [[nodiscard]] static failure_info failure(const type& r) {
    failure_info f;
    if (r.has_error()) f.code = to_error_code(r.assume_error());
    if constexpr (std::is_convertible_v<const EP&, std::exception_ptr>) {
      if (r.has_exception()) f.exception = r.assume_exception();
    }
    return f;
  }
  [[nodiscard]] static type from_error(std::error_code ec) {
    return type(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<EC>(ec)));
  }
};

#if STURDY_HAS_STD_EXPECTED
template <class T, class E>
struct outcome_traits<std::expected<T, E>> {
  using type = std::expected<T, E>;
  static constexpr bool is_result_like = true;
  using value_type = T;
  using error_type = E;
  [[nodiscard]] static bool has_value(const type& r) noexcept { return r.has_value(); }
  [[nodiscard]] static failure_info failure(const type& r) {
    return {.code = to_error_code(r.error()), .exception = {}};
  }
  [[nodiscard]] static type from_error(std::error_code ec) {
    return type(std::unexpect, from_error_code<E>(ec));
  }
};
#endif

// sturdy::is_deferred_result<T>
//
// The customisation point: specialise to `std::true_type` for your own
// future or task type, so that every synchronous `execute` refuses it.
template <class T>
struct is_deferred_result : std::false_type {};

namespace detail {
template <class T>
struct builtin_deferred : std::false_type {};
template <class T>
struct builtin_deferred<std::future<T>> : std::true_type {};
template <class T>
struct builtin_deferred<std::shared_future<T>> : std::true_type {};
#if BOOST_VERSION >= 108000
template <class S, class I, class... A>
struct builtin_deferred<boost::asio::deferred_async_operation<S, I, A...>> : std::true_type {};
template <class H, class T>
struct builtin_deferred<boost::asio::deferred_sequence<H, T>> : std::true_type {};
template <class T, class F>
struct builtin_deferred<boost::asio::deferred_conditional<T, F>> : std::true_type {};
template <class... V>
struct builtin_deferred<boost::asio::deferred_values<V...>> : std::true_type {};
template <class F>
struct builtin_deferred<boost::asio::deferred_function<F>> : std::true_type {};
#endif

// Awaitable: a member or free `operator co_await`, or the awaiter members.
template <class T>
concept awaitable_like = requires(T& t) { t.operator co_await(); } ||
                         requires(T&& t) { operator co_await(static_cast<T&&>(t)); } ||
                         requires(T& t) {
                           t.await_ready();
                           t.await_resume();
                         };
}  // namespace detail

// sturdy::deferred_result<R>
//
// True when `R` stands for work that has not finished when it is returned
// (see the banner): no synchronous `execute` accepts a callable returning
// one.
template <class R>
concept deferred_result = detail::builtin_deferred<std::remove_cvref_t<R>>::value ||
                          is_deferred_result<std::remove_cvref_t<R>>::value ||
                          detail::awaitable_like<std::remove_cvref_t<R>>;

// result_like<R>: `R` has an `outcome_traits` specialization that says so.
template <class R>
concept result_like = outcome_traits<std::remove_cvref_t<R>>::is_result_like;

namespace detail {
// The two refusals, as `static_assert`s whose messages are the first error
// line (see the banner).
template <class R>
constexpr bool check_callable_result() {
  static_assert(!std::is_reference_v<R>,
                "sturdy cannot store a reference returned by the callable: return by value, or "
                "return a std::reference_wrapper or a pointer.");
  static_assert(!deferred_result<R>,
                "sturdy's synchronous execute cannot run a callable that returns a future, an "
                "awaitable or an Asio deferred operation: the work would not have happened yet; "
                "wait for it inside the callable, or use the asynchronous layer.");
  return true;
}
template <class R, bool = result_like<R>>
struct wrapped {
  static_assert(check_callable_result<R>());
  using type = R;
};
template <class R>
struct wrapped<R, false> {
  static_assert(check_callable_result<R>());
  using type = result<std::remove_reference_t<R>>;
};
template <>
struct wrapped<void, false> {
  using type = result<void>;
};
}  // namespace detail

// wrapped_t<R>: what a primitive's `execute` returns for a callable that
// returns `R`: `R` itself when it is result-like, otherwise `result<R>`.
template <class R>
using wrapped_t = typename detail::wrapped<R>::type;

// execute_result_t<F>: what `execute(fn)` returns for a callable `F`.
template <class F>
using execute_result_t = wrapped_t<std::invoke_result_t<F>>;

// outcome_callable<F>: a callable with no arguments. What it returns is
// checked when `execute_result_t<F>` is formed (references and deferred
// results are refused there with a sentence, see the banner), not by this
// concept: a concept failure would bury that sentence under overload
// resolution notes.
template <class F>
concept outcome_callable = std::invocable<F>;

// sturdy::invoke_wrapped(fn)
//
// Calls `fn()` and returns its outcome as `execute_result_t<F>`; a plain value
// is moved into the `result`, never copied. Exceptions propagate.
template <class F>
[[nodiscard]] execute_result_t<F> invoke_wrapped(F&& fn) {
  using R = std::invoke_result_t<F>;
  if constexpr (result_like<R>) {
    return std::invoke(std::forward<F>(fn));
  } else if constexpr (std::is_void_v<R>) {
    std::invoke(std::forward<F>(fn));
    return BOOST_OUTCOME_V2_NAMESPACE::success();
  } else {
    return result<R>(std::in_place_type<R>, std::invoke(std::forward<F>(fn)));
  }
}

// sturdy::succeeded(r) / sturdy::failure_of(r) / sturdy::make_failure<R>(ec)
//
// Shorthands over `outcome_traits` for the result-like type `R`.
template <result_like R>
[[nodiscard]] bool succeeded(const R& r) noexcept {
  return outcome_traits<R>::has_value(r);
}

template <result_like R>
[[nodiscard]] failure_info failure_of(const R& r) {
  return outcome_traits<R>::failure(r);
}

template <result_like R>
[[nodiscard]] R make_failure(std::error_code ec) {
  return outcome_traits<R>::from_error(ec);
}

// sturdy::make_failure<R>(ec, message)
//
// Like `make_failure<R>(ec)`, keeping `message` (a static sentence, e.g. an
// options validation message naming the field) where `R`'s error can carry
// one: through `outcome_traits<R>::from_error(ec, message)` when the traits
// have it (the absl adapter does), else through
// `from_error_code<error_type>(ec, message)`; otherwise it is dropped.
template <result_like R>
[[nodiscard]] R make_failure(std::error_code ec, std::string_view message) {
  using traits = outcome_traits<R>;
  if constexpr (requires { { traits::from_error(ec, message) } -> std::convertible_to<R>; }) {
    return traits::from_error(ec, message);
  } else if constexpr (requires { typename traits::error_type; } &&
                       requires(typename traits::error_type e) { R(BOOST_OUTCOME_V2_NAMESPACE::failure(e)); }) {
    return R(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<typename traits::error_type>(ec, message)));
  } else {
    return traits::from_error(ec);
  }
}

}  // namespace sturdy

#endif  // STURDY_OUTCOME_HPP_
