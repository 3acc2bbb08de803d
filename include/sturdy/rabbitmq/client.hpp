// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/rabbitmq/client.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::rabbitmq`: a small RabbitMQ client for at-least-once work queues,
// on librabbitmq (Debian: librabbitmq-dev; CMake target `sturdy::rabbitmq`,
// optional like `sturdy::redis`). It uses the broker's own mechanisms rather
// than imitating them:
//
// - `publisher`: publishes persistent messages with publisher confirms: a
//   `publish` succeeds only when the broker confirmed the message (it is on
//   disk in a durable queue); an unroutable message (`mandatory`) is an
//   error, not a silent drop.
// - `consumer`: manual acknowledgements and a prefetch window; `next(wait)`
//   returns one delivery or nothing; `ack` removes it, `reject` hands it back
//   (requeue) or dead-letters it. It reconnects and re-subscribes on the next
//   call after the connection dropped.
// - `declare(options, topology)`: the work queue as a quorum queue with a
//   delivery limit and a dead-letter exchange, so a message that keeps
//   failing is dead-lettered by the broker itself.
// - `dead_letter_exchange_sink`: satisfies `sturdy::dead_letter_sink` by
//   publishing each entry (with confirm) to the dead-letter exchange.
// - `dead_letter_admin`: the operator's commands on the dead-letter queue:
//   list, inspect, replay (republish to the work queue with confirm, then
//   remove) and discard.
//
// Example:
//
//   #include "sturdy/rabbitmq/client.hpp"
//
//   namespace rmq = sturdy::rabbitmq;
//   auto opts = rmq::with_url({}, "amqp://guest:guest@127.0.0.1:5672/").value();
//   rmq::topology topo{.queue = "emails", .delivery_limit = 5};
//   if (!rmq::declare(opts, topo)) return;
//   rmq::publisher pub(opts);
//   auto sent = pub.publish({.exchange = topo.exchange, .routing_key = topo.queue,
//                            .message_id = "signup-42", .body = "{\"user\":42}"});
//   rmq::consumer con(opts, {.queue = topo.queue, .prefetch = 8});
//   if (auto d = con.next(std::chrono::seconds(1)); d && *d) {
//     // ... process (*d)->body, idempotently, keyed by (*d)->message_id ...
//     (void)con.ack(**d);
//   }
//
// Failures. Every call is bounded: at most `connect_timeout` to open the TCP
// connection, `command_timeout` for the AMQP handshake and for each
// synchronous round trip (declare, consume, get, a publish's confirm). Not
// bounded: resolving a host name (give a numeric address), and a write that
// does not fit the socket's send buffer while the broker reads nothing
// (rabbitmq-c waits for a non-blocking socket without a deadline; messages
// are confirmed one at a time, so only a message larger than the send
// buffer, typically megabytes, can meet this). When the broker is unreachable, the connection dropped, or a
// call timed out, the call returns `errc::store_unavailable` and the object
// drops its connection; the next call reconnects (`reconnects()` counts
// them). A broker that refuses the credentials, the virtual host or a
// declaration with other arguments answers `errc::invalid_options`; a queue
// or exchange that does not exist answers `errc::not_found`; a message the
// broker could not route (no queue bound) answers `errc::not_found` too.
// With `failure_mode::fail_open` a `publish`/`push` that cannot reach the
// broker instead reports the failure (`on_failure` with `failed_open`) and
// succeeds: the message is lost. Only for messages that may be lost (metrics,
// hints); the default, `fail_closed`, is the safe one. Misconfiguration
// (`invalid_options`) never fails open.
//
// A confirm that does not arrive within `command_timeout` is ambiguous: the
// broker may have the message. `publish` then fails, and a caller that
// publishes again may duplicate it: at-least-once, so consumers must be
// idempotent (key on `message_id`). The same holds for an `ack` lost with
// its connection: the broker redelivers the message.
//
// Thread safety: a `publisher`, `dead_letter_exchange_sink` or
// `dead_letter_admin` may be called from several threads (one std::mutex per
// object, held for the whole broker call, so calls on one object are
// serialised: give each hot thread its own). A `consumer` belongs to one
// thread (its deliveries' tags belong to its channel).
//
// Defaults: 127.0.0.1:5672, vhost "/", guest/guest, connect and command
// timeouts 1 s, no heartbeats, fail_closed.

