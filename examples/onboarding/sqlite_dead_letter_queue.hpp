// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: examples/onboarding/sqlite_dead_letter_queue.hpp
// -----------------------------------------------------------------------------
//
// A durable `sturdy::dead_letter_sink`: one SQLite table. Everything a
// `compensation_scope` could not undo, and every outbox message the worker
// gave up on, becomes a row that survives restarts; an operator lists,
// inspects, replays and discards rows, from the same process or another one.
//
// Example:
//
//   onboarding::sqlite::database db;
//   (void)db.open("app.db");
//   onboarding::sqlite_dead_letter_queue dlq(db);          // creates the table
//   {
//     sturdy::compensation_scope saga(dlq, {.name = "onboarding"});
//     ...  // an undo that fails during rollback -> one row
//   }
//   for (const auto& r : dlq.list()) std::puts(r.describe().c_str());
//   auto done = dlq.replay(id, [&](const onboarding::dlq_record& r) {
//     return undo_again(r.entry.step, r.entry.context);   // any result-like type
//   });                                                   // success deletes the row
//
// Durability and atomicity: `push` is one INSERT, atomic on its own; it
// opens no transaction, so a producer may call it inside its own
// `sqlite::transaction` on the same connection (the worker moves an outbox
// message to the queue that way: both rows change, or neither). A replay
// deletes the row only after the handler succeeded: a crash in between
// leaves the row, so handlers must be idempotent (replaying twice is safe).
//
// What a row keeps of a `dead_letter_entry`: everything except the
// `exception_ptr` (not storable): the error code as category name, value and
// message (rebuilt into a `std::error_code` on read for the categories the
// queue knows: sturdy, generic, system, plus any passed to the
// constructor), the exception's text, the producer's time stamp in
// nanoseconds, the replay count, and a reason string: "undo_failed" /
// "undo_skipped" for compensation entries, or the producer's own (the
// worker uses "delivery_failed").
//
// Thread safety: like the connection it uses, one thread at a time. Two
// processes may share the file (SQLite locks it), but two operators
// replaying the same row at once would both run the handler: serialise
// operators, or make handlers idempotent (ours are).

#ifndef STURDY_EXAMPLES_ONBOARDING_SQLITE_DEAD_LETTER_QUEUE_HPP_
#define STURDY_EXAMPLES_ONBOARDING_SQLITE_DEAD_LETTER_QUEUE_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sqlite.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace onboarding {

// One row of the queue.
struct dlq_record {
  // id (the row id), saga, step, context, code (empty when its category is
  // unknown to this process), exception_text, at, replay_attempts.
  sturdy::dead_letter_entry entry;
  // "undo_failed", "undo_skipped", or the producer's reason.
  std::string reason;
  // The error as recorded by the producer: `code.message()` then, and the
  // category's name and value.
  std::string error_text;
  std::string error_category;
  int error_value = 0;
  // The last failed replay's error text ("" if never replayed).
  std::string last_replay_error;

  // "#3 onboarding/"assign role" undo_failed: role service error 500 (ctx: user=7)"
  [[nodiscard]] std::string describe() const {
    std::string s = "#" + std::to_string(entry.id) + " ";
    if (!entry.saga.empty()) s += entry.saga + "/";
    s += "\"" + entry.step + "\" " + reason + ": ";
    s += error_text.empty() ? (entry.exception_text.empty() ? "no error recorded" : entry.exception_text)
                            : error_text;
    if (!entry.context.empty()) s += " (ctx: " + entry.context + ")";
    if (entry.replay_attempts > 0) s += " [replayed " + std::to_string(entry.replay_attempts) + "x]";
    return s;
  }
};

