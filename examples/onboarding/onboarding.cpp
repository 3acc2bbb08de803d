// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// The onboarding example: see onboarding.hpp and docs/onboarding.md.

#include "onboarding.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sqlite_dead_letter_queue.hpp"
#include "sturdy/backoff.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/compensation.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/testing/manual_clock.hpp"

#ifdef ONBOARDING_HAVE_REDIS
#include "sturdy/redis/idempotency_store.hpp"
#endif

namespace onboarding {

// ---------------------------------------------------------------------------
// Service errors
// ---------------------------------------------------------------------------

namespace {
class service_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "onboarding.service"; }
  std::string message(int ev) const override {
    switch (static_cast<service_errc>(ev)) {
      case service_errc::unavailable:
        return "503 service unavailable";
      case service_errc::timeout:
        return "timed out after 1 s";
      case service_errc::internal:
        return "500 internal server error";
      case service_errc::invalid_address:
        return "422 invalid address";
    }
    return "unknown service error";
  }
};
}  // namespace

const std::error_category& service_category() noexcept {
  static const service_category_impl instance;
  return instance;
}
std::error_code make_error_code(service_errc e) noexcept { return {static_cast<int>(e), service_category()}; }

bool redis_supported() noexcept {
#ifdef ONBOARDING_HAVE_REDIS
  return true;
#else
  return false;
#endif
}

namespace {

using namespace std::chrono_literals;
using sturdy::duration;
using sturdy::time_point;

// ---------------------------------------------------------------------------
// Time: virtual (a manual clock advanced by the sleeper) or real
// ---------------------------------------------------------------------------

struct time_source {
  bool real = false;
  sturdy::testing::manual_clock manual;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  time_point now() const {
    if (!real) return manual.now();
    return time_point(std::chrono::steady_clock::now() - start);
  }
};

class demo_clock {
 public:
  explicit demo_clock(std::shared_ptr<time_source> t) : t_(std::move(t)) {}
  [[nodiscard]] time_point now() const noexcept { return t_->now(); }

 private:
  std::shared_ptr<time_source> t_;
};

class demo_sleeper {
 public:
  explicit demo_sleeper(std::shared_ptr<time_source> t) : t_(std::move(t)) {}
  bool sleep_for(duration d, std::stop_token stop) const {
    if (t_->real) return sturdy::thread_sleeper{}.sleep_for(d, stop);
    if (stop.stop_requested()) return false;
    t_->manual.advance(d);
    return true;
  }

 private:
  std::shared_ptr<time_source> t_;
};

// A copyable handle to one seeded generator (the retry policies' jitter).
struct shared_random {
  using result_type = std::uint64_t;
  std::mt19937_64* gen;
  static constexpr result_type min() { return std::mt19937_64::min(); }
  static constexpr result_type max() { return std::mt19937_64::max(); }
  result_type operator()() const { return (*gen)(); }
};

double seconds(duration d) { return std::chrono::duration<double>(d).count(); }
std::string ms(duration d) {
  char buf[32];
  if (d >= 1s) {
    std::snprintf(buf, sizeof buf, "%.1f s", seconds(d));
  } else {
    std::snprintf(buf, sizeof buf, "%lld ms",
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
  }
  return buf;
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o;
}

std::string describe(const sturdy::failure_info& f) {
  if (f.code) return f.code.message();
  return sturdy::exception_text_of(f.exception);
}

// ---------------------------------------------------------------------------
// The timeline: what a person reads (or the JSON events)
// ---------------------------------------------------------------------------

struct event {
  double t;
  std::string who;
  std::string kind;
  std::string text;
};

class timeline {
 public:
  timeline(std::ostream& out, const time_source& time, bool json, bool quiet)
      : out_(out), time_(time), json_(json), quiet_(quiet) {}

  void say(std::string_view who, std::string_view kind, std::string text) {
    const double t = seconds(time_.now().time_since_epoch());
    if (!json_ && !quiet_) {
      char head[48];
      std::snprintf(head, sizeof head, "[%8.3fs] %-9.9s ", t, std::string(who).c_str());
      out_ << head << text << '\n';
    }
    events_.push_back({t, std::string(who), std::string(kind), std::move(text)});
  }
  void heading(std::string_view text) {
    if (!json_ && !quiet_) out_ << '\n' << text << '\n';
  }
  void line(std::string_view text) {
    if (!json_ && !quiet_) out_ << text << '\n';
  }
  void flush() { out_.flush(); }

  std::string who = "-";         // the subject of the call in progress (a user's name)
  std::error_code last_failure;  // the last failure a retry loop saw
  run_summary summary;
  const std::vector<event>& events() const { return events_; }

 private:
  std::ostream& out_;
  const time_source& time_;
  bool json_;
  bool quiet_;
  std::vector<event> events_;
};

// Listeners: each primitive reports to the timeline with its dependency's name.
struct retry_listener {
  timeline* tl;
  const char* dep;
  void operator()(const sturdy::retry_scheduled& e) const {
    tl->last_failure = e.failure.code;
    ++tl->summary.retries;
    tl->say(tl->who, "retry",
            std::string(dep) + ": attempt " + std::to_string(e.attempt) + " failed (" + describe(e.failure) +
                "); retry in " + ms(e.delay) + " (jittered backoff)");
  }
  void operator()(const sturdy::retries_exhausted& e) const {
    tl->last_failure = e.failure.code;
    tl->say(tl->who, "retries_exhausted",
            std::string(dep) + ": gave up after " + std::to_string(e.attempts) + " attempts (" +
                describe(e.failure) + ")");
  }
  void operator()(const sturdy::retry_budget_denied& e) const {
    tl->last_failure = e.failure.code;
    ++tl->summary.budget_denials;
    tl->say(tl->who, "budget_denied",
            std::string(dep) + ": attempt " + std::to_string(e.attempt) + " failed (" + describe(e.failure) +
                "); the retry budget denies a retry: too many failures lately");
  }
  void operator()(const auto&) const {}
};

struct breaker_listener {
  timeline* tl;
  void operator()(const sturdy::breaker_state_changed& e) const {
    if (e.to == sturdy::breaker_state::open) ++tl->summary.breaker_opened;
    tl->say("email-api", "breaker",
            std::string("circuit breaker ") + std::string(to_string(e.from)) + " -> " +
                std::string(to_string(e.to)) + " (" + std::string(to_string(e.reason)) + ")");
  }
  void operator()(const sturdy::breaker_call_rejected&) const { ++tl->summary.breaker_rejections; }
  void operator()(const auto&) const {}
};

struct compensation_listener {
  timeline* tl;
  void operator()(const sturdy::compensation_step_failed& e) const {
    ++tl->summary.undos_failed;
    if (e.dead_lettered) ++tl->summary.dead_lettered;
    tl->say(tl->who, "undo_failed",
            "undo \"" + std::string(e.step) + "\" FAILED (" + describe(e.failure) + ")" +
                (e.dead_lettered ? " -> dead-letter queue" : " and could not be dead-lettered"));
  }
  void operator()(const sturdy::compensation_rolled_back&) const { ++tl->summary.compensations; }
  void operator()(const auto&) const {}
};

// ---------------------------------------------------------------------------
// The fault schedule
// ---------------------------------------------------------------------------

struct fault_schedule {
  bool scripted = true;          // false: only transient errors (restart, operator)
  double transient_rate = 0.12;  // per role/email call
  int slow_at = -1;              // worker pickup that starts the slow period
  duration slow_for = 4s;
  int outage_at = -1;  // worker pickup that starts the email outage
  duration outage_for = 25s;
  int duplicate_at = -1;  // worker pickup delivered twice
  duration revoke_broken_for = 30s;

  static fault_schedule from_seed(std::uint64_t seed, int users) {
    fault_schedule f;
    std::mt19937_64 g(seed * 0x9e3779b97f4a7c15ULL + 7);
    auto pick = [&](int lo, int hi) { return hi <= lo ? lo : lo + static_cast<int>(g() % (hi - lo + 1)); };
    f.outage_at = pick(users / 3, users / 2);
    f.slow_at = f.outage_at >= 2 ? pick(0, f.outage_at - 2) : -1;
    f.duplicate_at = f.outage_at >= 1 ? pick(0, f.outage_at - 1) : -1;
    if (f.duplicate_at == f.slow_at && f.duplicate_at + 1 < f.outage_at) ++f.duplicate_at;
    f.outage_for = duration(std::chrono::seconds(20 + static_cast<int>(g() % 11)));
    return f;
  }
};

// Live fault state: windows start when the schedule triggers them.
struct fault_state {
  fault_schedule plan;
  std::mt19937_64 gen;
  time_point slow_until{};
  time_point outage_until{};
  time_point revoke_broken_until{};
  bool transient() { return std::uniform_real_distribution<double>(0, 1)(gen) < plan.transient_rate; }
};

// ---------------------------------------------------------------------------
// The application
// ---------------------------------------------------------------------------

constexpr const char* kSchema = R"sql(
  CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
  -- every signup ever made (an audit log: it survives compensation)
  CREATE TABLE IF NOT EXISTS signups(user_id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                     email TEXT NOT NULL, path TEXT NOT NULL);
  CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
                                   email TEXT NOT NULL);
  -- the transactional outbox
  CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL,
                                    kind TEXT NOT NULL, email TEXT NOT NULL,
                                    status TEXT NOT NULL DEFAULT 'pending',
                                    deliveries INTEGER NOT NULL DEFAULT 0,
                                    not_before_ns INTEGER NOT NULL DEFAULT 0, receipt TEXT,
                                    claimed_by INTEGER, lease_until_ns INTEGER NOT NULL DEFAULT 0);
  -- the role service's own storage (another service: no foreign key)
  CREATE TABLE IF NOT EXISTS user_roles(user_id INTEGER NOT NULL, role TEXT NOT NULL,
                                        PRIMARY KEY(user_id, role));
  -- the email API's own records: what it really sent, by idempotency key
  CREATE TABLE IF NOT EXISTS email_provider(idempotency_key TEXT PRIMARY KEY, user_id INTEGER NOT NULL,
                                            to_addr TEXT NOT NULL, receipt TEXT NOT NULL,
                                            sent_at_ns INTEGER NOT NULL);
)sql";

