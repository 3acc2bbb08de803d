// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/registry.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::registry<P>` keeps one primitive per string key (a breaker per
// downstream host, a limiter per tenant), created on first use from a
// per-key options function and bounded by entries and bytes. Eviction never
// loses protection: it takes only entries whose state equals a fresh one
// ("quiescent"), or entries idle longer than a configured time, never an
// entry a caller still holds and never a tripped breaker.
//
//   absent --get(key): options_for(key), built--> live (handle counted)
//   live   --quiescent, or busy and idle > idle_timeout; held by nobody;
//            CLOCK bit clear--> evicted to make room for a new key
//   live   --erase(key)--> removed (handles held stay valid)
//   full of entries that may not be evicted: get(new key) returns the shared
//   overflow entry, or errc::capacity_exceeded (registry_options::overflow)
//
// Example:
//
//   sturdy::registry<sturdy::circuit_breaker<>> breakers({
//       .max_entries = 10'000,
//       .options_for = [](std::string_view host) {
//         return sturdy::circuit_breaker_options{
//             .consecutive_failure_threshold = host.starts_with("batch.") ? 20U : 5U};
//       }});
//
//   sturdy::result<Response> call(std::string_view host, const Request& req) {
//     auto breaker = breakers.get(host);    // created on first use
//     if (!breaker) return breaker.error();  // errc::capacity_exceeded
//     return breaker.value()->execute([&] { return send(host, req); });
//   }
//
// Quiescence, per primitive (the customization point `quiescence_of`, below):
//   - circuit_breaker: quiescent when closed with no failure and no slow call
//     in its windows and no consecutive failures; busy when closed with any;
//     pinned in every other state (open, half_open: a tripped breaker is never
//     evicted; forced_open, disabled, metrics_only: a manual state is kept).
//   - Any type P: a member `quiescence(time_point now) const` returning
//     `sturdy::quiescence`, or an ADL function `sturdy_quiescence(const P&,
//     time_point)`, or a member `quiescent(time_point) const` returning bool
//     (true = quiescent, false = busy). A rate limiter's header is expected
//     to say quiescent when its bucket is full; a concurrency limiter is
//     pinned while a permit is out or a caller queued, busy when its
//     adaptive limit moved (below).
//   - Whatever the primitive says, an entry some caller holds a handle to is
//     never evicted: its calls (permits) may be outstanding.
//
// Permits: a concurrency limiter's permit holds no handle. The registry
// never deletes a limiter a permit may still reach: eviction and `erase`
// take it only when nobody holds a handle and it is not in use (no permit
// out, nobody queued, read under its lock: `sturdy_in_use`). So
// `reg.get(k).value()->try_acquire()` with a temporary handle is safe, even
// with other threads erasing and evicting. Release every permit before
// destroying the registry.
//
// Thread safety: every member function may be called from any number of
// threads at once. Looking up an existing key takes a shard's read lock (a
// per-thread counter, see detail/concurrent_map.hpp), copies a reference-
// counted handle out, and allocates nothing. Creating and evicting take the
// shard's write lock. No background thread: eviction happens when a new key
// needs room.
//
// Testing: instantiate with `sturdy::testing::manual_clock` (idle times; it
// is passed on to primitives constructible from (options, clock)).

#ifndef STURDY_REGISTRY_HPP_
#define STURDY_REGISTRY_HPP_

#include <algorithm>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "sturdy/callback.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/concurrent_map.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/rate_limiter.hpp"

