// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/redis/detail/connection.hpp
// -----------------------------------------------------------------------------
//
// Internal: the one Redis connection layer of sturdy's Redis components (the
// idempotency store and the rate limiter): a pool of hiredis connections
// with deadline-bounded I/O (connect_timeout, command_timeout,
// pool_wait_timeout), AUTH and SELECT at connect, Lua scripts loaded on
// every connection and run by SHA1 with an EVAL fallback, and the
// classification of the server's error replies into sturdy::errc
// (store_unavailable, invalid_options, corrupt_data).
// Commands are written with send(MSG_NOSIGNAL): a dropped connection cannot
// raise SIGPIPE, and the process's signal mask and dispositions are never
// touched.
//
// Thread safety: `pool` may be used from any number of threads; its mutex
// is held only to take or return a connection, never during I/O. A
// `connection` is used by one thread at a time (the one that took it).

#ifndef STURDY_REDIS_DETAIL_CONNECTION_HPP_
#define STURDY_REDIS_DETAIL_CONNECTION_HPP_

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy::redis::detail {

struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

struct context_deleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};

// One connection and the SHA1s of the pool's scripts as loaded on it (in
// the pool's order).
struct connection {
  std::unique_ptr<redisContext, context_deleter> ctx;
  std::vector<std::string> sha;
};

// What a pool needs to open connections: the connection fields both
// `store_options` and `limiter_store_options` have (validated by them).
struct connection_config {
  std::string host;
  std::uint16_t port = 6379;
  duration connect_timeout{};
  duration command_timeout{};
  std::size_t pool_size = 1;
  duration pool_wait_timeout{};
  std::string password;
  int database = 0;
};

// The connection fields of a component's options (`store_options`,
// `limiter_store_options`: the same names), for the pool.
template <class Options>
[[nodiscard]] connection_config connection_config_of(const Options& options) {
  return {.host = options.host,
          .port = options.port,
          .connect_timeout = options.connect_timeout,
          .command_timeout = options.command_timeout,
          .pool_size = options.pool_size,
          .pool_wait_timeout = options.pool_wait_timeout,
          .password = options.password,
          .database = options.database};
}

// A failed call: which errc, and the text hiredis or the server gave.
struct call_error {
  errc code = errc::store_unavailable;
  std::string detail;
};

// Deadline-bounded I/O. After connecting, a connection's socket is made
// non-blocking and hiredis's blocking flag is cleared, so hiredis never
// waits in the kernel: these functions wait in poll() until a deadline.
// (A socket timeout, SO_RCVTIMEO, bounds one recv(), not a reply: a server
// that trickles its reply could stretch a call without limit.)

// Marks `c` failed (so the pool closes it) with `why`.
inline void set_io_error(redisContext* c, const char* why) noexcept {
  c->err = REDIS_ERR_IO;
  std::snprintf(c->errstr, sizeof(c->errstr), "%s", why);
}

