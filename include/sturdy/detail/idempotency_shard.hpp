// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/idempotency_shard.hpp
// -----------------------------------------------------------------------------
//
// Internals of `sturdy::memory_idempotency_store` (idempotency.hpp): its
// entry (the value type of a `detail::concurrent_map`), the per-shard state
// (the map's ShardState), and what a writer does with a shard: pin and unpin
// leases, link and wake waiters, erase, and evict with CLOCK through
// `concurrent_map::evict_one`.
//
// Every function here runs with the shard locked exclusively (the map's
// write side) and takes `now` explicitly, so the state transitions can be
// reasoned about without a clock. The one exception is the replay, which
// the store does under the read lock: it reads an entry and sets only its
// `referenced` bit, a relaxed atomic. No stability promise.

#ifndef STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_
#define STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/concurrent_map.hpp"

namespace sturdy::detail {

enum class idem_state : std::uint8_t { in_progress, completed };

// One key's record. `deadline` is the lease expiry while in progress and the
// TTL expiry once completed. Written only under the shard's write lock,
// except `referenced` (the CLOCK bit), which a replay sets under the read
// lock. Fields a replay reads come first, next to the key in the table slot.
template <class V, class Waiter>
struct idem_entry {
  time_point deadline{};
  std::uint64_t fingerprint = 0;
  idem_state state = idem_state::in_progress;
  relaxed_atomic<bool> referenced{false};  // set by a replay, cleared by the hand
  std::optional<V> value;                  // engaged only when completed
  std::uint64_t token = 0;                 // fencing token of the current (or last) owner
  Waiter* waiters = nullptr;               // intrusive list of parked duplicates
  std::size_t charge = 0;                  // bytes charged to the shard for this entry
};

// A shard's bookkeeping besides its table, written under the write lock.
// (Hits are counted by the store on a striped counter: replays run under
// the read lock.)
struct idem_shard_state {
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
  std::uint64_t misses = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t evictions = 0;
  std::uint64_t takeovers = 0;
  std::uint64_t expirations = 0;
};

// What the store does to a write-locked shard of its map.
template <class V, class Waiter>
struct idem_shard {
  using entry = idem_entry<V, Waiter>;
  using map_type = concurrent_map<entry, idem_shard_state>;
  using shard = typename map_type::shard;
  using iterator = typename map_type::iterator;

  // The fixed cost charged per entry on top of the key and value heap bytes:
  // the table slot and its control byte.
  static constexpr std::size_t entry_overhead = map_type::slot_bytes;

  [[nodiscard]] static constexpr std::size_t key_charge_of(std::size_t key_size) noexcept {
    return map_type::key_heap_bytes(key_size);
  }

  // Wakes and unlinks every waiter parked on `e`. The waiters' nodes stay
  // alive until they retake the write lock (they always do before
  // returning).
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

  static void link(entry& e, Waiter& w) {
    if (!w.wake.stop_possible()) w.wake = std::stop_source();
    w.next = e.waiters;
    w.linked = true;
    e.waiters = &w;
  }

  static void unlink(shard& s, map_key k, Waiter& w) noexcept {
    if (!w.linked) return;
    auto it = s.table.find(k);
    if (it != s.table.end()) {
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
  static void pin(idem_shard_state& st, entry& e, time_point deadline, bool takeover) noexcept {
    if (!takeover) {
      e.state = idem_state::in_progress;
      ++st.in_progress;
      st.pinned_bytes += e.charge;
    }
    e.deadline = deadline;
    if (deadline < st.min_lease_deadline) st.min_lease_deadline = deadline;
  }
  // `e` (in progress) is about to complete: call before charging its value.
  static void unpin(idem_shard_state& st, entry& e) noexcept {
    e.state = idem_state::completed;
    --st.in_progress;
    st.pinned_bytes -= e.charge;
  }

  // `e` is about to leave the table: wake its waiters, take back its charge.
  static void forget(idem_shard_state& st, entry& e) noexcept {
    wake_all(e);
    if (e.state == idem_state::in_progress) {
      --st.in_progress;
      st.pinned_bytes -= e.charge;
    }
    st.bytes -= e.charge;
  }

  static void erase(shard& s, iterator it) noexcept {
    forget(s.state, it->second);
    s.table.erase(it);
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

  // Evicts with CLOCK (`concurrent_map::evict_one`) until one more entry of
  // `charge` bytes fits under `max_entries` and `max_bytes` (0: no byte
  // bound); adds the evictions to `evicted`. Returns false, evicting
  // nothing, when the live in-progress entries alone leave no room; false
  // also when a full sweep finds nothing evictable (then
  // `min_lease_deadline` becomes exact).
  static bool make_room(shard& s, time_point now, std::size_t max_entries, std::size_t max_bytes,
                        std::size_t charge, std::uint32_t& evicted) {
    idem_shard_state& st = s.state;
    const auto full = [&] {
      return s.table.size() >= max_entries || (max_bytes != 0 && st.bytes + charge > max_bytes);
    };
    if (!full()) return true;
    if (now < st.min_lease_deadline &&
        (st.in_progress >= max_entries || (max_bytes != 0 && st.pinned_bytes + charge > max_bytes))) {
      return false;  // evicting every completed entry would not make room
    }
    while (full()) {
      time_point min_live = time_point::max();
      // A set bit spares an unexpired evictable entry once (cleared here).
      const auto decide = [&](const std::string&, entry& e) noexcept {
        if (!evictable(e, now)) {
          if (e.deadline < min_live) min_live = e.deadline;  // a live lease
          return false;
        }
        if (e.referenced.load() && now < e.deadline) {
          e.referenced.store(false);
          return false;
        }
        forget(st, e);  // evict_one erases it next
        return true;
      };
      // A sweep is two passes (every bit cleared once), one pass when every
      // entry is in progress (they have no bit).
      const std::size_t steps = st.in_progress == s.table.size() ? s.table.size() : 2 * s.table.size() + 1;
      if (!map_type::evict_one(s, decide, steps)) {
        // Completed entries are always evictable within two passes, so a
        // failed sweep saw only live leases, each of them at least once.
        st.min_lease_deadline = min_live;
        return false;
      }
      ++st.evictions;
      ++evicted;
    }
    return true;
  }
};

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_IDEMPOTENCY_SHARD_HPP_