namespace sturdy {

// -----------------------------------------------------------------------------
// Quiescence: when may a registry evict an entry?
// -----------------------------------------------------------------------------

// quiescent: equal to a fresh instance; evicting it loses nothing.
// busy: holds state a fresh instance lacks; evictable only after being idle
//   (not looked up) for registry_options::idle_timeout.
// pinned: never evictable now (a tripped breaker, a permit in flight).
enum class quiescence : std::uint8_t { quiescent, busy, pinned };

[[nodiscard]] constexpr std::string_view to_string(quiescence q) noexcept {
  switch (q) {
    case quiescence::quiescent: return "quiescent";
    case quiescence::busy: return "busy";
    case quiescence::pinned: return "pinned";
  }
  return "unknown";
}

// The circuit breaker's quiescence, from its public API only (state() and a
// metrics() snapshot, which never trips it). "No permit outstanding" cannot
// be read from a breaker in the closed state (closed permits are not
// tracked); the registry covers it by never evicting an entry whose handle
// is held (a permit can only be obtained and recorded through a handle).
template <clock_source C, class L>
[[nodiscard]] quiescence sturdy_quiescence(const circuit_breaker<C, L>& b, time_point /*now*/) noexcept {
  // Built from invalid options: forced open from birth, like a fresh one.
  if (!b.options_status()) return quiescence::quiescent;
  if (b.state() != breaker_state::closed) return quiescence::pinned;
  const breaker_metrics m = b.metrics();
  if (m.state != breaker_state::closed) return quiescence::pinned;
  const bool clean = m.consecutive_failures == 0 && m.count_window.failures == 0 &&
                     m.count_window.slow_calls == 0 && m.time_window.failures == 0 &&
                     m.time_window.slow_calls == 0;
  return clean ? quiescence::quiescent : quiescence::busy;
}

// The rate limiter's quiescence: a full bucket behaves exactly like a fresh
// limiter (quiescent); a bucket in debt is pinned, never evicted, not even
// after registry_options::idle_timeout: a rebuilt limiter would start full
// and hand the tenant a fresh quota. The debt pays itself off with time
// (after the decision's reset_after the bucket is full again), so an idle
// limiter becomes quiescent on its own and is evicted by a later sweep.
template <clock_source C, sleeper S, class L>
[[nodiscard]] quiescence sturdy_quiescence(const rate_limiter<C, S, L>& r, time_point now) noexcept {
  return r.quiescent_at(now) ? quiescence::quiescent : quiescence::pinned;
}

// The concurrency limiter's quiescence: pinned while a permit is out or a
// caller is queued (evicting it would forget permits that are still out,
// letting a new limiter admit past the limit, and leave them dangling);
// busy when its algorithm moved the limit from the initial one (evicting it
// would forget the learned limit: only after registry_options::idle_timeout);
// otherwise quiescent. `in_use()` takes the limiter's lock, so a release
// still running on another thread is never missed.
template <limit_algorithm A, clock_source C, class L>
[[nodiscard]] quiescence sturdy_quiescence(const concurrency_limiter<A, C, L>& l, time_point /*now*/) noexcept {
  if (l.in_use()) return quiescence::pinned;
  return l.limit() == l.initial_limit() ? quiescence::quiescent : quiescence::busy;
}

// sturdy_in_use(p): whether deleting `p` now would leave calls dangling
// (ADL; a type that provides it is erased only when unheld and not in use).
// A concurrency limiter is in use while a permit is out or a caller queued.
template <limit_algorithm A, clock_source C, class L>
[[nodiscard]] bool sturdy_in_use(const concurrency_limiter<A, C, L>& l) noexcept {
  return l.in_use();
}

// The heap bytes a breaker owns, estimated from its options (for
// registry_options::max_bytes): its counter stripes, probe slots and count
// window (one byte per call), and time window buckets.
template <clock_source C, class L>
[[nodiscard]] std::size_t sturdy_heap_bytes(const circuit_breaker<C, L>& b) noexcept {
  const circuit_breaker_options& o = b.options();
  const std::size_t stripes = o.counter_stripes != 0 ? o.counter_stripes : detail::default_thread_slots();
  std::size_t bytes = stripes * detail::counter_stripe_size + std::size_t{o.half_open_probes} * 8 +
                      std::size_t{o.count_window_size};
  if (o.time_window > duration::zero()) bytes += std::size_t{o.time_window_buckets} * 3 * sizeof(std::uint64_t);
  return bytes;
}

namespace detail {
template <class P>
concept member_quiescence = requires(const P& p, time_point now) {
  { p.quiescence(now) } -> std::same_as<quiescence>;
};
template <class P>
concept adl_quiescence = requires(const P& p, time_point now) {
  { sturdy_quiescence(p, now) } -> std::same_as<quiescence>;
};
template <class P>
concept member_quiescent = requires(const P& p, time_point now) {
  { p.quiescent(now) } -> std::convertible_to<bool>;
};
}  // namespace detail

// A type whose quiescence a registry can ask.
template <class P>
concept reports_quiescence = detail::member_quiescence<P> || detail::adl_quiescence<P> || detail::member_quiescent<P>;

// quiescence_of(p, now): the customization point (member `quiescence`, then
// ADL `sturdy_quiescence`, then member `quiescent`). Called by the eviction
// sweep under a shard's write lock: it must be quick, must not throw, and
// must not call into the registry.
template <reports_quiescence P>
[[nodiscard]] quiescence quiescence_of(const P& p, time_point now) noexcept {
  if constexpr (detail::member_quiescence<P>) {
    return p.quiescence(now);
  } else if constexpr (detail::adl_quiescence<P>) {
    return sturdy_quiescence(p, now);
  } else {
    return p.quiescent(now) ? quiescence::quiescent : quiescence::busy;
  }
}

// concurrency_limiter_entry_options<A>
//
// What a registry of `concurrency_limiter<A, ...>` builds each entry from
// (its options type): the limiter's options and its algorithm, built from
// the algorithm's own options. Aggregate; the registry's clock is passed on
// when the limiter's Clock is the registry's.
//
//   sturdy::registry<sturdy::concurrency_limiter<>> bulkheads({
//       .options_for = [](std::string_view tenant) {
//         return sturdy::concurrency_limiter_entry_options<sturdy::fixed_limit>{
//             .limiter = {.max_queue = 10},
//             .algorithm = sturdy::fixed_limit({.limit = tenant == "batch" ? 4U : 50U})};
//       }});
template <limit_algorithm A>
struct concurrency_limiter_entry_options {
  concurrency_limiter_options limiter{};
  A algorithm{};
};

namespace detail {
template <class P>
struct limiter_algorithm_of {};
template <limit_algorithm A, clock_source C, class L>
struct limiter_algorithm_of<concurrency_limiter<A, C, L>> {
  using type = A;
};

// Options that build P from two parts: P(limiter, algorithm[, clock]).
template <class O>
concept two_part_options = requires(O& o) {
  o.limiter;
  o.algorithm;
};

template <class P, class Options, class Clock>
inline constexpr bool registry_can_build = [] {
  if constexpr (two_part_options<Options>) {
    using Lim = decltype(std::declval<Options&>().limiter);
    using Alg = decltype(std::declval<Options&>().algorithm);
    return std::constructible_from<P, Lim, Alg, Clock> || std::constructible_from<P, Lim, Alg>;
  } else {
    return std::constructible_from<P, Options, Clock> || std::constructible_from<P, Options>;
  }
}();

// A primitive whose calls (permits) may outlive every handle to it.
template <class P>
concept tracks_use = requires(const P& p) {
  { sturdy_in_use(p) } -> std::convertible_to<bool>;
};

template <class P>
auto primitive_options_of() {
  if constexpr (requires { typename limiter_algorithm_of<P>::type; }) {
    return std::type_identity<concurrency_limiter_entry_options<typename limiter_algorithm_of<P>::type>>{};
  } else if constexpr (requires { typename P::options_type; }) {
    return std::type_identity<typename P::options_type>{};
  } else if constexpr (requires(const P& p) { p.options(); }) {
    return std::type_identity<std::remove_cvref_t<decltype(std::declval<const P&>().options())>>{};
  } else {
    return std::type_identity<void>{};
  }
}
}  // namespace detail

// The options type a registry builds P from: for a concurrency limiter,
// `concurrency_limiter_entry_options<Algorithm>`; else `P::options_type`,
// else what `P::options()` returns; void when P has none (then name it as
// the registry's third template argument).
template <class P>
using primitive_options_t = typename decltype(detail::primitive_options_of<P>())::type;

// -----------------------------------------------------------------------------
// Options, handles, stats
// -----------------------------------------------------------------------------

// What `get` does with a new key when its shard is full of entries that may
// not be evicted.
enum class registry_overflow : std::uint8_t {
  refuse,        // return errc::capacity_exceeded
  shared_entry,  // return one shared entry, built from options_for("")
};

// registry_options<Options>
//
// Aggregate; fill with designated initializers. A registry built from
// invalid options refuses every call with errc::invalid_options;
// `validation_message()` says why.
template <class Options>
struct registry_options {
  // Most entries held at once, >= 1. Split evenly over the shards (each holds
  // max_entries / shards), so the total never exceeds it. Default 10'000.
  std::size_t max_entries = 10'000;
  // Most bytes held at once (table slot, entry, key and the primitive's own
  // heap bytes where it reports them through `sturdy_heap_bytes`), split
  // over the shards; 0 = no byte bound. Default 0.
  std::size_t max_bytes = 0;
  // A busy entry not looked up for this long may be evicted (its windows
  // would be empty by then; a breaker's count window never empties on its
  // own). 0 = busy entries are always evictable; duration::max() = never
  // (only quiescent entries are). Pinned entries never are. Default 10 min.
  duration idle_timeout = std::chrono::minutes(10);
  // What a new key gets when its shard is full of entries that may not be
  // evicted. Default refuse (errc::capacity_exceeded).
  registry_overflow overflow = registry_overflow::refuse;
  // Keys longer than this are refused with errc::invalid_key, >= 1.
  // Default 256.
  std::size_t max_key_length = 256;
  // Shards: 0 = automatic (64, fewer for small max_entries so that each
  // holds at least 64 entries); else a power of two <= 4096 and
  // <= max_entries. Default 0.
  std::size_t shards = 0;
  // Builds the options of the entry for a key (called outside any lock, once
  // per creation; must be safe to call from several threads at once). Empty
  // = `Options{}` for every key. Default empty.
  callback<Options(std::string_view key)> options_for{};