constexpr int kMaxDeliveries = 2;
// How long a worker's claim on an outbox message lasts (wall clock) before
// another worker may take the message over.
constexpr duration kClaimLease = 60s;

// Claims are compared across processes, so they use the wall clock (the
// demo's virtual clock is per process).
std::int64_t wall_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A worker's identity in `outbox.claimed_by`: its process id.
std::int64_t worker_id() { return static_cast<std::int64_t>(::getpid()); }

// False only when the process is known to be gone (same host). A worker on
// another host is never "gone" by this test; its lease covers that case.
bool process_alive(std::int64_t pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}
const char* const kRole = "member";

using backoff_t = sturdy::backoff;
using retry_t = sturdy::retry_policy<backoff_t, demo_clock, demo_sleeper, retry_listener, shared_random>;
using breaker_t = sturdy::circuit_breaker<demo_clock, breaker_listener>;
using cache_t = sturdy::idempotency_cache<std::string, demo_clock, demo_sleeper>;
#ifdef ONBOARDING_HAVE_REDIS
// The fleet-wide cache: same value type, same key, same fingerprint; the
// entries live in Redis (real time: leases are the server's clock).
using redis_cache_t = sturdy::redis::idempotency_cache<std::string>;
#endif
using saga_t =
    sturdy::compensation_scope<sqlite_dead_letter_queue, retry_t, demo_clock, compensation_listener>;

// Transient failures are retried; a bad address (permanent) and a breaker
// rejection (retry when the breaker says so, not now) are not.
bool retry_transient(const sturdy::failure_info& f) {
  if (f.code == service_errc::invalid_address) return false;
  if (f.code == sturdy::errc::circuit_open) return false;
  return sturdy::default_retry_if(f);
}

bool is_permanent(const std::error_code& ec) { return ec == service_errc::invalid_address; }

struct message {
  std::int64_t id = 0;
  std::int64_t user_id = 0;
  std::string email;
  std::string status;
  int deliveries = 0;
};

class app {
 public:
  app(const run_options& o, std::ostream& out, bool scripted)
      : opts_(o),
        time_(std::make_shared<time_source>()),
        tl_(out, *time_, o.json, o.quiet),
        jitter_(o.seed ^ 0x5eedULL),
        faults_{scripted ? fault_schedule::from_seed(o.seed, o.users) : fault_schedule{.scripted = false},
                std::mt19937_64(o.seed)},
        role_budget_({.max_tokens = 10, .token_ratio = 0.5}),
        email_budget_({.max_tokens = 10, .token_ratio = 0.5}),
        role_retry_(retry_options(role_budget_), demo_clock(time_), demo_sleeper(time_),
                    retry_listener{&tl_, "role service"}, shared_random{&jitter_}),
        email_retry_(retry_options(email_budget_), demo_clock(time_), demo_sleeper(time_),
                     retry_listener{&tl_, "email API"}, shared_random{&jitter_}),
        undo_retry_(
            sturdy::retry_options{
                .max_attempts = 3, .backoff = backoff_t::exponential(200ms, 2s), .retry_if = retry_transient},
            demo_clock(time_), demo_sleeper(time_), retry_listener{&tl_, "undo"}, shared_random{&jitter_}),
        breaker_(sturdy::circuit_breaker_options{.consecutive_failure_threshold = 5,
                                                 .failure_rate_threshold = 0,
                                                 .open_duration = 5s,
                                                 .half_open_probes = 1,
                                                 .probe_lease = 30s},
                 demo_clock(time_), breaker_listener{&tl_}),
        cache_({.ttl = 24h, .lease = 60s}, {.shards = 4, .max_entries = 4096}, demo_clock(time_),
               demo_sleeper(time_)),
        dlq_() {
    time_->real = o.real_time;
  }

  // Retry outermost: every attempt goes through the breaker, and a rejection
  // (circuit_open) is not retried (see retry_transient). Both held by
  // reference: the breaker is shared by every call to the email API.
  sturdy::pipeline<retry_t, breaker_t&> email_pipeline() { return sturdy::compose(email_retry_, breaker_); }

  sturdy::result<void> open(bool must_be_empty) {
    if (auto r = db_.open(opts_.db_path); !r) {
      error_ = "cannot open " + opts_.db_path + ": " + db_.last_error();
      return r.error();
    }
    if (auto r = db_.exec(kSchema); !r) {
      error_ = "cannot create the schema: " + db_.last_error();
      return r.error();
    }
    // A database from before the outbox had claims: add the columns (another
    // worker may be adding them at the same moment: errors are ignored).
    if (db_.scalar("SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = 'claimed_by'") == 0) {
      (void)db_.exec("ALTER TABLE outbox ADD COLUMN claimed_by INTEGER");
      (void)db_.exec("ALTER TABLE outbox ADD COLUMN lease_until_ns INTEGER NOT NULL DEFAULT 0");
    }
    // The database's identity: the Redis keys of its messages live under it,
    // so two databases never share (or replay) each other's "msg-1".
    {
      std::random_device rd;
      char id[24];
      std::snprintf(id, sizeof id, "%08x%08x", rd(), rd());
      auto st = db_.prepare("INSERT OR IGNORE INTO meta(key, value) VALUES ('db_id', ?1)");
      st.bind(1, id);
      (void)st.run();
      auto q = db_.prepare("SELECT value FROM meta WHERE key = 'db_id'");
      if (auto row = q.step(); row && row.value()) db_id_ = q.column_text(0);
    }
    if (!opts_.redis.empty()) {
      BOOST_OUTCOME_TRY(connect_redis());
    }
    if (must_be_empty && db_.scalar("SELECT COUNT(*) FROM signups") > 0) {
      error_ =
          opts_.db_path + " already holds a run: use `worker`, `dlq ...` or `check` on it, or another --db";
      return std::make_error_code(std::errc::file_exists);
    }
    dlq_.emplace(db_, std::initializer_list<const std::error_category*>{&service_category()});
    if (!dlq_->ok()) {
      error_ = "cannot create the dead-letter table: " + db_.last_error();
      return std::make_error_code(std::errc::io_error);
    }
    return sturdy::success();
  }
  const std::string& error() const { return error_; }

