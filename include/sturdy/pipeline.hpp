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
// so here every attempt of the retry goes through the breaker, and a breaker
// rejection (`errc::circuit_open`) is one failed attempt that the retry's
// predicate may or may not retry. Swap them and the breaker sees one call per
// whole retry loop.
//
// Example:
//
//   sturdy::circuit_breaker breaker(breaker_opts);        // shared, pinned
//   auto pipeline = sturdy::compose(sturdy::retry_policy(retry_opts), breaker);
//   sturdy::result<Reply> r = pipeline.execute([&] { return client.Call(req); });
//
// Ownership: an lvalue argument is held by reference (a breaker shared by
// many pipelines must be, and it must outlive the pipeline); an rvalue is
// moved into the pipeline. Nothing is allocated and no `std::function` is
// involved: each layer calls the next through a lambda the compiler inlines.
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

#include "sturdy/outcome.hpp"

namespace sturdy {

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

// Layers are stored as `T` (moved in) or `T&` (held by reference).
template <class T>
using layer_storage_t = std::conditional_t<std::is_lvalue_reference_v<T>, T, std::decay_t<T>>;

template <class Layer, class F>
decltype(auto) execute_layer(Layer& layer, F&& fn, const std::stop_token& token) {
  if constexpr (requires { layer.execute(std::forward<F>(fn), token); }) {
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

  // The layers, in order (references for the ones held by reference).
  [[nodiscard]] std::tuple<Layers...>& layers() noexcept { return layers_; }

 private:
  template <std::size_t I, class F>
  execute_result_t<F> run(F& fn, const std::stop_token& token) {
    if constexpr (I + 1 == sizeof...(Layers)) {
      return detail::execute_layer(std::get<I>(layers_), fn, token);
    } else {
      return detail::execute_layer(
          std::get<I>(layers_), [&]() -> execute_result_t<F> { return run<I + 1>(fn, token); }, token);
    }
  }

  std::tuple<Layers...> layers_;
};

// sturdy::compose(layers...)
//
// Nests the layers, first argument outermost; see the banner for ownership.
template <class... Layers>
[[nodiscard]] auto compose(Layers&&... layers) {
  return pipeline<detail::layer_storage_t<Layers>...>(std::in_place, std::forward<Layers>(layers)...);
}

}  // namespace sturdy

#endif  // STURDY_PIPELINE_HPP_
