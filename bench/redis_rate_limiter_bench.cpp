// Benchmarks of sturdy::redis::rate_limiter against a local redis-server
// (`STURDY_REDIS_URL`, host:port; default 127.0.0.1:6379), next to a raw
// hiredis GET round trip in the same binary (the physical floor):
//
//   BM_Raw_Get                       one hiredis GET, one round trip
//   BM_RedisRateLimiter_Admitted     try_acquire on a key that always admits
//                                    (one EVALSHA: GET + SET PX in the script)
//   BM_RedisRateLimiter_Limited      try_acquire on a key over its limit
//                                    (one EVALSHA: GET only)
//   BM_RedisRateLimiter_ClientTime   the admitted case with time_source::client
//   BM_Interleaved_GetVsDecision     one thread alternating a GET and a
//                                    decision, each timed: the ratio under
//                                    identical machine load
// each (but the last) at 1 and 2 client threads (one connection per thread for raw hiredis;
// the limiter's pool for sturdy).
//
// Without a reachable Redis it prints one line and exits 0 (it is smoke-run
// in ctest).
#ifdef STURDY_NO_HIREDIS
#include <cstdio>
int main() {
  std::printf("redis_rate_limiter_bench: built without hiredis; skipped\n");
  return 0;
}
#else
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <benchmark/benchmark.h>

#include "sturdy/redis/rate_limiter.hpp"