  // The idempotency cache for messages in Redis at `opts_.redis`; checks
  // that Redis answers, so a wrong address fails at start, not per message.
  sturdy::result<void> connect_redis() {
#ifdef ONBOARDING_HAVE_REDIS
    auto so = sturdy::redis::with_address({.key_prefix = "onboarding:" + db_id_ + ":"}, opts_.redis);
    if (!so) {
      error_ = "--redis " + opts_.redis + ": not HOST:PORT";
      return so.error();
    }
    redis_cache_.emplace(sturdy::idempotency_options{.ttl = 24h, .lease = 60s}, std::move(so).value());
    if (auto r = redis_cache_->store().ping(); !r) {
      error_ = "cannot reach Redis at " + opts_.redis + " (" + r.error().message() + ")";
      redis_cache_.reset();
      return r.error();
    }
    return sturdy::success();
#else
    error_ =
        "--redis: this build has no Redis support (hiredis was not found when it was configured; "
        "on Debian: apt install libhiredis-dev, then configure again)";
    return sturdy::errc::invalid_options;
#endif
  }
  bool uses_redis() const {
#ifdef ONBOARDING_HAVE_REDIS
    return redis_cache_.has_value();
#else
    return false;
#endif
  }

  // ----- the simulated services -------------------------------------------

  // The role service: 30 ms per call; transient 503s; revokes answer 500
  // while its revoke endpoint is broken. Idempotent: assigning twice is fine.
  sturdy::result<void> assign_role(std::int64_t user) {
    ++tl_.summary.attempts_role;
    sleep(30ms);
    if (faults_.transient()) return service_errc::unavailable;
    auto st = db_.prepare("INSERT OR IGNORE INTO user_roles(user_id, role) VALUES (?1, ?2)");
    st.bind(1, user).bind(2, kRole);
    return st.run();
  }
  sturdy::result<void> revoke_role(std::int64_t user) {
    ++tl_.summary.attempts_role;
    sleep(30ms);
    if (now() < faults_.revoke_broken_until) return service_errc::internal;
    if (faults_.transient()) return service_errc::unavailable;
    auto st = db_.prepare("DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2");
    st.bind(1, user).bind(2, kRole);
    return st.run();
  }

  // The email API: 50 ms per call, honours an Idempotency-Key (a key it has
  // seen returns the first receipt and sends nothing). Slow period: 0.3-1.8 s,
  // and the client gives up after 1 s (the send may still have happened).
  sturdy::result<std::string> send_email(const std::string& key, std::int64_t user, const std::string& to) {
    ++tl_.summary.attempts_email;
    const time_point t = now();
    const bool slow = t < faults_.slow_until;
    duration latency = 50ms;
    if (slow) latency = std::chrono::milliseconds(300 + static_cast<int>(faults_.gen() % 1500));
    if (t < faults_.outage_until) {
      sleep(latency);
      return service_errc::unavailable;
    }
    if (faults_.transient()) {
      sleep(latency);
      return service_errc::unavailable;
    }
    if (to.ends_with(".invalid")) {
      sleep(latency);
      return service_errc::invalid_address;
    }
    const bool timed_out = latency > 1s;
    sleep(timed_out ? duration(1s) : latency);
    // The provider processes the request whether or not the client waited.
    // Its check-and-send is atomic (several workers may call it at once).
    sqlite::transaction tx(db_);
    if (!tx.began()) return std::make_error_code(std::errc::io_error);
    auto find = db_.prepare("SELECT receipt FROM email_provider WHERE idempotency_key = ?1");
    find.bind(1, key);
    std::string receipt;
    auto found = find.step();
    if (found && found.value()) receipt = find.column_text(0);
    find.reset();
    if (!receipt.empty()) {
      if (!timed_out) {
        ++tl_.summary.provider_dedups;
        tl_.say(tl_.who, "provider_dedup",
                "email API: Idempotency-Key " + key + " seen before: returns " + receipt + ", sends nothing");
      }
    } else {
      receipt = "rcpt-" + std::to_string(db_.scalar("SELECT COUNT(*) FROM email_provider") + 1);
      auto ins = db_.prepare(
          "INSERT INTO email_provider(idempotency_key, user_id, to_addr, receipt, sent_at_ns) "
          "VALUES (?1, ?2, ?3, ?4, ?5)");
      ins.bind(1, key).bind(2, user).bind(3, to).bind(4, receipt);
      ins.bind(5, static_cast<std::int64_t>(now().time_since_epoch().count()));
      BOOST_OUTCOME_TRY(ins.run());
      ++tl_.summary.emails_sent;
    }
    BOOST_OUTCOME_TRY(tx.commit());
    if (timed_out) return service_errc::timeout;
    return receipt;
  }

  // ----- act 1: the synchronous flow inside a compensation scope ----------

  sturdy::result<void> onboard_sync(const std::string& name, const std::string& email, bool break_revokes) {
    tl_.who = name;
    tl_.say(name, "signup", "signs up <" + email + "> (synchronous: all or nothing)");
    saga_t saga(*dlq_, undo_retry_, demo_clock(time_), compensation_listener{&tl_}, {.name = "onboarding"});

    // The user row and its signup record commit together.
    BOOST_OUTCOME_TRY(auto id, [&]() -> sturdy::result<std::int64_t> {
      sqlite::transaction tx(db_);
      // Without BEGIN the statements would autocommit one by one: refuse.
      if (!tx.began()) return std::make_error_code(std::errc::device_or_resource_busy);
      BOOST_OUTCOME_TRY(auto created, create_user(name, email, "sync"));
      BOOST_OUTCOME_TRY(tx.commit());
      return created;
    }());
    tl_.say(name, "step", "user #" + std::to_string(id) + " created");
    const std::string ctx = "user=" + std::to_string(id);
    BOOST_OUTCOME_TRY(
        saga.add({.name = "create user", .context = ctx}, [this, id] { return delete_user(id); }));

    if (auto r = role_retry_.execute([&] { return assign_role(id); }); !r) {
      tl_.say(name, "step_failed", "assign role failed (" + r.error().message() + "): rolling back");
      return r.error();  // the scope undoes "create user"
    }
    tl_.say(name, "step", "role '" + std::string(kRole) + "' assigned");
    BOOST_OUTCOME_TRY(
        saga.add({.name = "assign role", .context = ctx}, [this, id] { return revoke_role(id); }));

    if (break_revokes) {
      faults_.revoke_broken_until = now() + faults_.plan.revoke_broken_for;
      tl_.say("role-svc", "fault",
              "FAULT: a bad deploy breaks the role service's revoke endpoint for " +
                  ms(faults_.plan.revoke_broken_for));
    }
    auto mail =
        email_pipeline().execute([&] { return send_email("welcome-user-" + std::to_string(id), id, email); });
    if (!mail) {
      tl_.say(name, "step_failed",
              "welcome email failed: " + mail.error().message() +
                  (is_permanent(mail.error()) ? " (permanent): rolling back" : ": rolling back"));
      auto report = saga.rollback();
      for (const auto& s : report) {
        if (s.status == sturdy::step_status::undone)
          tl_.say(name, "undone", "undo \"" + std::string(s.name) + "\" ok");
      }
      tl_.say(name, "rolled_back",
              "rolled back: " + std::to_string(report.undone()) + " undone, " +
                  std::to_string(report.failed()) + " failed" +
                  (report.failed() > 0 ? " (the failed undo waits in the dead-letter queue)" : ""));
      return mail.error();
    }
    tl_.say(name, "done", "welcome email sent (" + mail.value() + "); onboarding committed");
    return saga.commit();
  }

