// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/ownership.hpp
// -----------------------------------------------------------------------------
//
// The one rule for values sturdy keeps past the call that handed them over
// (an idempotency store's result, a compensation step's bound undo value, a
// step or scope name): **sturdy owns what it stores, or refuses it at compile
// time.** A non-owning type — something that refers to memory it does not
// own — is refused wherever sturdy would store it, with a one-sentence
// `static_assert`, because the memory it points at may be gone when sturdy
// hands the value back.
//
// `sturdy::non_owning<T>` is true for:
//   - object pointers (`int*`, `const char*`, `Widget*`), including smart
//     pointer look-alikes only when a user opts them in (below);
//   - `std::basic_string_view`, `std::span`, `std::reference_wrapper`;
//   - every type that opts in: specialise `sturdy::is_non_owning<T>` to
//     `std::true_type` for your own views (e.g. a `blob_view`).
// Function pointers are allowed (they point at code, which lives forever).
//
// Example:
//
//   #include "sturdy/ownership.hpp"
//
//   struct blob_view { const std::byte* data; std::size_t size; };
//   template <> struct sturdy::is_non_owning<blob_view> : std::true_type {};
//
//   static_assert(sturdy::non_owning<std::string_view>);
//   static_assert(!sturdy::non_owning<std::string>);
//   static_assert(sturdy::non_owning<blob_view>);
//
// Thread safety: compile-time only.

#ifndef STURDY_OWNERSHIP_HPP_
#define STURDY_OWNERSHIP_HPP_

#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <type_traits>

namespace sturdy {

// sturdy::is_non_owning<T>
//
// The customisation point: specialise to `std::true_type` for a user type
// that refers to memory it does not own.
template <class T>
struct is_non_owning : std::false_type {};

namespace detail {

template <class T>
struct builtin_non_owning : std::bool_constant<std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>> {};
template <class C, class Tr>
struct builtin_non_owning<std::basic_string_view<C, Tr>> : std::true_type {};
template <class E, std::size_t N>
struct builtin_non_owning<std::span<E, N>> : std::true_type {};
template <class T>
struct builtin_non_owning<std::reference_wrapper<T>> : std::true_type {};

}  // namespace detail

// sturdy::non_owning<T>
//
// True when a `T` may refer to memory it does not own, so sturdy refuses to
// store it (cv-qualifiers and references are ignored).
template <class T>
concept non_owning = detail::builtin_non_owning<std::remove_cvref_t<T>>::value ||
                     is_non_owning<std::remove_cvref_t<T>>::value;

}  // namespace sturdy

#endif  // STURDY_OWNERSHIP_HPP_
