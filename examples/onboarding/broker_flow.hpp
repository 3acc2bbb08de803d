// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: examples/onboarding/broker_flow.hpp
// -----------------------------------------------------------------------------
//
// The onboarding example's asynchronous step on a real broker (RabbitMQ),
// for several worker processes on several machines:
//
//   signup (SQLite: user + outbox row, one transaction)
//     -> relay: publish with confirm, then mark relayed   (no loss; a crash
//        between the two duplicates a message)
//     -> quorum queue "…welcome" (x-delivery-limit, dead-letter exchange)
//     -> workers: idempotency cache in Redis keyed by the message id
//        -> retry (jittered backoff) -> circuit breaker -> email API
//        ack on success; reject(requeue) on failure: the broker counts the
//        deliveries and dead-letters the message at the limit
//     -> dead-letter queue "…dlq": the operator lists, inspects, replays
//        (after the fix) or discards (`dlq_command`).
//
// The email API is simulated in the SQLite database (table `b_email_api`,
// keyed by the idempotency key the worker passes: the message id, as real
// providers take one); every call is logged in `b_api_calls`. A user whose
// address has no '@' is a poison message (422: permanent). See
// docs/onboarding.md, "The broker variant". `broker_main.cpp` is the
// program; `broker_test.cpp` runs it as separate processes.

#ifndef STURDY_EXAMPLES_ONBOARDING_BROKER_FLOW_HPP_
#define STURDY_EXAMPLES_ONBOARDING_BROKER_FLOW_HPP_

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>

#include "sqlite.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/rabbitmq/client.hpp"
#include "sturdy/redis/idempotency_store.hpp"
#include "sturdy/retry.hpp"