class sqlite_dead_letter_queue {
 public:
  // Uses `db` (which must outlive the queue) and creates the table if it is
  // missing. `categories` are error categories, besides sturdy's, generic
  // and system, whose codes should be rebuilt on read. Check `ok()`.
  explicit sqlite_dead_letter_queue(sqlite::database& db,
                                    std::initializer_list<const std::error_category*> categories = {})
      : db_(db), categories_{&sturdy::error_category(), &std::generic_category(), &std::system_category()} {
    categories_.insert(categories_.end(), categories.begin(), categories.end());
    ok_ = db_.exec(R"sql(
      CREATE TABLE IF NOT EXISTS dead_letters (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        saga              TEXT NOT NULL,
        step              TEXT NOT NULL,
        context           TEXT NOT NULL,
        reason            TEXT NOT NULL,
        error_category    TEXT NOT NULL,
        error_value       INTEGER NOT NULL,
        error_text        TEXT NOT NULL,
        exception_text    TEXT NOT NULL,
        at_ns             INTEGER NOT NULL,
        replay_attempts   INTEGER NOT NULL DEFAULT 0,
        last_replay_error TEXT NOT NULL DEFAULT ''
      ))sql")
              .has_value();
    refresh_depth();
  }
  sqlite_dead_letter_queue(const sqlite_dead_letter_queue&) = delete;
  sqlite_dead_letter_queue& operator=(const sqlite_dead_letter_queue&) = delete;

  // False when the table could not be created (see the connection's
  // last_error()); every operation then fails with std::errc::io_error.
  [[nodiscard]] bool ok() const noexcept { return ok_; }

  // sqlite_dead_letter_queue::push()
  //
  // The `sturdy::dead_letter_sink` operation: stores `e` with the reason
  // `to_string(e.reason)`.
  [[nodiscard]] sturdy::result<void> push(sturdy::dead_letter_entry&& e) {
    const std::string reason(sturdy::to_string(e.reason));
    BOOST_OUTCOME_TRY(add(e, reason));
    return sturdy::success();
  }