#ifndef STURDY_RABBITMQ_CLIENT_HPP_
#define STURDY_RABBITMQ_CLIENT_HPP_

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy::rabbitmq {

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

enum class failure_mode : std::uint8_t {
  // Broker unreachable: the call returns `errc::store_unavailable`. Default.
  fail_closed,
  // Broker unreachable: `publish` / `push` report the failure through
  // `on_failure` (`failed_open = true`) and succeed; the message is lost.
  fail_open,
};

// What `on_failure` receives. The views are valid only during the call.
struct failure {
  std::string_view operation;  // "connect", "publish", "consume", "ack", "declare", "get", ...
  std::error_code error;       // store_unavailable, invalid_options, not_found
  std::string_view detail;     // librabbitmq's or the broker's text
  bool failed_open;            // fail_open: the caller goes on as if it succeeded
};

// connection_options
//
// Aggregate; fill with designated initializers (or `with_url`). An object
// built with invalid options answers every call with `errc::invalid_options`.
struct connection_options {
  // Broker host name or address. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  // TCP port; != 0. Default 5672.
  std::uint16_t port = 5672;
  // Virtual host. Default "/".
  std::string vhost = "/";
  std::string user = "guest";
  std::string password = "guest";
  // Longest time to open the TCP connection; > 0. Default 1 s.
  duration connect_timeout = std::chrono::seconds(1);
  // Longest time for the AMQP handshake and for one synchronous round trip
  // (declare, consume, get, a publish's confirm); > 0. Default 1 s.
  duration command_timeout = std::chrono::seconds(1);
  // AMQP heartbeat in seconds; 0 (default) disables heartbeats. librabbitmq
  // sends heartbeats only while a call waits on the connection: with a
  // heartbeat, call `consumer::next` at least every `heartbeat` seconds.
  std::uint16_t heartbeat_seconds = 0;
  // What `publish`/`push` do when the broker is unreachable. Default
  // fail_closed.
  failure_mode on_unavailable = failure_mode::fail_closed;
  // Called on every failed broker call (and on every fail-open). Empty:
  // nothing. Must not throw.
  callback<void(const failure&)> on_failure = {};

  // Empty when valid, otherwise a sentence naming the bad field.
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (host.empty()) return "rabbitmq::connection_options::host must not be empty";
    if (host.find('\0') != std::string::npos) return "rabbitmq::connection_options::host must not contain NUL";
    if (port == 0) return "rabbitmq::connection_options::port must be != 0";
    if (vhost.empty()) return "rabbitmq::connection_options::vhost must not be empty";
    if (connect_timeout <= duration::zero()) return "rabbitmq::connection_options::connect_timeout must be > 0";
    if (command_timeout <= duration::zero()) return "rabbitmq::connection_options::command_timeout must be > 0";
    if (on_unavailable != failure_mode::fail_closed && on_unavailable != failure_mode::fail_open)
      return "rabbitmq::connection_options::on_unavailable is not a valid failure_mode";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    if (!validation_message().empty()) return errc::invalid_options;
    return success();
  }
};

// with_url(options, "amqp://user:password@host:port/vhost"): `options` with
// the parts the URL gives (user:password@, :port and /vhost are optional;
// the vhost is percent-decoded, so "/" is "%2F"; an empty path keeps
// `options.vhost`). `errc::invalid_options` when it does not parse.
[[nodiscard]] inline result<connection_options> with_url(connection_options options, std::string_view url) {
  constexpr std::string_view scheme = "amqp://";
  if (url.substr(0, scheme.size()) != scheme) return errc::invalid_options;
  url.remove_prefix(scheme.size());
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash + 1);
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view cred = authority.substr(0, at);
    const std::size_t colon = cred.find(':');
    options.user = std::string(cred.substr(0, colon));
    options.password = colon == std::string_view::npos ? std::string{} : std::string(cred.substr(colon + 1));
    authority.remove_prefix(at + 1);
  }
  if (const std::size_t colon = authority.rfind(':');
      colon != std::string_view::npos && authority.find(']', colon) == std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return errc::invalid_options;
    options.port = static_cast<std::uint16_t>(value);
    authority = authority.substr(0, colon);
  }
  if (authority.size() >= 2 && authority.front() == '[' && authority.back() == ']')
    authority = authority.substr(1, authority.size() - 2);
  if (authority.empty()) return errc::invalid_options;
  options.host = std::string(authority);
  if (!path.empty()) {
    std::string vhost;
    for (std::size_t i = 0; i < path.size(); ++i) {
      if (path[i] == '%' && i + 2 < path.size()) {
        unsigned v = 0;
        const auto [end, ec] = std::from_chars(path.data() + i + 1, path.data() + i + 3, v, 16);
        if (ec != std::errc() || end != path.data() + i + 3) return errc::invalid_options;
        vhost += static_cast<char>(v);
        i += 2;
      } else {
        vhost += path[i];
      }
    }
    options.vhost = std::move(vhost);
  }
  return options;
}

