// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/callback.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::callback<R(Args...)>` is the one owning, type-erased callable type
// of every predicate and hook field in sturdy's options structs
// (`retry_options::retry_if`, `server_hint`, the breaker's
// `failure_classifier`, the idempotency policy's `is_permanent`, ...). It
// takes anything callable as `R(Args...)` through a const reference: a
// function pointer, a captureless lambda, or a lambda that captures
// configuration by value.
//
// Example:
//
//   #include "sturdy/callback.hpp"
//
//   std::set<int> retryable = read_codes_from_config();
//   sturdy::callback<bool(int)> is_retryable =
//       [codes = std::move(retryable)](int status) { return codes.contains(status); };
//   if (is_retryable && is_retryable(503)) { /* ... */ }
//
// Cost:
//   - A callable that is trivially copyable and at most two pointers large
//     (function pointers, captureless lambdas, lambdas capturing a pointer or
//     two integers) is stored inline: no allocation ever.
//   - A larger callable is allocated once, when the callback is built from
//     it; copies of the callback share it (a reference-count increment, never
//     an allocation). So copying an options struct, or a policy holding one,
//     allocates nothing, and calling never allocates.
//
// Thread safety: calling is `const` and may happen from many threads at once,
// so the callable must be safe to call concurrently through a const
// reference (sturdy invokes it only as const). A default-built or
// null-built callback is empty: `static_cast<bool>(cb)` is false, and the
// options that hold it document what empty means (usually "the default").

#ifndef STURDY_CALLBACK_HPP_
#define STURDY_CALLBACK_HPP_

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace sturdy {

template <class Signature>
class callback;

template <class R, class... Args>
class callback<R(Args...)> {
  static constexpr std::size_t inline_size = 2 * sizeof(void*);

  template <class D>
  static constexpr bool fits_inline = sizeof(D) <= inline_size && alignof(D) <= alignof(void*) &&
                                      std::is_trivially_copyable_v<D> &&
                                      std::is_trivially_destructible_v<D>;

 public:
  // An empty callback.
  constexpr callback() noexcept = default;
  constexpr callback(std::nullptr_t) noexcept {}  // NOLINT: implicit on purpose

  // Any callable invocable as `R(Args...)` through a const reference. A null
  // function pointer gives an empty callback.
  template <class F>
    requires(!std::same_as<std::remove_cvref_t<F>, callback> &&
             std::is_invocable_r_v<R, const std::decay_t<F>&, Args...>)
  callback(F&& f) {  // NOLINT: implicit, like std::function
    using D = std::decay_t<F>;
    // Only a pointer can be null; a function reference (D is its decayed
    // pointer) cannot, and GCC 12 at -O3 warns if it is compared
    // (-Wnonnull-compare).
    using P = std::remove_cvref_t<F>;
    if constexpr (std::is_pointer_v<P> || std::is_member_pointer_v<P>) {
      if (f == nullptr) return;
    }
    if constexpr (fits_inline<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      invoke_ = &invoke_inline<D>;
    } else {
      heap_ = std::make_shared<const D>(std::forward<F>(f));
      invoke_ = &invoke_heap<D>;
    }
  }

  // True when a callable is held.
  [[nodiscard]] explicit operator bool() const noexcept { return invoke_ != nullptr; }

  // Calls the held callable. Precondition: not empty.
  R operator()(Args... args) const { return invoke_(*this, std::forward<Args>(args)...); }

  friend bool operator==(const callback& c, std::nullptr_t) noexcept { return !c; }

 private:
  template <class D>
  static R invoke_inline(const callback& self, Args&&... args) {
    const D& fn = *std::launder(reinterpret_cast<const D*>(self.buf_));
    return std::invoke(fn, std::forward<Args>(args)...);
  }
  template <class D>
  static R invoke_heap(const callback& self, Args&&... args) {
    const D& fn = *static_cast<const D*>(self.heap_.get());
    return std::invoke(fn, std::forward<Args>(args)...);
  }

  alignas(void*) unsigned char buf_[inline_size] = {};
  std::shared_ptr<const void> heap_;
  R (*invoke_)(const callback&, Args&&...) = nullptr;
};

}  // namespace sturdy

#endif  // STURDY_CALLBACK_HPP_