namespace {

using namespace std::chrono_literals;

std::string address() {
  const char* url = std::getenv("STURDY_REDIS_URL");
  return url != nullptr && *url != '\0' ? url : "127.0.0.1:6379";
}

sturdy::redis::limiter_store_options bench_options(sturdy::redis::time_source time) {
  auto o = sturdy::redis::with_address(sturdy::redis::limiter_store_options{}, address());
  sturdy::redis::limiter_store_options out =
      o.has_value() ? o.value() : sturdy::redis::limiter_store_options{};
  out.key_prefix = "sturdy-bench:" + std::to_string(::getpid()) + ":rl:";
  out.pool_size = 4;
  out.command_timeout = 2s;  // a loaded machine must not turn into errors
  out.on_unavailable = sturdy::redis::failure_mode::fail_closed;
  out.time = time;
  return out;
}

using limiter_t = sturdy::redis::rate_limiter<>;

limiter_t& always_admits(sturdy::redis::time_source time) {
  static limiter_t server({.rate = 1'000'000'000, .period = 1s, .burst = 1'000'000'000},
                          bench_options(sturdy::redis::time_source::server));
  static limiter_t client({.rate = 1'000'000'000, .period = 1s, .burst = 1'000'000'000},
                          bench_options(sturdy::redis::time_source::client));
  return time == sturdy::redis::time_source::server ? server : client;
}

limiter_t& never_admits() {
  static limiter_t l({.rate = 1, .period = 1h, .burst = 1},
                     bench_options(sturdy::redis::time_source::server));
  return l;
}

struct raw_conn {
  redisContext* c = nullptr;
  raw_conn() {
    const auto o = bench_options(sturdy::redis::time_source::server);
    c = redisConnectWithTimeout(o.host.c_str(), o.port, timeval{1, 0});
  }
  ~raw_conn() {
    if (c != nullptr) redisFree(c);
  }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;
};

bool redis_reachable() {
  raw_conn conn;
  return conn.c != nullptr && conn.c->err == 0;
}

void counters(benchmark::State& state) {
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Raw_Get(benchmark::State& state) {
  raw_conn conn;
  const std::string key = bench_options(sturdy::redis::time_source::server).key_prefix +
                          "raw:" + std::to_string(state.thread_index());
  freeReplyObject(redisCommand(conn.c, "SET %s %s EX 300", key.c_str(), "1700000000 123456789"));
  for (auto _ : state) {
    auto* r = static_cast<redisReply*>(redisCommand(conn.c, "GET %s", key.c_str()));
    benchmark::DoNotOptimize(r);
    freeReplyObject(r);
  }
  counters(state);
}
BENCHMARK(BM_Raw_Get)->Threads(1)->Threads(2)->UseRealTime();

// "k<thread>" (built without operator+: GCC 12's false -Wrestrict at -O3).
std::string thread_key(const benchmark::State& state) {
  std::string key = std::to_string(state.thread_index());
  key.insert(key.begin(), 'k');
  return key;
}

void run(benchmark::State& state, limiter_t& l, bool want) {
  const std::string key = thread_key(state);
  for (auto _ : state) {
    const auto d = l.try_acquire(key);
    if (d.allowed != want) {
      state.SkipWithError(d.allowed ? "unexpectedly admitted" : "unexpectedly refused");
      break;
    }
    benchmark::DoNotOptimize(d);
  }
  counters(state);
}

void BM_RedisRateLimiter_Admitted(benchmark::State& state) {
  run(state, always_admits(sturdy::redis::time_source::server), true);
}
BENCHMARK(BM_RedisRateLimiter_Admitted)->Threads(1)->Threads(2)->UseRealTime();

void BM_RedisRateLimiter_Limited(benchmark::State& state) {
  for (int i = 0; i < 10 && never_admits().try_acquire(thread_key(state)).allowed; ++i) {
  }
  run(state, never_admits(), false);
}
BENCHMARK(BM_RedisRateLimiter_Limited)->Threads(1)->Threads(2)->UseRealTime();

void BM_RedisRateLimiter_ClientTime(benchmark::State& state) {
  run(state, always_admits(sturdy::redis::time_source::client), true);
}
BENCHMARK(BM_RedisRateLimiter_ClientTime)->Threads(1)->Threads(2)->UseRealTime();

// One thread, alternating a raw GET and a limiter decision in every
// iteration and timing each: both see the same machine load, so the ratio
// holds even while other work on the machine comes and goes.
void BM_Interleaved_GetVsDecision(benchmark::State& state) {
  raw_conn conn;
  const std::string key = bench_options(sturdy::redis::time_source::server).key_prefix + "raw:i";
  freeReplyObject(redisCommand(conn.c, "SET %s %s EX 300", key.c_str(), "1700000000 123456789"));
  auto& l = always_admits(sturdy::redis::time_source::server);
  std::chrono::nanoseconds get{}, decide{};
  bool get_first = true;  // alternate the order too, so neither always follows the other
  const auto timed_get = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    auto* r = static_cast<redisReply*>(redisCommand(conn.c, "GET %s", key.c_str()));
    get += std::chrono::steady_clock::now() - t0;
    benchmark::DoNotOptimize(r);
    freeReplyObject(r);
  };
  const auto timed_decision = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const auto d = l.try_acquire("i");
    decide += std::chrono::steady_clock::now() - t0;
    return d.allowed;
  };
  for (auto _ : state) {
    if (get_first) timed_get();
    const bool ok = timed_decision();
    if (!get_first) timed_get();
    get_first = !get_first;
    if (!ok) {
      state.SkipWithError("unexpectedly refused");
      break;
    }
  }
  const double n = static_cast<double>(state.iterations() == 0 ? 1 : state.iterations());
  state.counters["get_us"] = static_cast<double>(get.count()) / n / 1000.0;
  state.counters["decision_us"] = static_cast<double>(decide.count()) / n / 1000.0;
  state.counters["ratio"] =
      static_cast<double>(decide.count()) / static_cast<double>(get.count() == 0 ? 1 : get.count());
}
BENCHMARK(BM_Interleaved_GetVsDecision)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  if (!redis_reachable()) {
    std::printf("redis_rate_limiter_bench: no Redis at %s (set STURDY_REDIS_URL); skipped\n",
                address().c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
#endif  // STURDY_NO_HIREDIS