namespace onboarding::broker {

// Exit status of a process that a `crash_after_*` option killed.
inline constexpr int crash_exit_code = 86;

struct options {
  std::string db_path;
  std::string amqp_url = "amqp://guest:guest@127.0.0.1:5672/";
  std::string redis = "127.0.0.1:6379";  // HOST:PORT of the shared idempotency store
  std::string prefix = "onboarding";     // names of the exchanges and queues, Redis keys
  std::string name = "worker";           // this worker, in logs and b_api_calls
  std::int64_t delivery_limit = 3;       // the work queue's x-delivery-limit
  int users = 8;                          // signup
  std::int64_t poison_user = 0;           // signup: this user gets an invalid address
  int duplicate_every = 0;                // relay: every N-th message is published twice
  int crash_after_publish = 0;            // relay: die after the N-th publish, before marking it
  int pace_ms = 0;                        // relay: pause between messages (tests)
  int crash_after_send = 0;               // worker: die after the N-th email sent, before ack
  int fail_every = 0;                     // worker: every N-th API call fails with 503
  int idle_exit_ms = 2000;                // worker: exit after this long without work
  int max_seconds = 60;                   // worker, relay: give up after this long
  int lease_ms = 1000;                    // worker: idempotency lease (a dead worker's key frees)
  bool quiet = false;
};

[[nodiscard]] inline sturdy::rabbitmq::topology topology_of(const options& o) {
  return {.exchange = o.prefix + ".work",
          .queue = o.prefix + ".welcome",
          .delivery_limit = o.delivery_limit,
          .dead_letter_exchange = o.prefix + ".dlx",
          .dead_letter_queue = o.prefix + ".dlq"};
}

[[nodiscard]] inline sturdy::result<sturdy::rabbitmq::connection_options> amqp_options(const options& o) {
  sturdy::rabbitmq::connection_options c;
  c.connect_timeout = std::chrono::seconds(1);
  c.command_timeout = std::chrono::seconds(2);
  return sturdy::rabbitmq::with_url(c, o.amqp_url);
}

inline sturdy::result<void> open_db(sqlite::database& db, const std::string& path) {
  BOOST_OUTCOME_TRY(db.open(path));
  return db.exec(R"sql(
    CREATE TABLE IF NOT EXISTS b_users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS b_outbox(message_id TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
                                        relayed INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS b_email_api(idempotency_key TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
                                           to_addr TEXT NOT NULL, worker TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS b_api_calls(idempotency_key TEXT NOT NULL, worker TEXT NOT NULL,
                                           outcome TEXT NOT NULL);
  )sql");
}

// ---- signup: the user and its outbox message in one transaction ------------
inline int signup(const options& o, std::ostream& out) {
  sqlite::database db;
  if (!open_db(db, o.db_path)) return 1;
  for (int i = 1; i <= o.users; ++i) {
    sqlite::transaction tx(db);
    const std::string email =
        i == o.poison_user ? "user" + std::to_string(i) + "-at-example.com" : "user" + std::to_string(i) + "@example.com";
    auto u = db.prepare("INSERT INTO b_users(id, name, email) VALUES(?1, ?2, ?3)");
    if (!u.bind(1, std::int64_t{i}).bind(2, "user" + std::to_string(i)).bind(3, email).run()) return 1;
    auto m = db.prepare("INSERT INTO b_outbox(message_id, user_id) VALUES(?1, ?2)");
    if (!m.bind(1, "welcome-" + std::to_string(i)).bind(2, std::int64_t{i}).run()) return 1;
    if (!tx.commit()) return 1;
  }
  if (!o.quiet) out << "signup: " << o.users << " users, " << o.users << " outbox messages\n";
  return 0;
}

// ---- relay: publish with confirm, then mark (at-least-once) ------------------
inline int relay(const options& o, std::ostream& out) {
  namespace rmq = sturdy::rabbitmq;
  sqlite::database db;
  if (!open_db(db, o.db_path)) return 1;
  auto copts = amqp_options(o);
  if (!copts) return 2;
  const auto topo = topology_of(o);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.max_seconds);
  // Publishing is retried (with backoff) until the deadline: the broker may
  // be restarting. Only a confirmed message is marked.
  const sturdy::retry_policy retry(sturdy::retry_options{
      .max_attempts = 1000,
      .backoff = sturdy::backoff::exponential(std::chrono::milliseconds(50), std::chrono::milliseconds(500)),
      .max_elapsed = std::chrono::seconds(o.max_seconds)});
  if (!retry.execute([&] { return rmq::declare(copts.value(), topo); })) {
    out << "relay: cannot declare the queues\n";
    return 1;
  }
  rmq::publisher pub(copts.value());
  int published = 0;
  int relayed = 0;
  for (;;) {
    auto next = db.prepare("SELECT message_id, user_id FROM b_outbox WHERE relayed = 0 ORDER BY user_id LIMIT 1");
    auto row = next.step();
    if (!row) return 1;
    if (!row.value()) break;
    const std::string id = next.column_text(0);
    const rmq::outgoing m{.exchange = topo.exchange,
                          .routing_key = topo.queue,
                          .message_id = id,
                          .body = std::to_string(next.column_int(1))};
    next.reset();  // end the read before writing (workers write meanwhile)
    const int copies = (o.duplicate_every > 0 && (relayed + 1) % o.duplicate_every == 0) ? 2 : 1;
    for (int c = 0; c < copies; ++c) {
      if (!retry.execute([&] { return pub.publish(m); })) {
        out << "relay: " << id << " not confirmed before the deadline; it stays in the outbox\n";
        return 1;
      }
      if (o.crash_after_publish > 0 && ++published == o.crash_after_publish) ::_exit(crash_exit_code);
    }
    auto mark = db.prepare("UPDATE b_outbox SET relayed = 1 WHERE message_id = ?1");
    if (!mark.bind(1, id).run()) return 1;
    ++relayed;
    if (o.pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(o.pace_ms));
    if (std::chrono::steady_clock::now() > deadline) return 1;
  }
  if (!o.quiet) out << "relay: " << relayed << " messages confirmed and marked; reconnects=" << pub.reconnects() << "\n";
  return 0;
}

// ---- the email API (simulated in the database) ------------------------------
enum class email_errc { unavailable = 1, invalid_address };
struct email_category_impl final : std::error_category {
  const char* name() const noexcept override { return "onboarding.broker.email"; }
  std::string message(int c) const override {
    return c == 1 ? "503 service unavailable" : "422 invalid address (permanent)";
  }
};
inline const std::error_category& email_category() noexcept {
  static const email_category_impl c;
  return c;
}
inline std::error_code make_error_code(email_errc e) noexcept { return {static_cast<int>(e), email_category()}; }

class email_api {
 public:
  email_api(sqlite::database& db, std::string worker, int fail_every)
      : db_(db), worker_(std::move(worker)), fail_every_(fail_every) {}

  // Sends the welcome email to user `user_id` under `key` (the provider keeps
  // one email per key); returns the receipt.
  sturdy::result<std::string> send(const std::string& key, std::int64_t user_id) {
    ++calls_;
    if (fail_every_ > 0 && calls_ % fail_every_ == 0) {
      log(key, "503");
      return make_error_code(email_errc::unavailable);
    }
    auto q = db_.prepare("SELECT email FROM b_users WHERE id = ?1");
    auto row = q.bind(1, user_id).step();
    if (!row || !row.value()) {
      std::cerr << worker_ << ": database: " << db_.last_error() << "\n";
      return std::make_error_code(std::errc::io_error);
    }
    const std::string to = q.column_text(0);
    q.reset();  // end the read before writing (another process may write meanwhile)
    if (to.find('@') == std::string::npos) {
      log(key, "422");
      return make_error_code(email_errc::invalid_address);
    }
    auto ins = db_.prepare(
        "INSERT OR IGNORE INTO b_email_api(idempotency_key, user_id, to_addr, worker) VALUES(?1, ?2, ?3, ?4)");
    if (!ins.bind(1, key).bind(2, user_id).bind(3, to).bind(4, worker_).run()) {
      std::cerr << worker_ << ": database: " << db_.last_error() << "\n";
      return std::make_error_code(std::errc::io_error);
    }
    const bool sent = db_.changes() == 1;
    log(key, sent ? "sent" : "provider-dedup");
    if (sent) ++sent_;
    return "rcpt-" + key;
  }
  [[nodiscard]] int sent() const noexcept { return sent_; }

 private:
  void log(const std::string& key, const char* outcome) {
    (void)db_.prepare("INSERT INTO b_api_calls(idempotency_key, worker, outcome) VALUES(?1, ?2, ?3)")
        .bind(1, key)
        .bind(2, worker_)
        .bind(3, outcome)
        .run();
  }
  sqlite::database& db_;
  std::string worker_;
  int fail_every_;
  int calls_ = 0;
  int sent_ = 0;
};

// ---- worker ------------------------------------------------------------------
inline int worker(const options& o, std::ostream& out) {
  namespace rmq = sturdy::rabbitmq;
  using namespace std::chrono_literals;
  sqlite::database db;
  if (!open_db(db, o.db_path)) return 1;
  auto copts = amqp_options(o);
  if (!copts) return 2;
  const auto topo = topology_of(o);
  auto sopts = sturdy::redis::with_address({.key_prefix = o.prefix + ":idem:"}, o.redis);
  if (!sopts) return 2;
  // A duplicate that finds the key in flight waits for the first outcome
  // and replays it; a dead owner's key frees when its lease runs out.
  const auto lease = std::chrono::milliseconds(o.lease_ms);
  sturdy::redis::idempotency_cache<std::string> cache(
      {.ttl = 24h, .lease = lease, .policy = {.in_flight = sturdy::in_flight_policy::wait, .wait_timeout = 4 * lease}},
      std::move(sopts).value());
  sturdy::circuit_breaker<> breaker({.consecutive_failure_threshold = 5, .open_duration = 2s});
  auto pipeline = sturdy::compose(
      sturdy::retry_policy(sturdy::retry_options{
          .max_attempts = 3,
          .backoff = sturdy::backoff::exponential(10ms, 100ms),
          .retry_if = [](const sturdy::failure_info& f) { return f.code != make_error_code(email_errc::invalid_address); }}),
      breaker);
  email_api api(db, o.name, o.fail_every);
  rmq::consumer con(copts.value(), {.queue = topo.queue, .prefetch = 1});
  int deliveries = 0, acked = 0, rejected = 0, replays = 0, errors = 0;
  const auto hard_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.max_seconds);
  auto last_activity = std::chrono::steady_clock::now();
  bool declared = false;
  while (std::chrono::steady_clock::now() < hard_deadline) {
    if (!declared) declared = static_cast<bool>(rmq::declare(copts.value(), topo));
    auto d = con.next(200ms);
    if (!d) {  // the broker is away: reconnect on the next call
      ++errors;
      last_activity = std::chrono::steady_clock::now();
      std::this_thread::sleep_for(100ms);
      continue;
    }
    if (!d.value()) {
      if (std::chrono::steady_clock::now() - last_activity > std::chrono::milliseconds(o.idle_exit_ms)) break;
      continue;
    }
    last_activity = std::chrono::steady_clock::now();
    ++deliveries;
    const rmq::delivery& m = *d.value();
    const std::int64_t user = std::stoll(m.body.empty() ? std::string("0") : m.body);
    auto r = cache.execute(m.message_id, sturdy::stable_fingerprint(m.body), [&]() -> sturdy::result<std::string> {
      auto sent = pipeline.execute([&] { return api.send(m.message_id, user); });
      if (sent && o.crash_after_send > 0 && api.sent() == o.crash_after_send) ::_exit(crash_exit_code);
      return sent;
    });
    if (r.replayed) ++replays;
    if (r.result) {
      if (con.ack(m)) ++acked;
    } else {
      // The broker redelivers it (to any worker) and dead-letters it at the
      // delivery limit.
      if (!o.quiet)
        out << o.name << ": " << m.message_id << " failed (" << r.result.error().message() << "), delivery "
            << m.delivery_count + 1 << " of " << o.delivery_limit + 1 << ": handed back\n";
      if (con.reject(m, /*requeue=*/true)) ++rejected;
    }
  }
  if (!o.quiet)
    out << "worker summary: " << o.name << " deliveries=" << deliveries << " acked=" << acked
        << " rejected=" << rejected << " replays=" << replays << " sent=" << api.sent() << " errors=" << errors
        << " reconnects=" << con.reconnects() << "\n";
  return 0;
}

// ---- operator ---------------------------------------------------------------
inline int fix(const options& o, std::int64_t user, std::ostream& out) {
  sqlite::database db;
  if (!open_db(db, o.db_path)) return 1;
  auto u = db.prepare("UPDATE b_users SET email = ?2 WHERE id = ?1");
  if (!u.bind(1, user).bind(2, "user" + std::to_string(user) + "@example.com").run()) return 1;
  if (!o.quiet) out << "fix: user " << user << " has a valid address now\n";
  return 0;
}

inline int dlq_command(const options& o, const std::string& verb, const std::string& id, std::ostream& out) {
  auto copts = amqp_options(o);
  if (!copts) return 2;
  sturdy::rabbitmq::dead_letter_admin admin(copts.value(), topology_of(o));
  if (verb == "list") {
    auto l = admin.list();
    if (!l) {
      out << "dlq list: " << l.error().message() << "\n";
      return 1;
    }
    for (const auto& d : l.value()) out << d.message_id << " body=" << d.body << "\n";
    out << l.value().size() << " dead letters\n";
    return 0;
  }
  if (verb == "inspect") {
    auto d = admin.inspect(id);
    if (!d) {
      out << "dlq inspect " << id << ": " << d.error().message() << "\n";
      return 1;
    }
    out << d.value().message_id << " body=" << d.value().body << " deliveries=" << d.value().delivery_count << "\n";
    for (const auto& h : d.value().headers) out << "  " << h.name << ": " << h.value << "\n";
    return 0;
  }
  if (verb == "replay" || verb == "discard") {
    auto r = verb == "replay" ? admin.replay(id) : admin.discard(id);
    out << "dlq " << verb << " " << id << ": " << (r ? std::string("ok") : r.error().message()) << "\n";
    return r ? 0 : 1;
  }
  return 2;
}

// The invariant: every user got exactly one welcome email.
struct check_result {
  int users = 0;
  int emailed_once = 0;
  int missing = 0;
  int api_calls = 0;
  int provider_dedups = 0;
  [[nodiscard]] bool ok() const noexcept { return users > 0 && emailed_once == users && missing == 0; }
};
inline check_result check(sqlite::database& db) {
  check_result c;
  c.users = static_cast<int>(db.scalar("SELECT COUNT(*) FROM b_users"));
  c.emailed_once = static_cast<int>(db.scalar(
      "SELECT COUNT(*) FROM b_users u WHERE (SELECT COUNT(*) FROM b_email_api e WHERE e.user_id = u.id) = 1"));
  c.missing = static_cast<int>(
      db.scalar("SELECT COUNT(*) FROM b_users u WHERE NOT EXISTS (SELECT 1 FROM b_email_api e WHERE e.user_id = u.id)"));
  c.api_calls = static_cast<int>(db.scalar("SELECT COUNT(*) FROM b_api_calls"));
  c.provider_dedups = static_cast<int>(db.scalar("SELECT COUNT(*) FROM b_api_calls WHERE outcome = 'provider-dedup'"));
  return c;
}
inline int check_command(const options& o, std::ostream& out) {
  sqlite::database db;
  if (!open_db(db, o.db_path)) return 1;
  const check_result c = check(db);
  out << "check: " << c.users << " users, " << c.emailed_once << " emailed exactly once, " << c.missing
      << " not emailed; " << c.api_calls << " email API calls (" << c.provider_dedups << " provider dedups)\n";
  return c.ok() ? 0 : 1;
}

}  // namespace onboarding::broker

#endif  // STURDY_EXAMPLES_ONBOARDING_BROKER_FLOW_HPP_