// topology
//
// The queues `declare` creates (idempotent: declaring again with the same
// arguments is a no-op; with other arguments the broker refuses with
// `errc::invalid_options`).
struct topology {
  // Direct exchange the work is published to; bound to `queue` with the
  // queue's name as routing key. Default "sturdy.work".
  std::string exchange = "sturdy.work";
  // The work queue: a durable quorum queue. Default "sturdy.work".
  std::string queue = "sturdy.work";
  // The broker dead-letters a message after this many failed deliveries
  // (quorum queue `x-delivery-limit`: returned with `reject(requeue)` or
  // unacknowledged when its consumer's connection dropped); >= 1. Default 5.
  std::int64_t delivery_limit = 5;
  // Direct exchange for dead letters (the work queue's
  // `x-dead-letter-exchange`, and where `dead_letter_exchange_sink`
  // publishes). Default "sturdy.dlx".
  std::string dead_letter_exchange = "sturdy.dlx";
  // The dead-letter queue: a durable classic queue bound to
  // `dead_letter_exchange` with its own name as routing key. Default
  // "sturdy.dlq".
  std::string dead_letter_queue = "sturdy.dlq";

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (queue.empty()) return "rabbitmq::topology::queue must not be empty";
    if (exchange.empty()) return "rabbitmq::topology::exchange must not be empty";
    if (dead_letter_exchange.empty()) return "rabbitmq::topology::dead_letter_exchange must not be empty";
    if (dead_letter_queue.empty()) return "rabbitmq::topology::dead_letter_queue must not be empty";
    if (delivery_limit < 1) return "rabbitmq::topology::delivery_limit must be >= 1";
    return {};
  }
};

// A header of a message: name and value as text (integer headers are kept as
// their decimal text; other kinds are not kept).
struct header {
  std::string name;
  std::string value;
};

// What `publish` sends.
struct outgoing {
  std::string exchange;
  std::string routing_key;
  // The message's id (AMQP `message-id`): consumers key idempotency on it.
  std::string message_id;
  std::string body;
  std::vector<header> headers = {};
};

// One message received by `consumer::next` or listed by `dead_letter_admin`.
struct delivery {
  std::string message_id;
  std::string body;
  std::string exchange;
  std::string routing_key;
  std::vector<header> headers;
  // The broker's redelivered flag: an earlier delivery may have been
  // processed (or partly).
  bool redelivered = false;
  // Quorum queues: earlier failed deliveries (`x-delivery-count`), 0 on the
  // first.
  std::int64_t delivery_count = 0;
  std::uint64_t delivery_tag = 0;
  // The consumer connection this delivery came on (see `consumer::ack`).
  std::uint64_t connection_generation = 0;

  // The value of header `name`, or "" when absent.
  [[nodiscard]] std::string_view header_value(std::string_view name) const noexcept {
    for (const header& h : headers) {
      if (h.name == name) return h.value;
    }
    return {};
  }
};

namespace detail {

[[nodiscard]] inline timeval to_timeval(duration d) noexcept {
  if (d < duration::zero()) d = duration::zero();
  const auto us = std::chrono::ceil<std::chrono::microseconds>(d).count();  // never overflows
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  return tv;
}

[[nodiscard]] inline amqp_bytes_t bytes(std::string_view s) noexcept {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());  // librabbitmq only reads it
  return b;
}
[[nodiscard]] inline std::string text(amqp_bytes_t b) {
  return b.len == 0 ? std::string{} : std::string(static_cast<const char*>(b.bytes), b.len);
}

inline void read_headers(const amqp_table_t& table, std::vector<header>& out, std::int64_t& delivery_count) {
  for (int i = 0; i < table.num_entries; ++i) {
    const amqp_table_entry_t& e = table.entries[i];
    std::string name = text(e.key);
    std::string value;
    bool integer = true;
    std::int64_t n = 0;
    switch (e.value.kind) {
      case AMQP_FIELD_KIND_UTF8:
      case AMQP_FIELD_KIND_BYTES:
        value = text(e.value.value.bytes);
        integer = false;
        break;
      case AMQP_FIELD_KIND_I8: n = e.value.value.i8; break;
      case AMQP_FIELD_KIND_U8: n = e.value.value.u8; break;
      case AMQP_FIELD_KIND_I16: n = e.value.value.i16; break;
      case AMQP_FIELD_KIND_U16: n = e.value.value.u16; break;
      case AMQP_FIELD_KIND_I32: n = e.value.value.i32; break;
      case AMQP_FIELD_KIND_U32: n = e.value.value.u32; break;
      case AMQP_FIELD_KIND_I64: n = e.value.value.i64; break;
      default:
        continue;  // tables (x-death), arrays, floats: not kept
    }
    if (integer) {
      value = std::to_string(n);
      if (name == "x-delivery-count") delivery_count = n;
    }
    out.push_back({std::move(name), std::move(value)});
  }
}