  // ----- act 2: the transactional outbox and its worker --------------------

  // The user row and the "send welcome email" message in one transaction.
  sturdy::result<std::int64_t> signup_outbox(const std::string& name, const std::string& email) {
    sqlite::transaction tx(db_);
    // Without BEGIN the user could commit without its outbox row: refuse.
    if (!tx.began()) return std::make_error_code(std::errc::device_or_resource_busy);
    BOOST_OUTCOME_TRY(auto id, create_user(name, email, "outbox"));
    auto st = db_.prepare("INSERT INTO outbox(user_id, kind, email) VALUES (?1, 'welcome_email', ?2)");
    st.bind(1, id).bind(2, email);
    BOOST_OUTCOME_TRY(st.run());
    const std::int64_t msg = db_.last_insert_rowid();
    BOOST_OUTCOME_TRY(tx.commit());
    tl_.say(name, "signup",
            "signs up <" + email + ">: user #" + std::to_string(id) + " + outbox message #" +
                std::to_string(msg) + " in one transaction");
    return msg;
  }

  // Drains the outbox until nothing this worker may claim is pending (other
  // live workers' claims are theirs to finish).
  void run_worker() {
    int own = 0;
    for (;;) {
      // Back-pressure: while the email API's breaker is open, no message can
      // succeed; wait instead of burning deliveries on rejections.
      if (const duration wait = breaker_.retry_after(); wait > duration::zero()) {
        tl_.say("worker", "pause", "email API breaker is open: worker pauses " + ms(wait));
        sleep(wait);
        continue;
      }
      release_dead_claims();
      auto next = next_message();
      if (!next) {
        auto st = db_.prepare(
            "SELECT COALESCE(MIN(not_before_ns), -1) FROM outbox WHERE status = 'pending' AND "
            "(claimed_by IS NULL OR claimed_by = ?1 OR lease_until_ns < ?2)");
        st.bind(1, worker_id()).bind(2, wall_ns());
        auto row = st.step();
        const std::int64_t earliest = row && row.value() ? st.column_int(0) : -1;
        st.reset();
        if (earliest < 0) break;
        const duration wait = time_point(duration(earliest)) - now();
        sleep(wait > duration::zero() ? wait : duration(1ms));
        continue;
      }
      deliver(*next, pickups_++);
      if (opts_.duplicate_every > 0 && ++own % opts_.duplicate_every == 0) deliver_duplicate_from_elsewhere();
    }
  }

  // The relay's at-least-once delivery across processes: the message another
  // worker claimed last is delivered here too (it may still be running
  // there). Only the idempotency cache stands between it and a second run.
  void deliver_duplicate_from_elsewhere() {
    auto st = db_.prepare(
        "SELECT id, user_id, email, status, deliveries, claimed_by FROM outbox "
        "WHERE claimed_by IS NOT NULL AND claimed_by != ?1 ORDER BY lease_until_ns DESC LIMIT 1");
    st.bind(1, worker_id());
    auto m = read_message(st);
    const std::int64_t owner = m ? st.column_int(5) : 0;
    st.reset();
    if (!m) return;
    const std::string who = user_name(m->user_id);
    tl_.who = who;
    ++tl_.summary.duplicate_deliveries;
    tl_.say(who, "fault",
            "FAULT: the relay also delivers message #" + std::to_string(m->id) + " (claimed by worker " +
                std::to_string(owner) + ") to this worker (at-least-once)");
    (void)process(*m);
  }

  // Same host: a claim whose process is gone is released at once (a
  // restarted worker need not wait for the lease).
  void release_dead_claims() {
    std::vector<std::int64_t> holders;
    {
      auto st = db_.prepare(
          "SELECT DISTINCT claimed_by FROM outbox WHERE status = 'pending' AND claimed_by IS NOT NULL AND "
          "claimed_by != ?1");
      st.bind(1, worker_id());
      for (auto row = st.step(); row && row.value(); row = st.step()) holders.push_back(st.column_int(0));
    }
    for (std::int64_t pid : holders) {
      if (process_alive(pid)) continue;
      auto up = db_.prepare(
          "UPDATE outbox SET claimed_by = NULL, lease_until_ns = 0 WHERE status = 'pending' AND claimed_by = "
          "?1");
      up.bind(1, pid);
      (void)up.run();
    }
  }

  // Pending messages that other live workers hold.
  int held_elsewhere() {
    auto st = db_.prepare(
        "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND claimed_by IS NOT NULL AND claimed_by != "
        "?1 "
        "AND lease_until_ns >= ?2");
    st.bind(1, worker_id()).bind(2, wall_ns());
    auto row = st.step();
    return row && row.value() ? static_cast<int>(st.column_int(0)) : 0;
  }

  void deliver(message m, int pickup) {
    const std::string who = user_name(m.user_id);
    tl_.who = who;
    if (faults_.plan.scripted) trigger_faults(pickup);
    ++tl_.summary.deliveries;  // the claim counted it in the outbox
    tl_.say(
        who, "deliver",
        "worker takes message #" + std::to_string(m.id) + " (delivery " + std::to_string(m.deliveries) + ")");
    tl_.last_failure.clear();
    auto r = process(m);
    if (faults_.plan.scripted && pickup == faults_.plan.duplicate_at) {
      ++tl_.summary.duplicate_deliveries;
      tl_.say(who, "fault",
              "FAULT: the relay delivers message #" + std::to_string(m.id) + " again (at-least-once)");
      (void)process(m);
    }
    if (r) return;
    if (r.error() == sturdy::errc::in_progress) {
      // Another worker runs this message right now (a duplicate delivered
      // there holds its key): look again shortly; this delivery does not count.
      auto st = db_.prepare(
          "UPDATE outbox SET not_before_ns = ?2, claimed_by = NULL, lease_until_ns = 0, "
          "deliveries = deliveries - 1 WHERE id = ?1");
      st.bind(1, m.id).bind(2, static_cast<std::int64_t>((now() + 100ms).time_since_epoch().count()));
      (void)st.run();
      return;
    }
    // A verdict of sturdy's own (budget denied, breaker open) says why the
    // retries stopped; the dependency's last error says what went wrong.
    std::error_code ec = r.error();
    std::string why = ec.message();
    if (ec.category() == sturdy::error_category() && tl_.last_failure && tl_.last_failure != ec) {
      why = tl_.last_failure.message() + "; then: " + ec.message();
      ec = tl_.last_failure;
    }
    if (is_permanent(ec) || m.deliveries >= kMaxDeliveries) {
      (void)dead_letter_message(m, ec, why);
      return;
    }
    const duration wait = breaker_.retry_after() > duration::zero() ? breaker_.retry_after() : duration(2s);
    auto st = db_.prepare(
        "UPDATE outbox SET not_before_ns = ?2, claimed_by = NULL, lease_until_ns = 0 WHERE id = ?1");
    st.bind(1, m.id).bind(2, static_cast<std::int64_t>((now() + wait).time_since_epoch().count()));
    (void)st.run();
    tl_.say(
        who, "requeue",
        "message #" + std::to_string(m.id) + " failed (" + why + "): back in the outbox, due in " + ms(wait));
  }