// Waits until `fd` is ready for `events` (or has an error or hang-up, which
// the next read/write reports); false when `deadline` passes first.
[[nodiscard]] inline bool wait_ready(int fd, short events, time_point deadline) noexcept {
  for (;;) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// Sends one command before `deadline`; false on failure, with
// `c->err`/`c->errstr` set. Written with send(MSG_NOSIGNAL), not hiredis's
// write(): a connection the server closed gives EPIPE, never a SIGPIPE, so
// no signal mask is touched (that cost four system calls per command).
[[nodiscard]] inline bool send_command(redisContext* c, int argc, const char** argv, const std::size_t* len,
                                       time_point deadline) noexcept {
  char* cmd = nullptr;
  const auto total = redisFormatCommandArgv(&cmd, argc, argv, len);
  if (total < 0 || cmd == nullptr) {
    set_io_error(c, "cannot format the command (out of memory)");
    return false;
  }
  const auto size = static_cast<std::size_t>(total);
  std::size_t sent = 0;
  bool ok = true;
  while (sent < size) {
    const ssize_t w = ::send(c->fd, cmd + sent, size - sent, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (wait_ready(c->fd, POLLOUT, deadline)) continue;
      set_io_error(c, "timed out sending (command_timeout)");
    } else {
      set_io_error(c, "connection lost while sending");
    }
    ok = false;
    break;
  }
  redisFreeCommand(cmd);
  return ok;
}

// Reads one reply before `deadline`. Null on failure, with
// `c->err`/`c->errstr` set.
[[nodiscard]] inline redisReply* read_reply(redisContext* c, time_point deadline) noexcept {
  for (;;) {
    void* raw = nullptr;
    if (redisGetReplyFromReader(c, &raw) != REDIS_OK) return nullptr;
    if (raw != nullptr) return static_cast<redisReply*>(raw);
    if (!wait_ready(c->fd, POLLIN, deadline)) {
      set_io_error(c, "timed out waiting for the reply (command_timeout)");
      return nullptr;
    }
    if (redisBufferRead(c) != REDIS_OK) return nullptr;
  }
}

// One command, one reply, within `timeout`.
[[nodiscard]] inline redisReply* run_command(redisContext* c, int argc, const char** argv,
                                             const std::size_t* len, duration timeout) noexcept {
  const time_point deadline = ::sturdy::detail::saturating_add(std::chrono::steady_clock::now(), timeout);
  if (!send_command(c, argc, argv, len, deadline)) return nullptr;
  return read_reply(c, deadline);
}

[[nodiscard]] inline timeval to_timeval(duration d) noexcept {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  const auto clamped = us < 1 ? 1 : us;
  return timeval{static_cast<time_t>(clamped / 1000000), static_cast<suseconds_t>(clamped % 1000000)};
}

// Milliseconds, rounded up (a lease of 1 ns still lasts 1 ms).
[[nodiscard]] inline std::int64_t ceil_ms(duration d) noexcept {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms < 1 ? 1 : static_cast<std::int64_t>(ms);
}

template <std::integral I>
[[nodiscard]] inline std::string_view to_chars(I v, std::array<char, 24>& buf) noexcept {
  const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  (void)ec;  // 24 bytes hold every 64-bit integer
  return {buf.data(), static_cast<std::size_t>(end - buf.data())};
}

[[nodiscard]] inline bool is_error(const redisReply* r, std::string_view prefix) noexcept {
  return r->type == REDIS_REPLY_ERROR && std::string_view(r->str, r->len).substr(0, prefix.size()) == prefix;
}

[[nodiscard]] inline std::string_view text(const redisReply* r) noexcept {
  return r->str == nullptr ? std::string_view() : std::string_view(r->str, r->len);
}

[[nodiscard]] inline bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.substr(0, prefix.size()) == prefix;
}

// Refusals that mean the options do not fit the server: a password missing
// (NOAUTH) or wrong (WRONGPASS), an ACL user without a needed permission
// (NOPERM). Retrying cannot help, so they are `errc::invalid_options`, which
// is never failed open: a password typo must not silently turn idempotency
// off as if Redis were down.
[[nodiscard]] inline bool is_auth_error(std::string_view msg) noexcept {
  return starts_with(msg, "NOAUTH") || starts_with(msg, "WRONGPASS") || starts_with(msg, "NOPERM");
}

// Server states that pass (loading a dataset, a busy script, a replica
// without its master, a cluster resharding, out of memory).
[[nodiscard]] inline bool is_transient_error(std::string_view msg) noexcept {
  return starts_with(msg, "LOADING") || starts_with(msg, "BUSY") || starts_with(msg, "MASTERDOWN") ||
         starts_with(msg, "TRYAGAIN") || starts_with(msg, "OOM");
}

// An error reply means the data is not ours (a key of another type, a
// counter that is not a number), that the options do not fit the server
// (see is_auth_error), or that the server cannot serve now.
[[nodiscard]] inline errc classify_error_reply(std::string_view msg) noexcept {
  if (msg.find("WRONGTYPE") != std::string_view::npos ||
      msg.find("not an integer") != std::string_view::npos ||
      msg.find("increment or decrement would overflow") != std::string_view::npos)
    return errc::corrupt_data;
  if (is_auth_error(msg)) return errc::invalid_options;
  return errc::store_unavailable;
}

// An error reply to the connection's own AUTH or SELECT: the password or
// the database index is wrong ("WRONGPASS ...", "ERR AUTH <password> called
// without any password configured ...", "ERR DB index is out of range"),
// unless the server is only passing through a transient state.
[[nodiscard]] inline errc classify_setup_error(std::string_view msg) noexcept {
  return is_transient_error(msg) ? errc::store_unavailable : errc::invalid_options;
}

