// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/dead_letter.hpp
// -----------------------------------------------------------------------------
//
// Where work that could not be completed goes, so that an operator (or a
// program) can see it, retry it later, or decide to drop it.
//
// - `dead_letter_entry`: one record: which saga and step, what went wrong
//   (error code and/or exception text), when (from the producer's injected
//   clock), and a free-form `context` string the producer attached for a
//   later replay (an id, a JSON document, ...).
// - `dead_letter_sink<S>`: the concept: `s.push(dead_letter_entry&&)`
//   returning `sturdy::result<void>`. `sturdy::compensation_scope` hands every
//   undo that it could not complete to one. A durable sink (a database
//   table) implements the same one function.
// - `null_dead_letter_sink`: the default: empty, keeps nothing, and a scope
//   using it does not even build entries (`discards_entries`).
// - `dead_letter_queue`: a bounded, thread-safe, in-memory sink an operator
//   can list, inspect, replay, discard and drain.
//
// Example:
//
//   sturdy::dead_letter_queue dlq({.capacity = 1000});
//   {
//     sturdy::compensation_scope saga(dlq);
//     ...  // an undo fails during rollback -> one entry in dlq
//   }
//   for (const auto& e : dlq.list()) std::puts(e.describe().c_str());
//   // After the fault is fixed, retry each entry; success removes it:
//   auto replayed = dlq.replay_all([&](const sturdy::dead_letter_entry& e) {
//     return undo_by_name(e.step, e.context);   // returns any result-like type
//   });
//
// Thread safety: `dead_letter_queue` may be used from any number of threads
// at once (one std::mutex; entries are moved in and copied out, so no
// reference into the queue escapes). `null_dead_letter_sink` is stateless.
// Exception safety: an entry in the queue is never lost to an exception:
// `drain` allocates its result before it removes anything, and `replay`
// leaves a placeholder where the entry was, so putting a failed entry back
// moves it into place without allocating.
// Testing: assert on `list()`; time stamps come from the producer's clock
// (a `sturdy::testing::manual_clock` in tests).

#ifndef STURDY_DEAD_LETTER_HPP_
#define STURDY_DEAD_LETTER_HPP_

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <type_traits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sturdy/clock.hpp"
#include "sturdy/detail/invoke_captured.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// Why an entry was dead-lettered.
enum class dead_letter_reason : std::uint8_t {
  // The undo ran and failed (error result or exception), after any retries
  // its policy allowed.
  undo_failed,
  // The undo never ran: rollback stopped at an earlier failure
  // (`compensation_options::stop_at_first_failure`). `code` is
  // `errc::compensation_failed`.
  undo_skipped,
};

[[nodiscard]] constexpr std::string_view to_string(dead_letter_reason r) noexcept {
  switch (r) {
    case dead_letter_reason::undo_failed:
      return "undo_failed";
    case dead_letter_reason::undo_skipped:
      return "undo_skipped";
  }
  return "unknown";
}

// dead_letter_entry
//
// Owns all its strings, so it outlives the scope that produced it.
struct dead_letter_entry {
  // Assigned by the sink that stores the entry (`dead_letter_queue`: 1, 2,
  // ...); 0 until then.
  std::uint64_t id = 0;
  // The producing scope's `compensation_options::name` ("" if unnamed).
  std::string saga{};
  // The step's name as registered ("" if unnamed).
  std::string step{};
  // The step's replay context as registered (`step_info::context`), e.g. a
  // user id or a JSON document; "" if none.
  std::string context{};
  dead_letter_reason reason = dead_letter_reason::undo_failed;
  // The error code of the failure; empty when it was only an exception.
  std::error_code code{};
  // `what()` of the exception, "unknown exception" for a non-std exception,
  // "" when there was no exception.
  std::string exception_text{};
  // The exception itself (in-process only: a durable sink cannot keep it).
  std::exception_ptr exception{};
  // When the producer gave up, read from its injected clock.
  time_point at{};
  // How many times `dead_letter_queue::replay` tried and failed (0 at first).
  std::uint32_t replay_attempts = 0;