[[nodiscard]] inline delivery read_message(const amqp_basic_properties_t& p, amqp_bytes_t body) {
  delivery d;
  d.body = text(body);
  if ((p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0) d.message_id = text(p.message_id);
  if ((p._flags & AMQP_BASIC_HEADERS_FLAG) != 0) read_headers(p.headers, d.headers, d.delivery_count);
  return d;
}

// One AMQP connection with channel 1 open, reopened on demand. Not
// thread-safe (its owners lock).
class connection {
 public:
  explicit connection(const connection_options& options) : options_(options) {}
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() { close(true); }

  [[nodiscard]] const connection_options& options() const noexcept { return options_; }
  [[nodiscard]] bool open() const noexcept { return state_ != nullptr; }
  [[nodiscard]] amqp_connection_state_t state() const noexcept { return state_; }
  // Increments on every successful (re)connect.
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  // Successful connects after the first.
  [[nodiscard]] std::uint64_t reconnects() const noexcept { return generation_ == 0 ? 0 : generation_ - 1; }

  // Opens the connection unless open. On failure reports and returns the
  // error (nothing stays open).
  result<void> ensure(std::string_view operation) {
    if (state_ != nullptr) return success();
    if (!options_.validation_message().empty()) return errc::invalid_options;
    state_ = amqp_new_connection();
    if (state_ == nullptr) return fail(operation, errc::store_unavailable, "amqp_new_connection failed");
    amqp_socket_t* socket = amqp_tcp_socket_new(state_);
    if (socket == nullptr) return fail(operation, errc::store_unavailable, "amqp_tcp_socket_new failed");
    timeval connect = to_timeval(options_.connect_timeout);
    if (const int rc = amqp_socket_open_noblock(socket, options_.host.c_str(), options_.port, &connect);
        rc != AMQP_STATUS_OK) {
      return fail(operation, errc::store_unavailable, std::string("connect: ") + amqp_error_string2(rc));
    }
    timeval command = to_timeval(options_.command_timeout);
    (void)amqp_set_handshake_timeout(state_, &command);
    (void)amqp_set_rpc_timeout(state_, &command);
    const amqp_rpc_reply_t login =
        amqp_login(state_, options_.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, options_.heartbeat_seconds,
                   AMQP_SASL_METHOD_PLAIN, options_.user.c_str(), options_.password.c_str());
    if (auto r = check(login, operation, true); !r) return r;
    amqp_channel_open(state_, 1);
    if (auto r = check(amqp_get_rpc_reply(state_), operation); !r) return r;
    ++generation_;
    return success();
  }

  // Maps a reply; on failure drops the connection, reports, returns the
  // error. `login`: a server exception here is a refused login (credentials
  // or vhost): invalid_options.
  result<void> check(const amqp_rpc_reply_t& reply, std::string_view operation, bool login = false) {
    switch (reply.reply_type) {
      case AMQP_RESPONSE_NORMAL:
        return success();
      case AMQP_RESPONSE_NONE:
        return fail(operation, errc::store_unavailable, "no reply");
      case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        // The broker closes the socket on a refused login (RabbitMQ without
        // the authentication_failure_close capability).
        return fail(operation, errc::store_unavailable, amqp_error_string2(reply.library_error));
      case AMQP_RESPONSE_SERVER_EXCEPTION:
        return server_exception(reply.reply, operation, login);
    }
    return fail(operation, errc::store_unavailable, "unknown reply");
  }

  result<void> server_exception(const amqp_method_t& method, std::string_view operation, bool login = false) {
    std::uint16_t code = 0;
    std::string why;
    if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
      const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
      code = m->reply_code;
      why = text(m->reply_text);
    } else if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
      code = m->reply_code;
      why = text(m->reply_text);
    } else {
      why = "unexpected method " + std::to_string(method.id);
    }
    errc e = errc::store_unavailable;
    if (login || code == AMQP_ACCESS_REFUSED || code == AMQP_PRECONDITION_FAILED || code == AMQP_NOT_ALLOWED)
      e = errc::invalid_options;
    else if (code == AMQP_NOT_FOUND)
      e = errc::not_found;
    return fail(operation, e, std::to_string(code) + " " + why);
  }

  // Drops the connection (no handshake), reports, returns `e`.
  result<void> fail(std::string_view operation, errc e, std::string_view detail, bool failed_open = false) {
    close(false);
    report(operation, e, detail, failed_open);
    return e;
  }
  void report(std::string_view operation, errc e, std::string_view detail, bool failed_open) const {
    last_error_.assign(detail);
    if (options_.on_failure) options_.on_failure(failure{operation, make_error_code(e), detail, failed_open});
  }
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

  // Closes; `graceful`: the AMQP close handshake first (bounded by the
  // command timeout).
  void close(bool graceful) noexcept {
    if (state_ == nullptr) return;
    if (graceful) {
      (void)amqp_channel_close(state_, 1, AMQP_REPLY_SUCCESS);
      (void)amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    }
    (void)amqp_destroy_connection(state_);
    state_ = nullptr;
  }

 private:
  connection_options options_;
  amqp_connection_state_t state_ = nullptr;
  std::uint64_t generation_ = 0;
  mutable std::string last_error_;
};

