// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/idempotency.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::idempotency_cache` runs a piece of work at most once per
// idempotency key and replays the stored outcome to every later caller with
// the same key: the server side of the IETF `Idempotency-Key` header, of
// Stripe's idempotent requests and of AWS Powertools' idempotency utility, in
// one primitive. Its memory lives in a store (`idempotency_store` concept):
// `memory_idempotency_store` here, a shared Redis store for a fleet.
//
// Life of a key in the store:
//
//   absent --begin--> in_progress(lease, token) --complete(token)--> completed(value, TTL)
//     ^                 |  |                                            |
//     |    abandon(token) /  lease runs out: the next begin with the     |
//     +-----------------+    same fingerprint takes over (new token)    |
//     +------- lease ran out and evicted / TTL runs out / evicted -------+
//
// Example:
//
//   sturdy::idempotency_cache<Receipt> payments({.ttl = std::chrono::hours(24)});
//
//   sturdy::result<Receipt> Charge(std::string_view key, const Request& req) {
//     auto r = payments.execute(key, sturdy::stable_fingerprint(req.body),
//                               [&] { return gateway.Charge(req); });
//     if (r.replayed) log("replayed ", key);
//     return std::move(r.result);  // Receipt, or errc::in_progress (409),
//                                  // key_mismatch (422), missing_key (400)...
//   }
//
// What `execute` returns: `idempotency_result<R>` with `R` the callable's
// outcome type (`execute_result_t<F>`: a `sturdy::result<T>`, any Outcome
// type, `std::expected`, `absl::StatusOr`, or `result<T>` around a plain
// value) and `replayed` (true when it came from the store). sturdy's own
// refusals (`missing_key`, `invalid_key`, `in_progress`, `key_mismatch`,
// `wait_timeout`, `capacity_exceeded`, `stale_token`, `invalid_options`, a
// store's `store_unavailable`) are returned inside `R`; `invalid_options`
// carries the message naming the field when R's error type can hold one, and
// the listener gets `options_rejected` on the first refused call. An
// exception thrown by the callable is rethrown to its caller after the store
// has been updated; when failures are cached it is stored and rethrown to
// every replay.
//
// Exactly once, even when storing fails: if storing the outcome throws after
// the work ran (a copy of T, a codec, bad_alloc), the caller still gets its
// own outcome, the listener gets `idempotency_outcome_not_stored`, and the
// key is completed with `errc::outcome_not_stored`, so the work never runs
// again while the key lives (replays get that error).
//
// Ownership: the cache keeps T past the call, so T, and the callable's
// success type, must own their memory (`sturdy::non_owning`, in
// sturdy/ownership.hpp): `std::string_view`, `std::span` and pointers are
// refused at compile time.
//
// Start-up check: `make_idempotency_cache<T>(options, store_options[, clock,
// sleeper][, listener])` returns `result<std::unique_ptr<cache>>`, refusing
// invalid options at once and deducing the clock, sleeper and listener
// types.
//
// What a replay looks like (the store keeps a `sturdy::outcome<T>`: a T, a
// `std::error_code` or an `exception_ptr`):
//   - a value: `R` rebuilt from the stored T, equal to the first caller's;
//   - an exception the callable threw: thrown again;
//   - an exception returned inside an Outcome `basic_outcome` (alone or with
//     an error): returned inside `R` again, as the first caller got it (if
//     the replaying callable's `R` cannot hold one, it is thrown);
//   - an error: rebuilt from its `std::error_code` with `make_failure<R>`, so
//     only what the error code carries survives. `std::error_code`, error
//     enums and sturdy's errc come back exactly; `absl::Status(Or)` keeps its
//     code (and a sturdy errc) but loses its message and payloads; any other
//     `E` is rebuilt by `from_error_code<E>` and loses whatever else it held.
//     The first caller gets the full error. To replay a rich error verbatim,
//     make it part of the value (`T` = a response that carries the status).
//
// Thread safety: `execute`, `stats` and every store operation may be called
// from any number of threads at once. The memory store is sharded (the
// `detail::concurrent_map` the registries use): each shard is an Abseil
// `flat_hash_map` under a reader-writer lock; a replay takes only the read
// side and writes no cache line another thread's replay writes; a lookup
// hashes the `std::string_view` key once and allocates nothing. Duplicates waiting
// for an in-flight key park on their sleeper (no busy-waiting) and are woken
// by the completion.
//
// Testing: instantiate with `sturdy::testing::manual_clock` (TTL, leases,
// wait deadlines) and `sturdy::testing::recording_sleeper` (a waiting
// duplicate then "sleeps" by advancing the clock; its `on_sleep` hook can
// complete the owner mid-wait, deterministically, on one thread).

#ifndef STURDY_IDEMPOTENCY_HPP_
#define STURDY_IDEMPOTENCY_HPP_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/detail/idempotency_shard.hpp"
#include "sturdy/detail/invoke_captured.hpp"
#include "sturdy/detail/stable_hash.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/ownership.hpp"

namespace sturdy {

// -----------------------------------------------------------------------------
// Fingerprints
// -----------------------------------------------------------------------------
//
// A fingerprint is a 64-bit hash of the request payload that the caller
// computes and passes with the key; a key reused with another fingerprint is
// refused with `errc::key_mismatch` (HTTP 422). Pass the same constant (e.g.
// 0) for every call to switch the check off.
//
// Which one to use:
//   - `stable_fingerprint`: 64-bit FNV-1a. The same value in every process,
//     run and platform. REQUIRED whenever the store is shared between
//     processes (Redis) or outlives the process.
//   - `process_fingerprint`: Abseil's hash. Faster on large payloads, but
//     Abseil salts it per process, so the same bytes hash differently in
//     another process (or after a restart): use it only with the in-memory
//     store.
// Neither is a cryptographic hash: a client that can choose colliding
// payloads on purpose can defeat the mismatch check (and only that check).

// stable_fingerprint(bytes): FNV-1a over `bytes`.
[[nodiscard]] constexpr std::uint64_t stable_fingerprint(std::string_view bytes) noexcept {
  return detail::fnv1a_append(detail::fnv1a_offset_basis, bytes);
}

// stable_fingerprint({field, ...}): FNV-1a over the fields, each prefixed by
// its length, so `{"ab", "c"}` and `{"a", "bc"}` differ.
[[nodiscard]] constexpr std::uint64_t stable_fingerprint(
    std::initializer_list<std::string_view> fields) noexcept {
  std::uint64_t h = detail::fnv1a_offset_basis;
  for (const std::string_view f : fields) {
    h = detail::fnv1a_append_u64(h, f.size());
    h = detail::fnv1a_append(h, f);
  }
  return h;
}

// process_fingerprint(bytes): Abseil's salted hash; in-process use only.
[[nodiscard]] inline std::uint64_t process_fingerprint(std::string_view bytes) noexcept {
  return static_cast<std::uint64_t>(detail::map_hash(bytes));
}

// -----------------------------------------------------------------------------
// Policies and options
// -----------------------------------------------------------------------------

// What a duplicate does while the first call with its key is still running.
enum class in_flight_policy : std::uint8_t {
  // Return `errc::in_progress` at once (IETF draft: 409 Conflict; Stripe).
  reject,
  // Park until the first call completes, then replay its outcome; give up
  // with `errc::wait_timeout` after `wait_timeout`. If the first call's
  // failure is not cached, one waiter runs the work itself (a retry).
  wait,
};

// Whether a failed outcome (an error or an exception) is stored and
// replayed.
enum class failure_caching : std::uint8_t {
  // The key is released so that a retry runs the work again (AWS Powertools).
  dont_cache,
  // Every failure is stored and replayed like a success (Stripe stores 5xx).
  cache,
  // Only failures that `idempotency_policy::is_permanent` accepts.
  cache_if_permanent,
};

// idempotency_policy
//
// Per use: the cache's default lives in `idempotency_options::policy`; pass
// another to `execute(key, fingerprint, policy, fn)` for one call.
struct idempotency_policy {
  // Default `reject` (the IETF/Stripe behaviour).
  in_flight_policy in_flight = in_flight_policy::reject;
  // Longest time a `wait` duplicate waits; >= 0. Default 5 s.
  duration wait_timeout = std::chrono::seconds(5);
  // Default `dont_cache`.
  failure_caching failures = failure_caching::dont_cache;
  // Required with `cache_if_permanent`, ignored otherwise: true for a
  // failure that a retry cannot fix (a 4xx, a validation error). Any
  // callable, capturing lambdas included (`sturdy::callback`: copying the
  // policy never allocates). Called only on failures, possibly from several
  // threads at once; one that throws counts as "not permanent". Default
  // empty.
  callback<bool(const failure_info&)> is_permanent = {};

