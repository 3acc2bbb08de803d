// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// The onboarding example: see onboarding.hpp and docs/onboarding.md.

#include "onboarding.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sqlite_dead_letter_queue.hpp"
#include "sturdy/backoff.hpp"
#include "sturdy/chaos.hpp"
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
#ifdef ONBOARDING_HAVE_PROMETHEUS
#include "sturdy/prometheus/exporter.hpp"
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

bool metrics_supported() noexcept {
#ifdef ONBOARDING_HAVE_PROMETHEUS
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

// With --metrics-port, each retry policy's events are also counted for the
// exporter (a retry policy is a value: its counts come through a listener).
#ifdef ONBOARDING_HAVE_PROMETHEUS
using event_counter_t = sturdy::prometheus::event_counter;
#else
using event_counter_t = sturdy::null_listener;
#endif

// Listeners: each primitive reports to the timeline with its dependency's name.
struct retry_listener {
  timeline* tl;
  const char* dep;
  event_counter_t counter{};
  void operator()(const sturdy::retry_scheduled& e) const {
    counter(e);
    tl->last_failure = e.failure.code;
    ++tl->summary.retries;
    tl->say(tl->who, "retry",
            std::string(dep) + ": attempt " + std::to_string(e.attempt) + " failed (" + describe(e.failure) +
                "); retry in " + ms(e.delay) + " (jittered backoff)");
  }
  void operator()(const sturdy::retries_exhausted& e) const {
    counter(e);
    tl->last_failure = e.failure.code;
    tl->say(tl->who, "retries_exhausted",
            std::string(dep) + ": gave up after " + std::to_string(e.attempts) + " attempts (" +
                describe(e.failure) + ")");
  }
  void operator()(const sturdy::retry_budget_denied& e) const {
    counter(e);
    tl->last_failure = e.failure.code;
    ++tl->summary.budget_denials;
    tl->say(tl->who, "budget_denied",
            std::string(dep) + ": attempt " + std::to_string(e.attempt) + " failed (" + describe(e.failure) +
                "); the retry budget denies a retry: too many failures lately");
  }
  void operator()(const auto& e) const { counter(e); }
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
// Faults: sturdy's chaos layers (sturdy/chaos.hpp) around every simulated call
// ---------------------------------------------------------------------------
//
// The demo writes no fault code of its own: every call to the role service
// and the email API goes through chaos layers, and the worker's step
// boundaries through one that can crash the process. What stays here is the
// drill script: which drill starts at which of the worker's messages.

// drill: a scripted fault that the scenario starts at a moment of its
// choosing ("the email API goes down now, for 25 s"). Its chaos layers are
// off until then (one relaxed load per call) and read time on a
// `drill::clock`, which starts at 0 when the drill starts, so their time
// windows are measured from that moment.
class drill {
 public:
  drill(std::shared_ptr<time_source> t, duration length)
      : t_(std::move(t)), t0_(std::make_shared<std::atomic<std::int64_t>>(0)), length_(length) {}

  void start() {
    t0_->store(t_->now().time_since_epoch().count(), std::memory_order_relaxed);
    on_.enable();
    started_ = true;
  }
  void stop() const { on_.disable(); }
  // When its windows close (the epoch when it never started).
  [[nodiscard]] time_point ends_at() const {
    return started_ ? time_point(duration(t0_->load(std::memory_order_relaxed))) + length_ : time_point{};
  }
  [[nodiscard]] duration length() const { return length_; }
  [[nodiscard]] const sturdy::chaos_switch& on() const { return on_; }

  // Time since the drill started (a chaos layer's schedule clock).
  struct clock {
    std::shared_ptr<time_source> t;
    std::shared_ptr<std::atomic<std::int64_t>> t0;
    [[nodiscard]] time_point now() const noexcept {
      const duration since = t->now().time_since_epoch() - duration(t0->load(std::memory_order_relaxed));
      return time_point(std::max(since, duration::zero()));
    }
  };
  [[nodiscard]] clock time() const { return {t_, t0_}; }

 private:
  std::shared_ptr<time_source> t_;
  std::shared_ptr<std::atomic<std::int64_t>> t0_;
  sturdy::chaos_switch on_;
  duration length_;
  bool started_ = false;
};

// The email client gives up after 1 s: a chaos latency sleeps on the demo's
// time, but never past the deadline of the call in progress (the request
// still reaches the provider, which processes it; the client just stopped
// waiting).
class client_sleeper {
 public:
  client_sleeper(std::shared_ptr<time_source> t, const time_point* deadline)
      : t_(std::move(t)), deadline_(deadline) {}
  bool sleep_for(duration d, std::stop_token stop) const {
    const duration left = std::max(*deadline_ - t_->now(), duration::zero());
    return demo_sleeper(t_).sleep_for(std::min(d, left), stop);
  }

 private:
  std::shared_ptr<time_source> t_;
  const time_point* deadline_;
};

template <class Fault>
using chaos_t = sturdy::chaos_policy<Fault, drill::clock, client_sleeper>;
// The crash: replaces the step boundary's outcome with the process's death.
using crash_t = chaos_t<sturdy::chaos_outcome<sturdy::callback<sturdy::result<void>()>>>;

// The drill script, drawn from the seed: at which of the worker's messages
// (0-based pickups) the email API turns slow and goes down, how long the
// outage lasts, and which message the relay delivers twice.
struct drill_script {
  bool scripted = true;          // false: only the transient errors (restart, operator)
  double transient_rate = 0.12;  // per role/email call
  int slow_at = -1;
  duration slow_for = 4s;
  int outage_at = -1;
  duration outage_for = 25s;
  int duplicate_at = -1;  // not a fault of a dependency: the relay's at-least-once delivery
  duration revoke_broken_for = 30s;

  static drill_script from_seed(std::uint64_t seed, int users) {
    drill_script f;
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

#ifdef ONBOARDING_HAVE_PROMETHEUS
}  // namespace

// The exporter finds this by argument-dependent lookup: the durable queue's
// depth under the same name as sturdy's own queue, so the shipped alerts
// (docs/operations/sturdy-alerts.rules.yml) apply to it unchanged.
void collect(sturdy::prometheus::sample_sink& out, const sturdy::prometheus::label_set& labels,
             const sqlite_dead_letter_queue& q) {
  out.gauge("sturdy_dead_letter_queue_depth", "Dead letters waiting for an operator", labels,
            static_cast<double>(q.depth()));
}

namespace {
#endif

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
        script_(scripted ? drill_script::from_seed(o.seed, o.users) : drill_script{.scripted = false}),
        slow_(time_, script_.slow_for),
        outage_(time_, script_.outage_for),
        revoke_broken_(time_, script_.revoke_broken_for),
        role_transient_(always(script_.transient_rate, o.seed),
                        sturdy::chaos_error{make_error_code(service_errc::unavailable)}, demo_time(),
                        client_sleeper(time_, &call_deadline_)),
        revoke_fault_(during(revoke_broken_, 1.0, 0), sturdy::chaos_error{make_error_code(service_errc::internal)},
                      revoke_broken_.time(), client_sleeper(time_, &call_deadline_)),
        email_slow_(during(slow_, 1.0, 0), sturdy::chaos_latency{250ms}, slow_.time(),
                    client_sleeper(time_, &call_deadline_)),
        email_very_slow_(during(slow_, 0.5, o.seed ^ 0x510ULL), sturdy::chaos_latency{1500ms}, slow_.time(),
                         client_sleeper(time_, &call_deadline_)),
        email_outage_(during(outage_, 1.0, 0), sturdy::chaos_error{make_error_code(service_errc::unavailable)},
                      outage_.time(), client_sleeper(time_, &call_deadline_)),
        email_transient_(always(script_.transient_rate, o.seed ^ 0xe3a1ULL),
                         sturdy::chaos_error{make_error_code(service_errc::unavailable)}, demo_time(),
                         client_sleeper(time_, &call_deadline_)),
        crash_(
            {.enabled = sturdy::chaos_switch(o.crash_after > 0),
             .schedule = {sturdy::chaos_window::calls(static_cast<std::uint64_t>(std::max(o.crash_after, 1)),
                                                      static_cast<std::uint64_t>(std::max(o.crash_after, 1)))},
             .start = time_point{}},
            {sturdy::callback<sturdy::result<void>()>([this]() -> sturdy::result<void> { crash_now(); })},
            demo_time(), client_sleeper(time_, &call_deadline_)),
        role_budget_({.max_tokens = 10, .token_ratio = 0.5}),
        email_budget_({.max_tokens = 10, .token_ratio = 0.5}),
        role_retry_(retry_options(role_budget_), demo_clock(time_), demo_sleeper(time_),
                    retry_listener{&tl_, "role service", role_events_}, shared_random{&jitter_}),
        email_retry_(retry_options(email_budget_), demo_clock(time_), demo_sleeper(time_),
                     retry_listener{&tl_, "email API", email_events_}, shared_random{&jitter_}),
        undo_retry_(
            sturdy::retry_options{
                .max_attempts = 3, .backoff = backoff_t::exponential(200ms, 2s), .retry_if = retry_transient},
            demo_clock(time_), demo_sleeper(time_), retry_listener{&tl_, "undo", undo_events_},
            shared_random{&jitter_}),
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

  // The role service: 30 ms per call, then its chaos layers: transient 503s
  // (assign and revoke), and 500s on revoke while the bad deploy's drill
  // runs. Idempotent: assigning twice is fine.
  sturdy::result<void> assign_role(std::int64_t user) {
    ++tl_.summary.attempts_role;
    sleep(30ms);
    return role_transient_.execute([&] {
      auto st = db_.prepare("INSERT OR IGNORE INTO user_roles(user_id, role) VALUES (?1, ?2)");
      st.bind(1, user).bind(2, kRole);
      return st.run();
    });
  }
  sturdy::result<void> revoke_role(std::int64_t user) {
    ++tl_.summary.attempts_role;
    sleep(30ms);
    return sturdy::compose(revoke_fault_, role_transient_).execute([&] {
      auto st = db_.prepare("DELETE FROM user_roles WHERE user_id = ?1 AND role = ?2");
      st.bind(1, user).bind(2, kRole);
      return st.run();
    });
  }

  // The email API: 50 ms per call, then its chaos layers (the slow drill's
  // latencies, the outage drill's 503s, transient 503s). The client gives
  // up after 1 s: a call that took that long is a timeout, although the
  // provider may have sent the email (ambiguous).
  sturdy::result<std::string> send_email(const std::string& key, std::int64_t user, const std::string& to) {
    ++tl_.summary.attempts_email;
    call_deadline_ = now() + 1s;
    sleep(50ms);
    auto r = sturdy::compose(email_slow_, email_very_slow_, email_outage_, email_transient_).execute([&] {
      return provider_send(key, user, to);
    });
    if (now() >= call_deadline_) return service_errc::timeout;
    return r;
  }

  // What the provider does with a request that reached it. It honours an
  // Idempotency-Key (a key it has seen returns the first receipt and sends
  // nothing), and processes the request whether or not the client still
  // waits. Its check-and-send is atomic (several workers may call it at once).
  sturdy::result<std::string> provider_send(const std::string& key, std::int64_t user, const std::string& to) {
    if (to.ends_with(".invalid")) return service_errc::invalid_address;
    const bool client_gone = now() >= call_deadline_;
    sqlite::transaction tx(db_);
    if (!tx.began()) return std::make_error_code(std::errc::io_error);
    auto find = db_.prepare("SELECT receipt FROM email_provider WHERE idempotency_key = ?1");
    find.bind(1, key);
    std::string receipt;
    auto found = find.step();
    if (found && found.value()) receipt = find.column_text(0);
    find.reset();
    if (!receipt.empty()) {
      if (!client_gone) {
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
      revoke_broken_.start();
      tl_.say("role-svc", "fault",
              "FAULT: a bad deploy breaks the role service's revoke endpoint for " +
                  ms(revoke_broken_.length()) + " (chaos drill: every revoke 500)");
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
    if (script_.scripted) trigger_drills(pickup);
    ++tl_.summary.deliveries;  // the claim counted it in the outbox
    tl_.say(
        who, "deliver",
        "worker takes message #" + std::to_string(m.id) + " (delivery " + std::to_string(m.deliveries) + ")");
    tl_.last_failure.clear();
    auto r = process(m);
    if (script_.scripted && pickup == script_.duplicate_at) {
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

  // ----- metrics ------------------------------------------------------------

#ifdef ONBOARDING_HAVE_PROMETHEUS
  // Registers every primitive with shared state, the retry policies' event
  // counters and the chaos layers; call after open().
  std::vector<sturdy::prometheus::registration> register_metrics(sturdy::prometheus::exporter& m) {
    std::vector<sturdy::prometheus::registration> r;
    r.push_back(m.add(breaker_, {.name = "email-api"}));
    r.push_back(m.add(role_budget_, {.name = "role-service"}));
    r.push_back(m.add(email_budget_, {.name = "email-api"}));
    r.push_back(m.add(role_events_, {.name = "role-service"}));
    r.push_back(m.add(email_events_, {.name = "email-api"}));
    r.push_back(m.add(undo_events_, {.name = "undo"}));
    r.push_back(m.add(cache_, {.name = "messages"}));
#ifdef ONBOARDING_HAVE_REDIS
    if (redis_cache_) r.push_back(m.add(*redis_cache_, {.name = "messages", .labels = {{"store", "redis"}}}));
#endif
    if (dlq_) r.push_back(m.add(*dlq_, {.name = "onboarding"}));
    auto fault = [&](const auto& layer, const char* dependency, const char* kind) {
      r.push_back(m.add(layer, {.name = dependency, .labels = {{"fault", kind}}}));
    };
    fault(role_transient_, "role-service", "transient");
    fault(revoke_fault_, "role-service", "revoke_broken");
    fault(email_slow_, "email-api", "slow");
    fault(email_very_slow_, "email-api", "very_slow");
    fault(email_outage_, "email-api", "outage");
    fault(email_transient_, "email-api", "transient");
    fault(crash_, "worker", "crash");
    return r;
  }
#endif

  // ----- helpers ----------------------------------------------------------

  time_point faults_end() const { return std::max({slow_.ends_at(), outage_.ends_at(), revoke_broken_.ends_at()}); }
  // The drills are over: their layers are switched off (only the transient
  // errors remain).
  void heal() {
    script_.scripted = false;
    for (const drill* d : {&slow_, &outage_, &revoke_broken_}) d->stop();
  }
  void sleep(duration d) { (void)demo_sleeper(time_).sleep_for(d, {}); }
  time_point now() const { return time_->now(); }
  timeline& tl() { return tl_; }
  sqlite::database& db() { return db_; }
  sqlite_dead_letter_queue& dlq() { return *dlq_; }
  const drill_script& script() const { return script_; }
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

  // The drill script: the drills that start at this pickup.
  void trigger_drills(int pickup) {
    if (pickup == script_.slow_at) {
      slow_.start();
      tl_.say("email-api", "fault",
              "FAULT: the email API turns slow for " + ms(slow_.length()) +
                  " (chaos drill: +250 ms on every call, +1.5 s more on half of them; clients time out at 1 s)");
    }
    if (pickup == script_.outage_at) {
      outage_.start();
      tl_.say("email-api", "fault",
              "FAULT: the email API goes down for " + ms(outage_.length()) + " (chaos drill: every call 503)");
    }
  }

  // A step boundary of the worker goes through the crash layer: with
  // --crash-after N, its N-th call is replaced by the process's death.
  void step_boundary(const char* what) {
    crash_step_ = what;
    (void)crash_.execute([] { return sturdy::result<void>(sturdy::success()); });
  }
  [[noreturn]] void crash_now() {
    tl_.say(tl_.who, "crash",
            "CRASH injected after step " + std::to_string(crash_.calls()) + " (" + crash_step_ +
                "): the worker process dies now");
    tl_.flush();
    std::fflush(nullptr);
    _exit(crash_exit_code);
  }

  // The demo's own time, as a chaos layer's clock (for the layers of no drill).
  drill::clock demo_time() const { return {time_, std::make_shared<std::atomic<std::int64_t>>(0)}; }
  // Chaos options: a layer that is always on, at `rate`; a layer of a drill,
  // inside the drill's window.
  static sturdy::chaos_options always(double rate, std::uint64_t seed) {
    return {.enabled = sturdy::chaos_switch(true), .injection_rate = rate, .seed = seed, .start = time_point{}};
  }
  static sturdy::chaos_options during(const drill& d, double rate, std::uint64_t seed) {
    return {.enabled = d.on(),
            .schedule = {sturdy::chaos_window::between(duration::zero(), d.length(), rate)},
            .seed = seed,
            .start = time_point{}};
  }

  run_options opts_;
  std::shared_ptr<time_source> time_;
  timeline tl_;
  std::mt19937_64 jitter_;
  drill_script script_;
  time_point call_deadline_{};  // the email client's deadline for the call in progress
  drill slow_;
  drill outage_;
  drill revoke_broken_;
  chaos_t<sturdy::chaos_error> role_transient_;
  chaos_t<sturdy::chaos_error> revoke_fault_;
  chaos_t<sturdy::chaos_latency> email_slow_;       // +250 ms on every call
  chaos_t<sturdy::chaos_latency> email_very_slow_;  // +1.5 s on half of the calls
  chaos_t<sturdy::chaos_error> email_outage_;
  chaos_t<sturdy::chaos_error> email_transient_;
  crash_t crash_;
  std::string crash_step_;
  event_counter_t role_events_;
  event_counter_t email_events_;
  event_counter_t undo_events_;
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
};

// metrics_session: with --metrics-port, serves the app's metrics on
// 127.0.0.1 while the command runs, and for --linger-seconds after it.
class metrics_session {
 public:
  // Starts serving (no-op without --metrics-port) and prints the URL: on
  // `out`, or on stderr when `out` carries JSON or nothing.
  sturdy::result<void> start([[maybe_unused]] app& a, const run_options& o, std::ostream& out) {
    if (o.metrics_port < 0) return sturdy::success();
#ifdef ONBOARDING_HAVE_PROMETHEUS
    std::ostream& say = o.json || o.quiet ? std::cerr : out;
    const std::string address = "127.0.0.1:" + std::to_string(o.metrics_port);
    registrations_ = a.register_metrics(exporter_);
    try {
      server_ = sturdy::prometheus::serve(exporter_, address);
    } catch (const std::exception& e) {
      say << "error: cannot serve metrics on " << address << ": " << e.what() << '\n';
      return std::make_error_code(std::errc::address_in_use);
    }
    const std::vector<int> ports = server_->GetListeningPorts();
    url_ = "http://127.0.0.1:" + std::to_string(ports.empty() ? o.metrics_port : ports.front()) + "/metrics";
    say << "metrics: " << url_ << " (Prometheus text format; try: curl -s " << url_ << ")" << std::endl;
    return sturdy::success();
#else
    (void)out;
    return sturdy::errc::invalid_options;  // main() refuses the flag first
#endif
  }

  // After the run: keeps serving for --linger-seconds (real time).
  void linger(const run_options& o, std::ostream& out) const {
#ifdef ONBOARDING_HAVE_PROMETHEUS
    if (!server_ || o.linger_seconds <= 0) return;
    std::ostream& say = o.json || o.quiet ? std::cerr : out;
    say << "\nserving metrics at " << url_ << " for " << o.linger_seconds << " s more (Ctrl-C to stop)"
        << std::endl;
    std::this_thread::sleep_for(std::chrono::seconds(o.linger_seconds));
#else
    (void)o;
    (void)out;
#endif
  }

 private:
#ifdef ONBOARDING_HAVE_PROMETHEUS
  sturdy::prometheus::exporter exporter_;
  std::vector<sturdy::prometheus::registration> registrations_;  // before the server: removed after it stops
  std::unique_ptr<prometheus::Exposer> server_;
  std::string url_;
#endif
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
  metrics_session metrics;
  BOOST_OUTCOME_TRY(metrics.start(a, o, out));
  timeline& tl = a.tl();
  const drill_script& plan = a.script();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "sturdy onboarding demo: seed %" PRIu64 ", %d outbox signups + 3 synchronous, %s, db %s",
                o.seed, o.users, o.real_time ? "real time" : "virtual time", o.db_path.c_str());
  tl.line(buf);
  tl.line("Flow: create user (SQLite) -> assign role (role service) -> send welcome email (email API)");
  tl.line("Fault schedule drawn from the seed (sturdy chaos layers on every role/email call):");
  std::snprintf(buf, sizeof buf, "  - every role/email call fails transiently with probability %.0f%%",
                plan.transient_rate * 100);
  tl.line(buf);
  if (plan.slow_at >= 0) {
    tl.line("  - the email API turns slow for " + ms(plan.slow_for) + " from the worker's " +
            ordinal(plan.slow_at + 1) + " message on (+250 ms per call, +1.5 s more on half of them)");
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
  metrics.linger(o, out);
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
  metrics_session metrics;
  BOOST_OUTCOME_TRY(metrics.start(a, ro, out));
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
  metrics.linger(ro, out);
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
