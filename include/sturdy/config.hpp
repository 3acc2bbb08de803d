// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/config.hpp
// -----------------------------------------------------------------------------
//
// Version numbers and the `STURDY_*` portability macros every other header
// uses. Nothing here is meant to be configured by users except where noted.

#ifndef STURDY_CONFIG_HPP_
#define STURDY_CONFIG_HPP_

// sturdy needs C++20. Said here because pkg-config cannot require a standard
// (a -std flag in sturdy.pc would override a consumer's newer one).
#if (defined(_MSVC_LANG) ? _MSVC_LANG : __cplusplus) < 202002L
#error "sturdy needs C++20 or newer: compile with -std=c++20 (or a later standard, e.g. -std=c++23)."
#endif

#include <cstddef>
#include <version>

#define STURDY_VERSION_MAJOR 0
#define STURDY_VERSION_MINOR 1
#define STURDY_VERSION_PATCH 0
// STURDY_VERSION: major * 10000 + minor * 100 + patch.
#define STURDY_VERSION \
  (STURDY_VERSION_MAJOR * 10000 + STURDY_VERSION_MINOR * 100 + STURDY_VERSION_PATCH)

// STURDY_NO_UNIQUE_ADDRESS
//
// Lets an empty member (the default clock, sleeper or listener) take no space.
#if defined(_MSC_VER) && !defined(__clang__)
#define STURDY_NO_UNIQUE_ADDRESS [[msvc::no_unique_address]]
#else
#define STURDY_NO_UNIQUE_ADDRESS [[no_unique_address]]
#endif

// STURDY_HAS_STD_EXPECTED: 1 when the standard library provides
// `std::expected` (C++23 libraries); the outcome adapters then support it.
#if defined(__cpp_lib_expected) && __cpp_lib_expected >= 202202L
#define STURDY_HAS_STD_EXPECTED 1
#else
#define STURDY_HAS_STD_EXPECTED 0
#endif

// STURDY_TSAN: 1 when compiled with ThreadSanitizer (tests scale down their
// stress loops with it; the library itself does not change behaviour).
#if defined(__SANITIZE_THREAD__)
#define STURDY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STURDY_TSAN 1
#endif
#endif
#ifndef STURDY_TSAN
#define STURDY_TSAN 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define STURDY_LIKELY(x) __builtin_expect(!!(x), 1)
#define STURDY_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define STURDY_LIKELY(x) (x)
#define STURDY_UNLIKELY(x) (x)
#endif

namespace sturdy {

// The size that keeps two independently written atomics off one cache line.
// Fixed at 64 (x86-64, most ARM64 cores) rather than
// std::hardware_destructive_interference_size, whose value GCC warns may
// differ between compiler versions and so must not shape a public layout.
inline constexpr std::size_t cache_line_size = 64;

}  // namespace sturdy

#endif  // STURDY_CONFIG_HPP_