  // One message, through the idempotency cache keyed by its id. Used by the
  // worker and by replays of the dead-letter queue.
  sturdy::result<std::string> process(const message& m) {
    const std::string key = "msg-" + std::to_string(m.id);
    failed_step_ = "send welcome email";  // not the previous message's step
    auto work = [&]() -> sturdy::result<std::string> {
      // The durable layer: a message already done (a
      // redelivery after a restart) is not redone.
      auto st = db_.prepare("SELECT status, receipt FROM outbox WHERE id = ?1");
      st.bind(1, m.id);
      auto row = st.step();
      const bool done_before = row && row.value() && st.column_text(0) == "done";
      std::string receipt = done_before ? st.column_text(1) : std::string();
      st.reset();  // no read left open while this connection writes
      if (done_before) return receipt;
      if (auto a = role_retry_.execute([&] { return assign_role(m.user_id); }); !a) {
        failed_step_ = "assign role";
        return a.error();
      }
      tl_.say(tl_.who, "step", "role '" + std::string(kRole) + "' assigned");
      step_boundary("role assigned");
      auto mail = email_pipeline().execute([&] { return send_email(key, m.user_id, m.email); });
      if (!mail) {
        failed_step_ = "send welcome email";
        return mail.error();
      }
      tl_.say(tl_.who, "step", "welcome email sent (" + mail.value() + ")");
      step_boundary("email sent");
      auto done = db_.prepare("UPDATE outbox SET status = 'done', receipt = ?2 WHERE id = ?1");
      done.bind(1, m.id).bind(2, mail.value());
      BOOST_OUTCOME_TRY(done.run());
      tl_.say(tl_.who, "done", "message #" + std::to_string(m.id) + " done");
      step_boundary("message done");
      return mail.value();
    };
    const std::uint64_t fingerprint = sturdy::stable_fingerprint({std::to_string(m.user_id), m.email});
#ifdef ONBOARDING_HAVE_REDIS
    auto r =
        redis_cache_ ? redis_cache_->execute(key, fingerprint, work) : cache_.execute(key, fingerprint, work);
#else
    auto r = cache_.execute(key, fingerprint, work);
#endif
    if (!r.replayed && !r.result && r.result.error() == sturdy::errc::in_progress) {
      ++tl_.summary.cache_in_progress;
      tl_.say(tl_.who, "cache_in_progress",
              "idempotency cache: " + key + " is in progress at another worker: this delivery calls nothing");
    }
    if (r.replayed && r.result) {
      ++tl_.summary.cache_replays;
      tl_.say(tl_.who, "cache_replay",
              "idempotency cache: " + key + " already processed: replays " + r.result.value() +
                  ", calls nothing");
    }
    return std::move(r.result);
  }

  // Moves a message from the outbox to the dead-letter queue, atomically.
  sturdy::result<std::uint64_t> dead_letter_message(const message& m, std::error_code ec,
                                                    const std::string& why) {
    sqlite::transaction tx(db_);
    // Without BEGIN the message could be marked dead without its dead-letter
    // row, and be lost: refuse, so the caller requeues it.
    if (!tx.began()) return std::make_error_code(std::errc::device_or_resource_busy);
    auto st = db_.prepare("UPDATE outbox SET status = 'dead' WHERE id = ?1");
    st.bind(1, m.id);
    BOOST_OUTCOME_TRY(st.run());
    sturdy::dead_letter_entry e;
    e.saga = "onboarding-worker";
    e.step = failed_step_;
    e.context = "user=" + std::to_string(m.user_id) + " message=" + std::to_string(m.id);
    e.code = ec;
    e.at = now();
    BOOST_OUTCOME_TRY(auto id, dlq_->add(e, "delivery_failed"));
    BOOST_OUTCOME_TRY(tx.commit());
    ++tl_.summary.dead_lettered;
    tl_.say(
        tl_.who, "dead_letter",
        "message #" + std::to_string(m.id) + " gives up (" + why +
            (is_permanent(ec) ? ", permanent" : ", after " + std::to_string(m.deliveries) + " deliveries") +
            ") -> dead-letter #" + std::to_string(id));
    return id;
  }

  // ----- act 3: the operator ----------------------------------------------

  // Replays one dead-letter entry: a failed delivery runs the message again;
  // a failed undo runs the undo again.
  sturdy::result<void> replay_entry(const dlq_record& r) {
    const std::int64_t user = context_value(r.entry.context, "user");
    tl_.who = user_name(user);
    if (r.reason == "delivery_failed") {
      auto m = load_message(context_value(r.entry.context, "message"));
      if (!m) return sturdy::errc::not_found;
      BOOST_OUTCOME_TRY(process(*m));
      return sturdy::success();
    }
    if (r.entry.step == "assign role") {
      BOOST_OUTCOME_TRY(undo_retry_.execute([&] { return revoke_role(user); }));
      tl_.say(tl_.who, "undone", "undo \"assign role\" ok: role revoked");
      return sturdy::success();
    }
    if (r.entry.step == "create user") {
      BOOST_OUTCOME_TRY(delete_user(user));
      tl_.say(tl_.who, "undone", "undo \"create user\" ok: user deleted");
      return sturdy::success();
    }
    return sturdy::errc::not_found;
  }

  std::size_t replay_all() {
    std::size_t ok = 0;
    for (const auto& rec : dlq_->list()) {
      tl_.say("operator", "replay", "replay " + rec.describe());
      if (dlq_->replay(rec.entry.id, [&](const dlq_record& r) { return replay_entry(r); })) {
        ++ok;
        ++tl_.summary.replayed_ok;
        tl_.say("operator", "replayed",
                "dead-letter #" + std::to_string(rec.entry.id) + " resolved and removed");
      } else {
        ++tl_.summary.replay_failed;
        tl_.say("operator", "replay_failed",
                "dead-letter #" + std::to_string(rec.entry.id) + " still failing: kept");
      }
    }
    return ok;
  }

  // ----- helpers ----------------------------------------------------------

  time_point faults_end() const {
    return std::max({faults_.slow_until, faults_.outage_until, faults_.revoke_broken_until});
  }
  void heal() {
    faults_.plan.scripted = false;
    faults_.slow_until = faults_.outage_until = faults_.revoke_broken_until = time_point{};
  }
  void sleep(duration d) { (void)demo_sleeper(time_).sleep_for(d, {}); }
  time_point now() const { return time_->now(); }
  timeline& tl() { return tl_; }
  sqlite::database& db() { return db_; }
  sqlite_dead_letter_queue& dlq() { return *dlq_; }
  const fault_schedule& plan() const { return faults_.plan; }
  double elapsed() const { return seconds(now().time_since_epoch()); }

  std::string user_name(std::int64_t id) {
    auto st = db_.prepare("SELECT name FROM signups WHERE user_id = ?1");
    st.bind(1, id);
    if (auto row = st.step(); row && row.value()) return st.column_text(0);
    return "user#" + std::to_string(id);
  }

 private:
  static sturdy::retry_options retry_options(sturdy::token_bucket_budget& budget) {
    return {.max_attempts = 4,
            .backoff = backoff_t::exponential(100ms, 2s, sturdy::jitter::full),
            .retry_if = retry_transient,
            .budget = budget};
  }