  // Empty when valid, otherwise a sentence naming the bad field.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (wait_timeout < duration::zero()) return "idempotency_policy.wait_timeout must be >= 0";
    if (in_flight != in_flight_policy::reject && in_flight != in_flight_policy::wait)
      return "idempotency_policy.in_flight must be reject or wait";
    if (failures != failure_caching::dont_cache && failures != failure_caching::cache &&
        failures != failure_caching::cache_if_permanent)
      return "idempotency_policy.failures must be dont_cache, cache or cache_if_permanent";
    if (failures == failure_caching::cache_if_permanent && !is_permanent)
      return "idempotency_policy.is_permanent must be set with failure_caching::cache_if_permanent";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// idempotency_options
//
// Aggregate; fill with designated initializers. An invalid value makes every
// `execute` return `errc::invalid_options` (check `validate()` first).
struct idempotency_options {
  // How long a completed outcome is replayed; > 0. Default 24 h (Stripe).
  duration ttl = std::chrono::hours(24);
  // How long an in-progress key belongs to its first caller before another
  // caller may take it over; > 0. Set it above the work's worst-case
  // latency. Default 30 s.
  duration lease = std::chrono::seconds(30);
  // Longest accepted key in bytes (longer: `errc::invalid_key`); >= 1.
  // Default 255 (Stripe).
  std::size_t max_key_length = 255;
  // The default per-use policy. Default: reject duplicates in flight, do not
  // cache failures.
  idempotency_policy policy = {};
  // For stores that cannot wake waiters (`wakes_waiters == false`): first
  // and longest interval between polls of a waiting duplicate; doubles from
  // one to the other. Defaults 1 ms and 50 ms; 0 < initial <= max.
  duration poll_initial = std::chrono::milliseconds(1);
  duration poll_max = std::chrono::milliseconds(50);

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (ttl <= duration::zero()) return "idempotency_options.ttl must be > 0";
    if (lease <= duration::zero()) return "idempotency_options.lease must be > 0";
    if (max_key_length == 0) return "idempotency_options.max_key_length must be >= 1";
    if (poll_initial <= duration::zero()) return "idempotency_options.poll_initial must be > 0";
    if (poll_max < poll_initial) return "idempotency_options.poll_max must be >= poll_initial";
    return policy.validation_message();
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// memory_store_options
//
// Aggregate. The bounds are split evenly between shards: each shard holds at
// most `max_entries / shards` entries and `max_bytes / shards` bytes, so the
// totals never exceed the bounds.
struct memory_store_options {
  // Number of independently locked shards; a power of two in [1, 1024].
  // Default 64.
  std::size_t shards = 64;
  // Most entries kept (completed and in progress); >= shards. Default 2^20.
  std::size_t max_entries = std::size_t{1} << 20;
  // Most bytes charged (key, value heap bytes and a fixed per-entry
  // overhead, see `memory_idempotency_store::entry_overhead`); 0 = no byte
  // bound, otherwise `max_bytes / shards` must be at least
  // `memory_idempotency_store<V>::min_shard_bytes` (checked by the store,
  // whose entry size depends on V; see its `validation_message`). A key whose
  // entry alone exceeds `max_bytes / shards` is refused with
  // `capacity_exceeded` without evicting anything. Values are charged when
  // stored; the bound is restored (by eviction) when the shard next admits a
  // key. Default 0.
  std::size_t max_bytes = 0;

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (shards == 0 || shards > 1024 || (shards & (shards - 1)) != 0)
      return "memory_store_options.shards must be a power of two in [1, 1024]";
    if (max_entries < shards) return "memory_store_options.max_entries must be >= shards";
    if (max_bytes != 0 && max_bytes < shards)
      return "memory_store_options.max_bytes must be 0 (unbounded) or >= shards";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// -----------------------------------------------------------------------------
// The store concept
// -----------------------------------------------------------------------------

// fencing_token: identifies one ownership of a key. Every begin that acquires
// a key (first time, after expiry, or by takeover) gets a token greater than
// any earlier one for that key; `complete` and `abandon` succeed only with the
// key's current token, so a stale owner can never overwrite a newer run.
struct fencing_token {
  std::uint64_t value = 0;
  friend bool operator==(fencing_token, fencing_token) = default;
  friend auto operator<=>(fencing_token, fencing_token) = default;
};

// idempotency_waiter: a duplicate parked on an in-progress key. Passed to
// `begin`; a store that wakes waiters links it to the entry and requests stop
// on `wake` when the key completes, is abandoned, taken away or evicted. The
// front sleeps on `wake.get_token()`. Must stay alive, and be passed to
// `cancel_wait`, until `linked` is false. The memory store creates `wake`
// (one small heap allocation: the stop state) when it first links the node,
// under the shard lock; the cache reuses it across re-parks and replaces it
// only after a wake-up, so a waiting call allocates once per wake-up it
// survives, and a call that never waits allocates nothing.
struct idempotency_waiter {
  std::stop_source wake{std::nostopstate};  // created by the store when linked
  idempotency_waiter* next = nullptr;       // store's list; guarded by the store
  bool linked = false;                      // guarded by the store
};

enum class begin_status : std::uint8_t {
  acquired,     // the caller owns the key: run the work, then complete/abandon
  in_progress,  // another owner holds a live lease
  completed,    // a stored outcome: replay `value`
  mismatch,     // the key exists with another fingerprint
};

// begin_outcome<V>: what `Store::begin` answers.
template <class V>
struct begin_outcome {
  begin_status status = begin_status::acquired;
  fencing_token token{};       // acquired: the caller's token
  bool took_over = false;      // acquired from an owner whose lease ran out
  duration lease_remaining{};  // in_progress: time until the lease runs out (> 0)
  std::uint32_t evicted = 0;   // entries evicted to admit this key
  std::optional<V> value;      // completed: a copy of the stored value
};

// Counters kept by a store (monotonic, except `entries` and `bytes`).
struct idempotency_store_stats {
  std::uint64_t hits = 0;         // begins answered with a stored outcome
  std::uint64_t misses = 0;       // begins that acquired an absent or expired key
  std::uint64_t mismatches = 0;   // begins refused for another fingerprint
  std::uint64_t evictions = 0;    // entries evicted for room
  std::uint64_t takeovers = 0;    // begins that took over an expired lease
  std::uint64_t expirations = 0;  // completed entries found past their TTL
  std::size_t entries = 0;        // entries held now
  std::size_t bytes = 0;          // bytes charged now
};

// idempotency_store<S>
//
// What `idempotency_cache` needs from its memory. Every operation is atomic
// with respect to the others on the same key (the memory store: a shard
// lock; Redis: one Lua script per operation, see docs/idempotency.md).
//
//   S::value_type                           the stored outcome (copyable)
//   S::wakes_waiters                        true when begin links waiters and
//                                           wakes them; false: the cache polls
//   s.begin(key, fingerprint, lease, w)     -> result<begin_outcome<value_type>>
//       absent, or completed past its TTL -> acquired (new token, lease),
//       whatever the fingerprint (an expired entry is gone); otherwise another
//       fingerprint -> mismatch, in progress or completed, lease live or run
//       out; same fingerprint: lease run out -> acquired with took_over; live
//       lease -> in_progress (links `w` if not null); completed ->
//       completed(copy). Errors: capacity_exceeded, store_unavailable, ...
//   s.complete(key, token, value, ttl)      -> result<void>; stale_token
//       unless `token` is the key's current in-progress token
//   s.abandon(key, token)                   -> result<void>; releases the key
//   s.cancel_wait(key, w)                   unlinks `w` if still linked; must
//                                           not throw (the cache calls it
//                                           while unwinding)
//   s.stats()                               -> idempotency_store_stats
template <class S>
concept idempotency_store = std::copy_constructible<typename S::value_type> &&
    requires(S& s, const S& cs, std::string_view key, std::uint64_t fingerprint, duration d,
             fencing_token token, typename S::value_type value, idempotency_waiter* w,
             idempotency_waiter& wr) {
  { S::wakes_waiters } -> std::convertible_to<bool>;
  { s.begin(key, fingerprint, d, w) } -> std::same_as<result<begin_outcome<typename S::value_type>>>;
  { s.complete(key, token, std::move(value), d) } -> std::same_as<result<void>>;
  { s.abandon(key, token) } -> std::same_as<result<void>>;
  { s.cancel_wait(key, wr) } -> std::same_as<void>;
  { cs.stats() } -> std::same_as<idempotency_store_stats>;
};

namespace detail {
// Whether a stored value type (a `T`, or `sturdy::outcome<T>`) refers to
// memory it does not own (see sturdy/ownership.hpp).
template <class V>
inline constexpr bool stores_non_owning = non_owning<V>;
template <class T>
inline constexpr bool stores_non_owning<outcome<T>> = non_owning<T>;
}  // namespace detail

// -----------------------------------------------------------------------------
// memory_idempotency_store<V, Clock>
// -----------------------------------------------------------------------------
//
// The in-process store, on the same `detail::concurrent_map` as the
// registries: `options.shards` shards, each an Abseil
// `flat_hash_map<std::string, entry>` under a reader-writer lock whose
// readers announce themselves in per-thread counters. Keys are looked up by
// `std::string_view` with a precomputed hash: no allocation, one hash per
// call. A replay (a completed key, within its TTL, same fingerprint) takes
// only the read lock: it copies the value out, sets the entry's reference
// bit (a relaxed atomic, written only when clear) and counts the hit on a
// per-thread stripe, so replays on several threads write no cache line in
// common. Everything else (a new, mismatching, expired or in-progress key,
// linking a waiter, complete, abandon, cancel_wait, eviction) takes the
// shard's write lock. Bounded by `max_entries` (and `max_bytes`): admitting
// a key into a full shard evicts with CLOCK. Evictable are completed
// entries and in-progress entries whose lease ran out (a crashed owner's);
// a replay sets a completed entry's reference bit. The hand walks on from
// where it stopped and evicts the first evictable entry whose bit is clear,
// clearing set bits as it passes (a second chance); an entry past its TTL
// or lease gets no second chance, but the hand does not search for expired
// entries first. Live in-progress entries are never evicted; when they
// alone fill the shard new keys get `errc::capacity_exceeded` at once,
// without evicting. TTLs are lazy: an expired entry is dropped when it is
// next looked up or reached by the hand. The clock is read once per call.
// An owner whose lease-expired entry was evicted gets `stale_token` from
// `complete`; the cache then re-acquires the key (see
// `idempotency_completion_refused`).
//
// Pinned: not copyable or movable. Thread safety: every member function may be
// called concurrently.
template <class V, clock_source Clock = steady_clock_source>
class memory_idempotency_store {
  static_assert(!detail::stores_non_owning<V>,
                "An idempotency store keeps its values past the call, so the stored type must own its "
                "memory: store std::string rather than std::string_view, a container rather than "
                "std::span, a value rather than a pointer (see sturdy/ownership.hpp).");
  using ops = detail::idem_shard<V, idempotency_waiter>;
  using entry = typename ops::entry;
  using map_type = typename ops::map_type;
  using shard = typename map_type::shard;

