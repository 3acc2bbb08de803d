// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/concurrent_map.hpp
// -----------------------------------------------------------------------------
//
// `detail::concurrent_map<V, ShardState>`: the one sharded, string-keyed map
// under every keyed structure of sturdy (the registries and the idempotency
// memory store). Lookups scale with threads: a
// lookup writes no cache line that another thread's lookup writes.
//
// How:
//   - Shards, each an Abseil `flat_hash_map<std::string, V>` (keys inline in
//     the slot, heterogeneous lookup by `std::string_view` with the hash
//     computed once) plus the owner's `ShardState` (bounds, counters, the
//     CLOCK hand).
//   - A reader-writer lock per shard whose readers announce themselves in a
//     per-thread-slot counter ("distributed reader indicator"): a reader
//     increments its own slot's counter (a line only its thread writes), then
//     checks the shard's writer flag (a read-mostly line). A writer takes
//     the shard's `std::mutex`, raises the flag, and waits until every slot's
//     counter for that shard is zero. Both sides use sequentially consistent
//     operations, so either the reader sees the flag or the writer sees the
//     reader (the Dekker pattern); a reader that sees the flag steps back
//     and waits on the writer's mutex (no spinning). Readers never read data
//     a writer is changing: no optimistic reads, nothing TSan could flag.
//   - What a reader may change in an entry is atomic (`relaxed_atomic<T>`,
//     declared `mutable` in the entry): the CLOCK reference bit, a last-use
//     time. Counters a lookup bumps (hits) live in `striped_counter`, one
//     cache line per thread slot.
//   - Memory reclamation is the owner's: a value that must outlive the lock
//     (a registry entry) is a reference-counted node and the lookup copies
//     the reference out; a value copied out under the lock (an idempotency
//     replay) needs nothing more.
//
// Cost of the write side: a writer reads every thread slot's counter for its
// shard (one line per slot, last written by that slot's thread), so an
// insert costs O(thread slots) cache transfers; `thread_slots` trades lookup
// scaling for insert cost (1 = a classic shared counter per shard).
//
// Users: `sturdy::registry` (values: reference-counted handles) and
// `sturdy::memory_idempotency_store` (detail/idempotency_shard.hpp): its entry
// is the V (the CLOCK bit a `relaxed_atomic<bool>`, the rest written only
// under the write lock), its per-shard counters and lease bookkeeping the
// ShardState, its hit counter a `striped_counter`; a replay is `find` (state,
// TTL and fingerprint checked and the value copied out under the read lock),
// every other path (`begin` on a miss, a mismatch or an in-progress key,
// complete, abandon, waiter linking) is `write`, and its CLOCK sweep is
// `evict_one` with its own test.
//
// Rules for callers: visitors run under the shard lock and must not call
// back into the same map (the lock is not reentrant; a nested read could
// deadlock against a waiting writer). Writers see the shard as a plain
// `flat_hash_map` plus `ShardState` and may do anything with it.
//
// Thread safety: every member function may be called from any number of
// threads at once. No stability promise (detail).

#ifndef STURDY_DETAIL_CONCURRENT_MAP_HPP_
#define STURDY_DETAIL_CONCURRENT_MAP_HPP_

#include <algorithm>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>
#include <absl/strings/string_view.h>

#include "sturdy/config.hpp"
#include "sturdy/detail/breaker_word.hpp"  // thread_index()
#include "sturdy/detail/spin.hpp"           // cpu_relax()

namespace sturdy::detail {

// The hash of a key, computed once per call; picks the shard and (through
// `map_key`) the slot in the shard's table. Debian's Abseil has its own
// `absl::string_view`; convert at the boundary.
[[nodiscard]] inline std::size_t map_hash(std::string_view key) noexcept {
  return absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size()));
}

// A lookup key carrying its precomputed hash: finding it neither allocates
// nor hashes again.
struct map_key {
  std::string_view key;
  std::size_t hash;
};

