// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// End-to-end tests of the onboarding example with fixed seeds: the invariant
// after a run, no double email under duplicate deliveries, replay after the
// outage, a crash between steps and a restart, and the durable dead-letter
// queue on its own; two worker processes sharing one database and one Redis
// (with hiredis).

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "onboarding.hpp"
#include "sqlite_dead_letter_queue.hpp"
#include "sturdy/compensation.hpp"

#ifdef ONBOARDING_HAVE_REDIS
#include "../../tests/support/redis_server.hpp"
#endif

namespace {

std::filesystem::path temp_dir() {
  return std::filesystem::temp_directory_path() / ("sturdy_onboarding_" + std::to_string(::getpid()));
}

// Removes this process's database files at the end.
class temp_dir_cleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir(), ec);
  }
};
const auto* const cleanup = ::testing::AddGlobalTestEnvironment(new temp_dir_cleanup);

// A fresh database file under the test's temporary directory.
std::string temp_db(const std::string& name) {
  const auto dir = temp_dir();
  std::filesystem::create_directories(dir);
  const auto path = dir / (name + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix);
  return path.string();
}

onboarding::check_report check(const std::string& path) {
  onboarding::sqlite::database db;
  EXPECT_TRUE(db.open(path).has_value());
  return onboarding::check_database(db);
}

std::string violations(const onboarding::check_report& c) {
  std::string s;
  for (const auto& v : c.violations) s += v + "\n";
  return s;
}