 public:
  using value_type = V;
  using options_type = memory_store_options;
  static constexpr bool wakes_waiters = true;
  // Bytes charged per entry besides its key (if longer than 15 bytes) and the
  // value's heap bytes.
  static constexpr std::size_t entry_overhead = ops::entry_overhead;
  // The least byte bound per shard (`max_bytes / shards`): one entry with a
  // 255-byte key (the default `idempotency_options::max_key_length`).
  static constexpr std::size_t min_shard_bytes = entry_overhead + ops::key_charge_of(255);

  // Empty when this store accepts `options`, otherwise a sentence naming the
  // bad field: `options.validation_message()`, plus the byte floor, which
  // depends on `V` (a shard must hold at least one maximal entry, or every
  // new key would evict the whole shard and still not fit).
  [[nodiscard]] static std::string_view validation_message(const memory_store_options& options) noexcept {
    const std::string_view m = options.validation_message();
    if (!m.empty()) return m;
    if (options.max_bytes != 0 && options.max_bytes / options.shards < min_shard_bytes)
      return "memory_store_options.max_bytes must be 0 or >= shards * "
             "memory_idempotency_store::min_shard_bytes (one entry with a 255-byte key per shard)";
    return {};
  }
  // Why this store refuses every call (errc::invalid_options); empty when valid.
  [[nodiscard]] std::string_view validation_message() const noexcept { return validation_message(options_); }

  explicit memory_idempotency_store(memory_store_options options = {}, Clock clock = Clock())
      : clock_(std::move(clock)),
        options_(options),
        options_ok_(validation_message(options).empty()),
        map_(options_ok_ ? options_.shards : 1),
        shard_entries_(options_ok_ ? options_.max_entries / map_.shard_count() : 0),
        shard_bytes_(options_ok_ ? options_.max_bytes / map_.shard_count() : 0) {}
  memory_idempotency_store(const memory_idempotency_store&) = delete;
  memory_idempotency_store& operator=(const memory_idempotency_store&) = delete;

  // memory_idempotency_store::begin()
  //
  // See `idempotency_store`. `waiter`, when not null and the answer is
  // `in_progress`, is linked to the entry and woken when its state changes.
  // A replay takes the shard's read lock only; every other answer its write
  // lock.
  [[nodiscard]] result<begin_outcome<V>> begin(std::string_view key, std::uint64_t fingerprint,
                                               duration lease, idempotency_waiter* waiter = nullptr) {
    if (STURDY_UNLIKELY(!options_ok_ || lease <= duration::zero())) return errc::invalid_options;
    const detail::map_key k{key, map_type::hash(key)};
    const time_point now = clock_.now();
    begin_outcome<V> out;
    bool replayed = false;
    (void)map_.find(k, [&](const entry& e) {
      if (e.state == detail::idem_state::completed && now < e.deadline && e.fingerprint == fingerprint) {
        hits_.add();
        e.referenced.store_if_changed(true);
        out.value.emplace(*e.value);  // may throw: the read lock is released
        replayed = true;
      }
    });
    if (STURDY_LIKELY(replayed)) {
      out.status = begin_status::completed;
      return out;
    }
    return begin_slow(k, fingerprint, now, lease, waiter);
  }

  // memory_idempotency_store::complete()
  //
  // Stores `value` for `ttl` if `token` still owns the key; wakes waiters.
  [[nodiscard]] result<void> complete(std::string_view key, fencing_token token, V value, duration ttl) {
    if (STURDY_UNLIKELY(!options_ok_ || ttl <= duration::zero())) return errc::invalid_options;
    const detail::map_key k{key, map_type::hash(key)};
    const time_point now = clock_.now();
    return map_.write(k.hash, [&](shard& s) -> result<void> {
      auto it = s.table.find(k);
      if (it == s.table.end() || it->second.state != detail::idem_state::in_progress ||
          it->second.token != token.value) {
        return errc::stale_token;
      }
      auto& e = it->second;
      e.value.emplace(std::move(value));
      ops::unpin(s.state, e);
      const std::size_t value_bytes = detail::heap_bytes(*e.value);
      e.charge += value_bytes;
      s.state.bytes += value_bytes;
      e.deadline = detail::saturating_add(now, ttl);
      e.referenced.store(false);
      ops::wake_all(e);
      return success();
    });
  }

  // memory_idempotency_store::abandon()
  //
  // Releases the key (the next begin acquires it) if `token` still owns it.
  [[nodiscard]] result<void> abandon(std::string_view key, fencing_token token) {
    if (STURDY_UNLIKELY(!options_ok_)) return errc::invalid_options;
    const detail::map_key k{key, map_type::hash(key)};
    return map_.write(k.hash, [&](shard& s) -> result<void> {
      auto it = s.table.find(k);
      if (it == s.table.end() || it->second.state != detail::idem_state::in_progress ||
          it->second.token != token.value) {
        return errc::stale_token;
      }
      ops::erase(s, it);
      return success();
    });
  }

  // memory_idempotency_store::cancel_wait()
  //
  // Unlinks `waiter` if the store has not already woken it.
  void cancel_wait(std::string_view key, idempotency_waiter& waiter) noexcept {
    const detail::map_key k{key, map_type::hash(key)};
    map_.write(k.hash, [&](shard& s) noexcept { ops::unlink(s, k, waiter); });
  }