  sturdy::result<std::int64_t> create_user(const std::string& name, const std::string& email,
                                           const char* path) {
    auto st = db_.prepare("INSERT INTO users(name, email) VALUES (?1, ?2)");
    st.bind(1, name).bind(2, email);
    BOOST_OUTCOME_TRY(st.run());
    const std::int64_t id = db_.last_insert_rowid();
    auto su = db_.prepare("INSERT INTO signups(user_id, name, email, path) VALUES (?1, ?2, ?3, ?4)");
    su.bind(1, id).bind(2, name).bind(3, email).bind(4, path);
    BOOST_OUTCOME_TRY(su.run());
    return id;
  }
  sturdy::result<void> delete_user(std::int64_t id) {
    auto st = db_.prepare("DELETE FROM users WHERE id = ?1");
    st.bind(1, id);
    return st.run();
  }

  // Claims the next due message atomically: one UPDATE ... RETURNING (one
  // write transaction), so two workers never claim the same message. A
  // claim whose lease ran out (its worker died elsewhere) is taken over.
  std::optional<message> next_message() {
    const std::int64_t wall = wall_ns();
    auto st = db_.prepare(
        "UPDATE outbox SET claimed_by = ?2, lease_until_ns = ?3, deliveries = deliveries + 1 "
        "WHERE id = (SELECT id FROM outbox WHERE status = 'pending' AND not_before_ns <= ?1 AND "
        "(claimed_by IS NULL OR claimed_by = ?2 OR lease_until_ns < ?4) ORDER BY not_before_ns, id LIMIT 1) "
        "RETURNING id, user_id, email, status, deliveries");
    st.bind(1, static_cast<std::int64_t>(now().time_since_epoch().count()));
    st.bind(2, worker_id());
    st.bind(3, wall + std::chrono::duration_cast<std::chrono::nanoseconds>(kClaimLease).count());
    st.bind(4, wall);
    auto m = read_message(st);
    st.reset();  // completes the UPDATE's transaction
    return m;
  }
  std::optional<message> load_message(std::int64_t id) {
    auto st = db_.prepare("SELECT id, user_id, email, status, deliveries FROM outbox WHERE id = ?1");
    st.bind(1, id);
    return read_message(st);
  }
  static std::optional<message> read_message(sqlite::statement& st) {
    auto row = st.step();
    if (!row || !row.value()) return std::nullopt;
    return message{st.column_int(0), st.column_int(1), st.column_text(2), st.column_text(3),
                   static_cast<int>(st.column_int(4))};
  }
  static std::int64_t context_value(const std::string& ctx, std::string_view key) {
    const std::string needle = std::string(key) + "=";
    std::size_t p = 0;
    while ((p = ctx.find(needle, p)) != std::string::npos) {
      if (p == 0 || ctx[p - 1] == ' ') return std::strtoll(ctx.c_str() + p + needle.size(), nullptr, 10);
      p += needle.size();
    }
    return 0;
  }

  void trigger_faults(int pickup) {
    if (pickup == faults_.plan.slow_at) {
      faults_.slow_until = now() + faults_.plan.slow_for;
      tl_.say("email-api", "fault",
              "FAULT: the email API turns slow (0.3-1.8 s per call; clients time out at 1 s) for " +
                  ms(faults_.plan.slow_for));
    }
    if (pickup == faults_.plan.outage_at) {
      faults_.outage_until = now() + faults_.plan.outage_for;
      tl_.say("email-api", "fault",
              "FAULT: the email API goes down (every call 503) for " + ms(faults_.plan.outage_for));
    }
  }

  void step_boundary(const char* what) {
    ++steps_;
    if (opts_.crash_after > 0 && steps_ == opts_.crash_after) {
      tl_.say(tl_.who, "crash",
              std::string("CRASH injected after step ") + std::to_string(steps_) + " (" + what +
                  "): the worker process dies now");
      tl_.flush();
      std::fflush(nullptr);
      _exit(crash_exit_code);
    }
  }

  run_options opts_;
  std::shared_ptr<time_source> time_;
  timeline tl_;
  std::mt19937_64 jitter_;
  fault_state faults_;
  sqlite::database db_;
  sturdy::token_bucket_budget role_budget_;
  sturdy::token_bucket_budget email_budget_;
  retry_t role_retry_;
  retry_t email_retry_;
  retry_t undo_retry_;
  breaker_t breaker_;
  cache_t cache_;
#ifdef ONBOARDING_HAVE_REDIS
  std::optional<redis_cache_t> redis_cache_;  // with --redis
#endif
  std::string db_id_;
  std::optional<sqlite_dead_letter_queue> dlq_;  // once the database is open
  std::string error_;
  std::string failed_step_ = "send welcome email";
  int pickups_ = 0;
  int steps_ = 0;
};

const char* const kNames[] = {"alice", "bob",    "carol", "dave",  "erin",   "frank",  "grace", "heidi",
                              "ivan",  "judy",   "ken",   "laura", "mike",   "nina",   "oscar", "peggy",
                              "quinn", "rupert", "sybil", "trent", "ursula", "victor", "wendy", "xavier"};

std::string ordinal(int n) {
  const int m100 = n % 100, m10 = n % 10;
  const char* suffix = (m100 >= 11 && m100 <= 13) ? "th"
                       : m10 == 1                 ? "st"
                       : m10 == 2                 ? "nd"
                       : m10 == 3                 ? "rd"
                                                  : "th";
  return std::to_string(n) + suffix;
}

std::string name_of(int i) {
  constexpr int n = static_cast<int>(std::size(kNames));
  return i < n ? kNames[i] : std::string(kNames[i % n]) + std::to_string(i / n + 1);
}

void print_check(timeline& tl, const check_report& c) {
  tl.line("  user      path    outcome        user role emails  dead-letter reason");
  for (const auto& u : c.users) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "  %-9.9s %-7s %-14s %-4s %-4s %-7d %s", u.name.c_str(), u.path.c_str(),
                  u.outcome.c_str(), u.has_user ? "yes" : "-", u.has_role ? "yes" : "-", u.emails,
                  u.dlq_reason.c_str());
    tl.line(buf);
  }
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "  => %d completed, %d compensated, %d dead-lettered; %d welcome emails sent", c.completed,
                c.compensated, c.dead_lettered, c.emails_sent);
  tl.line(buf);
  for (const auto& v : c.violations) tl.line("  INVARIANT VIOLATED: " + v);
}

void write_json(std::ostream& out, const run_options& o, app& a, const run_summary& s) {
  out << "{\n  \"seed\": " << o.seed << ",\n  \"users\": " << o.users
      << ",\n  \"virtual_time\": " << (o.real_time ? "false" : "true") << ",\n  \"events\": [";
  bool first = true;
  for (const auto& e : a.tl().events()) {
    char t[32];
    std::snprintf(t, sizeof t, "%.3f", e.t);
    out << (first ? "\n" : ",\n") << "    {\"t\": " << t << ", \"who\": \"" << json_escape(e.who)
        << "\", \"kind\": \"" << json_escape(e.kind) << "\", \"text\": \"" << json_escape(e.text) << "\"}";
    first = false;
  }
  out << "\n  ],\n  \"final\": [";
  first = true;
  for (const auto& u : s.final_state.users) {
    out << (first ? "\n" : ",\n") << "    {\"id\": " << u.id << ", \"name\": \"" << json_escape(u.name)
        << "\", \"path\": \"" << u.path << "\", \"outcome\": \"" << u.outcome
        << "\", \"role\": " << (u.has_role ? "true" : "false") << ", \"emails\": " << u.emails
        << ", \"dead_letter\": \"" << json_escape(u.dlq_reason) << "\"}";
    first = false;
  }
  out << "\n  ],\n  \"summary\": {\"attempts_role\": " << s.attempts_role
      << ", \"attempts_email\": " << s.attempts_email << ", \"retries\": " << s.retries
      << ", \"budget_denials\": " << s.budget_denials << ", \"breaker_opened\": " << s.breaker_opened
      << ", \"duplicate_deliveries\": " << s.duplicate_deliveries
      << ", \"cache_replays\": " << s.cache_replays << ", \"provider_dedups\": " << s.provider_dedups
      << ", \"compensations\": " << s.compensations << ", \"undos_failed\": " << s.undos_failed
      << ", \"dead_lettered\": " << s.dead_lettered << ", \"replayed_ok\": " << s.replayed_ok
      << ", \"replay_failed\": " << s.replay_failed << ", \"completed\": " << s.final_state.completed
      << ", \"compensated\": " << s.final_state.compensated
      << ", \"still_dead_lettered\": " << s.final_state.dead_lettered
      << ", \"emails_sent\": " << s.final_state.emails_sent
      << ", \"invariant_ok\": " << (s.final_state.ok() ? "true" : "false")
      << ", \"virtual_seconds\": " << s.virtual_seconds << "}\n}\n";
}

}  // namespace

