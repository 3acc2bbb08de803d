// The broker variant end to end: example_onboarding_broker's relay and
// workers as separate processes against a real RabbitMQ (STURDY_RABBITMQ_URL)
// and Redis (STURDY_REDIS_URL); skipped when either is unset. Each test uses
// its own queues, Redis keys and database file.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "broker_flow.hpp"
#include "support/rabbitmq_broker.hpp"

namespace {

namespace b = onboarding::broker;

class BrokerFlow : public ::testing::Test {
 protected:
  void SetUp() override {
    STURDY_REQUIRE_RABBITMQ();
    const char* redis = std::getenv("STURDY_REDIS_URL");
    if (redis == nullptr) GTEST_SKIP() << "STURDY_REDIS_URL is unset (the workers share an idempotency store)";
    redis_ = redis;
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = std::filesystem::temp_directory_path() / ("sturdy-broker-" + std::to_string(::getpid()) + "-" + name);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    prefix_ = "onb." + std::to_string(::getpid()) + "." + name;
  }
  void TearDown() override {
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }

  std::vector<std::string> common(const std::string& cmd) const {
    return {cmd, "--db", (dir_ / "onboarding.db").string(), "--amqp", sturdy::test::rabbitmq_url(), "--redis",
            redis_, "--prefix", prefix_, "--delivery-limit", "3", "--max-seconds", "60"};
  }
  // Starts the program with `args`; its output goes to dir_/<log>.
  pid_t start(std::vector<std::string> args, const std::string& log) const {
    args.insert(args.begin(), ONBOARDING_BROKER_EXE);
    const std::string out = (dir_ / log).string();
    const pid_t pid = ::fork();
    if (pid == 0) {
      std::FILE* f = std::freopen(out.c_str(), "a", stdout);
      (void)f;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  }
  static int wait(pid_t pid) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int run(std::vector<std::string> args, const std::string& log = "run.log") const {
    return wait(start(std::move(args), log));
  }
  std::string log(const std::string& name) const {
    std::ifstream in(dir_ / name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  b::check_result check() const {
    onboarding::sqlite::database db;
    EXPECT_TRUE(b::open_db(db, (dir_ / "onboarding.db").string()));
    return b::check(db);
  }
  template <class... A>
  static std::vector<std::string> with(std::vector<std::string> v, A... more) {
    (v.push_back(more), ...);
    return v;
  }

  std::filesystem::path dir_;
  std::string redis_;
  std::string prefix_;
};

// Every 3rd message is published twice (a relay that crashed between publish
// and mark); two workers consume concurrently: each email goes out once, and
// no duplicate even reaches the email API: the shared idempotency cache
// answers it.
TEST_F(BrokerFlow, TwoWorkersWithDuplicateDeliveriesSendEachEmailOnce) {
  ASSERT_EQ(run(with(common("signup"), "--users", "20")), 0);
  ASSERT_EQ(run(with(common("relay"), "--duplicate-every", "3")), 0) << log("run.log");
  const pid_t w1 = start(with(common("worker"), "--name", "w1", "--idle-exit-ms", "1500"), "w1.log");
  const pid_t w2 = start(with(common("worker"), "--name", "w2", "--idle-exit-ms", "1500"), "w2.log");
  ASSERT_EQ(wait(w1), 0);
  ASSERT_EQ(wait(w2), 0);
  const auto c = check();
  EXPECT_TRUE(c.ok()) << log("w1.log") << log("w2.log");
  EXPECT_EQ(c.emailed_once, 20);
  EXPECT_EQ(c.api_calls, 20) << "a duplicate delivery reached the email API";
  const std::string logs = log("w1.log") + log("w2.log");
  int deliveries = 0;
  for (std::size_t at = logs.find("deliveries="); at != std::string::npos; at = logs.find("deliveries=", at + 1))
    deliveries += std::atoi(logs.c_str() + at + 11);
  EXPECT_EQ(deliveries, 26) << logs;  // 20 messages + 6 duplicates, all delivered
}

// A worker dies right after the email API sent its 3rd email, before it
// completed the idempotency key or acked: the broker redelivers that message
// to the other worker, which (once the dead worker's lease ran out) calls the
// API again with the same idempotency key: nothing lost, nothing sent twice.
TEST_F(BrokerFlow, AWorkerKilledMidMessageLosesAndDuplicatesNothing) {
  ASSERT_EQ(run(with(common("signup"), "--users", "10")), 0);
  ASSERT_EQ(run(common("relay")), 0) << log("run.log");
  const pid_t dying = start(with(common("worker"), "--name", "dying", "--crash-after-send", "3"), "dying.log");
  // The other worker joins once the first is at work (both then consume).
  ASSERT_TRUE(sturdy::test::eventually([&] {
    onboarding::sqlite::database db;
    return b::open_db(db, (dir_ / "onboarding.db").string()) &&
           db.scalar("SELECT COUNT(*) FROM b_api_calls WHERE worker = 'dying'") >= 1;
  }));
  const pid_t other = start(with(common("worker"), "--name", "other", "--idle-exit-ms", "2500"), "other.log");
  ASSERT_EQ(wait(dying), b::crash_exit_code);
  ASSERT_EQ(wait(other), 0);
  const auto c = check();
  EXPECT_TRUE(c.ok()) << log("other.log");
  EXPECT_EQ(c.emailed_once, 10);
  EXPECT_EQ(c.provider_dedups, 1) << "the redelivered message reached the API once more, and was deduplicated";
}

// The broker restarts while the relay publishes and a worker consumes: both
// reconnect, and every message is delivered and emailed once.
TEST_F(BrokerFlow, BrokerRestartedMidRunLosesNoConfirmedMessage) {
  if (std::getenv("STURDY_RABBITMQ_DIR") == nullptr) GTEST_SKIP() << "STURDY_RABBITMQ_DIR unset: cannot restart";
  ASSERT_EQ(run(with(common("signup"), "--users", "40")), 0);
  const pid_t relay = start(with(common("relay"), "--pace-ms", "50"), "relay.log");
  const pid_t w = start(with(common("worker"), "--name", "w", "--idle-exit-ms", "3000"), "w.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // mid-run (real processes, real broker)
  ASSERT_TRUE(sturdy::test::rabbitmq_ctl("stop_app"));
  ASSERT_TRUE(sturdy::test::rabbitmq_ctl("start_app"));
  ASSERT_EQ(wait(relay), 0) << log("relay.log");
  ASSERT_EQ(wait(w), 0);
  const auto c = check();
  EXPECT_TRUE(c.ok()) << log("relay.log") << log("w.log");
  EXPECT_EQ(c.emailed_once, 40);
  EXPECT_NE(log("relay.log").find("reconnects=1"), std::string::npos) << log("relay.log");
  EXPECT_EQ(log("w.log").find("reconnects=0"), std::string::npos) << log("w.log");
}

// User 2's address is invalid: its message fails on every delivery and the
// broker dead-letters it after the delivery limit (3 redeliveries). The
// operator sees it, fixes the address, replays it: it completes.
TEST_F(BrokerFlow, APoisonMessageIsDeadLetteredThenReplayedAfterTheFix) {
  ASSERT_EQ(run(with(common("signup"), "--users", "3", "--poison-user", "2")), 0);
  ASSERT_EQ(run(common("relay")), 0);
  ASSERT_EQ(run(with(common("worker"), "--idle-exit-ms", "1000"), "w.log"), 0);
  EXPECT_NE(log("w.log").find("welcome-2 failed (422 invalid address (permanent)), delivery 4 of 4"),
            std::string::npos)
      << log("w.log");
  auto c = check();
  EXPECT_EQ(c.emailed_once, 2);
  EXPECT_EQ(c.missing, 1);
  const auto dlq = [&](std::vector<std::string> v) {
    std::vector<std::string> a = {"dlq", "--amqp", sturdy::test::rabbitmq_url(), "--prefix", prefix_};
    a.insert(a.end(), v.begin(), v.end());
    return a;
  };
  ASSERT_EQ(run(dlq({"list"}), "list.log"), 0);
  EXPECT_NE(log("list.log").find("welcome-2 body=2\n1 dead letters"), std::string::npos) << log("list.log");
  ASSERT_EQ(run(with(common("fix"), "--user", "2")), 0);
  ASSERT_EQ(run(dlq({"replay", "welcome-2"}), "replay.log"), 0) << log("replay.log");
  ASSERT_EQ(run(with(common("worker"), "--idle-exit-ms", "1000"), "w2.log"), 0);
  c = check();
  EXPECT_TRUE(c.ok()) << log("w2.log");
  ASSERT_EQ(run(dlq({"list"}), "list2.log"), 0);
  EXPECT_NE(log("list2.log").find("0 dead letters"), std::string::npos);
}

}  // namespace