// Publishes on `c` (confirm mode on) and waits for the confirm. Requires
// `c.open()` with confirms selected; `seq` is the channel's publish counter.
inline result<void> publish_confirmed(connection& c, std::uint64_t& seq, const outgoing& m) {
  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = 2;  // persistent
  if (!m.message_id.empty()) {
    props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = bytes(m.message_id);
  }
  std::vector<amqp_table_entry_t> entries(m.headers.size());
  if (!m.headers.empty()) {
    for (std::size_t i = 0; i < m.headers.size(); ++i) {
      entries[i].key = bytes(m.headers[i].name);
      entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
      entries[i].value.value.bytes = bytes(m.headers[i].value);
    }
    props._flags |= AMQP_BASIC_HEADERS_FLAG;
    props.headers.num_entries = static_cast<int>(entries.size());
    props.headers.entries = entries.data();
  }
  const int rc = amqp_basic_publish(c.state(), 1, bytes(m.exchange), bytes(m.routing_key), /*mandatory=*/1,
                                    /*immediate=*/0, &props, bytes(m.body));
  if (rc != AMQP_STATUS_OK) return c.fail("publish", errc::store_unavailable, amqp_error_string2(rc));
  const std::uint64_t tag = ++seq;
  const time_point deadline = sturdy::detail::saturating_add(std::chrono::steady_clock::now(), c.options().command_timeout);
  bool returned = false;
  for (;;) {
    timeval tv = to_timeval(sturdy::detail::time_between(std::chrono::steady_clock::now(), deadline));
    amqp_frame_t frame;
    const int st = amqp_simple_wait_frame_noblock(c.state(), &frame, &tv);
    if (st == AMQP_STATUS_TIMEOUT) return c.fail("publish", errc::store_unavailable, "no confirm in time");
    if (st != AMQP_STATUS_OK) return c.fail("publish", errc::store_unavailable, amqp_error_string2(st));
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;  // a returned message's header and body
    switch (frame.payload.method.id) {
      case AMQP_BASIC_RETURN_METHOD:
        returned = true;
        break;
      case AMQP_BASIC_ACK_METHOD: {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        if (ack->delivery_tag == tag || (ack->multiple != 0 && ack->delivery_tag >= tag)) {
          amqp_maybe_release_buffers(c.state());
          if (returned) {
            c.report("publish", errc::not_found, "unroutable: no queue bound for the routing key", false);
            return errc::not_found;
          }
          return success();
        }
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* nack = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
        if (nack->delivery_tag == tag || (nack->multiple != 0 && nack->delivery_tag >= tag))
          return c.fail("publish", errc::store_unavailable, "the broker refused the message (nack)");
        break;
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        return c.server_exception(frame.payload.method, "publish");
      default:
        break;
    }
  }
}

// Opens `c` if needed and selects confirm mode on a fresh connection.
inline result<void> ensure_confirming(connection& c, std::uint64_t& seq, std::uint64_t& confirming_generation) {
  if (auto r = c.ensure("connect"); !r) return r;
  if (confirming_generation == c.generation()) return success();
  amqp_confirm_select(c.state(), 1);
  if (auto r = c.check(amqp_get_rpc_reply(c.state()), "confirm_select"); !r) return r;
  seq = 0;
  confirming_generation = c.generation();
  return success();
}

}  // namespace detail

// declare(options, topology)
//
// Declares the exchanges, the work queue (quorum, `x-delivery-limit`,
// dead-lettering to `dead_letter_exchange` with `dead_letter_queue` as
// routing key), the dead-letter queue and the bindings. One connection,
// closed at the end.
[[nodiscard]] inline result<void> declare(const connection_options& options, const topology& t) {
  if (!t.validation_message().empty()) return errc::invalid_options;
  detail::connection c(options);
  if (auto r = c.ensure("declare"); !r) return r;
  amqp_connection_state_t s = c.state();
  using detail::bytes;
  for (const std::string* x : {&t.exchange, &t.dead_letter_exchange}) {
    amqp_exchange_declare(s, 1, bytes(*x), bytes("direct"), 0, /*durable=*/1, 0, 0, amqp_empty_table);
    if (auto r = c.check(amqp_get_rpc_reply(s), "declare"); !r) return r;
  }
  amqp_table_entry_t args[4];
  args[0].key = bytes("x-queue-type");
  args[0].value.kind = AMQP_FIELD_KIND_UTF8;
  args[0].value.value.bytes = bytes("quorum");
  args[1].key = bytes("x-delivery-limit");
  args[1].value.kind = AMQP_FIELD_KIND_I64;
  args[1].value.value.i64 = t.delivery_limit;
  args[2].key = bytes("x-dead-letter-exchange");
  args[2].value.kind = AMQP_FIELD_KIND_UTF8;
  args[2].value.value.bytes = bytes(t.dead_letter_exchange);
  args[3].key = bytes("x-dead-letter-routing-key");
  args[3].value.kind = AMQP_FIELD_KIND_UTF8;
  args[3].value.value.bytes = bytes(t.dead_letter_queue);
  const amqp_table_t table{4, args};
  amqp_queue_declare(s, 1, bytes(t.queue), 0, /*durable=*/1, 0, 0, table);
  if (auto r = c.check(amqp_get_rpc_reply(s), "declare"); !r) return r;
  amqp_queue_declare(s, 1, bytes(t.dead_letter_queue), 0, /*durable=*/1, 0, 0, amqp_empty_table);
  if (auto r = c.check(amqp_get_rpc_reply(s), "declare"); !r) return r;
  amqp_queue_bind(s, 1, bytes(t.queue), bytes(t.exchange), bytes(t.queue), amqp_empty_table);
  if (auto r = c.check(amqp_get_rpc_reply(s), "declare"); !r) return r;
  amqp_queue_bind(s, 1, bytes(t.dead_letter_queue), bytes(t.dead_letter_exchange), bytes(t.dead_letter_queue),
                  amqp_empty_table);
  return c.check(amqp_get_rpc_reply(s), "declare");
}