// The connection pool: at most `pool_size` connections, idle ones in a
// stack. Every connection it opens loads `scripts` (SCRIPT LOAD, pipelined
// with AUTH and SELECT: no extra round trip), and `eval` runs one of them
// by its SHA1, falling back to EVAL when the server lost its script cache.
// `scripts` must outlive the pool (string literals).
class pool {
 public:
  pool(connection_config options, std::initializer_list<std::string_view> scripts)
      : options_(std::move(options)), scripts_(scripts) {}
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  // Takes an idle connection, or opens one (outside the lock) when fewer
  // than `pool_size` are open; otherwise waits for one to be returned, at
  // most `pool_wait_timeout` (then null, `store_unavailable`: with a frozen
  // Redis every holder times out in turn, and an unbounded wait would make
  // the N-th caller wait N/pool_size command timeouts).
  // An idle connection the server has closed meanwhile (a restart, an idle
  // timeout) is noticed here and replaced, so that call does not fail.
  [[nodiscard]] std::unique_ptr<connection> acquire(call_error& err) {
    {
      std::unique_lock lock(mu_);
      const auto ready = [&] { return !idle_.empty() || open_ < options_.pool_size; };
      if (!ready()) {
        // duration::max() means "wait as long as it takes": no deadline (a
        // saturated one would be the clock's end of time, which some
        // condition variable implementations mishandle).
        const time_point deadline =
            ::sturdy::detail::saturating_add(std::chrono::steady_clock::now(), options_.pool_wait_timeout);
        if (deadline == time_point::max()) {
          cv_.wait(lock, ready);
        } else if (!cv_.wait_until(lock, deadline, ready)) {
          err = {errc::store_unavailable, "no free connection within pool_wait_timeout"};
          return nullptr;
        }
      }
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        lock.unlock();
        if (STURDY_LIKELY(!closed_by_peer(*c))) return c;
        c.reset();  // replaced below; its slot stays counted
      } else {
        ++open_;
      }
    }
    auto c = connect(err);
    if (c == nullptr) release_slot();
    return c;
  }

  // pool::eval()
  //
  // Runs script `index` (of the constructor's list) on a pooled connection:
  // EVALSHA, then EVAL if the server answers NOSCRIPT (a restart, SCRIPT
  // FLUSH). Null on any failure, with `err` filled: store_unavailable (no
  // connection, I/O, a timeout, a transient server state), invalid_options
  // (AUTH, SELECT, ACL) or corrupt_data (WRONGTYPE and the like) for an
  // error reply.
  template <std::size_t NK, std::size_t NA>
  [[nodiscard]] reply_ptr eval(std::size_t index, const std::string_view (&keys)[NK],
                               const std::string_view (&args)[NA], call_error& err) {
    auto c = acquire(err);
    if (c == nullptr) return nullptr;
    std::array<char, 24> nk_buf;
    const std::string_view nk = to_chars(NK, nk_buf);
    std::array<const char*, 3 + NK + NA> argv{};
    std::array<std::size_t, 3 + NK + NA> len{};
    argv[0] = "EVALSHA";
    len[0] = 7;
    argv[1] = c->sha[index].data();
    len[1] = c->sha[index].size();
    argv[2] = nk.data();
    len[2] = nk.size();
    for (std::size_t i = 0; i < NK; ++i) {
      argv[3 + i] = keys[i].data();
      len[3 + i] = keys[i].size();
    }
    for (std::size_t i = 0; i < NA; ++i) {
      argv[3 + NK + i] = args[i].data();
      len[3 + NK + i] = args[i].size();
    }
    reply_ptr r(run_command(c->ctx.get(), static_cast<int>(argv.size()), argv.data(), len.data(),
                            options_.command_timeout));
    if (r != nullptr && is_error(r.get(), "NOSCRIPT")) {
      argv[0] = "EVAL";
      len[0] = 4;
      argv[1] = scripts_[index].data();
      len[1] = scripts_[index].size();
      r.reset(run_command(c->ctx.get(), static_cast<int>(argv.size()), argv.data(), len.data(),
                          options_.command_timeout));
    }
    if (r == nullptr) {
      err = {errc::store_unavailable, c->ctx->errstr[0] != '\0' ? std::string(c->ctx->errstr) : "no reply"};
      discard(std::move(c));
      return nullptr;
    }
    release(std::move(c));
    if (r->type == REDIS_REPLY_ERROR) {
      err = {classify_error_reply(text(r.get())), std::string(text(r.get()))};
      return nullptr;
    }
    return r;
  }

  // pool::ping(): one PING round trip; store_unavailable when Redis cannot
  // be reached, invalid_options when it refuses the password, database or
  // an ACL permission.
  [[nodiscard]] result<void> ping() {
    call_error err;
    auto c = acquire(err);
    if (c == nullptr) return err.code;
    const char* argv[] = {"PING"};
    const std::size_t len[] = {4};
    reply_ptr r(run_command(c->ctx.get(), 1, argv, len, options_.command_timeout));
    release(std::move(c));  // closes it when the round trip broke it
    if (r == nullptr) return errc::store_unavailable;
    if (r->type == REDIS_REPLY_ERROR) return classify_error_reply(text(r.get()));
    return success();
  }

  [[nodiscard]] const connection_config& options() const noexcept { return options_; }

  // Returns a healthy connection; closes a broken one (the next call opens
  // a fresh one).
  void release(std::unique_ptr<connection> c) noexcept {
    if (c->ctx->err != 0) {
      c.reset();
      release_slot();
      return;
    }
    {
      std::lock_guard lock(mu_);
      idle_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  void discard(std::unique_ptr<connection> c) noexcept {
    c.reset();
    release_slot();
  }

 private:
  void release_slot() noexcept {
    {
      std::lock_guard lock(mu_);
      --open_;
    }
    cv_.notify_one();
  }

  // An idle connection has nothing to read unless the server hung up.
  static bool closed_by_peer(const connection& c) noexcept {
    pollfd p{c.ctx->fd, POLLIN, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  std::unique_ptr<connection> connect(call_error& err) {
    auto c = std::make_unique<connection>();
    c->ctx.reset(
        redisConnectWithTimeout(options_.host.c_str(), options_.port, to_timeval(options_.connect_timeout)));
    if (c->ctx == nullptr) {
      err = {errc::store_unavailable, "cannot allocate a hiredis context"};
      return nullptr;
    }
    if (c->ctx->err != 0) {
      err = {errc::store_unavailable, std::string("connect: ") + c->ctx->errstr};
      return nullptr;
    }
    // From here on hiredis does not block: send_command() and read_reply()
    // wait, with a deadline (see there).
    const int fl = ::fcntl(c->ctx->fd, F_GETFL);
    if (fl == -1 || ::fcntl(c->ctx->fd, F_SETFL, fl | O_NONBLOCK) == -1) {
      err = {errc::store_unavailable, "connect: cannot make the socket non-blocking"};
      return nullptr;
    }
    c->ctx->flags &= ~REDIS_BLOCK;
    // AUTH, SELECT and the SCRIPT LOADs in one pipelined round trip, within
    // one command_timeout.
    const time_point deadline =
        ::sturdy::detail::saturating_add(std::chrono::steady_clock::now(), options_.command_timeout);
    const auto sent = [&](int argc, const char** argv, const std::size_t* len) {
      if (send_command(c->ctx.get(), argc, argv, len, deadline)) return true;
      err = {errc::store_unavailable, std::string("connect: ") + c->ctx->errstr};
      return false;
    };
    int expected = 0;
    if (!options_.password.empty()) {
      const char* argv[] = {"AUTH", options_.password.data()};
      const std::size_t len[] = {4, options_.password.size()};
      if (!sent(2, argv, len)) return nullptr;
      ++expected;
    }
    std::array<char, 24> db_buf;
    if (options_.database != 0) {
      const std::string_view db = to_chars(options_.database, db_buf);
      const char* argv[] = {"SELECT", db.data()};
      const std::size_t len[] = {6, db.size()};
      if (!sent(2, argv, len)) return nullptr;
      ++expected;
    }
    for (const std::string_view s : scripts_) {
      const char* argv[] = {"SCRIPT", "LOAD", s.data()};
      const std::size_t len[] = {6, 4, s.size()};
      if (!sent(3, argv, len)) return nullptr;
    }
    c->sha.resize(scripts_.size());
    for (int i = 0; i < expected + static_cast<int>(scripts_.size()); ++i) {
      reply_ptr r(read_reply(c->ctx.get(), deadline));
      if (r == nullptr) {
        err = {errc::store_unavailable, std::string("connect: ") + c->ctx->errstr};
        return nullptr;
      }
      if (r->type == REDIS_REPLY_ERROR) {
        // The AUTH and SELECT replies come first; see classify_setup_error.
        const std::string_view msg = text(r.get());
        const bool setup = i < expected;
        const bool auth = setup && i == 0 && !options_.password.empty();
        const char* what = auth ? "AUTH: " : (setup ? "SELECT: " : "connect: ");
        err = {setup ? classify_setup_error(msg) : classify_error_reply(msg), std::string(what).append(msg)};
        return nullptr;
      }
      if (i >= expected) {
        if (r->type != REDIS_REPLY_STRING) {
          err = {errc::store_unavailable, "connect: unexpected SCRIPT LOAD reply"};
          return nullptr;
        }
        c->sha[static_cast<std::size_t>(i - expected)] = std::string(text(r.get()));
      }
    }
    return c;
  }

  const connection_config options_;
  const std::vector<std::string_view> scripts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<connection>> idle_;  // guarded by mu_
  std::size_t open_ = 0;                           // guarded by mu_
};

}  // namespace sturdy::redis::detail

#endif  // STURDY_REDIS_DETAIL_CONNECTION_HPP_
