// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/idempotency_shard.hpp
// -----------------------------------------------------------------------------
//
// Internals of `sturdy::memory_idempotency_store` (idempotency.hpp): one shard
// of the key table, its entries, the CLOCK eviction sweep and the
// heterogeneous (allocation-free) lookup by `std::string_view`.
//
// Every function here is called with the shard's mutex held and takes `now`
// explicitly, so the state transitions can be reasoned about without a
// clock. No stability promise.

#ifndef STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_
#define STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <absl/container/flat_hash_map.h>
#include <absl/hash/hash.h>
#include <absl/strings/string_view.h>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"

namespace sturdy::detail {

// The hash of a key, computed once per call and used both to pick the shard
// and (through `idem_lookup`) inside the shard's table. Debian's Abseil has
// its own `absl::string_view`; convert at the boundary.
[[nodiscard]] inline std::size_t idem_hash_key(std::string_view key) noexcept {
  return absl::Hash<absl::string_view>{}(absl::string_view(key.data(), key.size()));
}

// A lookup key that carries its precomputed hash: finding it in the table
// neither allocates nor hashes again.
struct idem_lookup {
  std::string_view key;
  std::size_t hash;
};

struct idem_hasher {
  using is_transparent = void;
  std::size_t operator()(const std::string& k) const noexcept { return idem_hash_key(k); }
  std::size_t operator()(std::string_view k) const noexcept { return idem_hash_key(k); }
  std::size_t operator()(const idem_lookup& k) const noexcept { return k.hash; }
};

struct idem_key_eq {
  using is_transparent = void;
  static std::string_view view(const std::string& k) noexcept { return k; }
  static std::string_view view(std::string_view k) noexcept { return k; }
  static std::string_view view(const idem_lookup& k) noexcept { return k.key; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    return view(a) == view(b);
  }
};

// heap_bytes(v): the bytes a stored value owns on the heap, for the byte
// bound. Strings and contiguous containers of trivially copyable elements
// report their capacity, Outcome/optional wrappers what they hold; a user
// type can answer through ADL's `sturdy_heap_bytes(const T&)`; anything else
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

enum class idem_state : std::uint8_t { in_progress, completed };

// One key's record. `deadline` is the lease expiry while in progress and the
// TTL expiry once completed.
// Fields a replay reads come first, next to the key in the table slot, so a
// hit touches as few cache lines as possible.
template <class V, class Waiter>
struct idem_entry {
  time_point deadline{};
  std::uint64_t fingerprint = 0;
  idem_state state = idem_state::in_progress;
  bool referenced = false;    // CLOCK bit: set by a replay, cleared by the hand
  std::optional<V> value;     // engaged only when completed
  std::uint64_t token = 0;    // fencing token of the current (or last) owner
  Waiter* waiters = nullptr;  // intrusive list of parked duplicates
  std::size_t charge = 0;     // bytes charged to the shard for this entry
};

// One shard: a mutex, its table and its counters. Cache-line aligned so two
// shards never share a line.
template <class V, class Waiter>
struct alignas(cache_line_size) idem_shard {
  using entry = idem_entry<V, Waiter>;
  using map_type = absl::flat_hash_map<std::string, entry, idem_hasher, idem_key_eq>;
  using iterator = typename map_type::iterator;

  std::mutex mu;
  map_type map;
  std::string hand;           // CLOCK hand: key of the entry the next sweep starts at
  std::size_t hand_hash = 0;  // its hash, so finding it again does not rehash
  std::uint64_t next_token = 0;
  std::size_t bytes = 0;
  // The in-progress entries (live or lease-expired) and the bytes they are
  // charged (no value yet: overhead + key). A live one cannot be evicted.
  std::size_t in_progress = 0;
  std::size_t pinned_bytes = 0;
  // A lower bound of the lease deadlines of the in-progress entries: while
  // `now` is below it, no in-progress entry is evictable. Lowered when a
  // lease starts; raised to the exact minimum by a sweep that found nothing.
  time_point min_lease_deadline = time_point::max();
  // Counters, written under `mu` (so the hot path shares no extra line).
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t evictions = 0;
  std::uint64_t takeovers = 0;
  std::uint64_t expirations = 0;

  // The fixed cost charged per entry on top of the key and value heap bytes:
  // the table slot and its control byte.
  static constexpr std::size_t entry_overhead = sizeof(typename map_type::value_type) + 1;

  [[nodiscard]] static constexpr std::size_t key_charge_of(std::size_t key_size) noexcept {
    // std::string keeps short keys inline (SSO, 15 bytes in libstdc++).
    return key_size > 15 ? key_size + 1 : 0;
  }
  [[nodiscard]] static std::size_t key_charge(std::string_view key) noexcept {
    return key_charge_of(key.size());
  }

  // Wakes and unlinks every waiter parked on `e`. The waiters' nodes stay
  // alive until they retake `mu` (they always do before returning).
  static void wake_all(entry& e) noexcept {
    Waiter* w = e.waiters;
    e.waiters = nullptr;
    while (w != nullptr) {
      Waiter* next = w->next;
      w->next = nullptr;
      w->linked = false;
      w->wake.request_stop();
      w = next;
    }
  }