  // memory_idempotency_store::stats()
  //
  // Sums the shards' counters (each read under its shard's read lock) and
  // the hit stripes; the total is not one atomic snapshot.
  [[nodiscard]] idempotency_store_stats stats() const {
    idempotency_store_stats out;
    for (std::size_t i = 0; i < map_.shard_count(); ++i) {
      map_.read_shard(i, [&](const shard& s) {
        out.misses += s.state.misses;
        out.mismatches += s.state.mismatches;
        out.evictions += s.state.evictions;
        out.takeovers += s.state.takeovers;
        out.expirations += s.state.expirations;
        out.entries += s.table.size();
        out.bytes += s.state.bytes;
      });
    }
    out.hits = hits_.sum();
    return out;
  }

  // memory_idempotency_store::memory_usage()
  //
  // Approximate bytes held: every shard table's slots and control bytes at
  // their current capacity, plus keys' and values' heap bytes.
  [[nodiscard]] std::size_t memory_usage() const {
    std::size_t total = sizeof(*this) + map_.shard_count() * sizeof(shard);
    for (std::size_t i = 0; i < map_.shard_count(); ++i) {
      total += map_.read_shard(i, [](const shard& s) {
        return s.table.capacity() * entry_overhead + (s.state.bytes - s.table.size() * entry_overhead);
      });
    }
    return total;
  }

  [[nodiscard]] const memory_store_options& options() const noexcept { return options_; }

 private:
  // Kept out of line so that begin()'s replay path stays small enough to
  // be inlined with the table lookup.
  [[gnu::noinline]] result<begin_outcome<V>> begin_slow(detail::map_key k, std::uint64_t fingerprint,
                                                        time_point now, duration lease,
                                                        idempotency_waiter* waiter) {
    begin_outcome<V> out;
    const bool admitted = map_.write(
        k.hash, [&](shard& s) { return begin_locked(s, k, fingerprint, now, lease, waiter, out); });
    if (STURDY_UNLIKELY(!admitted)) return errc::capacity_exceeded;
    return out;
  }

  // begin() under the write lock: every case but a replay that found its
  // entry under the read lock (which may also end here, when the entry
  // changed in between). False: no room (capacity_exceeded).
  bool begin_locked(shard& s, detail::map_key k, std::uint64_t fingerprint, time_point now, duration lease,
                    idempotency_waiter* waiter, begin_outcome<V>& out) {
    detail::idem_shard_state& st = s.state;
    auto it = s.table.find(k);
    if (STURDY_LIKELY(it != s.table.end())) {
      auto& e = it->second;
      if (e.state == detail::idem_state::completed) {
        if (STURDY_LIKELY(now < e.deadline)) {
          if (STURDY_UNLIKELY(e.fingerprint != fingerprint)) {
            ++st.mismatches;
            out.status = begin_status::mismatch;
            return true;
          }
          hits_.add();
          e.referenced.store(true);
          out.status = begin_status::completed;
          out.value.emplace(*e.value);
          return true;
        }
        // Past its TTL: the key is absent again; reuse the slot.
        ++st.expirations;
        ++st.misses;
        const std::size_t value_bytes = e.charge - entry_overhead - ops::key_charge_of(k.key.size());
        e.charge -= value_bytes;
        st.bytes -= value_bytes;
        e.value.reset();
        acquire(st, e, fingerprint, now, lease, false, out);
        return true;
      }
      // In progress, lease live or not: the key stays bound to the payload it
      // was begun with, so another payload is refused even after the lease ran
      // out (it must not take over and run: IETF 422).
      if (e.fingerprint != fingerprint) {
        ++st.mismatches;
        out.status = begin_status::mismatch;
        return true;
      }
      if (now < e.deadline) {
        if (waiter != nullptr) ops::link(e, *waiter);
        out.status = begin_status::in_progress;
        out.lease_remaining = detail::time_between(now, e.deadline);
        return true;
      }
      // The owner's lease ran out: take over with a newer token. Parked
      // waiters stay parked; the new owner's completion wakes them.
      ++st.takeovers;
      acquire(st, e, fingerprint, now, lease, true, out);
      out.took_over = true;
      return true;
    }
    const std::size_t charge = entry_overhead + ops::key_charge_of(k.key.size());
    // An entry larger than the whole shard can never fit: refuse it before
    // evicting anything (a key longer than the store was sized for).
    if (STURDY_UNLIKELY(shard_bytes_ != 0 && charge > shard_bytes_)) return false;
    if (!ops::make_room(s, now, shard_entries_, shard_bytes_, charge, out.evicted)) return false;
    auto& e = s.table
                  .lazy_emplace(k,
                                [&](const auto& ctor) {
                                  ctor(std::piecewise_construct, std::forward_as_tuple(k.key),
                                       std::forward_as_tuple());
                                })
                  ->second;
    e.charge = charge;
    st.bytes += charge;
    ++st.misses;
    acquire(st, e, fingerprint, now, lease, false, out);
    return true;
  }