  [[nodiscard]] std::size_t shard_count() const noexcept {
    if (shards != 0) return shards;
    std::size_t n = 64;
    while (n > 1 && max_entries / n < 64) n /= 2;
    return n;
  }

  // The first invalid field, as a sentence naming it; empty when valid.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (max_entries < 1) return "registry_options.max_entries must be >= 1";
    if (shards > 4096 || !std::has_single_bit(shard_count()))
      return "registry_options.shards must be 0 or a power of two <= 4096";
    if (shard_count() > max_entries) return "registry_options.shards must be <= max_entries";
    if (idle_timeout < duration::zero()) return "registry_options.idle_timeout must be >= 0";
    if (max_key_length < 1) return "registry_options.max_key_length must be >= 1";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return make_error_code(errc::invalid_options);
    return success();
  }
};

template <class P, clock_source Clock, class Options>
class registry;

namespace detail {
template <class P>
struct registry_node {
  template <class... A>
  explicit registry_node(bool is_overflow, A&&... args)
      : overflow(is_overflow), value(std::forward<A>(args)...) {}
  // What a lookup touches, on one line: the count, the CLOCK bit, the idle
  // clock.
  std::atomic<std::size_t> refs{1};
  relaxed_atomic<bool> referenced{false};
  relaxed_atomic<std::int64_t> last_use{0};  // clock ticks
  std::size_t charge = 0;                    // bytes charged to the shard
  const bool overflow;
  P value;
};
}  // namespace detail