// -----------------------------------------------------------------------------
// publisher
// -----------------------------------------------------------------------------
class publisher {
 public:
  explicit publisher(connection_options options) : conn_(options) {}

  // publisher::publish()
  //
  // Sends `m` as a persistent, mandatory message and waits for the broker's
  // confirm (at most `command_timeout` after the write). Success: the broker
  // has it. `errc::not_found`: no queue is bound for the routing key (or the
  // exchange does not exist). `errc::store_unavailable`: not confirmed (the
  // broker may or may not have it; publishing again is safe only towards
  // idempotent consumers), or with `fail_open`, success after reporting.
  // `errc::invalid_options`: bad options or refused credentials.
  result<void> publish(const outgoing& m) {
    std::lock_guard lock(mu_);
    auto r = detail::ensure_confirming(conn_, seq_, confirming_);
    if (r) r = detail::publish_confirmed(conn_, seq_, m);
    if (!r && r.error() == make_error_code(errc::store_unavailable) &&
        conn_.options().on_unavailable == failure_mode::fail_open) {
      conn_.report("publish", errc::store_unavailable, conn_.last_error(), true);
      return success();
    }
    return r;
  }

  [[nodiscard]] std::uint64_t reconnects() const {
    std::lock_guard lock(mu_);
    return conn_.reconnects();
  }

 private:
  mutable std::mutex mu_;
  detail::connection conn_;
  std::uint64_t seq_ = 0;
  std::uint64_t confirming_ = 0;
};

// -----------------------------------------------------------------------------
// consumer
// -----------------------------------------------------------------------------
struct consumer_options {
  // The queue to consume; must exist (see `declare`).
  std::string queue;
  // Most unacknowledged deliveries the broker sends this consumer; in
  // [1, 65535]. Default 1 (fair dispatch among workers).
  std::uint16_t prefetch = 1;
};

class consumer {
 public:
  consumer(connection_options options, consumer_options c) : conn_(std::move(options)), opts_(std::move(c)) {}

