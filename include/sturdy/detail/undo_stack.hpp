// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/undo_stack.hpp
// -----------------------------------------------------------------------------
//
// Internals of `sturdy::compensation_scope`; no stability promise.
//
// `undo_stack` is a LIFO of type-erased, move-only undo callables with an
// inline buffer:
//
//   - the first `undo_inline_capacity` (8) entries live inside the stack
//     object itself (no heap);
//   - a callable is stored inside its entry when it is at most
//     `undo_small_size` bytes (32 on 64-bit targets: four pointers, e.g. a
//     lambda capturing `&db` and an id, or a retry wrapper holding a policy
//     pointer plus such a lambda), is aligned no stricter than a pointer and
//     is nothrow-move-constructible; any other callable is "boxed": allocated
//     with `new` and the entry holds the pointer;
//   - a ninth entry moves every entry into one heap array of twice the
//     capacity (then 32, 64, ...), relocating inline callables with their
//     nothrow move constructors. Growth may throw `std::bad_alloc`, before
//     anything is changed (strong guarantee).
//
// Each entry is 104 bytes on 64-bit targets (vtable pointer, owned name,
// owned context, buffer), so the inline part is 832 bytes. The name and the
// context are owned because they are often built at run time ("create " +
// user, an id) and must outlive the call that registered them; up to 15
// characters each they need no heap (libstdc++'s small-string buffer; 22 with
// libc++), longer ones allocate.
//
// Thread safety: none; owned by one scope on one thread.

#ifndef STURDY_DETAIL_UNDO_STACK_HPP_
#define STURDY_DETAIL_UNDO_STACK_HPP_

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "sturdy/outcome.hpp"