  static void acquire(detail::idem_shard_state& st, entry& e, std::uint64_t fingerprint, time_point now,
                      duration lease, bool takeover, begin_outcome<V>& out) noexcept {
    ops::pin(st, e, detail::saturating_add(now, lease), takeover);
    e.token = ++st.next_token;
    e.fingerprint = fingerprint;
    e.referenced.store(false);
    out.status = begin_status::acquired;
    out.token = fencing_token{e.token};
  }

  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  memory_store_options options_;
  bool options_ok_;
  map_type map_;
  std::size_t shard_entries_ = 0;
  std::size_t shard_bytes_ = 0;
  detail::striped_counter hits_;
};

static_assert(idempotency_store<memory_idempotency_store<outcome<int>>>);

// -----------------------------------------------------------------------------
// Events (see sturdy/listener.hpp). `key` views the caller's key; it is valid
// only during the listener call.
// -----------------------------------------------------------------------------

// The caller got a stored outcome.
struct idempotency_replayed {
  std::string_view key;
};
// The caller acquired the key and is about to run the work.
struct idempotency_executed {
  std::string_view key;
  fencing_token token;
  bool took_over;  // from an owner whose lease ran out
};
// The call was refused without running: `reason` is missing_key,
// invalid_key, in_progress, key_mismatch, wait_timeout, capacity_exceeded,
// invalid_options or a store's own error (store_unavailable, ...).
struct idempotency_rejected {
  std::string_view key;
  std::error_code reason;
};
// A duplicate started waiting for the in-flight call.
struct idempotency_waiting {
  std::string_view key;
  duration timeout;
};
// The work ran but its outcome could not be stored, and the caller gets
// `error` instead of it: `stale_token` when another run holds the key (took
// it over after this run's lease ran out, and is running or has completed:
// a retry waits for or replays that run's outcome) or another payload does,
// or a store error. Not emitted when the store refused the token only
// because the key no longer exists (this run's lease ran out and its entry
// was evicted, or the run that took over abandoned it): then nobody holds
// the key, so the cache acquires it again and stores this run's outcome (the
// store counts one more miss), and the caller gets its result.
struct idempotency_completion_refused {
  std::string_view key;
  fencing_token token;
  std::error_code error;
};
// Entries were evicted to admit a key.
struct idempotency_evicted {
  std::size_t count;
};
// The work ran, but storing its outcome threw (`exception`: a throwing copy
// of `T`, a codec's `encode`, `std::bad_alloc`). The caller got its own
// result (or its own exception, or failure) all the same. `fenced`: the key
// was completed with `errc::outcome_not_stored` instead, so the work never
// runs again while the key lives (`ttl`) and every replay gets that error.
// Not fenced only when the store could not take even that (Redis
// unreachable: the key then stays in progress until its lease runs out,
// like any completion lost to an outage) or another owner holds the key.
struct idempotency_outcome_not_stored {
  std::string_view key;
  fencing_token token;
  std::exception_ptr exception;
  bool fenced;
};

// -----------------------------------------------------------------------------
// idempotency_cache
// -----------------------------------------------------------------------------

// idempotency_result<R>: what `execute` returns.
template <class R>
struct idempotency_result {
  // The callable's outcome (run here, or replayed), or sturdy's refusal.
  R result;
  // True when `result` is a stored outcome rather than this call's run.
  bool replayed = false;
};

// The cache's counters: the store's plus the front's.
struct idempotency_stats {
  std::uint64_t hits = 0;               // replays
  std::uint64_t misses = 0;             // keys acquired (the work ran or runs)
  std::uint64_t waits = 0;              // calls that waited for an in-flight duplicate
  std::uint64_t rejections = 0;         // calls refused with in_progress
  std::uint64_t wait_timeouts = 0;      // waits that ended in wait_timeout
  std::uint64_t mismatches = 0;         // fingerprint mismatches
  std::uint64_t evictions = 0;          // entries evicted for room
  std::uint64_t takeovers = 0;          // expired leases taken over
  std::uint64_t expirations = 0;        // completed entries found expired
  std::uint64_t stale_completions = 0;  // completions refused (stale token)
  std::uint64_t outcomes_not_stored = 0;  // outcomes whose storing threw (see the event)
  std::size_t entries = 0;
  std::size_t bytes = 0;
};

namespace detail {
// Whether the callable's outcome type can hold an exception_ptr (an Outcome
// basic_outcome), so a replay can return a stored exception inside it.
template <class R>
inline constexpr bool carries_exception = false;
template <class V, class EC, class EP, class P>
inline constexpr bool carries_exception<BOOST_OUTCOME_V2_NAMESPACE::basic_outcome<V, EC, EP, P>> =
    std::conjunction_v<std::is_constructible<EP, std::exception_ptr>, std::bool_constant<can_make_error<EC>>>;

// `R` holding `ec`, with `message` (a static sentence naming an invalid
// field) wherever R's error type can carry one: through
// `outcome_traits<R>::from_error(ec, message)` when the traits offer it,
// else `from_error_code<E>(ec, message)` for Outcome types; otherwise only
// the code.
template <class R>
[[nodiscard]] R failure_with_message(std::error_code ec, std::string_view message) {
  using traits = outcome_traits<R>;
  if constexpr (requires {
                  { traits::from_error(ec, message) } -> std::convertible_to<R>;
                }) {
    return traits::from_error(ec, message);
  } else if constexpr (requires { typename traits::error_type; }) {
    using E = typename traits::error_type;
    if constexpr (std::is_constructible_v<R, BOOST_OUTCOME_V2_NAMESPACE::failure_type<E>>) {
      return R(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<E>(ec, message)));
    } else {
      return make_failure<R>(ec);
    }
  } else {
    return make_failure<R>(ec);
  }
}

// Why a built store refuses every call, when it can say (empty otherwise).
template <class Store>
[[nodiscard]] std::string_view store_validation_message(const Store& store) noexcept {
  if constexpr (requires {
                  { store.validation_message() } -> std::convertible_to<std::string_view>;
                }) {
    return store.validation_message();
  } else if constexpr (requires {
                         { store.options().validation_message() } -> std::convertible_to<std::string_view>;
                       }) {
    return store.options().validation_message();
  } else {
    return {};
  }
}
}  // namespace detail

// idempotency_cache<T, Clock, Sleeper, Listener, Store>
//
// `T` is the success type of the work (`void` allowed); the store keeps
// `sturdy::outcome<T>` (a value, an error code or an exception). The cache
// owns its store, built from `Store::options_type` and the clock when the
// store takes one (the memory store), or else a copy of the listener when
// it takes one (the Redis store).
//
// Pinned: not copyable or movable; share it by reference.
template <class T, clock_source Clock = steady_clock_source, sleeper Sleeper = thread_sleeper,
          class Listener = null_listener, class Store = memory_idempotency_store<outcome<T>, Clock>>
class idempotency_cache {
  static_assert(!non_owning<T>,
                "idempotency_cache<T> keeps T past the call, so T must own its memory: use std::string "
                "rather than std::string_view, a container rather than std::span, a value rather than a "
                "pointer (see sturdy/ownership.hpp).");
  static_assert(idempotency_store<Store>,
                "The Store type does not model sturdy::idempotency_store: see the concept's "
                "description in sturdy/idempotency.hpp.");
  static_assert(std::is_same_v<typename Store::value_type, outcome<T>>,
                "The Store must hold sturdy::outcome<T> for the cache's value type T.");
  static_assert(std::is_void_v<T> || std::is_copy_constructible_v<T>,
                "idempotency_cache<T> stores and replays copies of T: T must be copy-constructible.");

 public:
  using value_type = T;
  using store_type = Store;
  using clock_type = Clock;
  using sleeper_type = Sleeper;
  using listener_type = Listener;

  // `c({})`, `c()` and `c({.ttl = ...}, {.shards = 8})` all work. Invalid
  // options (the cache's or the store's) make every call return
  // `errc::invalid_options`; see `validation_message()`, or build with
  // `make_idempotency_cache` to fail at start-up instead.
  explicit idempotency_cache(idempotency_options options = {},
                             typename Store::options_type store_options = {}, Clock clock = Clock(),
                             Sleeper sleeper = Sleeper(), Listener listener = Listener())
      : store_(make_store(std::move(store_options), clock, listener)),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        listener_(std::move(listener)),
        options_(std::move(options)),
        invalid_(first_invalid(options_, store_)),
        options_ok_(invalid_.empty()) {}
  // Pinned. (The deleted copy constructor takes a non-const reference, so
  // that `c({})` is not ambiguous with copying from `{}`; there is no copy
  // or move from any kind of reference.)
  idempotency_cache(idempotency_cache&) = delete;
  idempotency_cache& operator=(const idempotency_cache&) = delete;

  // idempotency_cache::execute()
  //
  // Runs `fn` if this call acquires `key`, otherwise replays the stored
  // outcome (`replayed == true`) or refuses per `policy` (default:
  // `options().policy`). See the banner for what is returned.
  template <outcome_callable F>
  [[nodiscard]] idempotency_result<execute_result_t<F>> execute(std::string_view key,
                                                                std::uint64_t fingerprint, F&& fn) {
    if constexpr (callable_fits<F>()) {
      return execute_impl(key, fingerprint, options_.policy, true, std::forward<F>(fn));
    } else {
      std::abort();  // unreachable: callable_fits stopped the build
    }
  }
  template <outcome_callable F>
  [[nodiscard]] idempotency_result<execute_result_t<F>> execute(std::string_view key,
                                                                std::uint64_t fingerprint,
                                                                const idempotency_policy& policy, F&& fn) {
    if constexpr (callable_fits<F>()) {
      return execute_impl(key, fingerprint, policy, false, std::forward<F>(fn));
    } else {
      std::abort();  // unreachable: callable_fits stopped the build
    }
  }
  // The context overloads (what a pipeline layer wrapping the cache calls):
  // `fn` receives `ctx` when it takes `const sturdy::call_context&`, and
  // the wait for an in-flight duplicate ends at the earlier of the policy's
  // `wait_timeout` (errc::wait_timeout) and `ctx.deadline`
  // (errc::deadline_exceeded), or when `ctx.token` fires (its errc: the
  // token wakes the waiter). A token that has fired, or a deadline that has
  // passed, before the call (or before any later step of a wait) refuses it
  // with that errc without asking the store: no key acquired, `fn` not
  // called, no replay; the listener gets `idempotency_rejected`.
  template <context_invocable F>
  [[nodiscard]] idempotency_result<context_execute_result_t<F>> execute(std::string_view key,
                                                                        std::uint64_t fingerprint, F&& fn,
                                                                        const call_context& ctx) {
    return execute(key, fingerprint, options_.policy, std::forward<F>(fn), ctx, true);
  }
  template <context_invocable F>
  [[nodiscard]] idempotency_result<context_execute_result_t<F>> execute(std::string_view key,
                                                                        std::uint64_t fingerprint,
                                                                        const idempotency_policy& policy, F&& fn,
                                                                        const call_context& ctx,
                                                                        bool default_policy = false) {
    using R = context_execute_result_t<F>;
    auto call = [&]() -> R { return invoke_with_context(fn, ctx); };
    if constexpr (callable_fits<decltype(call)>()) {
      return execute_impl(key, fingerprint, policy, default_policy, call, ctx);
    } else {
      std::abort();  // unreachable: callable_fits stopped the build
    }
  }