  // consumer::next()
  //
  // The next delivery, waiting at most `wait` (0: only what already
  // arrived); `std::nullopt` when none came in time. Reconnects and
  // re-subscribes first when the connection dropped (then at most
  // `connect_timeout` + 3 `command_timeout`s more). Errors:
  // `store_unavailable` (broker unreachable, connection lost: call again),
  // `not_found` (no such queue), `invalid_options`.
  [[nodiscard]] result<std::optional<delivery>> next(duration wait) {
    if (opts_.queue.empty() || opts_.prefetch == 0) return errc::invalid_options;
    if (auto r = subscribe(); !r) return r.error();
    amqp_connection_state_t s = conn_.state();
    amqp_maybe_release_buffers(s);
    amqp_envelope_t env;
    timeval tv = detail::to_timeval(wait);
    const amqp_rpc_reply_t reply = amqp_consume_message(s, &env, &tv, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
      delivery d = detail::read_message(env.message.properties, env.message.body);
      d.exchange = detail::text(env.exchange);
      d.routing_key = detail::text(env.routing_key);
      d.redelivered = env.redelivered != 0;
      d.delivery_tag = env.delivery_tag;
      d.connection_generation = conn_.generation();
      amqp_destroy_envelope(&env);
      return std::optional<delivery>(std::move(d));
    }
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT)
      return std::optional<delivery>();
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      // A frame other than a delivery: read it (it is buffered already).
      amqp_frame_t frame;
      timeval none{};
      if (amqp_simple_wait_frame_noblock(s, &frame, &none) != AMQP_STATUS_OK)
        return conn_.fail("consume", errc::store_unavailable, "connection lost").error();
      if (frame.frame_type == AMQP_FRAME_METHOD) {
        const amqp_method_number_t id = frame.payload.method.id;
        if (id == AMQP_CHANNEL_CLOSE_METHOD || id == AMQP_CONNECTION_CLOSE_METHOD)
          return conn_.server_exception(frame.payload.method, "consume").error();
        if (id == AMQP_BASIC_CANCEL_METHOD)  // the queue was deleted
          return conn_.fail("consume", errc::not_found, "the broker cancelled the subscription").error();
      }
      return std::optional<delivery>();
    }
    return conn_.check(reply, "consume").error();
  }

  // consumer::ack()
  //
  // Removes `d` from the queue. `errc::stale_token` when `d` came on an
  // earlier connection (the broker redelivers it: the ack cannot reach it);
  // `store_unavailable` when the write failed. The ack is asynchronous: if
  // the connection drops right after, the broker may still redeliver.
  result<void> ack(const delivery& d) {
    if (!conn_.open() || d.connection_generation != conn_.generation()) return errc::stale_token;
    if (const int rc = amqp_basic_ack(conn_.state(), 1, d.delivery_tag, 0); rc != AMQP_STATUS_OK)
      return conn_.fail("ack", errc::store_unavailable, amqp_error_string2(rc));
    return success();
  }

  // consumer::reject()
  //
  // Hands `d` back: `requeue` true redelivers it (counting towards the
  // queue's delivery limit), false dead-letters it now. Errors as `ack`.
  result<void> reject(const delivery& d, bool requeue) {
    if (!conn_.open() || d.connection_generation != conn_.generation()) return errc::stale_token;
    if (const int rc = amqp_basic_nack(conn_.state(), 1, d.delivery_tag, 0, requeue ? 1 : 0); rc != AMQP_STATUS_OK)
      return conn_.fail("reject", errc::store_unavailable, amqp_error_string2(rc));
    return success();
  }

  // Drops the connection now (tests; the broker redelivers what is
  // unacknowledged). The next `next` reconnects.
  void disconnect() noexcept { conn_.close(false); }

  [[nodiscard]] std::uint64_t reconnects() const noexcept { return conn_.reconnects(); }

 private:
  result<void> subscribe() {
    if (conn_.open() && subscribed_ == conn_.generation()) return success();
    if (auto r = conn_.ensure("connect"); !r) return r;
    amqp_connection_state_t s = conn_.state();
    amqp_basic_qos(s, 1, 0, opts_.prefetch, 0);
    if (auto r = conn_.check(amqp_get_rpc_reply(s), "qos"); !r) return r;
    amqp_basic_consume(s, 1, detail::bytes(opts_.queue), amqp_empty_bytes, 0, /*no_ack=*/0, 0, amqp_empty_table);
    if (auto r = conn_.check(amqp_get_rpc_reply(s), "consume"); !r) return r;
    subscribed_ = conn_.generation();
    return success();
  }

  detail::connection conn_;
  consumer_options opts_;
  std::uint64_t subscribed_ = 0;
};

// -----------------------------------------------------------------------------
// Dead letters
// -----------------------------------------------------------------------------

// dead_letter_exchange_sink
//
// A `sturdy::dead_letter_sink`: `push` publishes the entry, with confirm, to
// `topology::dead_letter_exchange` (routing key `dead_letter_queue`), so it
// lands in the same dead-letter queue as the messages the broker
// dead-letters. Body: the entry's `context`; headers `x-sturdy-saga`,
// `x-sturdy-step`, `x-sturdy-reason`, `x-sturdy-error` (the code's message),
// `x-sturdy-exception`; message id `message_id_prefix` + a per-sink counter
// (the entry's `id` is set to it). Failures as `publisher::publish`
// (`fail_open` loses the entry after reporting it).
class dead_letter_exchange_sink {
 public:
  dead_letter_exchange_sink(connection_options options, topology t, std::string message_id_prefix = "sturdy-dl-")
      : publisher_(std::move(options)), topology_(std::move(t)), prefix_(std::move(message_id_prefix)) {}

  result<void> push(dead_letter_entry&& e) {
    const std::uint64_t id = next_.fetch_add(1, std::memory_order_relaxed) + 1;
    outgoing m{.exchange = topology_.dead_letter_exchange,
               .routing_key = topology_.dead_letter_queue,
               .message_id = prefix_ + std::to_string(id),
               .body = e.context,
               .headers = {{"x-sturdy-saga", e.saga},
                           {"x-sturdy-step", e.step},
                           {"x-sturdy-reason", std::string(to_string(e.reason))},
                           {"x-sturdy-error", e.code ? e.code.message() : std::string{}},
                           {"x-sturdy-exception", e.exception_text}}};
    auto r = publisher_.publish(m);
    if (r) e.id = id;
    return r;
  }