  // One line for logs and operator screens, e.g.
  //   #3 onboarding/"assign role" undo_failed: connection refused (ctx: user=42)
  // (Built by appending to one string: GCC 12 at -O3 raises a false
  // -Wrestrict on `"literal" + std::string`.)
  [[nodiscard]] std::string describe() const {
    std::string s;
    s.reserve(32 + saga.size() + step.size() + exception_text.size() + context.size());
    s.append("#").append(std::to_string(id)).append(" ");
    if (!saga.empty()) s.append(saga).append("/");
    s.append("\"").append(step).append("\" ");
    s.append(to_string(reason));
    s.append(": ");
    if (code) s.append(code.message());
    if (code && !exception_text.empty()) s.append("; ");
    if (!exception_text.empty()) s.append("exception: ").append(exception_text);
    if (!code && exception_text.empty()) s.append("no error recorded");
    if (!context.empty()) s.append(" (ctx: ").append(context).append(")");
    return s;
  }
};

// The text the entry keeps for an exception (see exception_text).
[[nodiscard]] inline std::string exception_text_of(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// dead_letter_sink<S>
//
// Takes ownership of an entry. Returns an error when it cannot keep it
// (full, store down); the producer records that but does not retry.
// `push` is called on failure paths only and may allocate, lock and throw
// (a throw counts as "not kept").
template <class S>
concept dead_letter_sink = requires(S& s, dead_letter_entry&& e) {
  { s.push(std::move(e)) } -> std::convertible_to<result<void>>;
};

// sink_discards_entries_v<S>: true when `S::discards_entries` says the sink
// keeps nothing, so producers skip building entries altogether.
template <class S>
inline constexpr bool sink_discards_entries_v = [] {
  if constexpr (requires { S::discards_entries; }) {
    return static_cast<bool>(S::discards_entries);
  } else {
    return false;
  }
}();

// null_dead_letter_sink: keeps nothing, costs nothing (the default).
struct null_dead_letter_sink {
  static constexpr bool discards_entries = true;
  // NOLINTNEXTLINE(readability-convert-member-functions-to-static)
  result<void> push(dead_letter_entry&&) const noexcept { return success(); }
};

// dead_letter_queue_options
struct dead_letter_queue_options {
  // The most entries kept at once. When full, `push` refuses the new entry
  // with `errc::capacity_exceeded` and counts it in `dropped()`: older
  // entries are never evicted behind an operator's back. Default 1024; must
  // be > 0 (validate()).
  std::size_t capacity = 1024;

  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
  // Names the offending field, or "" when valid.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (capacity == 0) return "dead_letter_queue_options.capacity must be > 0";
    return {};
  }
};

// dead_letter_queue
//
// A bounded, thread-safe, in-memory `dead_letter_sink`. Pinned: not copyable
// or movable; share it by reference. Entries are kept oldest first. With
// invalid options (capacity 0) it keeps nothing and every push is dropped
// with `errc::capacity_exceeded`: call `options.validate()` first.
class dead_letter_queue final {
 public:
  explicit dead_letter_queue(dead_letter_queue_options options = {}) noexcept : options_(options) {}
  dead_letter_queue(const dead_letter_queue&) = delete;
  dead_letter_queue& operator=(const dead_letter_queue&) = delete;

  // dead_letter_queue::push()
  //
  // Stores `e`, giving it the next id (1, 2, ...). `errc::capacity_exceeded`
  // when full (the entry is dropped and counted). May throw std::bad_alloc
  // (the entry is then not stored, and `e` is left as it was).
  result<void> push(dead_letter_entry&& e) {
    std::lock_guard lock(mu_);
    if (entries_.size() - taken_ >= options_.capacity) {
      ++dropped_;
      return errc::capacity_exceeded;
    }
    entries_.emplace_back(last_id_ + 1, std::move(e));  // allocates before it moves from `e`
    entries_.back().entry.id = ++last_id_;
    ++pushed_;
    return success();
  }

