// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/listener.hpp
// -----------------------------------------------------------------------------
//
// The observability seam. Primitives report what they do (a retry scheduled,
// a breaker changing state, a budget denying a retry, ...) as small event
// structs passed to a listener, a template parameter of the primitive. The
// default, `null_listener`, is empty and its call compiles to nothing, so a
// primitive that nobody observes pays nothing.
//
// A listener is any object callable with each event type it cares about; a
// generic lambda or a struct with a templated `operator()` takes them all.
// Event types a listener cannot take are skipped at compile time.
//
// Example:
//
//   struct log_listener {
//     void operator()(const sturdy::breaker_state_changed& e) const {
//       std::cerr << "breaker: " << to_string(e.from) << " -> " << to_string(e.to) << "\n";
//     }
//     void operator()(const auto&) const {}  // everything else
//   };
//   sturdy::circuit_breaker<sturdy::steady_clock_source, log_listener> b(opts);
//
// Listeners are called synchronously on the thread doing the work, sometimes
// on a hot path: keep them short and never throw (an exception from a
// listener is swallowed by `emit`).
//
// Thread safety: a listener shared by a primitive used from several threads
// must itself be thread-safe. `null_listener` is.

#ifndef STURDY_LISTENER_HPP_
#define STURDY_LISTENER_HPP_

#include <concepts>
#include <string_view>
#include <type_traits>

namespace sturdy {

// options_rejected: emitted by a primitive built from invalid options, once,
// on the first call it refuses (errc::invalid_options). `message` is the
// options' `validation_message()`, a static sentence that starts with the
// options struct and field it names ("retry_options.max_attempts must be
// >= 1 ..."); `primitive` is the primitive's type name ("retry_policy").
struct options_rejected {
  std::string_view primitive;
  std::string_view message;
};

// null_listener: takes every event and does nothing.
struct null_listener {
  template <class Event>
  constexpr void operator()(const Event&) const noexcept {}
};

// listener_for<L, E>: `L` accepts events of type `E`.
template <class L, class E>
concept listener_for = std::invocable<L&, const E&>;

// sturdy::emit(listener, event)
//
// Delivers `event` if `listener` takes that type; swallows exceptions so a
// faulty listener cannot break the primitive.
template <class L, class E>
constexpr void emit(L& listener, const E& event) noexcept {
  if constexpr (std::is_same_v<std::remove_cv_t<L>, null_listener>) {
    (void)listener;
    (void)event;
  } else if constexpr (listener_for<L, E>) {
    if constexpr (std::is_nothrow_invocable_v<L&, const E&>) {
      listener(event);
    } else {
      try {
        listener(event);
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented above
      }
    }
  }
}

}  // namespace sturdy

#endif  // STURDY_LISTENER_HPP_