  // idempotency_cache::stats()
  [[nodiscard]] idempotency_stats stats() const {
    const idempotency_store_stats s = store_.stats();
    idempotency_stats out;
    out.hits = s.hits;
    out.misses = s.misses;
    out.mismatches = s.mismatches;
    out.evictions = s.evictions;
    out.takeovers = s.takeovers;
    out.expirations = s.expirations;
    out.entries = s.entries;
    out.bytes = s.bytes;
    out.waits = counters_.waits.load(std::memory_order_relaxed);
    out.rejections = counters_.rejections.load(std::memory_order_relaxed);
    out.wait_timeouts = counters_.wait_timeouts.load(std::memory_order_relaxed);
    out.stale_completions = counters_.stale_completions.load(std::memory_order_relaxed);
    out.outcomes_not_stored = counters_.outcomes_not_stored.load(std::memory_order_relaxed);
    return out;
  }

  // idempotency_cache::validation_message()
  //
  // Empty when the cache's options and its store's are valid; otherwise the
  // sentence naming the first bad field ("idempotency_options.ttl must be
  // > 0"), which every refused call also carries (see the banner).
  [[nodiscard]] std::string_view validation_message() const noexcept { return invalid_; }
  // errc::invalid_options when `validation_message()` is not empty.
  [[nodiscard]] result<void> options_status() const noexcept {
    if (!options_ok_) return errc::invalid_options;
    return success();
  }

  [[nodiscard]] Store& store() noexcept { return store_; }
  [[nodiscard]] const Store& store() const noexcept { return store_; }
  [[nodiscard]] const idempotency_options& options() const noexcept { return options_; }
  [[nodiscard]] const Listener& listener() const noexcept { return listener_; }

 private:
  template <class F>
  using value_of_t = typename outcome_traits<execute_result_t<F>>::value_type;

  // The compile-time checks of a callable, one sentence each; false (after
  // the failed static_assert) stops `execute` from instantiating further.
  template <class F>
  static constexpr bool callable_fits() {
    using V = value_of_t<F>;
    static_assert(!non_owning<V>,
                  "The callable returns a non-owning view (std::string_view, std::span, a pointer, ...) "
                  "that a replay would build from a stored copy destroyed when execute returns: return "
                  "an owning type such as the cache's T (see sturdy/ownership.hpp).");
    if constexpr (non_owning<V>) {
      return false;
    } else {
      static_assert(std::is_void_v<T> == std::is_void_v<V>,
                    "The callable's success type must match the cache's value type T (one is void).");
      if constexpr (std::is_void_v<T> != std::is_void_v<V>) {
        return false;
      } else if constexpr (!std::is_void_v<T>) {
        constexpr bool converts = std::is_constructible_v<T, const V&> && std::is_constructible_v<V, T&&>;
        static_assert(converts,
                      "The callable's success type must convert to the cache's value type T and back "
                      "(replays rebuild it from the stored T).");
        return converts;
      } else {
        return true;
      }
    }
  }

  // The store gets the clock, or else the listener, when it takes one.
  static Store make_store(typename Store::options_type&& store_options, const Clock& clock,
                          const Listener& listener) {
    if constexpr (std::is_constructible_v<Store, typename Store::options_type, Clock>) {
      return Store(std::move(store_options), clock);
    } else if constexpr (std::is_constructible_v<Store, typename Store::options_type, const Listener&>) {
      return Store(std::move(store_options), listener);
    } else {
      return Store(std::move(store_options));
    }
  }

  static std::string_view first_invalid(const idempotency_options& options, const Store& store) noexcept {
    const std::string_view m = options.validation_message();
    return m.empty() ? detail::store_validation_message(store) : m;
  }

  template <class R>
  idempotency_result<R> reject(std::string_view key, std::error_code ec) {
    emit(listener_, idempotency_rejected{key, ec});
    return {make_failure<R>(ec), false};
  }

  // A call refused because options are invalid (the cache's, its store's, or
  // the per-call policy): `options_rejected` on the first one, and the
  // message naming the field inside R when R can carry it.
  template <class R>
  idempotency_result<R> reject_options(std::string_view key, std::string_view message) {
    if (!options_reported_.exchange(true, std::memory_order_relaxed)) {
      emit(listener_, options_rejected{"idempotency_cache", message});
    }
    emit(listener_, idempotency_rejected{key, errc::invalid_options});
    return {detail::failure_with_message<R>(errc::invalid_options, message), false};
  }

  template <class F>
  idempotency_result<execute_result_t<F>> execute_impl(std::string_view key, std::uint64_t fingerprint,
                                                       const idempotency_policy& policy, bool default_policy,
                                                       F&& fn, const call_context& ctx = {}) {
    using R = execute_result_t<F>;
    const bool park = policy.in_flight == in_flight_policy::wait;
    idempotency_waiter waiter;
    idempotency_waiter* const waiter_ptr = (park && Store::wakes_waiters) ? &waiter : nullptr;
    // Armed while the store may hold a pointer to `waiter` (a begin answered
    // in_progress): unlinks it before this frame dies, even if the sleeper
    // throws.
    linked_waiter_guard linked{store_, key, &waiter};
    wait_state ws{.poll = options_.poll_initial};
    for (;;) {
      step<R> s = next_step<R>(key, fingerprint, policy, waiter_ptr, ws, ctx, default_policy);
      switch (s.kind) {
        case step_kind::finished:
          return std::move(*s.result);
        case step_kind::acquired:
          return run<R>(key, fingerprint, s.token, policy, std::forward<F>(fn));
        case step_kind::wait:
          break;
      }
      linked.armed = waiter_ptr != nullptr;
      if constexpr (Store::wakes_waiters) {
        if (STURDY_LIKELY(!ctx.token.stop_possible())) {
          (void)sleeper_.sleep_for(s.sleep, waiter.wake.get_token());
        } else {
          // Woken by the store or by the caller's token (linked: no allocation).
          linked_cancel_source wake(ctx.token, waiter.wake.get_token());
          (void)detail::sleep_cancellable(sleeper_, s.sleep, wake.token());
        }
        linked.release();
        // A woken node needs a fresh source before it can be parked again (a
        // stop request cannot be undone); the store makes it lazily, only if
        // the key is still in progress. A sleep that ended without a wake
        // (timeout, early return) keeps its source: one allocation per wait,
        // not per iteration.
        if (waiter.wake.stop_requested()) waiter.wake = std::stop_source(std::nostopstate);
      } else {
        (void)detail::sleep_cancellable(sleeper_, s.sleep, ctx.token);
      }
    }
  }

 public:
  // ---------------------------------------------------------------------------
  // The decision core, for drivers other than the blocking `execute`
  // (sturdy::asio::async_execute). `execute` is this loop:
  //
  //   wait_state ws{.poll = options().poll_initial};
  //   for (;;) {
  //     step<R> s = next_step<R>(key, fingerprint, policy, waiter, ws, ctx);
  //     finished: return *s.result          (a replay or a refusal)
  //     acquired: r = fn(); return finish<R>(key, fingerprint, s.token, policy, r)
  //     wait:     park until `waiter->wake` is requested (the store links the
  //               node: a completion, an abandon, an eviction wake it), the
  //               caller's token fires, or `s.sleep` passes; then unlink it
  //               (store().cancel_wait) and renew a woken `wake` source
  //   }
  //
  // `waiter` (null: poll, or no parking under `reject`) must stay alive,
  // and be passed to `store().cancel_wait` after each wait, while linked.
  // ---------------------------------------------------------------------------
  enum class step_kind : std::uint8_t { finished, acquired, wait };
  template <class R>
  struct step {
    step_kind kind = step_kind::finished;
    std::optional<idempotency_result<R>> result{};  // finished
    fencing_token token{};                          // acquired: run the work, then finish()
    duration sleep{};                               // wait: at most this long
  };
  // One call's waiting state across steps.
  struct wait_state {
    bool waiting = false;
    bool deadline_is_callers = false;  // ctx.deadline comes before wait_timeout
    time_point deadline{};
    duration poll{};  // set to options().poll_initial
  };