  void link(entry& e, Waiter& w) {
    if (!w.wake.stop_possible()) w.wake = std::stop_source();
    w.next = e.waiters;
    w.linked = true;
    e.waiters = &w;
  }

  void unlink(std::string_view key, std::size_t hash, Waiter& w) noexcept {
    if (!w.linked) return;
    auto it = map.find(idem_lookup{key, hash});
    if (it != map.end()) {
      for (Waiter** p = &it->second.waiters; *p != nullptr; p = &(*p)->next) {
        if (*p == &w) {
          *p = w.next;
          break;
        }
      }
    }
    w.next = nullptr;
    w.linked = false;
  }

  // `e` (new, or completed and expired with its value released, or in
  // progress when `takeover`) is in progress with a lease until `deadline`;
  // its charge stays fixed until it completes.
  void pin(entry& e, time_point deadline, bool takeover) noexcept {
    if (!takeover) {
      e.state = idem_state::in_progress;
      ++in_progress;
      pinned_bytes += e.charge;
    }
    e.deadline = deadline;
    if (deadline < min_lease_deadline) min_lease_deadline = deadline;
  }
  // `e` (in progress) is about to complete: call before charging its value.
  void unpin(entry& e) noexcept {
    e.state = idem_state::completed;
    --in_progress;
    pinned_bytes -= e.charge;
  }

  void erase(iterator it) noexcept {
    wake_all(it->second);
    if (it->second.state == idem_state::in_progress) {
      --in_progress;
      pinned_bytes -= it->second.charge;
    }
    bytes -= it->second.charge;
    map.erase(it);
  }

  // Whether the hand may evict `e` at `now`: completed entries and
  // in-progress entries whose lease has run out (abandoned by a crashed
  // owner). Live in-progress entries are never evicted. The hand does not
  // search for expired entries; it evicts the first evictable entry it
  // reaches whose CLOCK bit is clear, and an expired entry gets no second
  // chance (its bit is ignored).
  [[nodiscard]] static bool evictable(const entry& e, time_point now) noexcept {
    return e.state == idem_state::completed || now >= e.deadline;
  }

  // Evicts with CLOCK until one more entry of `charge` bytes fits under
  // `max_entries` and `max_bytes` (0: no byte bound); adds the evictions to
  // `evicted`. Returns false, evicting nothing, when the live in-progress
  // entries alone leave no room; false also when a full sweep finds nothing
  // evictable (then `min_lease_deadline` becomes exact).
  bool make_room(time_point now, std::size_t max_entries, std::size_t max_bytes, std::size_t charge,
                 std::uint32_t& evicted) {
    const auto full = [&] {
      return map.size() >= max_entries || (max_bytes != 0 && bytes + charge > max_bytes);
    };
    if (!full()) return true;
    if (now < min_lease_deadline &&
        (in_progress >= max_entries || (max_bytes != 0 && pinned_bytes + charge > max_bytes))) {
      return false;  // evicting every completed entry would not make room
    }
    // One lookup of the hand per admission; absl's erase leaves the other
    // iterators valid, so `it` walks on across evictions.
    auto it = hand.empty() ? map.end() : map.find(idem_lookup{hand, hand_hash});
    if (it == map.end()) it = map.begin();
    bool ok = true;
    while (ok && full()) {
      ok = evict_one(it, now);
      if (ok) ++evicted;
    }
    if (it != map.end()) {
      hand.assign(it->first);
      hand_hash = idem_hash_key(hand);
    } else {
      hand.clear();
    }
    return ok;
  }

 private:
  // One CLOCK sweep from `it`, giving each referenced completed entry a
  // second chance, evicting the first evictable entry without one; `it` ends
  // on the entry after the victim. A sweep is two passes (every bit cleared
  // once), one pass when every entry is in progress (they have no bit).
  bool evict_one(iterator& it, time_point now) {
    if (map.empty()) return false;
    const bool all_in_progress = in_progress == map.size();
    const std::size_t limit = all_in_progress ? map.size() : 2 * map.size() + 1;
    time_point min_live = time_point::max();
    for (std::size_t step = 0; step < limit; ++step) {
      entry& e = it->second;
      if (evictable(e, now)) {
        const bool expired = now >= e.deadline;
        if (e.referenced && !expired) {
          e.referenced = false;
        } else {
          auto victim = it++;
          if (it == map.end()) it = map.begin();
          erase(victim);
          if (map.empty()) it = map.end();
          ++evictions;
          return true;
        }
      } else if (e.deadline < min_live) {
        min_live = e.deadline;  // a live lease
      }
      if (++it == map.end()) it = map.begin();
    }
    // Completed entries are always evictable within two passes, so a failed
    // sweep saw only live leases, each of them at least once.
    min_lease_deadline = min_live;
    return false;
  }
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_
