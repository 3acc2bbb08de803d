// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/invoke_captured.hpp
// -----------------------------------------------------------------------------
//
// Internal: "call fn, catch whatever it throws, classify the outcome" in one
// place, for every primitive that must not let a callee's exception escape
// before it has recorded it. Two forms:
//
//   // Keep the result (retry): a throw becomes a placeholder failure of
//   // type R and the exception is stored in `thrown`.
//   std::exception_ptr thrown;
//   R r = detail::invoke_captured(fn, thrown, errc::retries_exhausted);
//
//   // Only success or failure (undos, replays): never throws.
//   failure_info f;
//   if (!detail::invoke_captured(fn, f)) log(f);
//
// The result form optionally catches one exception type `Typed` first and
// hands it to `on_typed` (retry reads the hint of a `retry_after_error`
// without a second rethrow). Success costs nothing beyond the call: no
// failure_info is built, no exception_ptr touched.
//
// Adopting it where a primitive must record and then rethrow (e.g. a cache
// that stores a thrown exception before it propagates): use the result
// form, record `thrown`, then `std::rethrow_exception(thrown)`.
//
// Thread safety: stateless. No stability promise.

#ifndef STURDY_DETAIL_INVOKE_CAPTURED_HPP_
#define STURDY_DETAIL_INVOKE_CAPTURED_HPP_

#include <exception>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sturdy/config.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy::detail {

// A type nobody throws: the default `Typed` (catches nothing).
struct no_typed_catch {};

struct ignore_typed {
  template <class E>
  constexpr void operator()(const E&) const noexcept {}
};

// invoke_captured<Typed>(fn, thrown, placeholder[, on_typed])
//
// Calls `fn()` and returns its outcome as `execute_result_t<F>`. If `fn`
// throws, the exception is stored in `thrown` (otherwise `thrown` is left
// untouched) and `make_failure<R>(placeholder)` is returned: the caller
// must check `thrown` before trusting the result. A `Typed` exception is
// also passed to `on_typed(const Typed&)` (which must not throw). The
// placeholder is an `errc`, turned into an error_code only on a throw (the
// success path must not pay for the category lookup).
template <class Typed = no_typed_catch, class F, class OnTyped = ignore_typed>
[[nodiscard]] execute_result_t<F> invoke_captured(F&& fn, std::exception_ptr& thrown, errc placeholder,
                                                  OnTyped&& on_typed = {}) {
  using R = execute_result_t<F>;
  try {
    return invoke_wrapped(std::forward<F>(fn));
  } catch (const Typed& e) {
    thrown = std::current_exception();
    std::forward<OnTyped>(on_typed)(e);
  } catch (...) {
    thrown = std::current_exception();
  }
  return make_failure<R>(make_error_code(placeholder));
}

// invoke_captured(fn, failure)
//
// Calls `fn()`; returns true when it succeeded. Otherwise fills `failure`
// (the error of a failed result, or the thrown exception) and returns
// false. Never throws; `failure` is written only on failure.
template <class F>
[[nodiscard]] bool invoke_captured(F&& fn, failure_info& failure) noexcept {
  try {
    auto r = invoke_wrapped(std::forward<F>(fn));
    if (STURDY_LIKELY(succeeded(r))) return true;
    failure = failure_of(r);
  } catch (...) {
    failure.code = {};
    failure.exception = std::current_exception();
  }
  return false;
}

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_INVOKE_CAPTURED_HPP_
