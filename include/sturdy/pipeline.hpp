// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/pipeline.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::compose(a, b, c)` nests anything with an `execute(fn)` member —
// a retry policy, a circuit breaker, a bulkhead of your own — into one object
// with one `execute(fn)`. The first argument is the outermost layer:
//
//   compose(retry, breaker).execute(fn)
//     == retry.execute([&] { return breaker.execute(fn); })
//
// so here every attempt of the retry goes through the breaker. A breaker
// rejection (`errc::circuit_open`) did not call the dependency: the retry
// records nothing with its budget for it, and retries it only after the
// breaker's `retry_after()` (which `compose` hands to the retry layer as a
// `retry_after_source`), within the deadline and `max_server_delay`;
// otherwise it stops and the caller sees `circuit_open`. Swap them and the
// breaker sees one call per whole retry loop.
//
// Example:
//
//   sturdy::circuit_breaker breaker(breaker_opts);        // shared, pinned
//   sturdy::retry_policy retry(retry_opts);                // a value
//   auto pipeline = sturdy::compose(retry, breaker);       // copies retry
//   sturdy::result<Reply> r = pipeline.execute([&] { return client.Call(req); });
//
// Ownership, one rule per kind of layer:
//   - a copyable layer (a `retry_policy`, whose only state is its options;
//     a `make_policy` lambda) is copied into the pipeline (moved when it is
//     an rvalue), so a factory may build one in a local and return the
//     pipeline;
//   - a pinned layer (neither copyable nor movable: the circuit breaker, the
//     idempotency cache, every primitive with shared state) is held by
//     reference; passing a temporary one is a compile error whose first line
//     says why;
//   - a move-only layer is moved in when it is an rvalue, and held by
//     reference when it is an lvalue.
// The one lifetime rule left: a pipeline must not outlive the pinned objects
// (and lvalue move-only layers) it references.
// Nothing is allocated and no `std::function` is involved: each layer calls
// the next through a lambda the compiler inlines.
//
// A layer may be any callable `(auto&& next) -> R` wrapped with
// `sturdy::make_policy`, for one-off logic (logging, a fallback value):
//
//   auto log = sturdy::make_policy([](auto&& next) {
//     auto r = next();
//     if (!r) std::cerr << r.error().message() << '\n';
//     return r;
//   });
//
// Cancellation: `execute(fn, stop_token)` hands the token to every layer whose
// `execute` accepts one (`execute(fn, token)`), and calls the others with
// `execute(fn)`.
//
// Callables: a callable returning a reference, a future, an awaitable or an
// Asio deferred operation is refused at compile time, with a sentence as the
// first error line (see sturdy/outcome.hpp).
//
// Thread safety: a pipeline is as thread-safe as its layers; `compose` adds no
// state of its own.

#ifndef STURDY_PIPELINE_HPP_
#define STURDY_PIPELINE_HPP_

#include <concepts>
#include <functional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// ----------------------------------------------------------------------------
// retry_after_source
// ----------------------------------------------------------------------------

// retry_after_source
//
// A non-owning handle to whatever sits inside a retry layer and can reject a
// call without making it (a circuit breaker, or a pipeline of layers): its
// `retry_after()` says how long until it would admit one. `compose(retry,
// breaker)` hands one to the retry policy, so that a rejection
// (`errc::circuit_open`) is retried after the breaker's `retry_after()`
// instead of blindly. Pass one yourself when the breaker is called inside
// your callable:
//
//   policy.execute([&] { return breaker.execute(call); }, stop, deadline,
//                  sturdy::retry_after_source(breaker));
//
// The referenced object must outlive the call.
class retry_after_source {
 public:
  constexpr retry_after_source() noexcept = default;
  template <class T>
    requires(!std::same_as<T, retry_after_source> &&
             requires(const T& t) { { t.retry_after() } -> std::convertible_to<duration>; })
  explicit retry_after_source(const T& inner) noexcept
      : obj_(&inner), fn_([](const void* p) -> duration { return static_cast<const T*>(p)->retry_after(); }) {}

  // Whether it refers to anything.
  [[nodiscard]] explicit operator bool() const noexcept { return obj_ != nullptr; }
  // The inner layer's `retry_after()`; duration::max() when empty.
  [[nodiscard]] duration operator()() const { return obj_ ? fn_(obj_) : duration::max(); }

 private:
  const void* obj_ = nullptr;
  duration (*fn_)(const void*) = nullptr;
};

// policy_for<P, F>: `P` can run a callable like `F` through `execute`.
template <class P, class F>
concept policy_for = requires(P& p, F&& f) { p.execute(std::forward<F>(f)); };

// make_policy(f): turns a middleware callable `f(next)` into a layer.
template <class F>
class function_policy {
 public:
  explicit function_policy(F f) : f_(std::move(f)) {}

  template <class Fn>
  [[nodiscard]] execute_result_t<Fn> execute(Fn&& fn) {
    auto next = [&]() -> execute_result_t<Fn> { return invoke_wrapped(std::forward<Fn>(fn)); };
    return std::invoke(f_, next);
  }

 private:
  F f_;
};

template <class F>
[[nodiscard]] function_policy<std::decay_t<F>> make_policy(F&& f) {
  return function_policy<std::decay_t<F>>(std::forward<F>(f));
}

