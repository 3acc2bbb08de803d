// Fleet tests of sturdy::redis::rate_limiter against real redis-servers
// (label slow: they run for seconds of real time):
//   - two processes share one limit: every window holds rate*t + burst;
//   - Redis killed and restarted mid-run: the failure mode holds throughout,
//     nothing crashes, and decisions resume afterwards.
// Child roles are DISABLED_ tests run only through `spawn_self`.
#ifdef STURDY_NO_HIREDIS
#include <gtest/gtest.h>
TEST(RedisRateLimiterFleetTest, NeedsHiredis) { GTEST_SKIP() << "built without hiredis (no sturdy::redis)"; }
#else

#include "sturdy/redis/rate_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_rate_limiter.hpp"
#include "support/redis_server.hpp"

using namespace std::chrono_literals;
using sturdy::rate_limit_reason;
using sturdy::time_point;
using sturdy::redis::limiter_store_options;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// --- two processes share one limit --------------------------------------------

// A wall clock that remembers, per thread, the last time it returned: the
// decision time of a client-time decision.
thread_local std::int64_t last_read = 0;
struct remembering_wall_clock {
  time_point now() const noexcept {
    const time_point t = sturdy::redis::wall_clock{}.now();
    last_read = t.time_since_epoch().count();
    return t;
  }
};

constexpr sturdy::rate_limiter_options shared_limit{.rate = 200, .period = 1s, .burst = 10};

// Child: hammers the shared limit for STURDY_CHILD_MS milliseconds, writing
// the decision time of each admission (client time) to STURDY_CHILD_OUT.
TEST(RedisRateLimiterChild, DISABLED_Hammer) {
  limiter_store_options s =
      sturdy::test::limiter_store_at(env("STURDY_REDIS_URL"), env("STURDY_CHILD_PREFIX"));
  s.time = sturdy::redis::time_source::client;
  sturdy::redis::rate_limiter<sturdy::null_listener, remembering_wall_clock> l(shared_limit, s);
  std::ofstream out(env("STURDY_CHILD_OUT"));
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(std::atoi(env("STURDY_CHILD_MS").c_str()));
  long refused = 0;
  while (std::chrono::steady_clock::now() < until) {
    const auto d = l.try_acquire("shared");
    ASSERT_TRUE(d.allowed || d.reason == rate_limit_reason::rate_limited) << to_string(d.reason);
    if (d.allowed) {
      out << last_read << "\n";
    } else {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);  // the limit did bind
}

TEST(RedisRateLimiterFleetTest, TwoProcessesShareOneLimitInEveryWindow) {
  const std::string address = sturdy::test::required_redis_address();
  const std::string prefix = sturdy::test::unique_prefix("procs");
  std::vector<pid_t> pids;
  std::vector<std::string> outs;
  for (int id = 1; id <= 2; ++id) {
    const char* dir = std::getenv("TMPDIR");
    outs.push_back(std::string(dir != nullptr ? dir : "/tmp") + "/sturdy-rl-" + std::to_string(::getpid()) +
                   "-" + std::to_string(id));
    pids.push_back(sturdy::test::spawn_self("RedisRateLimiterChild.DISABLED_Hammer",
                                            {"STURDY_REDIS_URL=" + address, "STURDY_CHILD_PREFIX=" + prefix,
                                             "STURDY_CHILD_OUT=" + outs.back(), "STURDY_CHILD_MS=1500"}));
    ASSERT_NE(pids.back(), 0);
  }
  for (pid_t p : pids) EXPECT_EQ(sturdy::test::wait_exit(p), 0);
  std::vector<std::int64_t> times;
  std::vector<std::size_t> per_process;
  for (const auto& path : outs) {
    std::ifstream in(path);
    std::int64_t t = 0;
    std::size_t n = 0;
    while (in >> t) {
      times.push_back(t);
      ++n;
    }
    per_process.push_back(n);
    std::remove(path.c_str());
  }
  ASSERT_EQ(per_process.size(), 2u);
  EXPECT_GT(per_process[0], 20u);  // both processes got a share
  EXPECT_GT(per_process[1], 20u);
  std::sort(times.begin(), times.end());
  const std::int64_t T = shared_limit.interval().count();
  const auto B = static_cast<std::int64_t>(shared_limit.burst);
  // Every window [t_i, t_j]: j - i + 1 <= (t_j - t_i) / T + B.
  std::int64_t min_before = std::numeric_limits<std::int64_t>::max();
  for (std::size_t j = 0; j < times.size(); ++j) {
    min_before = std::min(min_before, static_cast<std::int64_t>(j) * T - times[j]);
    ASSERT_LE(static_cast<std::int64_t>(j + 1) * T - times[j] - min_before, B * T) << "admission " << j;
  }
  // And the limit was used, not starved: about rate * 1.5 s + burst.
  EXPECT_GT(times.size(), 200u);
}

// --- Redis killed and restarted mid-run -----------------------------------------

TEST(RedisRateLimiterFleetTest, RedisKilledAndRestartedMidRunKeepsTheFailureMode) {
  sturdy::test::redis_server server;
  ASSERT_TRUE(server.start());
  for (const auto mode : {sturdy::redis::failure_mode::fail_open, sturdy::redis::failure_mode::fail_closed}) {
    SCOPED_TRACE(mode == sturdy::redis::failure_mode::fail_open ? "fail_open" : "fail_closed");
    limiter_store_options s =
        sturdy::test::limiter_store_at(server.address(), sturdy::test::unique_prefix("restart"));
    s.on_unavailable = mode;
    s.command_timeout = 200ms;
    s.connect_timeout = 200ms;
    sturdy::redis::rate_limiter<> l({.rate = 1000, .period = 1s, .burst = 50}, s);
    std::atomic<bool> stop{false};
    std::atomic<int> phase{0};  // 0 up, 1 down, 2 up again, 3 changing (not checked)
    std::atomic<long> bad{0}, seen_up{0}, seen_down{0}, seen_up_again{0};
    // Waits (polling, bounded at 4 s) until `counter` reaches `n`.
    auto wait_for_count = [](const std::atomic<long>& counter, long n) {
      for (int i = 0; i < 400 && counter.load() < n; ++i) std::this_thread::sleep_for(10ms);
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&] {
        while (!stop.load()) {
          const int p = phase.load();
          const auto d = l.try_acquire("k");
          const int q = phase.load();
          if (p != q || p == 3) continue;  // the phase changed during the call
          if (p == 1) {
            ++seen_down;
            const bool ok = mode == sturdy::redis::failure_mode::fail_open
                                ? d.allowed
                                : (!d.allowed && d.reason == rate_limit_reason::store_unavailable);
            if (!ok) ++bad;
          } else if (d.reason != rate_limit_reason::admitted && d.reason != rate_limit_reason::rate_limited) {
            if (p == 2) continue;  // reconnecting right after the restart
            ++bad;
          } else if (p == 2) {
            ++seen_up_again;
          } else {
            ++seen_up;
          }
        }
      });
    }
    wait_for_count(seen_up, 50);
    phase = 3;
    server.kill();
    phase = 1;
    wait_for_count(seen_down, 50);
    phase = 3;
    ASSERT_TRUE(server.start());
    phase = 2;
    wait_for_count(seen_up_again, 50);
    stop = true;
    for (auto& t : threads) t.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GE(seen_up.load(), 50);
    EXPECT_GT(seen_down.load(), 0);
    EXPECT_GE(seen_up_again.load(), 50);
  }
}

}  // namespace

#endif  // STURDY_NO_HIREDIS