// ---------------------------------------------------------------------------
// The invariant check
// ---------------------------------------------------------------------------

check_report check_database(sqlite::database& db) {
  check_report c;
  auto st = db.prepare("SELECT user_id, name, email, path FROM signups ORDER BY user_id");
  while (true) {
    auto row = st.step();
    if (!row || !row.value()) break;
    user_state u;
    u.id = st.column_int(0);
    u.name = st.column_text(1);
    u.email = st.column_text(2);
    u.path = st.column_text(3);
    c.users.push_back(std::move(u));
  }
  auto count = [&](const char* sql, std::int64_t id) {
    auto q = db.prepare(sql);
    q.bind(1, id);
    auto r = q.step();
    return r && r.value() ? q.column_int(0) : 0;
  };
  for (auto& u : c.users) {
    u.has_user = count("SELECT COUNT(*) FROM users WHERE id = ?1", u.id) > 0;
    u.has_role = count("SELECT COUNT(*) FROM user_roles WHERE user_id = ?1", u.id) > 0;
    u.emails = static_cast<int>(count("SELECT COUNT(*) FROM email_provider WHERE user_id = ?1", u.id));
    c.emails_sent += u.emails;
    const std::int64_t outbox_total = count("SELECT COUNT(*) FROM outbox WHERE user_id = ?1", u.id);
    const std::int64_t outbox_done =
        count("SELECT COUNT(*) FROM outbox WHERE user_id = ?1 AND status = 'done'", u.id);
    auto dl = db.prepare(
        "SELECT reason, error_text, step FROM dead_letters WHERE context = ?1 OR context LIKE ?1 || ' %' "
        "ORDER BY id LIMIT 1");
    dl.bind(1, "user=" + std::to_string(u.id));
    if (auto row = dl.step(); row && row.value()) {
      u.dlq_reason = dl.column_text(0) + " (" + dl.column_text(2) + "): " + dl.column_text(1);
    }
    if (u.emails > 1)
      c.violations.push_back(u.name + " received " + std::to_string(u.emails) + " welcome emails");
    if (u.path == "outbox" && outbox_total != 1) {
      c.violations.push_back(u.name + " has " + std::to_string(outbox_total) +
                             " outbox messages (lost or doubled)");
    }
    const bool done = u.has_user && u.has_role && u.emails == 1 && (u.path != "outbox" || outbox_done == 1);
    if (done && u.dlq_reason.empty()) {
      u.outcome = "completed";
      ++c.completed;
    } else if (!u.has_user && !u.has_role && u.emails == 0 && u.dlq_reason.empty()) {
      u.outcome = "compensated";
      ++c.compensated;
      if (u.path != "sync") c.violations.push_back(u.name + " vanished from the outbox path");
    } else if (!u.dlq_reason.empty()) {
      u.outcome = "dead-lettered";
      ++c.dead_lettered;
    } else {
      u.outcome = "INCONSISTENT";
      c.violations.push_back(u.name + " is half done (user " + (u.has_user ? "yes" : "no") + ", role " +
                             (u.has_role ? "yes" : "no") + ", emails " + std::to_string(u.emails) +
                             ") and not in the dead-letter queue");
    }
  }
  return c;
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

// Opens a new, empty database for a run and records its seed.
static sturdy::result<void> start_new_run(app& a, const run_options& o, std::ostream& out) {
  if (auto r = a.open(/*must_be_empty=*/true); !r) {
    out << "error: " << a.error() << '\n';
    return r.error();
  }
  auto st = a.db().prepare("INSERT OR REPLACE INTO meta(key, value) VALUES ('seed', ?1)");
  st.bind(1, std::to_string(o.seed));
  (void)st.run();
  return sturdy::success();
}

sturdy::result<run_summary> run_demo(const run_options& o, std::ostream& out) {
  if (o.users < 1 || o.users > 1000) return sturdy::errc::invalid_options;
  app a(o, out, /*scripted=*/true);
  BOOST_OUTCOME_TRY(start_new_run(a, o, out));
  timeline& tl = a.tl();
  const fault_schedule& plan = a.plan();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "sturdy onboarding demo: seed %" PRIu64 ", %d outbox signups + 3 synchronous, %s, db %s",
                o.seed, o.users, o.real_time ? "real time" : "virtual time", o.db_path.c_str());
  tl.line(buf);
  tl.line("Flow: create user (SQLite) -> assign role (role service) -> send welcome email (email API)");
  tl.line("Fault schedule drawn from the seed:");
  std::snprintf(buf, sizeof buf, "  - every role/email call fails transiently with probability %.0f%%",
                plan.transient_rate * 100);
  tl.line(buf);
  if (plan.slow_at >= 0) {
    tl.line("  - the email API turns slow for " + ms(plan.slow_for) + " from the worker's " +
            ordinal(plan.slow_at + 1) + " message on");
  }
  tl.line("  - the email API goes down for " + ms(plan.outage_for) + " from the worker's " +
          ordinal(plan.outage_at + 1) + " message on");
  if (plan.duplicate_at >= 0) {
    tl.line("  - the worker's " + ordinal(plan.duplicate_at + 1) + " message is delivered twice");
  }
  tl.line("  - two synchronous signups have a bad address; during the second the role service cannot revoke");

  std::mt19937_64 g(o.seed);
  std::vector<std::string> names;
  for (int i = 0; i < o.users + 3; ++i) names.push_back(name_of(i));
  std::shuffle(names.begin(), names.end(), g);

  tl.heading("Act 1: synchronous signups, each inside a compensation scope");
  struct sync_user {
    std::string email;
    bool break_revokes;
  };
  const sync_user sync_users[] = {{names[0] + "@example.com", false},
                                  {names[1] + "@example.invalid", false},
                                  {names[2] + "@example.invalid", true}};
  for (int i = 0; i < 3; ++i) {
    (void)a.onboard_sync(names[static_cast<std::size_t>(i)], sync_users[i].email,
                         sync_users[i].break_revokes);
    a.sleep(1s);
  }

  tl.heading("Act 2: signups through the transactional outbox; a worker drains it");
  tl.who = "-";
  for (int i = 0; i < o.users; ++i) {
    const std::string& n = names[static_cast<std::size_t>(i + 3)];
    (void)a.signup_outbox(n, n + "@example.com");
    a.sleep(100ms);
  }
  a.run_worker();

  run_summary s;
  s.before_replay = check_database(a.db());
  tl.heading("After acts 1-2 (every user: completed, compensated, or dead-lettered with a reason):");
  print_check(tl, s.before_replay);

  if (o.replay) {
    // The operator comes back once every fault window has closed.
    const duration wait = std::max(a.faults_end() - a.now(), duration::zero()) + 5s;
    a.sleep(wait);
    a.heal();
    tl.heading("Act 3: " + ms(wait) +
               " later the faults are gone; the operator replays the dead-letter queue");
    tl.who = "operator";
    for (const auto& r : a.dlq().list()) tl.say("operator", "dlq_list", "dlq list: " + r.describe());
    for (int round = 0; round < 3 && !a.dlq().empty(); ++round) (void)a.replay_all();
  }
  s.final_state = o.replay ? check_database(a.db()) : s.before_replay;
  const run_summary& c = a.tl().summary;
  s.attempts_role = c.attempts_role;
  s.attempts_email = c.attempts_email;
  s.retries = c.retries;
  s.budget_denials = c.budget_denials;
  s.breaker_opened = c.breaker_opened;
  s.breaker_rejections = c.breaker_rejections;
  s.duplicate_deliveries = c.duplicate_deliveries;
  s.cache_replays = c.cache_replays;
  s.provider_dedups = c.provider_dedups;
  s.compensations = c.compensations;
  s.undos_failed = c.undos_failed;
  s.dead_lettered = c.dead_lettered;
  s.replayed_ok = c.replayed_ok;
  s.replay_failed = c.replay_failed;
  s.virtual_seconds = a.elapsed();

  if (o.replay) {
    tl.heading("Final state:");
    print_check(tl, s.final_state);
  }
  tl.heading("Summary");
  std::snprintf(
      buf, sizeof buf,
      "  calls: %d role, %d email | retries %d | budget denials %d | breaker opened %d times\n"
      "  duplicate deliveries %d -> cache replays %d, email API dedups %d | rollbacks %d, failed undos %d\n"
      "  dead-lettered %d, replayed ok %d | %.1f s of %s time",
      s.attempts_role, s.attempts_email, s.retries, s.budget_denials, s.breaker_opened,
      s.duplicate_deliveries, s.cache_replays, s.provider_dedups, s.compensations, s.undos_failed,
      s.dead_lettered, s.replayed_ok, s.virtual_seconds, o.real_time ? "real" : "virtual");
  tl.line(buf);
  if (!o.replay && o.db_path != ":memory:") {
    tl.line(
        "\nYou are the operator now (the simulated faults are over in the next process):\n"
        "  example_onboarding dlq list --db " +
        o.db_path +
        "\n"
        "  example_onboarding dlq inspect ID --db " +
        o.db_path +
        "\n"
        "  example_onboarding dlq replay ID --db " +
        o.db_path +
        "   (or replay-all, discard ID)\n"
        "  example_onboarding check --db " +
        o.db_path);
  } else if (o.db_path == ":memory:") {
    tl.line(
        "\nKeep the database to play operator: --db onboarding.db --no-replay, then\n"
        "  example_onboarding dlq list --db onboarding.db; ... dlq replay ID --db onboarding.db");
  }
  if (o.json) write_json(out, o, a, s);
  return s;
}

