// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/small_vector.hpp
// -----------------------------------------------------------------------------
//
// Internals; no stability promise. A minimal vector with `N` inline slots
// for nothrow-movable `T`, used by `compensation_report` so that a rollback
// of up to 8 steps allocates nothing. Beyond `N` it moves to the heap
// (`std::allocator`), doubling. Only what the report needs: push_back,
// reserve, iteration, moves.
//
// Thread safety: none.

#ifndef STURDY_DETAIL_SMALL_VECTOR_HPP_
#define STURDY_DETAIL_SMALL_VECTOR_HPP_

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace sturdy::detail {

template <class T, std::size_t N>
class small_vector {
  static_assert(std::is_nothrow_move_constructible_v<T>, "small_vector needs a nothrow move constructor");

 public:
  small_vector() noexcept = default;
  small_vector(const small_vector&) = delete;
  small_vector& operator=(const small_vector&) = delete;
  small_vector(small_vector&& o) noexcept { steal(o); }
  small_vector& operator=(small_vector&& o) noexcept {
    if (this != &o) {
      destroy_all();
      steal(o);
    }
    return *this;
  }
  ~small_vector() { destroy_all(); }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  [[nodiscard]] T* begin() noexcept { return data(); }
  [[nodiscard]] T* end() noexcept { return data() + size_; }
  [[nodiscard]] const T* begin() const noexcept { return data(); }
  [[nodiscard]] const T* end() const noexcept { return data() + size_; }
  [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return data()[i]; }
  [[nodiscard]] T& operator[](std::size_t i) noexcept { return data()[i]; }

  // Throws std::bad_alloc; on throw nothing changed.
  void reserve(std::size_t n) {
    if (n <= cap_) return;
    std::size_t cap = cap_ * 2;
    while (cap < n) cap *= 2;
    T* fresh = std::allocator<T>().allocate(cap);
    T* old = data();
    for (std::size_t i = 0; i < size_; ++i) {
      ::new (static_cast<void*>(fresh + i)) T(std::move(old[i]));
      old[i].~T();
    }
    free_heap();
    heap_ = fresh;
    cap_ = cap;
  }

  template <class... A>
  T& emplace_back(A&&... a) {
    if (size_ == cap_) reserve(size_ + 1);
    T* p = ::new (static_cast<void*>(data() + size_)) T(std::forward<A>(a)...);
    ++size_;
    return *p;
  }

 private:
  [[nodiscard]] T* data() noexcept { return heap_ != nullptr ? heap_ : std::launder(reinterpret_cast<T*>(buf_)); }
  [[nodiscard]] const T* data() const noexcept {
    return heap_ != nullptr ? heap_ : std::launder(reinterpret_cast<const T*>(buf_));
  }
  void destroy_all() noexcept {
    T* d = data();
    for (std::size_t i = 0; i < size_; ++i) d[i].~T();
    size_ = 0;
    free_heap();
  }
  void free_heap() noexcept {
    if (heap_ != nullptr) std::allocator<T>().deallocate(heap_, cap_);
    heap_ = nullptr;
    cap_ = N;
  }
  void steal(small_vector& o) noexcept {
    if (o.heap_ != nullptr) {
      heap_ = o.heap_;
      cap_ = o.cap_;
      size_ = o.size_;
      o.heap_ = nullptr;
      o.cap_ = N;
      o.size_ = 0;
      return;
    }
    T* src = o.data();
    for (std::size_t i = 0; i < o.size_; ++i) {
      ::new (static_cast<void*>(reinterpret_cast<T*>(buf_) + i)) T(std::move(src[i]));
      src[i].~T();
    }
    size_ = o.size_;
    o.size_ = 0;
  }

  T* heap_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = N;
  alignas(T) unsigned char buf_[N * sizeof(T)];
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_SMALL_VECTOR_HPP_
