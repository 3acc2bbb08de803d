// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// example_onboarding: the onboarding flow end to end (see docs/onboarding.md).
//
//   example_onboarding [--seed S] [--users N] [--db PATH] [--json] [--real-time]
//                      [--no-replay] [--crash-after N] [--redis HOST:PORT]
//                      [--metrics-port N [--linger-seconds S]]
//   example_onboarding signup --db PATH --users N   only the outbox signups
//   example_onboarding worker --db PATH [--redis HOST:PORT] [--duplicate-every N]
//                                                (re)start a worker; several may run at once
//   example_onboarding dlq list|inspect ID|replay ID|replay-all|discard ID --db PATH
//   example_onboarding check --db PATH           verify the onboarding invariant
// -----------------------------------------------------------------------------

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "onboarding.hpp"

namespace {

constexpr std::string_view kUsage = R"(usage:
  example_onboarding [options]            run the demo (acts 1-3) and print its timeline
  example_onboarding worker  --db PATH    (re)start an outbox worker on an existing database;
                                          several may run at once on one file (see --redis)
  example_onboarding signup  --db PATH    only write --users signups to the outbox (for workers)
  example_onboarding dlq list|inspect ID|replay ID|replay-all|discard ID --db PATH
  example_onboarding check   --db PATH    check: every user completed, compensated or dead-lettered

options:
  --seed S          seed of the fault schedule, transient errors and jitter (default 42)
  --users N         signups through the outbox, 1..1000 (default 8; plus 3 synchronous)
  --db PATH         SQLite database file (default :memory:, kept nowhere)
  --json            one JSON document instead of the timeline
  --real-time       really sleep (default: virtual time, finishes at once)
  --no-replay       stop after act 2, leaving the dead-letter queue for `dlq` commands
  --crash-after N   the worker dies (exit 86) at its N-th step boundary; restart with `worker`
  --redis HOST:PORT the worker's idempotency cache lives in that Redis, shared by every worker
                    process on the same database (e.g. --redis "$STURDY_REDIS_URL")
  --duplicate-every N  worker: after every N-th message, the relay also delivers the message
                    another worker claimed last to this one (duplicate delivery across processes)
  --metrics-port N  serve the metrics (Prometheus text format) at http://127.0.0.1:N/metrics
                    while the command runs (demo and worker); 0 picks a free port; the URL is printed
  --linger-seconds S  with --metrics-port: keep serving S seconds after the run (default 0),
                    e.g. to curl the final state: curl -s http://127.0.0.1:N/metrics
)";

bool parse_u64(const char* s, std::uint64_t& out) {
  if (s == nullptr || *s == '\0') return false;
  char* end = nullptr;
  out = std::strtoull(s, &end, 10);
  return *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  onboarding::run_options o;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : nullptr;
    std::uint64_t v = 0;
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--real-time") {
      o.real_time = true;
    } else if (a == "--no-replay") {
      o.replay = false;
    } else if (a == "--db" && next) {
      o.db_path = next;
      ++i;
    } else if (a == "--seed" && parse_u64(next, v)) {
      o.seed = v;
      ++i;
    } else if (a == "--users" && parse_u64(next, v) && v >= 1 && v <= 1000) {
      o.users = static_cast<int>(v);
      ++i;
    } else if (a == "--redis" && next) {
      o.redis = next;
      ++i;
    } else if (a == "--duplicate-every" && parse_u64(next, v) && v <= 1'000'000) {
      o.duplicate_every = static_cast<int>(v);
      ++i;
    } else if (a == "--metrics-port" && parse_u64(next, v) && v <= 65535) {
      o.metrics_port = static_cast<int>(v);
      ++i;
    } else if (a == "--linger-seconds" && parse_u64(next, v) && v <= 86400) {
      o.linger_seconds = static_cast<int>(v);
      ++i;
    } else if (a == "--crash-after" && parse_u64(next, v) && v <= 1'000'000) {
      o.crash_after = static_cast<int>(v);
      ++i;
    } else if (!a.starts_with("--")) {
      words.emplace_back(a);
    } else {
      std::cerr << "bad or incomplete option: " << a << "\n\n" << kUsage;
      return 2;
    }
  }

  if (!o.redis.empty() && !onboarding::redis_supported()) {
    std::cerr << "--redis: this build of example_onboarding has no Redis support: hiredis was not found\n"
                 "when it was configured (Debian: apt install libhiredis-dev, then configure again)\n";
    return 2;
  }

  if (o.metrics_port >= 0 && !onboarding::metrics_supported()) {
    std::cerr << "--metrics-port: this build of example_onboarding cannot serve metrics: prometheus-cpp was not\n"
                 "found when it was configured (Debian: apt install prometheus-cpp-dev, then configure again)\n";
    return 2;
  }
  if (o.linger_seconds > 0 && o.metrics_port < 0) {
    std::cerr << "--linger-seconds needs --metrics-port\n";
    return 2;
  }

  if (words.empty()) {
    auto r = onboarding::run_demo(o, std::cout);
    if (!r) return 1;
    return r.value().final_state.ok() ? 0 : 1;
  }
  const bool needs_file =
      words[0] == "worker" || words[0] == "dlq" || words[0] == "check" || words[0] == "signup";
  if (needs_file && o.db_path == ":memory:") {
    std::cerr << words[0] << " needs --db PATH (a database written by an earlier run)\n";
    return 2;
  }
  if (words[0] == "worker" && words.size() == 1) {
    auto r = onboarding::resume_worker(o, std::cout);
    if (!r) return 1;
    if (const int n = r.value().held_elsewhere; n > 0) {
      // Their messages are half done until they finish: check afterwards.
      std::cout << "\n" << n << " message(s) still held by other workers: run `check` when they are done\n";
      return 0;
    }
    std::cout << "\nAfter the worker:\n";
    return onboarding::check_command(o, std::cout);
  }
  if (words[0] == "signup" && words.size() == 1) return onboarding::signup_only(o, std::cout) ? 0 : 1;
  if (words[0] == "check" && words.size() == 1) return onboarding::check_command(o, std::cout);
  if (words[0] == "dlq" && words.size() >= 2 && words.size() <= 3) {
    std::uint64_t id = 0;
    const bool takes_id = words[1] == "inspect" || words[1] == "replay" || words[1] == "discard";
    if (takes_id != (words.size() == 3) || (takes_id && !parse_u64(words[2].c_str(), id))) {
      std::cerr << "dlq " << words[1] << (takes_id ? " needs one numeric ID\n" : " takes no ID\n");
      return 2;
    }
    return onboarding::dlq_command(o, words[1], id, std::cout);
  }
  std::cerr << "unknown command: " << words[0] << "\n\n" << kUsage;
  return 2;
}
