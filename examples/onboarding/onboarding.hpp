// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: examples/onboarding/onboarding.hpp
// -----------------------------------------------------------------------------
//
// The onboarding example as a library (`onboarding_lib`), so that the program
// (`main.cpp`) and the end-to-end tests share it. The flow:
//
//   create user (SQLite) -> assign default role (role service) -> send welcome email (email API)
//
// twice over: synchronously inside a `sturdy::compensation_scope` (a
// permanent failure of the last step undoes the role and deletes the user),
// and asynchronously through a transactional outbox drained by a worker
// (retry with jittered backoff and a per-dependency retry budget, the email
// API behind a circuit breaker, every message through an idempotency cache
// keyed by the message id). Whatever cannot be completed or undone goes to a
// durable dead-letter queue (`sqlite_dead_letter_queue.hpp`). The role and
// email services are simulated in process and fail on a deterministic
// schedule drawn from a seed; time is virtual unless `real_time` is set.
// docs/onboarding.md walks through a run.

#ifndef STURDY_EXAMPLES_ONBOARDING_ONBOARDING_HPP_
#define STURDY_EXAMPLES_ONBOARDING_ONBOARDING_HPP_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <system_error>
#include <vector>

#include "sqlite.hpp"
#include "sturdy/error.hpp"

namespace onboarding {

// Errors of the simulated services (category "onboarding.service").
enum class service_errc : int {
  unavailable = 1,  // HTTP 503: transient
  timeout,          // the client's 1 s timeout expired: transient, ambiguous
  internal,         // HTTP 500: transient
  invalid_address,  // HTTP 422: the address will never work: permanent
};
[[nodiscard]] const std::error_category& service_category() noexcept;
[[nodiscard]] std::error_code make_error_code(service_errc e) noexcept;

// The exit status of a process that `crash_after` killed.
inline constexpr int crash_exit_code = 86;

// What the program does; see `example_onboarding --help`.
struct run_options {
  // Seeds the fault schedule, the transient errors and the backoff jitter.
  // Default 42.
  std::uint64_t seed = 42;
  // Signups through the outbox (the synchronous act always has three).
  // Default 8; must be in [1, 1000].
  int users = 8;
  // The SQLite database; ":memory:" (default) keeps nothing.
  std::string db_path = ":memory:";
  // Real sleeping instead of the virtual clock. Default false.
  bool real_time = false;
  // Machine-readable output (one JSON document) instead of the timeline.
  bool json = false;
  // Print nothing (tests). Default false.
  bool quiet = false;
  // Act 3: after the faults are gone, replay the dead-letter queue.
  // Default true.
  bool replay = true;
  // 0: never. N > 0: the worker process dies (`_exit(crash_exit_code)`) at
  // its N-th step boundary (role assigned | email sent | message done).
  int crash_after = 0;
  // "HOST:PORT": the worker's idempotency cache for messages lives in that
  // Redis (keys under "onboarding:<database id>:"), shared by every worker
  // process on the same database. Empty (default): an in-process cache.
  // Needs a build with hiredis (`redis_supported()`).
  std::string redis = {};
  // Worker only: after every N-th message this worker claims, the relay also
  // delivers to it the message another worker claimed last (a duplicate
  // delivery across processes). 0 (default): never.
  int duplicate_every = 0;
  // Serve this process's metrics (Prometheus text format: its breaker,
  // retry budgets and retry events, idempotency cache, dead-letter queue and
  // chaos layers) at http://127.0.0.1:PORT/metrics while it runs; 0 picks a
  // free port (the URL is printed). -1 (default): off. Needs a build with
  // prometheus-cpp (`metrics_supported()`).
  int metrics_port = -1;
  // With metrics: keep serving this many seconds after the run, so a reader
  // (or a Prometheus server) can scrape the final state. Default 0.
  int linger_seconds = 0;
};

// True when this build has the Redis-backed cache (hiredis was found).
[[nodiscard]] bool redis_supported() noexcept;
// True when this build can serve metrics (prometheus-cpp was found).
[[nodiscard]] bool metrics_supported() noexcept;

// How one signed-up user ended.
struct user_state {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  std::string path;     // "sync" or "outbox"
  std::string outcome;  // "completed", "compensated", "dead-lettered", "INCONSISTENT"
  bool has_user = false;
  bool has_role = false;
  int emails = 0;          // welcome emails the email API actually sent
  std::string dlq_reason;  // when dead-lettered: the entry's reason and error
};

// The invariant check over a database: every user is completed (user, role,
// exactly one email, outbox message done), compensated (no user, no role, no
// email), or dead-lettered with a reason; nobody got two emails.
struct check_report {
  std::vector<user_state> users;
  std::vector<std::string> violations;  // empty when the invariant holds
  int completed = 0;
  int compensated = 0;
  int dead_lettered = 0;
  int emails_sent = 0;
  [[nodiscard]] bool ok() const noexcept { return violations.empty(); }
};
[[nodiscard]] check_report check_database(sqlite::database& db);

// Counters of one run (also in the JSON output).
struct run_summary {
  int attempts_role = 0;
  int attempts_email = 0;
  int retries = 0;
  int budget_denials = 0;
  int breaker_opened = 0;
  int breaker_rejections = 0;
  int duplicate_deliveries = 0;
  int cache_replays = 0;      // duplicates answered by the idempotency cache
  int cache_in_progress = 0;  // duplicates refused: another worker holds the key
  int deliveries = 0;         // messages this process claimed from the outbox
  int emails_sent = 0;        // welcome emails the email API sent for this process
  int provider_dedups = 0;    // sends the email API recognised by idempotency key
  int compensations = 0;      // rollbacks
  int undos_failed = 0;
  int dead_lettered = 0;  // entries added to the dead-letter queue
  int replayed_ok = 0;
  int replay_failed = 0;
  double virtual_seconds = 0;  // time on the clock at the end
  check_report before_replay;  // the state after acts 1-2
  check_report final_state;    // after act 3 (same as before_replay without it)
};

// The whole demo (acts 1-3). Errors: the database could not be opened or is
// not empty (std::errc::file_exists), invalid options (errc::invalid_options).
[[nodiscard]] sturdy::result<run_summary> run_demo(const run_options& options, std::ostream& out);

// Only the signups through the outbox (no act 1, no worker): `options.users`
// users and their pending messages, for workers started afterwards. Errors
// as run_demo.
[[nodiscard]] sturdy::result<void> signup_only(const run_options& options, std::ostream& out);

// What one worker process did (`resume_worker`).
struct worker_report {
  run_summary summary;     // this process's counters
  int held_elsewhere = 0;  // pending messages other live workers still hold
  check_report state;      // the invariant check when it finished
};

// Starts a worker on an existing database: claims and drains what is pending
// in the outbox (the services are healthy apart from transient errors).
// Several may run at once on one database file; each claims messages
// atomically. Prints one line starting "worker summary:" at the end.
[[nodiscard]] sturdy::result<worker_report> resume_worker(const run_options& options, std::ostream& out);

// Operator commands on the dead-letter queue of `options.db_path`:
// "list", "inspect", "replay", "replay-all", "discard". `id` for the ones
// that take one. Replays run against healthy services (the fault is gone).
// Returns the process exit status (0 ok, 1 failed, 2 misuse).
int dlq_command(const run_options& options, const std::string& verb, std::uint64_t id, std::ostream& out);

// Prints the invariant check of `options.db_path`; exit status 0 when it holds.
int check_command(const run_options& options, std::ostream& out);

}  // namespace onboarding

template <>
struct std::is_error_code_enum<onboarding::service_errc> : std::true_type {};

#endif  // STURDY_EXAMPLES_ONBOARDING_ONBOARDING_HPP_