struct map_hasher {
  using is_transparent = void;
  std::size_t operator()(const std::string& k) const noexcept { return map_hash(k); }
  std::size_t operator()(std::string_view k) const noexcept { return map_hash(k); }
  std::size_t operator()(const map_key& k) const noexcept { return k.hash; }
};

struct map_key_eq {
  using is_transparent = void;
  static std::string_view view(const std::string& k) noexcept { return k; }
  static std::string_view view(std::string_view k) noexcept { return k; }
  static std::string_view view(const map_key& k) noexcept { return k.key; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    return view(a) == view(b);
  }
};

// relaxed_atomic<T>: an atomic field of a map entry that readers may write
// under the shared lock (a reference bit, a last-use time). Copyable and
// movable, so the entry can live inline in a flat table: the table moves
// entries only while a writer holds the shard exclusively, when no reader can
// touch them.
template <class T>
class relaxed_atomic {
 public:
  constexpr relaxed_atomic() noexcept = default;
  constexpr explicit relaxed_atomic(T v) noexcept : v_(v) {}
  relaxed_atomic(const relaxed_atomic& o) noexcept : v_(o.load()) {}
  relaxed_atomic& operator=(const relaxed_atomic& o) noexcept {
    store(o.load());
    return *this;
  }
  [[nodiscard]] T load() const noexcept { return v_.load(std::memory_order_relaxed); }
  void store(T v) const noexcept { v_.store(v, std::memory_order_relaxed); }
  // Stores `v` only when it differs: a reader that finds the bit already set
  // writes nothing, so hot entries' lines stay shared between caches.
  void store_if_changed(T v) const noexcept {
    if (load() != v) store(v);
  }

 private:
  mutable std::atomic<T> v_{};
};

// The thread slots shared by the reader indicators and striped counters:
// one per hardware thread, rounded up to a power of two, at most 64 (threads
// beyond share slots: still correct, then slower).
[[nodiscard]] inline std::uint32_t default_thread_slots() noexcept {
  const unsigned hw = std::max(1U, std::thread::hardware_concurrency());
  return std::bit_ceil(std::min(hw, 64U));
}

// striped_counter: a counter that many threads bump at once, one cache line
// per thread slot (relaxed increments of a line no other thread writes);
// `sum()` adds the slots up (not one atomic snapshot). 64-bit: never wraps in
// practice (2^64 events).
class striped_counter {
 public:
  explicit striped_counter(std::uint32_t slots = default_thread_slots())
      : mask_(std::bit_ceil(std::max(slots, 1U)) - 1), cells_(std::make_unique<cell[]>(mask_ + 1)) {}
  void add(std::uint64_t n = 1) noexcept {
    cells_[thread_index() & mask_].v.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t sum() const noexcept {
    std::uint64_t s = 0;
    for (std::uint32_t i = 0; i <= mask_; ++i) s += cells_[i].v.load(std::memory_order_relaxed);
    return s;
  }

 private:
  struct alignas(cache_line_size) cell {
    std::atomic<std::uint64_t> v{0};
  };
  std::uint32_t mask_;
  std::unique_ptr<cell[]> cells_;
};

// heap_bytes(v): the bytes a stored value owns on the heap, for byte
// bounds. A type can answer through ADL's `sturdy_heap_bytes(const T&)`;
// strings and contiguous containers of trivially copyable elements report
// their capacity, Outcome/optional wrappers what they hold; anything else
// counts 0 (only its inline size is charged).
template <class T>
[[nodiscard]] std::size_t heap_bytes(const T& v) noexcept {
  if constexpr (requires {
                  { sturdy_heap_bytes(v) } -> std::convertible_to<std::size_t>;
                }) {
    return sturdy_heap_bytes(v);
  } else if constexpr (requires {
                         v.has_value();
                         v.assume_value();
                       }) {
    if constexpr (requires { typename T::value_type; } && !std::is_void_v<typename T::value_type>) {
      return v.has_value() ? heap_bytes(v.assume_value()) : 0;
    } else {
      return 0;
    }
  } else if constexpr (requires {
                         typename T::value_type;
                         v.capacity();
                         v.data();
                       }) {
    return std::is_trivially_copyable_v<typename T::value_type>
               ? v.capacity() * sizeof(typename T::value_type)
               : 0;
  } else {
    return 0;
  }
}

struct empty_shard_state {};

// concurrent_map<V, ShardState>
//
// `shards` is rounded up to a power of two (at least 1); `thread_slots` 0
// picks `default_thread_slots()`.
template <class V, class ShardState = empty_shard_state>
class concurrent_map {
 public:
  using table_type = absl::flat_hash_map<std::string, V, map_hasher, map_key_eq>;
  using iterator = typename table_type::iterator;