  // The policy must be valid (`policy.validation_message()` empty) unless
  // it is `options().policy`; checked by next_step when `default_policy` is
  // false.
  template <class R>
  [[nodiscard]] step<R> next_step(std::string_view key, std::uint64_t fingerprint, const idempotency_policy& policy,
                                  idempotency_waiter* waiter, wait_state& ws, const call_context& ctx,
                                  bool default_policy = true) {
    if (!ws.waiting) {
      if (STURDY_UNLIKELY(!options_ok_)) return finished(reject_options<R>(key, invalid_));
      if (!default_policy) {
        const std::string_view m = policy.validation_message();
        if (STURDY_UNLIKELY(!m.empty())) return finished(reject_options<R>(key, m));
      }
      if (STURDY_UNLIKELY(key.empty())) return finished(reject<R>(key, errc::missing_key));
      if (STURDY_UNLIKELY(key.size() > options_.max_key_length)) return finished(reject<R>(key, errc::invalid_key));
    }
    // A caller that has given up (its token fired, its deadline passed) is
    // refused before the store is asked, at every step: a begin would
    // acquire a free key (or take over a lapsed lease) and launch work the
    // caller no longer wants. No replay either: the answer does not depend on
    // the key's state, and a remote store costs a round trip the caller has
    // cancelled (docs/idempotency.md, Guarantees).
    if (STURDY_UNLIKELY(ctx.token.stop_requested())) return finished(reject<R>(key, to_errc(ctx.token.reason())));
    if (STURDY_UNLIKELY(ctx.deadline.expired())) {
      // A waiter whose wait ends before the caller's deadline (the wait's
      // bound came first, and has passed too) answers wait_timeout, counted,
      // as the waiting path below would.
      if (ws.waiting && !ws.deadline_is_callers) {
        counters_.wait_timeouts.fetch_add(1, std::memory_order_relaxed);
        return finished(reject<R>(key, errc::wait_timeout));
      }
      return finished(reject<R>(key, errc::deadline_exceeded));
    }
    const bool park = policy.in_flight == in_flight_policy::wait;
    if (!park || !Store::wakes_waiters) waiter = nullptr;
    auto begun = store_.begin(key, fingerprint, options_.lease, waiter);
    if (STURDY_UNLIKELY(!begun.has_value())) return finished(reject<R>(key, begun.error()));
    auto& b = begun.assume_value();
    if (STURDY_UNLIKELY(b.evicted != 0)) emit(listener_, idempotency_evicted{b.evicted});
    switch (b.status) {
      case begin_status::completed:
        emit(listener_, idempotency_replayed{key});
        // Built in place in the step (no temporary result moved in: this is
        // the hot path).
        return finished<R>([&] { return idempotency_result<R>{replay<R>(std::move(*b.value)), true}; });
      case begin_status::mismatch:
        return finished(reject<R>(key, errc::key_mismatch));
      case begin_status::acquired: {
        emit(listener_, idempotency_executed{key, b.token, b.took_over});
        step<R> s;
        s.kind = step_kind::acquired;
        s.token = b.token;
        return s;
      }
      case begin_status::in_progress:
        break;
    }
    // Linked from here on when `waiter`: unlinked unless this returns `wait`
    // (even if the clock or the listener throws).
    linked_waiter_guard linked{store_, key, waiter, waiter != nullptr};
    if (!park) {
      counters_.rejections.fetch_add(1, std::memory_order_relaxed);
      return finished(reject<R>(key, errc::in_progress));
    }
    const time_point now = clock_.now();
    if (!ws.waiting) {
      ws.waiting = true;
      ws.deadline = detail::saturating_add(now, policy.wait_timeout);
      if (STURDY_UNLIKELY(!ctx.deadline.is_none())) {
        // On this cache's clock (another clock's deadline as its remaining time).
        const time_point theirs = ctx.deadline.clock() == clock_ref::of(clock_)
                                      ? ctx.deadline.at()
                                      : detail::saturating_add(now, ctx.deadline.remaining());
        if (theirs < ws.deadline) {
          ws.deadline = theirs;
          ws.deadline_is_callers = true;
        }
      }
      counters_.waits.fetch_add(1, std::memory_order_relaxed);
      emit(listener_, idempotency_waiting{key, policy.wait_timeout});
    }
    if (STURDY_UNLIKELY(ctx.token.stop_requested())) {
      linked.release();
      return finished(reject<R>(key, to_errc(ctx.token.reason())));
    }
    if (STURDY_UNLIKELY(ws.deadline_is_callers) && now >= ws.deadline) {
      linked.release();
      return finished(reject<R>(key, errc::deadline_exceeded));
    }
    if (now >= ws.deadline) {
      linked.release();
      counters_.wait_timeouts.fetch_add(1, std::memory_order_relaxed);
      return finished(reject<R>(key, errc::wait_timeout));
    }
    // Sleep until woken, the wait deadline, or the owner's lease runs out
    // (then the next begin takes over).
    step<R> s;
    s.kind = step_kind::wait;
    s.sleep = std::min(detail::time_between(now, ws.deadline), b.lease_remaining);
    if constexpr (!Store::wakes_waiters) {
      s.sleep = std::min(s.sleep, ws.poll);
      // Doubles up to poll_max without overflowing (poll_max may be
      // duration::max()).
      ws.poll = ws.poll > options_.poll_max / 2 ? options_.poll_max : ws.poll * 2;
    }
    linked.armed = false;  // the driver unlinks after its wait
    return s;
  }

  // The work ran under `token` and returned `r`: store the outcome (or
  // release the key) as the policy says, and return what the caller gets.
  template <class R>
  [[nodiscard]] idempotency_result<R> finish(std::string_view key, std::uint64_t fingerprint, fencing_token token,
                                             const idempotency_policy& policy, R&& r) {
    if (STURDY_LIKELY(succeeded(r))) {
      auto done = store_outcome(key, fingerprint, token, [&] { return stored_success(r); });
      if (STURDY_UNLIKELY(!done.has_value())) return refused<R>(key, token, done.error());
      return {std::move(r), false};
    }
    const failure_info f = failure_of(r);
    if ((f.code || f.exception) && cache_failure(policy, f)) {
      // An exception returned inside the callable's outcome is stored with an
      // error code next to it (empty if it had none): the mark that tells a
      // replay to return it inside R, as the first caller got it, rather than
      // throw it as it does for an exception the callable threw.
      auto done = store_outcome(key, fingerprint, token, [&] {
        return f.exception ? outcome<T>(BOOST_OUTCOME_V2_NAMESPACE::failure(f.code, f.exception))
                           : outcome<T>(std::in_place_type<std::error_code>, f.code);
      });
      if (!done.has_value()) return refused<R>(key, token, done.error());
    } else {
      release(key, token);
    }
    return {std::move(r), false};
  }

 private:
  template <class R>
  static step<R> finished(idempotency_result<R>&& r) {
    step<R> s;
    s.result.emplace(std::move(r));
    return s;
  }
  // The result made by `make`, constructed in place in the step's optional:
  // emplace converts `built_by` to idempotency_result<R> through a
  // conversion that returns a prvalue, which g++ 12 elides (the result is
  // written once, in the step; a compiler that does not elide moves it once,
  // as before).
  template <class Make>
  struct built_by {
    Make& make;
    // NOLINTNEXTLINE(google-explicit-constructor): the conversion is the point
    operator std::invoke_result_t<Make&>() const { return make(); }
  };
  template <class R, class Make>
  static step<R> finished(Make&& make) {
    step<R> s;
    s.result.emplace(built_by<std::remove_reference_t<Make>>{make});
    return s;
  }

  // Unlinks a waiter node from the store when armed: on the normal path
  // (`release`) and while unwinding (the destructor).
  struct linked_waiter_guard {
    Store& store;
    std::string_view key;
    idempotency_waiter* waiter;
    bool armed = false;
    void release() noexcept {
      if (armed) {
        armed = false;
        store.cancel_wait(key, *waiter);
      }
    }
    ~linked_waiter_guard() { release(); }
  };

  template <class R, class F>
  idempotency_result<R> run(std::string_view key, std::uint64_t fingerprint, fencing_token token,
                            const idempotency_policy& policy, F&& fn) {
    std::exception_ptr thrown;
    R r = detail::invoke_captured(std::forward<F>(fn), thrown, errc::stale_token);
    if (STURDY_UNLIKELY(thrown != nullptr)) {
      // Record the exception (or release the key), then hand it to the
      // caller unchanged.
      const failure_info f{.code = {}, .exception = thrown};
      if (cache_failure(policy, f)) {
        (void)store_outcome(key, fingerprint, token,
                            [&] { return outcome<T>(std::in_place_type<std::exception_ptr>, f.exception); });
      } else {
        release(key, token);
      }
      std::rethrow_exception(thrown);
    }
    return finish<R>(key, fingerprint, token, policy, std::move(r));
  }