// Starts the example program as a child process writing its stdout and
// stderr to `out_path`; returns its pid (wait with wait_status).
pid_t spawn_program(const std::vector<std::string>& args, const std::string& out_path) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (std::freopen(out_path.c_str(), "w", stdout) == nullptr || ::dup2(1, 2) < 0) _exit(127);
    std::vector<char*> argv;
    std::string exe = ONBOARDING_EXE;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int status = 0;
  if (pid <= 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Runs the example program as a quiet child process (its timeline is not
// part of the test's output); returns its exit status (or -1 when it did not
// exit normally).
int run_program(const std::vector<std::string>& args) { return wait_status(spawn_program(args, "/dev/null")); }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(OnboardingTest, EveryUserIsCompletedCompensatedOrDeadLetteredForSeveralSeeds) {
  for (std::uint64_t seed : {1u, 2u, 3u, 7u, 42u, 1234u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::ostringstream out;
    auto r = onboarding::run_demo({.seed = seed, .users = 10, .quiet = true}, out);
    ASSERT_TRUE(r.has_value()) << out.str();
    const auto& s = r.value();
    // After acts 1-2: the invariant holds, and the faults left their marks.
    EXPECT_TRUE(s.before_replay.ok()) << violations(s.before_replay);
    EXPECT_EQ(s.before_replay.users.size(), 13u);
    EXPECT_GE(s.before_replay.compensated, 1);  // the bad address, fully undone
    EXPECT_GE(s.before_replay.dead_lettered, 1);
    for (const auto& u : s.before_replay.users) {
      if (u.outcome == "dead-lettered") {
        EXPECT_FALSE(u.dlq_reason.empty()) << u.name;
      }
      EXPECT_LE(u.emails, 1) << u.name;
    }
    EXPECT_GE(s.breaker_opened, 1);
    EXPECT_GE(s.undos_failed, 1);
    // After act 3: nothing is left half done.
    EXPECT_TRUE(s.final_state.ok()) << violations(s.final_state);
    EXPECT_EQ(s.final_state.dead_lettered, 0);
    EXPECT_EQ(s.final_state.completed + s.final_state.compensated, 13);
    EXPECT_EQ(s.final_state.emails_sent, s.final_state.completed);
  }
}

TEST(OnboardingTest, DuplicateDeliveriesNeverSendASecondEmail) {
  // Seeds whose duplicated message had succeeded (with seed 42 and 12 users
  // the slow drill makes it fail first: its duplicate runs it again, and
  // there is nothing to replay).
  for (std::uint64_t seed : {5u, 7u, 99u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::ostringstream out;
    auto r = onboarding::run_demo({.seed = seed, .users = 12, .quiet = true}, out);
    ASSERT_TRUE(r.has_value());
    const auto& s = r.value();
    ASSERT_GE(s.duplicate_deliveries, 1);
    EXPECT_EQ(s.cache_replays, s.duplicate_deliveries);  // answered from the cache, nothing called
    for (const auto& u : s.final_state.users) EXPECT_LE(u.emails, 1) << u.name;
    EXPECT_EQ(s.final_state.emails_sent, s.final_state.completed);
  }
}

TEST(OnboardingTest, TheFaultScheduleIsDeterministicForASeed) {
  // Every fault comes from seeded chaos layers on the virtual clock: the same
  // seed gives the same run, event for event; another seed another one.
  auto run = [](std::uint64_t seed) {
    std::ostringstream out;
    auto r = onboarding::run_demo({.seed = seed, .users = 10, .json = true}, out);
    EXPECT_TRUE(r.has_value());
    return out.str();
  };
  const std::string first = run(42);
  EXPECT_NE(first.find("\"kind\": \"fault\""), std::string::npos) << first;
  EXPECT_NE(first.find("timed out after 1 s"), std::string::npos);  // the slow drill
  EXPECT_NE(first.find("503 service unavailable"), std::string::npos);  // outage and transient errors
  EXPECT_NE(first.find("500 internal server error"), std::string::npos);  // the broken revoke
  EXPECT_EQ(run(42), first);
  EXPECT_NE(run(43), first);
}

TEST(OnboardingTest, ReplayingTheDeadLetterQueueAfterTheOutageCompletesStuckOnboardings) {
  const std::string path = temp_db("replay");
  std::ostringstream out;
  auto r =
      onboarding::run_demo({.seed = 42, .users = 8, .db_path = path, .quiet = true, .replay = false}, out);
  ASSERT_TRUE(r.has_value()) << out.str();
  const auto before = check(path);
  ASSERT_TRUE(before.ok()) << violations(before);
  ASSERT_GE(before.dead_lettered, 2);  // the outage's messages and the failed undo

  // A separate process, as an operator would: list, then replay everything.
  EXPECT_EQ(run_program({"dlq", "list", "--db", path}), 0);
  int status = 1;
  for (int round = 0; round < 3 && status != 0; ++round)
    status = run_program({"dlq", "replay-all", "--db", path});
  EXPECT_EQ(status, 0);

  const auto after = check(path);
  EXPECT_TRUE(after.ok()) << violations(after);
  EXPECT_EQ(after.dead_lettered, 0);
  EXPECT_EQ(after.completed, before.completed + before.dead_lettered - 1);  // one was an undo
  EXPECT_EQ(after.emails_sent, after.completed);
}

TEST(OnboardingTest, CrashBetweenStepsThenRestartLosesNothingAndDuplicatesNothing) {
  // Step boundaries of the worker: role assigned, email sent, message done.
  // Crash at each kind of boundary, early and later in the drain.
  for (int crash_after : {1, 2, 3, 5, 8, 11}) {
    SCOPED_TRACE("crash after step " + std::to_string(crash_after));
    const std::string path = temp_db("crash" + std::to_string(crash_after));
    ASSERT_EQ(run_program({"--seed", "7", "--users", "6", "--db", path, "--crash-after",
                           std::to_string(crash_after)}),
              onboarding::crash_exit_code);
    // The restarted worker drains what is pending; its exit status is the
    // invariant check.
    EXPECT_EQ(run_program({"worker", "--db", path}), 0);
    const auto c = check(path);
    EXPECT_TRUE(c.ok()) << violations(c);
    ASSERT_EQ(c.users.size(), 9u);  // nobody lost
    for (const auto& u : c.users) {
      EXPECT_LE(u.emails, 1) << u.name;
      EXPECT_NE(u.outcome, "INCONSISTENT") << u.name;
    }
    // And the operator can finish the rest.
    int status = 1;
    for (int round = 0; round < 3 && status != 0; ++round)
      status = run_program({"dlq", "replay-all", "--db", path});
    EXPECT_EQ(status, 0);
    const auto done = check(path);
    EXPECT_TRUE(done.ok()) << violations(done);
    EXPECT_EQ(done.completed + done.compensated, 9);
    EXPECT_EQ(done.emails_sent, done.completed);
  }
}

TEST(OnboardingTest, ProgramRejectsMisuse) {
  EXPECT_EQ(run_program({"--users", "0"}), 2);
  EXPECT_EQ(run_program({"dlq", "replay"}), 2);  // needs --db and an id
  EXPECT_EQ(run_program({"frobnicate", "--db", "x.db"}), 2);
  const std::string path = temp_db("twice");
  EXPECT_EQ(run_program({"--db", path, "--users", "2"}), 0);
  EXPECT_EQ(run_program({"--db", path, "--users", "2"}), 1);  // refuses a database that holds a run
}

// --- two worker processes, one database, one Redis --------------------------

#ifdef ONBOARDING_HAVE_REDIS
// What a worker prints last (see resume_worker).
struct worker_summary {
  long long pid = 0;
  int deliveries = -1, duplicates = -1, replays = -1, in_progress = -1, emails = -1, provider_dedups = -1;
};
worker_summary parse_summary(const std::string& output) {
  worker_summary w;
  const auto at = output.find("worker summary:");
  if (at == std::string::npos) return w;
  (void)std::sscanf(output.c_str() + at,
                    "worker summary: pid %lld, %d deliveries, %d duplicate deliveries -> %d cache replays, "
                    "%d in progress elsewhere; %d emails sent, %d email API dedups",
                    &w.pid, &w.deliveries, &w.duplicates, &w.replays, &w.in_progress, &w.emails,
                    &w.provider_dedups);
  return w;
}

TEST(OnboardingRedisTest, TwoWorkerProcessesWithDuplicateDeliveriesSendEachWelcomeEmailOnce) {
  // STURDY_REDIS_URL (scripts/test.sh starts one), else a private
  // redis-server on a free loopback port; neither: a failure, not a skip.
  const std::string redis = sturdy::test::redis_address();
  ASSERT_FALSE(redis.empty()) << "no Redis: set STURDY_REDIS_URL or put redis-server on PATH";
  constexpr int kUsers = 16;
  const std::string path = temp_db("two_workers");
  ASSERT_EQ(run_program({"signup", "--db", path, "--users", std::to_string(kUsers)}), 0);

  // Both at once, in real time (each message takes ~80 ms of simulated
  // service latency, so the two overlap), each getting every 2nd message's
  // duplicate from the other.
  const std::vector<std::string> args = {"worker", "--db",       path, "--redis", redis, "--duplicate-every",
                                         "2",      "--real-time"};
  const std::string out1 = path + ".w1.txt", out2 = path + ".w2.txt";
  const pid_t p1 = spawn_program(args, out1);
  const pid_t p2 = spawn_program(args, out2);
  EXPECT_EQ(wait_status(p1), 0) << read_file(out1);
  EXPECT_EQ(wait_status(p2), 0) << read_file(out2);
  const worker_summary w1 = parse_summary(read_file(out1));
  const worker_summary w2 = parse_summary(read_file(out2));
  ASSERT_GE(w1.deliveries, 1) << read_file(out1);  // both took part
  ASSERT_GE(w2.deliveries, 1) << read_file(out2);

  // Duplicates crossed between the processes, and the shared cache answered
  // them: the email API never saw a message id twice (with per-process caches
  // it does, and only its own Idempotency-Key keeps the second email away).
  EXPECT_GE(w1.duplicates + w2.duplicates, 2);
  EXPECT_GE(w1.replays + w1.in_progress + w2.replays + w2.in_progress, 1);
  EXPECT_EQ(w1.provider_dedups, 0);
  EXPECT_EQ(w2.provider_dedups, 0);
  EXPECT_EQ(w1.emails + w2.emails, kUsers);

  // Nothing lost, nothing doubled: every user completed with one email.
  const auto c = check(path);
  EXPECT_TRUE(c.ok()) << violations(c);
  ASSERT_EQ(c.users.size(), static_cast<std::size_t>(kUsers));
  EXPECT_EQ(c.completed, kUsers);
  EXPECT_EQ(c.emails_sent, kUsers);
  for (const auto& u : c.users) EXPECT_EQ(u.emails, 1) << u.name;
  EXPECT_EQ(run_program({"check", "--db", path}), 0);
}

TEST(OnboardingRedisTest, AnUnreachableRedisIsAClearStartupError) {
  const std::string path = temp_db("no_redis");
  ASSERT_EQ(run_program({"signup", "--db", path, "--users", "2"}), 0);
  const std::string out = path + ".txt";
  const auto port = std::to_string(sturdy::test::free_loopback_port());
  EXPECT_EQ(wait_status(spawn_program({"worker", "--db", path, "--redis", "127.0.0.1:" + port}, out)), 1);
  EXPECT_NE(read_file(out).find("cannot reach Redis at 127.0.0.1:" + port), std::string::npos)
      << read_file(out);
  EXPECT_EQ(run_program({"worker", "--db", path, "--redis", "no-port"}), 1);
  EXPECT_EQ(check(path).completed, 0);  // nothing ran without its cache
}
#else
TEST(OnboardingRedisTest, WithoutHiredisTheRedisFlagIsAClearError) {
  const std::string out = temp_db("no_hiredis") + ".txt";
  EXPECT_EQ(wait_status(spawn_program({"--redis", "127.0.0.1:6379"}, out)), 2);
  EXPECT_NE(read_file(out).find("has no Redis support"), std::string::npos) << read_file(out);
}
#endif

// --- the durable dead-letter queue on its own ------------------------------

TEST(SqliteDeadLetterQueueTest, KeepsEntriesAcrossConnectionsAndReplaysOrDiscardsThem) {
  const std::string path = temp_db("dlq");
  {
    onboarding::sqlite::database db;
    ASSERT_TRUE(db.open(path).has_value());
    onboarding::sqlite_dead_letter_queue dlq(db);
    ASSERT_TRUE(dlq.ok());
    sturdy::dead_letter_entry e;
    e.saga = "s";
    e.step = "undo a";
    e.context = "user=1";
    e.code = sturdy::errc::store_unavailable;
    e.exception_text = "boom";
    e.at = sturdy::time_point(std::chrono::seconds(3));
    ASSERT_TRUE(dlq.push(std::move(e)).has_value());
    sturdy::dead_letter_entry f;
    f.step = "undo b";
    f.code = std::make_error_code(std::errc::connection_reset);
    ASSERT_TRUE(dlq.add(f, "delivery_failed").has_value());
  }
  onboarding::sqlite::database db;
  ASSERT_TRUE(db.open(path).has_value());
  onboarding::sqlite_dead_letter_queue dlq(db);
  auto rows = dlq.list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].entry.saga, "s");
  EXPECT_EQ(rows[0].entry.context, "user=1");
  EXPECT_EQ(rows[0].reason, "undo_failed");
  EXPECT_EQ(rows[0].entry.code, sturdy::errc::store_unavailable);  // rebuilt: sturdy's category is known
  EXPECT_EQ(rows[0].entry.exception_text, "boom");
  EXPECT_EQ(rows[0].entry.at, sturdy::time_point(std::chrono::seconds(3)));
  EXPECT_EQ(rows[1].reason, "delivery_failed");
  EXPECT_EQ(rows[1].entry.code, std::errc::connection_reset);

  // A failing replay keeps the entry and counts the attempt.
  auto failed = dlq.replay(rows[0].entry.id, [](const onboarding::dlq_record&) -> sturdy::result<void> {
    return std::make_error_code(std::errc::timed_out);
  });
  EXPECT_EQ(failed.error(), sturdy::errc::compensation_failed);
  auto kept = dlq.inspect(rows[0].entry.id);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept.value().entry.replay_attempts, 1u);
  EXPECT_FALSE(kept.value().last_replay_error.empty());
  // A throwing handler is a failed replay too, not a crash.
  EXPECT_FALSE(dlq.replay(rows[0].entry.id,
                          [](const onboarding::dlq_record&) -> int { throw std::runtime_error("x"); }));
  // A succeeding replay removes it.
  EXPECT_TRUE(dlq.replay(rows[0].entry.id, [](const onboarding::dlq_record&) {}).has_value());
  EXPECT_EQ(dlq.inspect(rows[0].entry.id).error(), sturdy::errc::not_found);
  EXPECT_EQ(dlq.replay(rows[0].entry.id, [](const onboarding::dlq_record&) {}).error(),
            sturdy::errc::not_found);
  // Discard.
  EXPECT_TRUE(dlq.discard(rows[1].entry.id).has_value());
  EXPECT_EQ(dlq.discard(rows[1].entry.id).error(), sturdy::errc::not_found);
  EXPECT_TRUE(dlq.empty());
}

TEST(SqliteDeadLetterQueueTest, IsTheSinkOfACompensationScope) {
  onboarding::sqlite::database db;
  ASSERT_TRUE(db.open(":memory:").has_value());
  onboarding::sqlite_dead_letter_queue dlq(db);
  {
    sturdy::compensation_scope saga(dlq, {.name = "saga"});
    ASSERT_TRUE(saga.add({.name = "undo ok"}, [] {}).has_value());
    ASSERT_TRUE(
        saga.add({.name = "undo fails", .context = "id=9"},
                 []() -> sturdy::result<void> { return std::make_error_code(std::errc::host_unreachable); })
            .has_value());
  }  // rolled back by the destructor
  auto rows = dlq.list();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].entry.saga, "saga");
  EXPECT_EQ(rows[0].entry.step, "undo fails");
  EXPECT_EQ(rows[0].entry.context, "id=9");
  EXPECT_EQ(rows[0].entry.code, std::errc::host_unreachable);
}

}  // namespace