// registry_handle<P>
//
// A reference-counted handle to one registry entry: the entry stays alive
// while any handle to it exists, even after it left the registry (erase, or
// the registry destroyed). Copying is one atomic increment; never allocates.
// While a caller holds one, the registry will not evict the entry. Empty
// when default-built.
template <class P>
class registry_handle {
 public:
  registry_handle() noexcept = default;
  registry_handle(const registry_handle& o) noexcept : n_(o.n_) {
    if (n_ != nullptr) n_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  registry_handle(registry_handle&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
  registry_handle& operator=(registry_handle o) noexcept {
    std::swap(n_, o.n_);
    return *this;
  }
  ~registry_handle() { release(); }

  [[nodiscard]] explicit operator bool() const noexcept { return n_ != nullptr; }
  [[nodiscard]] P* get() const noexcept { return n_ != nullptr ? &n_->value : nullptr; }
  P& operator*() const noexcept { return n_->value; }
  P* operator->() const noexcept { return &n_->value; }
  // True for the shared overflow entry (registry_overflow::shared_entry).
  [[nodiscard]] bool is_overflow() const noexcept { return n_ != nullptr && n_->overflow; }

 private:
  template <class, clock_source, class>
  friend class registry;
  using node = detail::registry_node<P>;
  explicit registry_handle(node* adopt) noexcept : n_(adopt) {}
  void release() noexcept {
    if (n_ != nullptr && n_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete n_;
    n_ = nullptr;
  }
  node* n_ = nullptr;
};

// One entry as a snapshot sees it.
template <class P>
struct registry_entry {
  std::string key;
  registry_handle<P> handle;  // holding it keeps the entry from eviction
  quiescence state = quiescence::quiescent;
  // A lower bound of the time since the last lookup: exact as of the last
  // eviction sweep that visited the entry (0 if looked up since).
  duration idle{};
};

// Counters since construction (sums over shards; not one atomic snapshot).
struct registry_stats {
  std::size_t entries = 0;
  std::size_t bytes = 0;
  std::uint64_t hits = 0;       // get() of an existing key
  std::uint64_t creations = 0;  // entries built and inserted
  std::uint64_t evictions = 0;  // entries evicted to make room
  std::uint64_t refusals = 0;   // get() answered errc::capacity_exceeded
  std::uint64_t overflows = 0;  // get() answered with the shared overflow entry
};

// -----------------------------------------------------------------------------
// registry<P, Clock, Options>
// -----------------------------------------------------------------------------
//
// Pinned: not copyable or movable.
template <class P, clock_source Clock = steady_clock_source, class Options = primitive_options_t<P>>
class registry {
  static_assert(!std::is_void_v<Options>,
                "sturdy::registry<P> cannot tell which options build a P: give P a nested `options_type` or "
                "an `options()` accessor, or name the options type as registry's third template argument.");
  static_assert(reports_quiescence<P>,
                "sturdy::registry<P> needs to know when a P may be evicted: give P a member "
                "`quiescence(sturdy::time_point) const` or an ADL function `sturdy_quiescence(const P&, "
                "sturdy::time_point)` returning sturdy::quiescence.");
  static_assert(detail::registry_can_build<P, Options, Clock>,
                "sturdy::registry<P> builds each entry as P(options, clock) or P(options) (with options "
                "of two parts, P(o.limiter, o.algorithm, clock) or P(o.limiter, o.algorithm)): P has no "
                "such constructor.");

  using node = detail::registry_node<P>;
  using handle_type = registry_handle<P>;
  struct shard_state {
    std::size_t bytes = 0;
    std::uint64_t creations = 0;
    std::uint64_t evictions = 0;
    std::uint64_t refusals = 0;
    std::uint64_t overflows = 0;
  };
  using map_type = detail::concurrent_map<handle_type, shard_state>;

 public:
  using primitive_type = P;
  using options_type = Options;
  using handle = registry_handle<P>;

  // Bytes charged per entry besides its key (beyond 15 bytes) and the
  // primitive's reported heap bytes: the table slot and the entry.
  static constexpr std::size_t entry_overhead =
      map_type::slot_bytes + sizeof(node);

  explicit registry(registry_options<Options> options = {}, Clock clock = Clock())
      : clock_(std::move(clock)),
        options_(std::move(options)),
        ok_(options_.validation_message().empty()),
        map_(ok_ ? options_.shard_count() : 1),
        shard_entries_(ok_ ? options_.max_entries / map_.shard_count() : 0),
        shard_bytes_(ok_ ? options_.max_bytes / map_.shard_count() : 0) {
    if (ok_ && options_.overflow == registry_overflow::shared_entry) overflow_ = build(std::string_view(), true);
  }
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  [[nodiscard]] const registry_options<Options>& options() const noexcept { return options_; }
  // errc::invalid_options when the options did not validate.
  [[nodiscard]] result<void> options_status() const noexcept { return options_.validate(); }

  // registry::get()
  //
  // The entry for `key`, built from `options_for(key)` if absent. Errors:
  // errc::capacity_exceeded (full of entries that may not be evicted, with
  // registry_overflow::refuse), errc::invalid_key (longer than
  // max_key_length), errc::invalid_options. An existing key allocates
  // nothing. An exception from options_for or P's constructor propagates and
  // leaves the registry unchanged.
  [[nodiscard]] result<handle> get(std::string_view key) {
    if (STURDY_UNLIKELY(!ok_)) return errc::invalid_options;
    if (STURDY_UNLIKELY(key.size() > options_.max_key_length)) return errc::invalid_key;
    const std::size_t h = map_type::hash(key);
    handle out;
    if (STURDY_LIKELY(map_.find(detail::map_key{key, h}, [&](const handle& e) { out = hit(e); }))) {
      hits_.add();
      return out;
    }
    return create(key, h);
  }

  // registry::find()
  //
  // The entry for `key` if present (counts as a use), else an empty handle.
  // Never creates, never allocates.
  [[nodiscard]] handle find(std::string_view key) {
    handle out;
    if (!ok_) return out;
    const std::size_t h = map_type::hash(key);
    if (map_.find(detail::map_key{key, h}, [&](const handle& e) { out = hit(e); })) hits_.add();
    return out;
  }

  // registry::erase()
  //
  // Removes `key` whatever its quiescence (an operator's decision). For a
  // primitive whose calls may outlive every handle (`sturdy_in_use` found by
  // ADL: a concurrency limiter, whose permits hold no handle), only when
  // nobody holds a handle and it is not in use (no permit out, nobody
  // queued): deleting it then would leave permits dangling, and a handle
  // held could still take one. Otherwise the entry stays (erase again
  // later). Handles held stay valid. Returns whether it was removed.
  bool erase(std::string_view key) {
    if (!ok_) return false;
    const std::size_t h = map_type::hash(key);
    handle victim;
    map_.write(h, [&](typename map_type::shard& s) {
      const auto it = s.table.find(detail::map_key{key, h});
      if (it == s.table.end()) return;
      if constexpr (detail::tracks_use<P>) {
        // Held by a caller: it may be about to take a permit through its
        // handle, which would then outlive the entry. In use: permits out.
        if (it->second.n_->refs.load(std::memory_order_acquire) != 1 || sturdy_in_use(it->second.n_->value)) return;
      }
      s.state.bytes -= it->second.n_->charge;
      victim = std::move(it->second);
      s.table.erase(it);
    });
    return static_cast<bool>(victim);  // destroyed after the lock is released
  }

  // registry::size() / stats()
  [[nodiscard]] std::size_t size() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < map_.shard_count(); ++i)
      n += map_.read_shard(i, [](const typename map_type::shard& s) { return s.table.size(); });
    return n;
  }
  [[nodiscard]] registry_stats stats() const {
    registry_stats out;
    for (std::size_t i = 0; i < map_.shard_count(); ++i) {
      map_.read_shard(i, [&](const typename map_type::shard& s) {
        out.entries += s.table.size();
        out.bytes += s.state.bytes;
        out.creations += s.state.creations;
        out.evictions += s.state.evictions;
        out.refusals += s.state.refusals;
        out.overflows += s.state.overflows;
      });
    }
    out.hits = hits_.sum();
    return out;
  }

  // registry::visit(f)
  //
  // Calls `f(std::string_view key, const P& primitive)` for every entry, one
  // shard at a time under that shard's read lock (entries created or evicted
  // meanwhile may or may not be visited). Unlike `snapshot()` it copies no
  // handle, so it keeps nothing from eviction once it returns, and it
  // allocates nothing: what an exporter's scrape uses. `f` runs under the
  // lock (writers of that shard wait): keep it quick, and never call back
  // into this registry from it (it could deadlock). An exception from `f`
  // releases the lock and propagates.
  template <class F>
    requires std::invocable<F&, std::string_view, const P&>
  void visit(F&& f) const {
    for (std::size_t i = 0; i < map_.shard_count(); ++i) {
      map_.read_shard(i, [&](const typename map_type::shard& s) {
        for (const auto& [key, h] : s.table) f(std::string_view(key), std::as_const(h.n_->value));
      });
    }
  }

  // registry::snapshot()
  //
  // Every entry with its quiescence and idle time, for health checks and
  // enumeration (one shard at a time: entries created or evicted meanwhile
  // may or may not appear). The handles keep the entries alive (and
  // unevictable) while the snapshot is held: to read every entry without
  // blocking eviction, use `visit`. Allocates.
  [[nodiscard]] std::vector<registry_entry<P>> snapshot() const {
    std::vector<registry_entry<P>> out;
    const time_point now = clock_.now();
    for (std::size_t i = 0; i < map_.shard_count(); ++i) {
      map_.read_shard(i, [&](const typename map_type::shard& s) {
        for (const auto& [key, h] : s.table) {
          out.push_back({key, h, quiescence_of(h.n_->value, now), idle_of(*h.n_, now)});
        }
      });
    }
    return out;
  }

 private:
  // A lookup found `e`: set its CLOCK bit (only if clear: a hot entry's line
  // stays shared). No clock is read here; the sweep stamps the time.
  static handle hit(const handle& e) noexcept {
    e.n_->referenced.store_if_changed(true);
    return e;
  }

  // A lower bound of the time since `n` was last looked up: no lookup since
  // the sweep last found its bit set (or since its creation) when the bit is
  // clear; 0 while the bit is set.
  static duration idle_of(const node& n, time_point now) noexcept {
    if (n.referenced.load()) return duration::zero();
    return detail::time_between(time_point(duration(n.last_use.load())), now);
  }

  handle build(std::string_view key, bool is_overflow) {
    Options o = options_.options_for ? options_.options_for(key) : Options{};
    node* n = nullptr;
    if constexpr (detail::two_part_options<Options>) {
      if constexpr (std::constructible_from<P, decltype(std::move(o.limiter)), decltype(std::move(o.algorithm)),
                                            Clock>) {
        n = new node(is_overflow, std::move(o.limiter), std::move(o.algorithm), clock_);
      } else {
        n = new node(is_overflow, std::move(o.limiter), std::move(o.algorithm));
      }
    } else if constexpr (std::constructible_from<P, Options, Clock>) {
      n = new node(is_overflow, std::move(o), clock_);
    } else {
      n = new node(is_overflow, std::move(o));
    }
    return handle(n);
  }

  // Whether the CLOCK hand may evict `e` at `now`. A set reference bit (a
  // lookup since the last visit) spares the entry once: the bit is cleared
  // and the visit's time stamped as its last use, so that at a later visit
  // with the bit still clear, `now - last_use` is a lower bound of its idle
  // time (an entry is never taken for idle too early).
  bool evictable(const handle& e, time_point now) const noexcept {
    node& n = *e.n_;
    if (n.referenced.load()) {
      n.referenced.store(false);
      n.last_use.store(now.time_since_epoch().count());
      return false;
    }
    // Held by a caller (the map holds one reference): it may be mid-call.
    if (n.refs.load(std::memory_order_acquire) != 1) return false;
    switch (quiescence_of(n.value, now)) {
      case quiescence::quiescent: return true;
      case quiescence::busy:
        return options_.idle_timeout != duration::max() && idle_of(n, now) >= options_.idle_timeout;
      case quiescence::pinned: return false;
    }
    return false;
  }

  result<handle> create(std::string_view key, std::size_t h) {
    handle fresh = build(key, false);  // outside the lock; may throw
    const std::size_t charge =
        entry_overhead + map_type::key_heap_bytes(key.size()) + detail::heap_bytes(fresh.n_->value);
    const time_point now = clock_.now();
    fresh.n_->charge = charge;
    fresh.n_->last_use.store(now.time_since_epoch().count());
    handle out;
    std::vector<handle> victims;  // destroyed after the lock is released
    bool refused = false;
    map_.write(h, [&](typename map_type::shard& s) {
      const auto it = s.table.find(detail::map_key{key, h});
      if (it != s.table.end()) {  // another thread created it meanwhile
        out = hit(it->second);
        hits_.add();
        return;
      }
      const auto full = [&] {
        return s.table.size() >= shard_entries_ || (shard_bytes_ != 0 && s.state.bytes + charge > shard_bytes_);
      };
      if (shard_bytes_ != 0 && charge > shard_bytes_) {
        refused = true;
      }
      while (!refused && full()) {
        handle victim;
        const auto decide = [&](const std::string&, const handle& e) { return evictable(e, now); };
        if (!map_type::evict_one(s, decide, 2 * s.table.size() + 1, &victim)) {
          refused = true;
          break;
        }
        s.state.bytes -= victim.n_->charge;
        ++s.state.evictions;
        victims.push_back(std::move(victim));
      }
      if (refused) {
        if (overflow_) {
          ++s.state.overflows;
        } else {
          ++s.state.refusals;
        }
        return;
      }
      out = fresh;
      s.table.emplace(std::string(key), std::move(fresh));
      s.state.bytes += charge;
      ++s.state.creations;
    });
    if (refused) {
      if (overflow_) return overflow_;
      return errc::capacity_exceeded;
    }
    return out;
  }

  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  const registry_options<Options> options_;
  const bool ok_;
  map_type map_;
  const std::size_t shard_entries_;
  const std::size_t shard_bytes_;
  handle overflow_;
  detail::striped_counter hits_;
};

}  // namespace sturdy

#endif  // STURDY_REGISTRY_HPP_