  // What a writer (exclusive lock) and a shard reader see.
  struct shard {
    table_type table;
    ShardState state{};
    // CLOCK hand: the key the next sweep starts at, and its hash.
    std::string hand;
    std::size_t hand_hash = 0;
  };

  // The bytes one table slot takes (the key inline, the value, the control
  // byte): the fixed per-entry cost of a map, for byte bounds.
  static constexpr std::size_t slot_bytes = sizeof(typename table_type::value_type) + 1;

  // Heap bytes a key costs beyond its slot: libstdc++ keeps keys of up to 15
  // bytes inline (SSO).
  [[nodiscard]] static constexpr std::size_t key_heap_bytes(std::size_t key_size) noexcept {
    return key_size > 15 ? key_size + 1 : 0;
  }

  explicit concurrent_map(std::size_t shards = 64, std::uint32_t thread_slots = 0)
      : shard_mask_(std::bit_ceil(std::max<std::size_t>(shards, 1)) - 1),
        slot_mask_((thread_slots == 0 ? default_thread_slots() : std::bit_ceil(thread_slots)) - 1),
        lines_per_slot_((shard_mask_ + 1 + counters_per_line - 1) / counters_per_line),
        shards_(std::make_unique<shard_slot[]>(shard_mask_ + 1)),
        readers_(std::make_unique<reader_line[]>((slot_mask_ + 1) * lines_per_slot_)) {}
  concurrent_map(const concurrent_map&) = delete;
  concurrent_map& operator=(const concurrent_map&) = delete;

  [[nodiscard]] static std::size_t hash(std::string_view key) noexcept { return map_hash(key); }
  [[nodiscard]] std::size_t shard_count() const noexcept { return shard_mask_ + 1; }
  [[nodiscard]] std::size_t shard_of(std::size_t hash) const noexcept {
    // The table uses the low bits of the hash; pick the shard from the high
    // bits so the two stay independent.
    return (hash >> 32 ^ hash >> 48) & shard_mask_;
  }

  // find(k, fn): with k's shard read-locked, calls `fn(const V&)` if the key
  // is present and returns true; false when absent. Allocates nothing.
  template <class F>
  bool find(map_key k, F&& fn) const {
    const std::size_t i = shard_of(k.hash);
    const read_guard guard(*this, i);
    const shard& s = shards_[i].data;
    const auto it = s.table.find(k);
    if (it == s.table.end()) return false;
    std::forward<F>(fn)(std::as_const(it->second));
    return true;
  }

  // read_shard(i, fn): `fn(const shard&)` with shard i read-locked (stats,
  // snapshots).
  template <class F>
  decltype(auto) read_shard(std::size_t i, F&& fn) const {
    const read_guard guard(*this, i);
    return std::forward<F>(fn)(std::as_const(shards_[i].data));
  }

  // write(hash, fn) / write_shard(i, fn): `fn(shard&)` with the shard
  // locked exclusively.
  template <class F>
  decltype(auto) write(std::size_t hash, F&& fn) {
    return write_shard(shard_of(hash), std::forward<F>(fn));
  }
  template <class F>
  decltype(auto) write_shard(std::size_t i, F&& fn) {
    const write_guard guard(*this, i);
    return std::forward<F>(fn)(shards_[i].data);
  }