 private:
  publisher publisher_;
  topology topology_;
  std::string prefix_;
  std::atomic<std::uint64_t> next_{0};
};

// dead_letter_admin
//
// The operator's commands on `topology::dead_letter_queue`. Messages are
// found by their message id; a command takes (unacknowledged) up to
// `scan_limit` messages from the head of the queue to find one and hands
// the others back in their order. Each command is a few round trips, each
// bounded by `command_timeout`.
class dead_letter_admin {
 public:
  dead_letter_admin(connection_options options, topology t, std::size_t scan_limit = 10000)
      : conn_(options), publisher_(std::move(options)), topology_(std::move(t)), scan_limit_(scan_limit) {}

  // Every dead letter (up to `scan_limit`), oldest first; nothing removed.
  [[nodiscard]] result<std::vector<delivery>> list() {
    std::lock_guard lock(mu_);
    auto r = scan({}, nullptr);
    release();
    return r;
  }

  // The dead letter with `message_id`, or `errc::not_found`.
  [[nodiscard]] result<delivery> inspect(std::string_view message_id) {
    std::lock_guard lock(mu_);
    delivery found;
    auto r = scan(message_id, &found);
    release();
    if (!r) return r.error();
    if (!found_) return errc::not_found;
    return found;
  }

  // replay: republishes the dead letter with `message_id` (body, message id
  // and its `x-sturdy-*` headers) to the work queue with confirm, then
  // removes it from the dead-letter queue. A failure in between leaves it in
  // the dead-letter queue (a crash after the confirm: in both queues; never
  // in neither). `errc::not_found` when absent.
  result<void> replay(std::string_view message_id) {
    return act(message_id, [&](const delivery& d) -> result<void> {
      outgoing m{.exchange = topology_.exchange, .routing_key = topology_.queue, .message_id = d.message_id,
                 .body = d.body};
      for (const header& h : d.headers) {
        if (h.name.rfind("x-sturdy-", 0) == 0) m.headers.push_back(h);
      }
      return publisher_.publish(m);
    });
  }

  // discard: removes the dead letter with `message_id`. `errc::not_found`
  // when absent.
  result<void> discard(std::string_view message_id) {
    return act(message_id, [](const delivery&) -> result<void> { return success(); });
  }

 private:
  template <class F>
  result<void> act(std::string_view message_id, F&& f) {
    std::lock_guard lock(mu_);
    delivery found;
    auto r = scan(message_id, &found);
    if (!r || !found_) {
      release();
      return r ? result<void>(errc::not_found) : result<void>(r.error());
    }
    auto done = f(std::as_const(found));
    // Ack the target (removes it) on success; then hand everything back.
    if (done && amqp_basic_ack(conn_.state(), 1, found.delivery_tag, 0) != AMQP_STATUS_OK)
      done = conn_.fail("ack", errc::store_unavailable, "ack failed");
    release();
    return done;
  }

  // Takes messages from the head until `message_id` (when not empty) is
  // found or the queue (or scan_limit) is exhausted; they stay
  // unacknowledged until the caller's `release`.
  result<std::vector<delivery>> scan(std::string_view message_id, delivery* found) {
    found_ = false;
    if (auto r = conn_.ensure("connect"); !r) return r.error();
    amqp_connection_state_t s = conn_.state();
    std::vector<delivery> out;
    for (std::size_t i = 0; i < scan_limit_; ++i) {
      const amqp_rpc_reply_t reply = amqp_basic_get(s, 1, detail::bytes(topology_.dead_letter_queue), 0);
      if (auto r = conn_.check(reply, "get"); !r) return r.error();
      if (reply.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) break;
      const auto* ok = static_cast<const amqp_basic_get_ok_t*>(reply.reply.decoded);
      const std::uint64_t tag = ok->delivery_tag;
      amqp_message_t msg;
      if (auto r = conn_.check(amqp_read_message(s, 1, &msg, 0), "get"); !r) return r.error();
      delivery d = detail::read_message(msg.properties, msg.body);
      amqp_destroy_message(&msg);
      d.delivery_tag = tag;
      d.connection_generation = conn_.generation();
      if (found != nullptr && d.message_id == message_id) {
        *found = std::move(d);
        found_ = true;
        return out;
      }
      out.push_back(std::move(d));
    }
    return out;
  }

  // Hands every unacknowledged message back to the queue, in order.
  void release() {
    if (!conn_.open()) return;  // dropped: the broker requeued them
    // Closing the channel requeues them all; the next command reopens.
    conn_.close(true);
  }

  mutable std::mutex mu_;
  detail::connection conn_;
  publisher publisher_;
  topology topology_;
  std::size_t scan_limit_;
  bool found_ = false;
};

static_assert(sturdy::dead_letter_sink<dead_letter_exchange_sink>);

}  // namespace sturdy::rabbitmq

#endif  // STURDY_RABBITMQ_CLIENT_HPP_
