// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/counting_allocator.hpp
// -----------------------------------------------------------------------------
//
// A counting global allocator, to prove that a path allocates nothing.
// Replacing the global `operator new` must happen in exactly one translation
// unit of a program: put `STURDY_TESTING_DEFINE_COUNTING_NEW()` at namespace
// scope (with a semicolon) in one .cpp file. Counts are per thread, so allocations made by other
// threads (a test framework's, say) never pollute a measurement.
//
// Example:
//
//   // counting_new.cpp
//   #include "sturdy/testing/counting_allocator.hpp"
//   STURDY_TESTING_DEFINE_COUNTING_NEW();
//
//   // a test
//   sturdy::testing::allocation_scope scope;
//   breaker.execute(fn);
//   EXPECT_EQ(scope.allocations(), 0);
//
// `counting_new_installed()` tells whether the replacement is linked in, so a
// test can refuse to pass vacuously.
//
// Thread safety: counters are thread-local; nothing is shared.

#ifndef STURDY_TESTING_COUNTING_ALLOCATOR_HPP_
#define STURDY_TESTING_COUNTING_ALLOCATOR_HPP_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "sturdy/config.hpp"

namespace sturdy::testing {

struct allocation_stats {
  std::uint64_t allocations = 0;  // calls to any operator new
  std::uint64_t bytes = 0;        // bytes requested by them
  std::uint64_t deallocations = 0;
};

namespace detail {
inline thread_local allocation_stats thread_stats{};
inline bool counting_installed = false;

inline void* counted_alloc(std::size_t n, std::size_t align) {
  ++thread_stats.allocations;
  thread_stats.bytes += n;
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align > alignof(std::max_align_t)) {
    const std::size_t rounded = (n + align - 1) / align * align;
    p = std::aligned_alloc(align, rounded);
  } else {
    p = std::malloc(n);
  }
  return p;
}
inline void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  ++thread_stats.deallocations;
  std::free(p);
}
}  // namespace detail

// The calling thread's counts since it started.
[[nodiscard]] inline allocation_stats thread_allocations() noexcept { return detail::thread_stats; }

// Whether STURDY_TESTING_DEFINE_COUNTING_NEW() is linked into this program.
[[nodiscard]] inline bool counting_new_installed() noexcept { return detail::counting_installed; }

// sturdy::testing::escape(p): makes `p` observable so the optimizer cannot
// elide the allocation behind it (clang removes new/delete pairs whose
// result never escapes, which would make a test of the counter vacuous).
inline void escape(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  asm volatile("" : : "g"(p) : "memory");
#else
  static const void* volatile sink;
  sink = p;
#endif
}

// allocation_scope: counts the calling thread's allocations from its
// construction on.
class allocation_scope {
 public:
  allocation_scope() noexcept : start_(thread_allocations()) {}
  [[nodiscard]] std::uint64_t allocations() const noexcept {
    return thread_allocations().allocations - start_.allocations;
  }
  [[nodiscard]] std::uint64_t bytes() const noexcept { return thread_allocations().bytes - start_.bytes; }

 private:
  allocation_stats start_;
};

}  // namespace sturdy::testing

// Defines the replaceable global allocation functions in terms of malloc and
// counts each call. Use once per program, at namespace scope.
//
// Under ThreadSanitizer, whose runtime defines these functions itself, the
// macro defines nothing and `counting_new_installed()` stays false: tests of
// allocation counts must check it (GTEST_SKIP) rather than pass vacuously.
#if STURDY_TSAN
#define STURDY_TESTING_DEFINE_COUNTING_NEW() static_assert(true, "")
#else
#define STURDY_TESTING_DEFINE_COUNTING_NEW()                                                        \
  namespace sturdy::testing::detail {                                                              \
  [[maybe_unused]] static const bool counting_new_marker = (counting_installed = true);            \
  }                                                                                                \
  void* operator new(std::size_t n) {                                                              \
    if (void* p = ::sturdy::testing::detail::counted_alloc(n, 0)) return p;                        \
    throw std::bad_alloc();                                                                        \
  }                                                                                                \
  void* operator new[](std::size_t n) {                                                            \
    if (void* p = ::sturdy::testing::detail::counted_alloc(n, 0)) return p;                        \
    throw std::bad_alloc();                                                                        \
  }                                                                                                \
  void* operator new(std::size_t n, std::align_val_t a) {                                          \
    if (void* p = ::sturdy::testing::detail::counted_alloc(n, static_cast<std::size_t>(a)))        \
      return p;                                                                                    \
    throw std::bad_alloc();                                                                        \
  }                                                                                                \
  void* operator new[](std::size_t n, std::align_val_t a) {                                        \
    if (void* p = ::sturdy::testing::detail::counted_alloc(n, static_cast<std::size_t>(a)))        \
      return p;                                                                                    \
    throw std::bad_alloc();                                                                        \
  }                                                                                                \
  void* operator new(std::size_t n, const std::nothrow_t&) noexcept {                              \
    return ::sturdy::testing::detail::counted_alloc(n, 0);                                         \
  }                                                                                                \
  void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {                            \
    return ::sturdy::testing::detail::counted_alloc(n, 0);                                         \
  }                                                                                                \
  void operator delete(void* p) noexcept { ::sturdy::testing::detail::counted_free(p); }           \
  void operator delete[](void* p) noexcept { ::sturdy::testing::detail::counted_free(p); }         \
  void operator delete(void* p, std::size_t) noexcept { ::sturdy::testing::detail::counted_free(p); } \
  void operator delete[](void* p, std::size_t) noexcept {                                          \
    ::sturdy::testing::detail::counted_free(p);                                                    \
  }                                                                                                \
  void operator delete(void* p, std::align_val_t) noexcept {                                       \
    ::sturdy::testing::detail::counted_free(p);                                                    \
  }                                                                                                \
  void operator delete[](void* p, std::align_val_t) noexcept {                                     \
    ::sturdy::testing::detail::counted_free(p);                                                    \
  }                                                                                                \
  void operator delete(void* p, std::size_t, std::align_val_t) noexcept {                          \
    ::sturdy::testing::detail::counted_free(p);                                                    \
  }                                                                                                \
  void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {                        \
    ::sturdy::testing::detail::counted_free(p);                                                    \
  }                                                                                                \
  static_assert(true, "")
#endif

#endif  // STURDY_TESTING_COUNTING_ALLOCATOR_HPP_