  // evict_one(s, decide, max_steps): under the exclusive lock, walks the
  // shard from its CLOCK hand for at most `max_steps` entries and erases the
  // first one for which `decide(const std::string& key, V& value)` returns
  // true (decide clears reference bits of the entries it spares: their
  // second chance). Returns whether one was erased; its value is moved to
  // `*evicted` first when given (to destroy it after unlocking, if that is
  // expensive). The hand ends on the entry after the last one visited.
  template <class Decide>
  static bool evict_one(shard& s, Decide&& decide, std::size_t max_steps, V* evicted = nullptr) {
    auto& t = s.table;
    if (t.empty() || max_steps == 0) return false;
    auto it = s.hand.empty() ? t.end() : t.find(map_key{s.hand, s.hand_hash});
    if (it == t.end()) it = t.begin();
    bool found = false;
    for (std::size_t step = 0; step < max_steps; ++step) {
      if (decide(std::as_const(it->first), it->second)) {
        auto victim = it++;
        if (evicted != nullptr) *evicted = std::move(victim->second);
        t.erase(victim);
        found = true;
        break;
      }
      if (++it == t.end()) it = t.begin();
    }
    if (it == t.end() && !t.empty()) it = t.begin();
    if (it != t.end()) {
      s.hand.assign(it->first);
      s.hand_hash = map_hash(s.hand);
    } else {
      s.hand.clear();
    }
    return found;
  }

 private:
  static constexpr std::size_t counters_per_line = cache_line_size / sizeof(std::atomic<std::uint32_t>);

  // What readers touch first (the writer flag and the table's header) shares
  // one line; the writers' mutex sits after it.
  struct alignas(cache_line_size) shard_slot {
    std::atomic<std::uint32_t> writer{0};
    shard data;
    std::mutex mu;
  };
  struct alignas(cache_line_size) reader_line {
    std::atomic<std::uint32_t> count[counters_per_line] = {};
  };

  std::atomic<std::uint32_t>& reader_count(std::size_t slot, std::size_t i) const noexcept {
    return readers_[slot * lines_per_slot_ + i / counters_per_line].count[i % counters_per_line];
  }

  class read_guard {
   public:
    read_guard(const concurrent_map& m, std::size_t i) noexcept
        : count_(m.reader_count(thread_index() & m.slot_mask_, i)) {
      shard_slot& s = m.shards_[i];
      for (;;) {
        count_.fetch_add(1, std::memory_order_seq_cst);
        if (STURDY_LIKELY(s.writer.load(std::memory_order_seq_cst) == 0)) return;
        // A writer is in (or entering): step back and wait on its mutex.
        count_.fetch_sub(1, std::memory_order_release);
        const std::lock_guard wait(s.mu);
      }
    }
    read_guard(const read_guard&) = delete;
    read_guard& operator=(const read_guard&) = delete;
    ~read_guard() { count_.fetch_sub(1, std::memory_order_release); }

   private:
    std::atomic<std::uint32_t>& count_;
  };

  class write_guard {
   public:
    write_guard(concurrent_map& m, std::size_t i) : s_(m.shards_[i]) {
      s_.mu.lock();
      s_.writer.store(1, std::memory_order_seq_cst);
      for (std::size_t slot = 0; slot <= m.slot_mask_; ++slot) {
        const std::atomic<std::uint32_t>& c = m.reader_count(slot, i);
        for (unsigned spins = 0; c.load(std::memory_order_seq_cst) != 0; ++spins) {
          if (spins < 64) {
            cpu_relax();
          } else {
            std::this_thread::yield();
          }
        }
      }
    }
    write_guard(const write_guard&) = delete;
    write_guard& operator=(const write_guard&) = delete;
    ~write_guard() {
      s_.writer.store(0, std::memory_order_seq_cst);
      s_.mu.unlock();
    }

   private:
    shard_slot& s_;
  };

  const std::size_t shard_mask_;
  const std::size_t slot_mask_;
  const std::size_t lines_per_slot_;
  const std::unique_ptr<shard_slot[]> shards_;
  const std::unique_ptr<reader_line[]> readers_;
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_CONCURRENT_MAP_HPP_
