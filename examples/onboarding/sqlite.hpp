// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: examples/onboarding/sqlite.hpp
// -----------------------------------------------------------------------------
//
// A deliberately small RAII layer over the SQLite C API for the onboarding
// example: a connection, prepared statements with positional binding, and a
// transaction guard that rolls back unless committed. Errors are
// `sturdy::result`s carrying `std::errc::io_error` (plus the SQLite message in
// `database::last_error()`); nothing here throws except `std::bad_alloc`.
//
// Example:
//
//   onboarding::sqlite::database db;
//   if (auto r = db.open("app.db"); !r) die(db.last_error());
//   auto st = db.prepare("INSERT INTO users(name) VALUES (?1)");
//   st.bind(1, "alice");
//   if (!st.run()) ...;
//   std::int64_t id = db.last_insert_rowid();
//
// Thread safety: a `database` and its statements belong to one thread at a
// time (the example is single-threaded; SQLite is built serialized anyway).

#ifndef STURDY_EXAMPLES_ONBOARDING_SQLITE_HPP_
#define STURDY_EXAMPLES_ONBOARDING_SQLITE_HPP_

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "sturdy/error.hpp"

namespace onboarding::sqlite {

class database;

// statement: one prepared statement. `step()` returns true while a row is
// available; `run()` executes a statement that returns no rows.
class statement {
 public:
  statement() = default;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  statement(statement&& o) noexcept
      : db_(std::exchange(o.db_, nullptr)), st_(std::exchange(o.st_, nullptr)) {}
  statement& operator=(statement&& o) noexcept {
    if (this != &o) {
      finalize();
      db_ = std::exchange(o.db_, nullptr);
      st_ = std::exchange(o.st_, nullptr);
    }
    return *this;
  }
  ~statement() { finalize(); }

  [[nodiscard]] bool valid() const noexcept { return st_ != nullptr; }

  statement& bind(int i, std::int64_t v) {
    if (st_) sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  statement& bind(int i, std::string_view v) {
    if (st_) sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  statement& bind_null(int i) {
    if (st_) sqlite3_bind_null(st_, i);
    return *this;
  }

  // Advances to the next row: true when one is available, false when done;
  // an error (constraint violation, disk full, ...) is returned as such.
  [[nodiscard]] sturdy::result<bool> step() {
    if (!st_) return std::make_error_code(std::errc::io_error);
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return std::make_error_code(std::errc::io_error);
  }
  // Runs a statement to completion and resets it for reuse.
  [[nodiscard]] sturdy::result<void> run() {
    auto r = step();
    reset();
    if (!r) return r.error();
    return sturdy::success();
  }
  void reset() {
    if (st_) {
      sqlite3_reset(st_);
      sqlite3_clear_bindings(st_);
    }
  }

  [[nodiscard]] std::int64_t column_int(int i) const { return sqlite3_column_int64(st_, i); }
  [[nodiscard]] std::string column_text(int i) const {
    const unsigned char* p = sqlite3_column_text(st_, i);
    if (p == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<std::size_t>(sqlite3_column_bytes(st_, i)));
  }
  [[nodiscard]] bool column_is_null(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }

 private:
  friend class database;
  statement(sqlite3* db, sqlite3_stmt* st) : db_(db), st_(st) {}
  void finalize() noexcept {
    if (st_) sqlite3_finalize(st_);
    st_ = nullptr;
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* st_ = nullptr;
};

// database: one connection.
class database {
 public:
  database() = default;
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database() { close(); }

  // Opens (creating if needed) `path`; ":memory:" for a private in-memory
  // database. WAL mode and synchronous=FULL for files, so a committed
  // transaction survives a crash of the process.
  [[nodiscard]] sturdy::result<void> open(const std::string& path) {
    close();
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      error_ = db_ ? sqlite3_errmsg(db_) : "out of memory";
      close();
      return std::make_error_code(std::errc::io_error);
    }
    sqlite3_busy_timeout(db_, 5000);
    if (path != ":memory:") {
      BOOST_OUTCOME_TRY(exec("PRAGMA journal_mode=WAL"));
      BOOST_OUTCOME_TRY(exec("PRAGMA synchronous=FULL"));
    }
    return exec("PRAGMA foreign_keys=ON");
  }
  void close() noexcept {
    if (db_) sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  [[nodiscard]] bool is_open() const noexcept { return db_ != nullptr; }

  // Runs one or more statements that return no rows.
  [[nodiscard]] sturdy::result<void> exec(const char* sql) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
      error_ = msg ? msg : sqlite3_errmsg(db_);
      sqlite3_free(msg);
      return std::make_error_code(std::errc::io_error);
    }
    return sturdy::success();
  }
  // A prepared statement; `valid()` is false (and last_error() says why) on
  // a syntax error.
  [[nodiscard]] statement prepare(std::string_view sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &st, nullptr) != SQLITE_OK) {
      error_ = sqlite3_errmsg(db_);
      return {};
    }
    return statement(db_, st);
  }
  [[nodiscard]] std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  [[nodiscard]] int changes() const { return sqlite3_changes(db_); }
  [[nodiscard]] std::string last_error() const {
    return db_ && error_.empty() ? sqlite3_errmsg(db_) : error_;
  }

  // A single integer from a query (0 when no row).
  [[nodiscard]] std::int64_t scalar(std::string_view sql) {
    auto st = prepare(sql);
    auto r = st.step();
    return r && r.value() ? st.column_int(0) : 0;
  }

 private:
  sqlite3* db_ = nullptr;
  std::string error_;
};

// transaction: BEGIN IMMEDIATE on construction, ROLLBACK on destruction
// unless `commit()` succeeded. Not nestable (SQLite has no nested BEGIN).
class [[nodiscard]] transaction {
 public:
  explicit transaction(database& db) : db_(db), ok_(db.exec("BEGIN IMMEDIATE").has_value()) {}
  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;
  ~transaction() {
    if (ok_ && !done_) (void)db_.exec("ROLLBACK");
  }
  [[nodiscard]] bool began() const noexcept { return ok_; }
  [[nodiscard]] sturdy::result<void> commit() {
    if (!ok_) return std::make_error_code(std::errc::io_error);
    BOOST_OUTCOME_TRY(db_.exec("COMMIT"));
    done_ = true;
    return sturdy::success();
  }

 private:
  database& db_;
  bool ok_;
  bool done_ = false;
};

}  // namespace onboarding::sqlite

#endif  // STURDY_EXAMPLES_ONBOARDING_SQLITE_HPP_