  // sqlite_dead_letter_queue::add()
  //
  // Stores `e` with a reason of the producer's choosing; returns the new id.
  [[nodiscard]] sturdy::result<std::uint64_t> add(const sturdy::dead_letter_entry& e,
                                                  std::string_view reason) {
    if (!ok_) return std::make_error_code(std::errc::io_error);
    auto st = db_.prepare(
        "INSERT INTO dead_letters(saga, step, context, reason, error_category, error_value, error_text, "
        "exception_text, at_ns, replay_attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    st.bind(1, e.saga).bind(2, e.step).bind(3, e.context).bind(4, reason);
    st.bind(5, e.code ? e.code.category().name() : "").bind(6, static_cast<std::int64_t>(e.code.value()));
    st.bind(7, e.code ? e.code.message() : std::string()).bind(8, e.exception_text);
    st.bind(9, static_cast<std::int64_t>(e.at.time_since_epoch().count()));
    st.bind(10, static_cast<std::int64_t>(e.replay_attempts));
    BOOST_OUTCOME_TRY(st.run());
    const auto id = static_cast<std::uint64_t>(db_.last_insert_rowid());
    refresh_depth();
    return id;
  }

  // Every row, oldest first.
  [[nodiscard]] std::vector<dlq_record> list() { return select("ORDER BY id", 0); }

  // The row `id`, or `sturdy::errc::not_found`.
  [[nodiscard]] sturdy::result<dlq_record> inspect(std::uint64_t id) {
    auto rows = select("WHERE id = ?1", id);
    if (rows.empty()) return sturdy::errc::not_found;
    return std::move(rows.front());
  }

  // Deletes row `id` without doing anything; `sturdy::errc::not_found`.
  [[nodiscard]] sturdy::result<void> discard(std::uint64_t id) {
    if (!ok_) return std::make_error_code(std::errc::io_error);
    auto st = db_.prepare("DELETE FROM dead_letters WHERE id = ?1");
    st.bind(1, static_cast<std::int64_t>(id));
    BOOST_OUTCOME_TRY(st.run());
    if (db_.changes() == 0) return sturdy::errc::not_found;
    refresh_depth();
    return sturdy::success();
  }

  // sqlite_dead_letter_queue::replay()
  //
  // Calls `handler(const dlq_record&)` (any return type the outcome adapters
  // support; a throw is a failure). On success deletes the row; on failure
  // keeps it with `replay_attempts` + 1 and the failure's text, and returns
  // `sturdy::errc::compensation_failed` (as `sturdy::dead_letter_queue`).
  // `errc::not_found` when there is no such row.
  template <class Handler>
  requires std::invocable<Handler&, const dlq_record&>
  [[nodiscard]] sturdy::result<void> replay(std::uint64_t id, Handler&& handler) {
    BOOST_OUTCOME_TRY(auto rec, inspect(id));
    std::string failure;
    try {
      auto r = sturdy::invoke_wrapped([&] { return handler(std::as_const(rec)); });
      if (sturdy::succeeded(r)) {
        (void)discard(id);  // not_found only if the handler removed it itself
        return sturdy::success();
      }
      const sturdy::failure_info f = sturdy::failure_of(r);
      failure = f.code ? f.code.message() : sturdy::exception_text_of(f.exception);
    } catch (...) {
      failure = sturdy::exception_text_of(std::current_exception());
    }
    auto st = db_.prepare(
        "UPDATE dead_letters SET replay_attempts = replay_attempts + 1, last_replay_error = ?2 WHERE id = "
        "?1");
    st.bind(1, static_cast<std::int64_t>(id)).bind(2, failure);
    BOOST_OUTCOME_TRY(st.run());
    return sturdy::errc::compensation_failed;
  }

  // `replay` for every row present when called, oldest first; returns how
  // many succeeded (and were deleted).
  template <class Handler>
  requires std::invocable<Handler&, const dlq_record&> std::size_t replay_all(Handler&& handler) {
    std::size_t ok = 0;
    for (const auto& r : list()) {
      if (replay(r.entry.id, handler)) ++ok;
    }
    return ok;
  }

  [[nodiscard]] std::size_t size() {
    return ok_ ? static_cast<std::size_t>(db_.scalar("SELECT COUNT(*) FROM dead_letters")) : 0;
  }
  [[nodiscard]] bool empty() { return size() == 0; }

  // The number of rows as this object last saw it: after its construction
  // and after each of its own adds and removals (rows other processes add
  // show up at this object's next change). Safe from any thread without
  // touching the connection: what a metrics scrape reads.
  [[nodiscard]] std::size_t depth() const noexcept { return depth_.load(std::memory_order_relaxed); }

 private:
  std::vector<dlq_record> select(std::string_view where, std::uint64_t id) {
    std::vector<dlq_record> out;
    if (!ok_) return out;
    std::string sql =
        "SELECT id, saga, step, context, reason, error_category, error_value, error_text, exception_text, "
        "at_ns, replay_attempts, last_replay_error FROM dead_letters ";
    sql += where;
    auto st = db_.prepare(sql);
    if (id != 0) st.bind(1, static_cast<std::int64_t>(id));
    for (;;) {
      auto row = st.step();
      if (!row || !row.value()) break;
      dlq_record r;
      r.entry.id = static_cast<std::uint64_t>(st.column_int(0));
      r.entry.saga = st.column_text(1);
      r.entry.step = st.column_text(2);
      r.entry.context = st.column_text(3);
      r.reason = st.column_text(4);
      r.error_category = st.column_text(5);
      r.error_value = static_cast<int>(st.column_int(6));
      r.error_text = st.column_text(7);
      r.entry.exception_text = st.column_text(8);
      r.entry.at = sturdy::time_point(sturdy::duration(st.column_int(9)));
      r.entry.replay_attempts = static_cast<std::uint32_t>(st.column_int(10));
      r.last_replay_error = st.column_text(11);
      if (r.reason == "undo_skipped") r.entry.reason = sturdy::dead_letter_reason::undo_skipped;
      for (const std::error_category* c : categories_) {
        if (!r.error_category.empty() && r.error_category == c->name()) {
          r.entry.code = std::error_code(r.error_value, *c);
          break;
        }
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  void refresh_depth() { depth_.store(size(), std::memory_order_relaxed); }

  sqlite::database& db_;
  std::vector<const std::error_category*> categories_;
  bool ok_ = false;
  std::atomic<std::size_t> depth_{0};
};

static_assert(sturdy::dead_letter_sink<sqlite_dead_letter_queue>);

}  // namespace onboarding

#endif  // STURDY_EXAMPLES_ONBOARDING_SQLITE_DEAD_LETTER_QUEUE_HPP_