sturdy::result<void> signup_only(const run_options& o, std::ostream& out) {
  if (o.users < 1 || o.users > 1000) return sturdy::errc::invalid_options;
  app a(o, out, /*scripted=*/false);
  BOOST_OUTCOME_TRY(start_new_run(a, o, out));
  std::mt19937_64 g(o.seed);
  std::vector<std::string> names;
  for (int i = 0; i < o.users; ++i) names.push_back(name_of(i));
  std::shuffle(names.begin(), names.end(), g);
  for (const auto& n : names) {
    BOOST_OUTCOME_TRY(a.signup_outbox(n, n + "@example.com"));
  }
  a.tl().line(std::to_string(o.users) + " signups wait in the outbox of " + o.db_path +
              ": start workers with `example_onboarding worker --db " + o.db_path + "`");
  return sturdy::success();
}

sturdy::result<worker_report> resume_worker(const run_options& o, std::ostream& out) {
  run_options ro = o;
  {
    sqlite::database probe;
    if (probe.open(o.db_path)) {
      auto st = probe.prepare("SELECT value FROM meta WHERE key = 'seed'");
      if (auto row = st.step(); row && row.value()) ro.seed = std::stoull(st.column_text(0));
    }
  }
  app a(ro, out, /*scripted=*/false);
  if (auto r = a.open(false); !r) {
    out << "error: " << a.error() << '\n';
    return r.error();
  }
  a.tl().line("worker " + std::to_string(worker_id()) + " started on " + o.db_path +
              ": draining what is pending in the outbox; idempotency cache: " +
              (a.uses_redis() ? "Redis at " + o.redis + " (shared by every worker on this database)"
                              : std::string("in this process")));
  a.run_worker();
  worker_report w;
  w.summary = a.tl().summary;
  w.held_elsewhere = a.held_elsewhere();
  w.state = check_database(a.db());
  const run_summary& s = w.summary;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "worker summary: pid %lld, %d deliveries, %d duplicate deliveries -> %d cache replays, "
                "%d in progress elsewhere; %d emails sent, %d email API dedups",
                static_cast<long long>(worker_id()), s.deliveries, s.duplicate_deliveries, s.cache_replays,
                s.cache_in_progress, s.emails_sent, s.provider_dedups);
  out << buf << std::endl;
  return w;
}

int dlq_command(const run_options& o, const std::string& verb, std::uint64_t id, std::ostream& out) {
  app a(o, out, /*scripted=*/false);
  if (auto r = a.open(false); !r) {
    out << "error: " << a.error() << '\n';
    return 1;
  }
  auto& dlq = a.dlq();
  if (verb == "list") {
    const auto rows = dlq.list();
    if (rows.empty()) out << "the dead-letter queue is empty\n";
    for (const auto& r : rows) out << r.describe() << '\n';
    return 0;
  }
  if (verb == "inspect") {
    auto r = dlq.inspect(id);
    if (!r) {
      out << "no dead-letter entry #" << id << '\n';
      return 1;
    }
    const auto& e = r.value();
    out << "id:              " << e.entry.id << "\nsaga:            " << e.entry.saga
        << "\nstep:            " << e.entry.step << "\ncontext:         " << e.entry.context
        << "\nreason:          " << e.reason << "\nerror:           " << e.error_text << " ["
        << e.error_category << ":" << e.error_value
        << "]\nat:              t=" << seconds(e.entry.at.time_since_epoch())
        << " s\nreplay attempts: " << e.entry.replay_attempts << '\n';
    if (!e.last_replay_error.empty()) out << "last replay:     " << e.last_replay_error << '\n';
    return 0;
  }
  if (verb == "discard") {
    if (!dlq.discard(id)) {
      out << "no dead-letter entry #" << id << '\n';
      return 1;
    }
    out << "discarded #" << id << '\n';
    return 0;
  }
  if (verb == "replay" || verb == "replay-all") {
    a.tl().line("(the simulated services are healthy now: only transient errors remain)");
    if (verb == "replay-all") {
      const std::size_t before = dlq.size();
      const std::size_t ok = a.replay_all();
      out << ok << " of " << before << " entries replayed\n";
      return ok == before ? 0 : 1;
    }
    auto rec = dlq.inspect(id);
    if (!rec) {
      out << "no dead-letter entry #" << id << '\n';
      return 1;
    }
    a.tl().say("operator", "replay", "replay " + rec.value().describe());
    auto r = dlq.replay(id, [&](const dlq_record& e) { return a.replay_entry(e); });
    if (!r) {
      out << "replay of #" << id << " failed; the entry stays (see `dlq inspect " << id << "`)\n";
      return 1;
    }
    out << "replayed #" << id << ": resolved and removed\n";
    return 0;
  }
  out << "unknown dlq command '" << verb << "' (list | inspect ID | replay ID | replay-all | discard ID)\n";
  return 2;
}

int check_command(const run_options& o, std::ostream& out) {
  app a(o, out, false);
  if (auto r = a.open(false); !r) {
    out << "error: " << a.error() << '\n';
    return 1;
  }
  const check_report c = check_database(a.db());
  print_check(a.tl(), c);
  return c.ok() ? 0 : 1;
}

}  // namespace onboarding