  // dead_letter_queue::list()
  //
  // A copy of every entry, oldest first (not those out for replay).
  [[nodiscard]] std::vector<dead_letter_entry> list() const {
    std::lock_guard lock(mu_);
    std::vector<dead_letter_entry> out;
    out.reserve(entries_.size() - taken_);
    for (const slot& s : entries_) {
      if (!s.taken) out.push_back(s.entry);
    }
    return out;
  }

  // dead_letter_queue::inspect()
  //
  // A copy of the entry with `id`, or `errc::not_found` (also while it is
  // out for replay).
  [[nodiscard]] result<dead_letter_entry> inspect(std::uint64_t id) const {
    std::lock_guard lock(mu_);
    const auto it = find(id);
    if (it == entries_.end() || it->taken) return errc::not_found;
    return it->entry;
  }

  // dead_letter_queue::drain()
  //
  // Removes and returns every entry, oldest first (hand them to a durable
  // store, or log them and move on); entries out for replay stay with
  // their replayers. The result is allocated before anything is removed:
  // if that throws std::bad_alloc, the queue is unchanged.
  [[nodiscard]] std::vector<dead_letter_entry> drain() {
    std::vector<dead_letter_entry> out;
    std::lock_guard lock(mu_);
    out.reserve(entries_.size() - taken_);  // the only step that can throw
    auto keep = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->taken) {
        if (keep != it) *keep = std::move(*it);
        ++keep;
      } else {
        out.push_back(std::move(it->entry));  // within capacity: no allocation
      }
    }
    entries_.erase(keep, entries_.end());
    return out;
  }

  // dead_letter_queue::discard()
  //
  // Removes the entry with `id` without doing anything; `errc::not_found`
  // (also while it is out for replay).
  [[nodiscard]] result<void> discard(std::uint64_t id) {
    std::lock_guard lock(mu_);
    const auto it = find(id);
    if (it == entries_.end() || it->taken) return errc::not_found;
    entries_.erase(it);
    return success();
  }

  // dead_letter_queue::replay()
  //
  // Takes the entry with `id` out (a placeholder keeps its place), calls
  // `handler(const dead_letter_entry&)` (any return type the outcome
  // adapters support; a throw is a failure) without holding the lock, and
  // on success forgets the entry. On failure the entry goes back into its
  // place with `replay_attempts` incremented (even when the queue filled up
  // meanwhile; the move back allocates nothing, so an entry is never lost
  // by replaying it), and the handler's failure is returned as
  // `errc::compensation_failed` (a throw is not rethrown). `errc::not_found`
  // when no such entry exists, e.g. another thread is replaying it.
  template <class Handler>
    requires std::invocable<Handler&, const dead_letter_entry&>
  [[nodiscard]] result<void> replay(std::uint64_t id, Handler&& handler) {
    dead_letter_entry e;
    if (!take(id, id, e)) return errc::not_found;
    const bool ok = attempt(e, handler);
    give_back(std::move(e), ok);
    if (ok) return success();
    return errc::compensation_failed;
  }

  // dead_letter_queue::replay_all()
  //
  // `replay` for every entry present when called, oldest first, one at a
  // time (only the one being replayed is out of the queue; entries pushed
  // meanwhile are not replayed, entries another thread is replaying are
  // skipped). Returns how many succeeded (and were removed).
  template <class Handler>
    requires std::invocable<Handler&, const dead_letter_entry&>
  std::size_t replay_all(Handler&& handler) {
    std::uint64_t upto = 0;
    {
      std::lock_guard lock(mu_);
      upto = last_id_;
    }
    std::size_t ok = 0;
    dead_letter_entry e;
    for (std::uint64_t from = 1; from <= upto && take(from, upto, e); from = e.id + 1) {
      const bool replayed = attempt(e, handler);
      const std::uint64_t id = e.id;
      give_back(std::move(e), replayed);
      e.id = id;
      if (replayed) ++ok;
    }
    return ok;
  }

  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mu_);
    return entries_.size() - taken_;
  }
  [[nodiscard]] bool empty() const { return size() == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return options_.capacity; }
  // Entries refused because the queue was full, since construction.
  [[nodiscard]] std::uint64_t dropped() const {
    std::lock_guard lock(mu_);
    return dropped_;
  }
  // Entries accepted, since construction.
  [[nodiscard]] std::uint64_t accepted() const {
    std::lock_guard lock(mu_);
    return pushed_;
  }

 private:
  template <class Handler>
  static bool attempt(dead_letter_entry& e, Handler& handler) noexcept {
    failure_info ignored;  // a failed (or throwing) handler is a failed replay
    if (detail::invoke_captured([&] { return handler(std::as_const(e)); }, ignored)) return true;
    ++e.replay_attempts;
    return false;
  }

  // One stored entry. While `taken`, its entry is out with a replayer (the
  // slot is a placeholder: hidden, and removed or refilled only by that
  // replayer).
  struct slot {
    slot(std::uint64_t i, dead_letter_entry&& e) noexcept : id(i), entry(std::move(e)) {}
    std::uint64_t id;
    dead_letter_entry entry;
    bool taken = false;
  };
  static_assert(std::is_nothrow_move_constructible_v<dead_letter_entry> &&
                    std::is_nothrow_move_assignable_v<dead_letter_entry>,
                "dead_letter_queue moves entries in and out of their slots without allocating");

  // The slot with `id`, or end() (requires mu_). Slots stay in id order.
  [[nodiscard]] std::deque<slot>::const_iterator find(std::uint64_t id) const {
    const auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                                     [](const slot& s, std::uint64_t v) { return s.id < v; });
    return it != entries_.end() && it->id == id ? it : entries_.end();
  }
  [[nodiscard]] std::deque<slot>::iterator find(std::uint64_t id) {
    const auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                                     [](const slot& s, std::uint64_t v) { return s.id < v; });
    return it != entries_.end() && it->id == id ? it : entries_.end();
  }

  // Moves the oldest entry with an id in [from, upto] that is not out for
  // replay into `out`, leaving a placeholder; false when there is none.
  bool take(std::uint64_t from, std::uint64_t upto, dead_letter_entry& out) {
    std::lock_guard lock(mu_);
    auto it = std::lower_bound(entries_.begin(), entries_.end(), from,
                               [](const slot& s, std::uint64_t v) { return s.id < v; });
    for (; it != entries_.end() && it->id <= upto; ++it) {
      if (it->taken) continue;
      out = std::move(it->entry);
      it->taken = true;
      ++taken_;
      return true;
    }
    return false;
  }

  // Ends a replay: forgets the entry, or moves it back into its
  // placeholder (no allocation).
  void give_back(dead_letter_entry&& e, bool replayed) {
    std::lock_guard lock(mu_);
    const auto it = find(e.id);  // only its replayer removes a taken slot
    --taken_;
    if (replayed) {
      entries_.erase(it);
    } else {
      it->entry = std::move(e);
      it->taken = false;
    }
  }

  const dead_letter_queue_options options_;
  mutable std::mutex mu_;
  std::deque<slot> entries_;
  std::size_t taken_ = 0;  // slots out for replay
  std::uint64_t last_id_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t pushed_ = 0;
};

static_assert(dead_letter_sink<null_dead_letter_sink>);
static_assert(dead_letter_sink<dead_letter_queue>);
static_assert(sink_discards_entries_v<null_dead_letter_sink>);
static_assert(!sink_discards_entries_v<dead_letter_queue>);

}  // namespace sturdy

#endif  // STURDY_DEAD_LETTER_HPP_