namespace detail {

// A pinned layer: shared state that must not be copied or moved.
template <class U>
inline constexpr bool pinned_layer_v = !std::is_copy_constructible_v<U> && !std::is_move_constructible_v<U>;

// How `compose` stores an argument of type `T` (as deduced by a forwarding
// reference): see the banner.
template <class T>
struct layer_storage {
  using U = std::remove_cvref_t<T>;
  using type = std::conditional_t<std::is_lvalue_reference_v<T>,
                                  std::conditional_t<std::is_copy_constructible_v<U>, U, T>,
                                  std::conditional_t<pinned_layer_v<U>, U&, U>>;
};
template <class T>
using layer_storage_t = typename layer_storage<T>::type;

// A temporary pinned layer would dangle.
template <class T>
inline constexpr bool layer_argument_ok_v = std::is_lvalue_reference_v<T> || !pinned_layer_v<std::remove_cvref_t<T>>;

template <class L>
concept has_retry_after = requires(const L& l) { { l.retry_after() } -> std::convertible_to<duration>; };

template <class Layer, class F>
decltype(auto) execute_layer(Layer& layer, F&& fn, const std::stop_token& token, retry_after_source inner) {
  if constexpr (requires { layer.execute(std::forward<F>(fn), token, time_point::max(), inner); }) {
    return layer.execute(std::forward<F>(fn), token, time_point::max(), inner);
  } else if constexpr (requires { layer.execute(std::forward<F>(fn), token); }) {
    return layer.execute(std::forward<F>(fn), token);
  } else {
    return layer.execute(std::forward<F>(fn));
  }
}

}  // namespace detail

// pipeline<Layers...>: the result of `compose`; see the banner.
template <class... Layers>
class pipeline {
  static_assert(sizeof...(Layers) >= 1, "sturdy::compose needs at least one layer to compose.");

 public:
  template <class... Args>
  explicit pipeline(std::in_place_t, Args&&... args) : layers_(std::forward<Args>(args)...) {}

  // pipeline::execute()
  //
  // Runs `fn` through every layer, the first outermost. Returns
  // `execute_result_t<F>`, the same type each layer returns.
  template <class F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) {
    return run<0>(fn, std::stop_token{});
  }
  template <class F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token token) {
    return run<0>(fn, token);
  }

  // pipeline::retry_after()
  //
  // The longest `retry_after()` of the layers that have one (breakers):
  // how long until every one of them would admit a call. Present only when
  // some layer has it, so a pipeline nested in another passes it on.
  [[nodiscard]] duration retry_after() const
    requires(detail::has_retry_after<std::remove_reference_t<Layers>> || ...)
  {
    return retry_after_from<0>();
  }

  // The layers, in order (references for the ones held by reference).
  [[nodiscard]] std::tuple<Layers...>& layers() noexcept { return layers_; }

 private:
  template <std::size_t I>
  static constexpr bool any_retry_after_from() {
    if constexpr (I >= sizeof...(Layers)) {
      return false;
    } else {
      return detail::has_retry_after<std::remove_reference_t<std::tuple_element_t<I, std::tuple<Layers...>>>> ||
             any_retry_after_from<I + 1>();
    }
  }
  template <std::size_t I>
  [[nodiscard]] duration retry_after_from() const {
    if constexpr (I >= sizeof...(Layers)) {
      return duration::zero();
    } else {
      const duration rest = retry_after_from<I + 1>();
      if constexpr (detail::has_retry_after<std::remove_reference_t<std::tuple_element_t<I, std::tuple<Layers...>>>>) {
        const duration mine = std::get<I>(layers_).retry_after();
        return mine > rest ? mine : rest;
      } else {
        return rest;
      }
    }
  }
  // The layers inside layer I, seen as one `retry_after()`.
  template <std::size_t I>
  struct inner_layers {
    const pipeline* self;
    [[nodiscard]] duration retry_after() const { return self->template retry_after_from<I + 1>(); }
  };

  template <std::size_t I, class F>
  execute_result_t<F> run(F& fn, const std::stop_token& token) {
    if constexpr (I + 1 == sizeof...(Layers)) {
      return detail::execute_layer(std::get<I>(layers_), fn, token, retry_after_source());
    } else {
      const inner_layers<I> inner{this};
      retry_after_source source;
      if constexpr (any_retry_after_from<I + 1>()) source = retry_after_source(inner);
      return detail::execute_layer(
          std::get<I>(layers_), [&]() -> execute_result_t<F> { return run<I + 1>(fn, token); }, token, source);
    }
  }

  std::tuple<Layers...> layers_;
};

// sturdy::compose(layers...)
//
// Nests the layers, first argument outermost; see the banner for ownership.
template <class... Layers>
[[nodiscard]] auto compose(Layers&&... layers) {
  static_assert((detail::layer_argument_ok_v<Layers> && ...),
                "sturdy::compose holds a pinned layer (a circuit breaker, an idempotency cache, ...) by "
                "reference, so it must be a named object that outlives the pipeline, not a temporary.");
  if constexpr ((detail::layer_argument_ok_v<Layers> && ...)) {
    return pipeline<detail::layer_storage_t<Layers>...>(std::in_place, std::forward<Layers>(layers)...);
  }
}

}  // namespace sturdy

#endif  // STURDY_PIPELINE_HPP_