  // Releases the key after a failure that is not cached. Never throws: a
  // store that cannot release (unreachable) leaves the key in progress until
  // its lease runs out, which is what a failure not cached allows anyway
  // (a retry runs the work again). Stale: someone else owns it; nothing to
  // undo.
  void release(std::string_view key, fencing_token token) noexcept {
    try {
      (void)store_.abandon(key, token);
    } catch (...) {  // NOLINT(bugprone-empty-catch): see above
    }
  }

  // Stores the outcome `make()` builds for the key that `token` owned. If the
  // store refuses the token (`stale_token`) the key is begun again, without
  // a waiter: when that acquires it, nobody holds the key any more (this
  // owner's lease ran out and its entry was evicted, or a newer owner
  // abandoned it or crashed in turn), so no newer outcome exists and this one
  // is stored under the new token. When the key is in progress under another
  // owner, completed by one, or bound to another payload, the refusal
  // stands.
  //
  // The work has run: if building or storing the outcome throws (a copy of
  // T, a codec, bad_alloc), the key must not be lost, or a duplicate would
  // run the work again once the lease ran out. It is fenced instead (see
  // `fence`), and the caller keeps its own result: success is returned.
  template <class Make>
  result<void> store_outcome(std::string_view key, std::uint64_t fingerprint, fencing_token token,
                             Make&& make) noexcept {
    try {
      auto done = store_.complete(key, token, make(), options_.ttl);
      if (STURDY_LIKELY(done.has_value()) || done.error() != errc::stale_token) return done;
      auto again = store_.begin(key, fingerprint, options_.lease, nullptr);
      if (!again.has_value() || again.assume_value().status != begin_status::acquired) return done;
      token = again.assume_value().token;
      auto stored = store_.complete(key, token, make(), options_.ttl);
      if (!stored.has_value()) release(key, token);
      return stored;
    } catch (...) {
      fence(key, token, std::current_exception());
      return success();
    }
  }

  // Completes the key with `errc::outcome_not_stored` (an error code: storing
  // it allocates nothing in the memory store and cannot throw there), so the
  // work never runs again while the key lives; replays get that error.
  void fence(std::string_view key, fencing_token token, std::exception_ptr why) noexcept {
    counters_.outcomes_not_stored.fetch_add(1, std::memory_order_relaxed);
    bool fenced = false;
    try {
      fenced = store_
                   .complete(key, token,
                             outcome<T>(std::in_place_type<std::error_code>,
                                        make_error_code(errc::outcome_not_stored)),
                             options_.ttl)
                   .has_value();
    } catch (...) {  // NOLINT(bugprone-empty-catch): reported as fenced == false
    }
    emit(listener_, idempotency_outcome_not_stored{key, token, std::move(why), fenced});
  }

  template <class R>
  idempotency_result<R> refused(std::string_view key, fencing_token token, std::error_code ec) {
    counters_.stale_completions.fetch_add(1, std::memory_order_relaxed);
    emit(listener_, idempotency_completion_refused{key, token, ec});
    return {make_failure<R>(ec), false};
  }

  static bool cache_failure(const idempotency_policy& policy, const failure_info& f) noexcept {
    switch (policy.failures) {
      case failure_caching::dont_cache:
        return false;
      case failure_caching::cache:
        return true;
      case failure_caching::cache_if_permanent:
        try {
          return policy.is_permanent && policy.is_permanent(f);
        } catch (...) {
          return false;
        }
    }
    return false;
  }

  template <class R>
  static outcome<T> stored_success(const R& r) {
    if constexpr (std::is_void_v<T>) {
      return outcome<T>(success());
    } else if constexpr (requires { r.assume_value(); }) {
      return outcome<T>(std::in_place_type<T>, r.assume_value());
    } else {
      return outcome<T>(std::in_place_type<T>, *r);
    }
  }

  template <class R>
  static R replay(outcome<T>&& o) {
    if (STURDY_UNLIKELY(o.has_exception())) {
      if constexpr (detail::carries_exception<R>) {
        if (o.has_error()) {  // returned inside the callable's outcome: return it so
          using EC = typename R::error_type;
          using EP = typename R::exception_type;
          if (!o.assume_error()) return R(std::in_place_type<EP>, EP(o.assume_exception()));
          return R(BOOST_OUTCOME_V2_NAMESPACE::failure(from_error_code<EC>(o.assume_error()),
                                                       EP(o.assume_exception())));
        }
      }
      std::rethrow_exception(o.assume_exception());  // thrown by the callable: throw it
    }
    if (STURDY_UNLIKELY(o.has_error())) return make_failure<R>(o.assume_error());
    if constexpr (std::is_void_v<T>) {
      if constexpr (std::is_constructible_v<R, BOOST_OUTCOME_V2_NAMESPACE::success_type<void>>) {
        return R(success());
      } else {
        return R();
      }
    } else {
      using V = typename outcome_traits<R>::value_type;
      if constexpr (std::is_constructible_v<R, std::in_place_type_t<V>, T&&>) {
        return R(std::in_place_type<V>, std::move(o).assume_value());
      } else if constexpr (std::is_constructible_v<R, std::in_place_t, T&&>) {
        return R(std::in_place, std::move(o).assume_value());
      } else {
        return R(V(std::move(o).assume_value()));
      }
    }
  }

  struct alignas(cache_line_size) front_counters {
    std::atomic<std::uint64_t> waits{0};
    std::atomic<std::uint64_t> rejections{0};
    std::atomic<std::uint64_t> wait_timeouts{0};
    std::atomic<std::uint64_t> stale_completions{0};
    std::atomic<std::uint64_t> outcomes_not_stored{0};
  };

  Store store_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Sleeper sleeper_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  idempotency_options options_;
  std::string_view invalid_;  // a static sentence; empty when the options are valid
  bool options_ok_;
  std::atomic<bool> options_reported_{false};
  front_counters counters_;
};

// -----------------------------------------------------------------------------
// make_idempotency_cache: the start-up check, with the types deduced
// -----------------------------------------------------------------------------

namespace detail {
// A listener argument, told apart from a clock in make_idempotency_cache's
// overloads.
template <class L>
concept not_a_clock = !clock_source<L>;
}  // namespace detail

// make_idempotency_cache<T>(options, store_options[, listener])
// make_idempotency_cache<T>(options, store_options, clock, sleeper[, listener])
//
// Builds an `idempotency_cache<T, Clock, Sleeper, Listener>` over the memory
// store, deducing the clock, sleeper and listener types from the arguments
// (so adding a listener spells out no template argument), and checks the
// options first: `errc::invalid_options` instead of a cache that would
// refuse every call, after emitting `options_rejected{"idempotency_cache",
// message}` to the listener (the message names the field; also available
// as `options.validation_message()` or the store's). The cache is pinned,
// hence the `unique_ptr`.
//
//   auto made = sturdy::make_idempotency_cache<Receipt>({.ttl = 24h}, {}, my_listener);
//   if (!made) return made.error();            // misconfigured: fail at start-up
//   std::unique_ptr cache = std::move(made).value();
template <class T, clock_source Clock, sleeper Sleeper, class Listener = null_listener>
[[nodiscard]] result<std::unique_ptr<idempotency_cache<T, Clock, Sleeper, Listener>>> make_idempotency_cache(
    idempotency_options options, memory_store_options store_options, Clock clock, Sleeper sleeper,
    Listener listener = Listener()) {
  using cache_t = idempotency_cache<T, Clock, Sleeper, Listener>;
  std::string_view m = options.validation_message();
  if (m.empty()) m = cache_t::store_type::validation_message(store_options);
  if (!m.empty()) {
    emit(listener, options_rejected{"idempotency_cache", m});
    return errc::invalid_options;
  }
  return std::make_unique<cache_t>(std::move(options), store_options, std::move(clock), std::move(sleeper),
                                   std::move(listener));
}
template <class T, detail::not_a_clock Listener = null_listener>
[[nodiscard]] result<std::unique_ptr<idempotency_cache<T, steady_clock_source, thread_sleeper, Listener>>>
make_idempotency_cache(idempotency_options options = {}, memory_store_options store_options = {},
                       Listener listener = Listener()) {
  return make_idempotency_cache<T>(std::move(options), store_options, steady_clock_source(), thread_sleeper(),
                                   std::move(listener));
}

}  // namespace sturdy

#endif  // STURDY_IDEMPOTENCY_HPP_