namespace sturdy::detail {

inline constexpr std::size_t undo_inline_capacity = 8;
inline constexpr std::size_t undo_small_size = 4 * sizeof(void*);

// undo_fits_inline<F>: whether `F` is stored inside its entry (no heap).
template <class F>
inline constexpr bool undo_fits_inline = sizeof(F) <= undo_small_size && alignof(F) <= alignof(void*) &&
                                         std::is_nothrow_move_constructible_v<F>;

// The operations of one erased callable type. `invoke` runs the callable
// (through the scope's policy, passed as `ctx`) and never throws: it reports
// failure by returning false and filling `out`. `relocate` move-constructs
// into `dst` and destroys `src`. `destroy` is null when there is nothing to do.
struct undo_vtable {
  bool (*invoke)(void* obj, void* ctx, failure_info& out) noexcept;
  void (*relocate)(void* dst, void* src) noexcept;
  void (*destroy)(void* obj) noexcept;
};

struct undo_entry {
  // User-provided (not `= default`), so `new (p) undo_entry()` does not
  // zero the object first: buf stays uninitialized.
  undo_entry() noexcept {}  // NOLINT(modernize-use-equals-default)
  const undo_vtable* vt = nullptr;
  std::string name;
  std::string context;
  alignas(void*) unsigned char buf[undo_small_size];
};

// Runner: a type with `template <class F> static bool run(F& f, void* ctx,
// failure_info& out) noexcept` that calls `f` and classifies the outcome.
template <class F, class Runner>
struct inline_ops {
  static bool invoke(void* obj, void* ctx, failure_info& out) noexcept {
    return Runner::run(*std::launder(static_cast<F*>(obj)), ctx, out);
  }
  static void relocate(void* dst, void* src) noexcept {
    F* s = std::launder(static_cast<F*>(src));
    ::new (dst) F(std::move(*s));
    s->~F();
  }
  static void destroy(void* obj) noexcept { std::launder(static_cast<F*>(obj))->~F(); }
  static constexpr undo_vtable table{&invoke, &relocate,
                                     std::is_trivially_destructible_v<F> ? nullptr : &destroy};
};

template <class F, class Runner>
struct boxed_ops {
  static F*& ptr(void* obj) noexcept { return *std::launder(static_cast<F**>(obj)); }
  static bool invoke(void* obj, void* ctx, failure_info& out) noexcept { return Runner::run(*ptr(obj), ctx, out); }
  static void relocate(void* dst, void* src) noexcept { ::new (dst) F*(ptr(src)); }
  static void destroy(void* obj) noexcept { delete ptr(obj); }
  static constexpr undo_vtable table{&invoke, &relocate, &destroy};
};

class undo_stack {
 public:
  undo_stack() noexcept : data_(inline_entries()) {}
  undo_stack(const undo_stack&) = delete;
  undo_stack& operator=(const undo_stack&) = delete;
  ~undo_stack() {
    clear();
    release_heap();
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
  [[nodiscard]] bool on_heap() const noexcept { return data_ != inline_entries(); }

  // Makes room for `n` entries in total. Throws std::bad_alloc; on throw
  // nothing changed.
  void reserve(std::size_t n) {
    if (n <= cap_) return;
    std::size_t cap = cap_ * 2;
    while (cap < n) cap *= 2;
    auto* fresh = static_cast<undo_entry*>(::operator new(cap * sizeof(undo_entry)));
    for (std::size_t i = 0; i < size_; ++i) relocate_entry(fresh + i, data_ + i);
    release_heap();
    data_ = fresh;
    cap_ = cap;
  }

  // Pushes `f` (decayed). Throws std::bad_alloc (growth, boxing) or whatever
  // F's constructor throws; on throw nothing changed and `f` may have been
  // moved from only if F's move constructor threw.
  template <class Runner, class F>
  void push(std::string_view name, std::string_view context, F&& f) {
    using D = std::decay_t<F>;
    if (STURDY_UNLIKELY(size_ == cap_)) reserve(size_ + 1);
    undo_entry* e = ::new (static_cast<void*>(data_ + size_)) undo_entry();
    try {
      if (!name.empty()) {
        e->name.assign(name.data(), name.size());
        // Longer than a default string's own buffer: it allocated.
        if (e->name.capacity() > std::string().capacity()) trivial_ = false;
      }
      if (!context.empty()) {
        e->context.assign(context.data(), context.size());
        trivial_ = false;
      }
      if constexpr (undo_fits_inline<D>) {
        ::new (static_cast<void*>(e->buf)) D(std::forward<F>(f));
        e->vt = &inline_ops<D, Runner>::table;
        if constexpr (!std::is_trivially_destructible_v<D>) trivial_ = false;
      } else {
        D* p = new D(std::forward<F>(f));
        ::new (static_cast<void*>(e->buf)) D*(p);
        e->vt = &boxed_ops<D, Runner>::table;
        trivial_ = false;
      }
    } catch (...) {
      e->~undo_entry();
      throw;
    }
    ++size_;
  }

  // The top entry; the stack must not be empty.
  [[nodiscard]] undo_entry& top() noexcept { return data_[size_ - 1]; }
  [[nodiscard]] undo_entry& at(std::size_t i) noexcept { return data_[i]; }

  // Destroys the top entry's callable and removes it.
  void pop() noexcept {
    undo_entry& e = data_[--size_];
    if (e.vt->destroy != nullptr) e.vt->destroy(e.buf);
    // Names and contexts in their strings' own buffers free nothing (see
    // clear()): their destructors are skipped on the common path.
    if (!trivial_) e.~undo_entry();
  }

  // Destroys every callable without running it. (When `trivial_`, every
  // entry holds a trivially destructible inline callable, an empty context
  // and a name in the string's own small buffer, whose destruction frees
  // nothing, so it is skipped.)
  void clear() noexcept {
    if (!trivial_) {
      while (size_ > 0) pop();
    }
    size_ = 0;
    trivial_ = true;
  }

  // Moves every entry of `from` on top of this stack, in order, leaving
  // `from` empty. Throws std::bad_alloc (growth) before changing anything.
  void splice_from(undo_stack& from) {
    reserve(size_ + from.size_);
    for (std::size_t i = 0; i < from.size_; ++i) relocate_entry(data_ + size_ + i, from.data_ + i);
    size_ += from.size_;
    trivial_ = trivial_ && from.trivial_;
    from.size_ = 0;
    from.trivial_ = true;
  }

 private:
  static void relocate_entry(undo_entry* dst, undo_entry* src) noexcept {
    ::new (static_cast<void*>(dst)) undo_entry();
    dst->vt = src->vt;
    dst->name = std::move(src->name);
    dst->context = std::move(src->context);
    src->vt->relocate(dst->buf, src->buf);
    src->~undo_entry();
  }
  [[nodiscard]] undo_entry* inline_entries() noexcept { return reinterpret_cast<undo_entry*>(storage_); }
  [[nodiscard]] const undo_entry* inline_entries() const noexcept {
    return reinterpret_cast<const undo_entry*>(storage_);
  }
  void release_heap() noexcept {
    if (on_heap()) ::operator delete(static_cast<void*>(data_));
  }

  undo_entry* data_;
  std::size_t size_ = 0;
  std::size_t cap_ = undo_inline_capacity;
  bool trivial_ = true;  // every stored callable is trivially destructible and inline
  // Raw storage: entries are created only when pushed (no zeroing cost).
  alignas(undo_entry) unsigned char storage_[undo_inline_capacity * sizeof(undo_entry)];
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_UNDO_STACK_HPP_
