// Benchmarks of the Redis idempotency store against a local redis-server
// (`STURDY_REDIS_URL`, host:port; default 127.0.0.1:6379), next to raw
// hiredis GET and SET round trips in the same binary: the physical floor.
//
//   BM_Raw_Get / BM_Raw_Set            one hiredis command, one round trip
//   BM_Redis_Replay                    execute() on a completed key: begin
//                                      script answers with the value (1 RTT)
//   BM_Redis_FirstExecution            execute() on a new key: begin +
//                                      complete scripts (2 RTT)
//   BM_Redis_BeginAbandon              store begin + abandon (2 RTT)
// each at 1 and 2 client threads (one connection per thread for raw hiredis;
// the store's pool for sturdy). Counters: calls per second, round trips per
// call (`rtt`).
//
// Without a reachable Redis it prints one line and exits 0 (it is smoke-run
// in ctest).
#ifdef STURDY_NO_HIREDIS
#include <cstdio>
int main() {
  std::printf("redis_idempotency_bench: built without hiredis; skipped\n");
  return 0;
}
#else
#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "sturdy/redis/idempotency_store.hpp"

namespace {

std::string address() {
  const char* url = std::getenv("STURDY_REDIS_URL");
  return url != nullptr && *url != '\0' ? url : "127.0.0.1:6379";
}

sturdy::redis::store_options bench_options() {
  auto o = sturdy::redis::with_address({}, address());
  sturdy::redis::store_options out = o.has_value() ? o.value() : sturdy::redis::store_options{};
  out.key_prefix = "sturdy-bench:" + std::to_string(::getpid()) + ":";
  out.pool_size = 4;
  return out;
}

using cache_t = sturdy::redis::idempotency_cache<std::uint64_t>;

// Shared by the threads of one benchmark run.
cache_t& cache() {
  static cache_t c({.ttl = std::chrono::minutes(5)}, bench_options());
  return c;
}

struct raw_conn {
  redisContext* c = nullptr;
  raw_conn() {
    const auto o = bench_options();
    c = redisConnectWithTimeout(o.host.c_str(), o.port, timeval{1, 0});
  }
  ~raw_conn() {
    if (c != nullptr) redisFree(c);
  }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;
};

void BM_Raw_Get(benchmark::State& state) {
  raw_conn conn;
  const std::string key = bench_options().key_prefix + "raw:" + std::to_string(state.thread_index());
  freeReplyObject(redisCommand(conn.c, "SET %s %s EX 300", key.c_str(), "0123456789abcdef"));
  for (auto _ : state) {
    auto* r = static_cast<redisReply*>(redisCommand(conn.c, "GET %s", key.c_str()));
    benchmark::DoNotOptimize(r);
    freeReplyObject(r);
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rtt"] = benchmark::Counter(1, benchmark::Counter::kAvgThreads);
}

void BM_Raw_Set(benchmark::State& state) {
  raw_conn conn;
  const std::string key = bench_options().key_prefix + "raw:" + std::to_string(state.thread_index());
  for (auto _ : state) {
    auto* r =
        static_cast<redisReply*>(redisCommand(conn.c, "SET %s %s EX 300", key.c_str(), "0123456789abcdef"));
    benchmark::DoNotOptimize(r);
    freeReplyObject(r);
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rtt"] = benchmark::Counter(1, benchmark::Counter::kAvgThreads);
}

void BM_Redis_Replay(benchmark::State& state) {
  constexpr int keys = 256;
  if (state.thread_index() == 0) {
    for (int k = 0; k < keys; ++k) {
      (void)cache().execute("replay-" + std::to_string(k), 1, [k] { return std::uint64_t(k); });
    }
  }
  std::string key;
  int k = state.thread_index();
  for (auto _ : state) {
    key = "replay-" + std::to_string(k++ % keys);
    auto r = cache().execute(key, 1, [] { return std::uint64_t(0); });
    if (!r.replayed) state.SkipWithError("expected a replay");
    benchmark::DoNotOptimize(r);
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rtt"] = benchmark::Counter(1, benchmark::Counter::kAvgThreads);
}

std::atomic<std::uint64_t> next_key{0};

void BM_Redis_FirstExecution(benchmark::State& state) {
  std::string key;
  for (auto _ : state) {
    key = "first-" + std::to_string(next_key.fetch_add(1, std::memory_order_relaxed));
    auto r = cache().execute(key, 1, [] { return std::uint64_t(1); });
    if (r.replayed || !r.result.has_value()) state.SkipWithError("expected a first execution");
    benchmark::DoNotOptimize(r);
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rtt"] = benchmark::Counter(2, benchmark::Counter::kAvgThreads);
}

void BM_Redis_BeginAbandon(benchmark::State& state) {
  auto& store = cache().store();
  const std::string key = "abandon-" + std::to_string(state.thread_index());
  for (auto _ : state) {
    auto b = store.begin(key, 1, std::chrono::seconds(30));
    if (!b.has_value() || b.value().status != sturdy::begin_status::acquired) {
      state.SkipWithError("expected to acquire");
      break;
    }
    (void)store.abandon(key, b.value().token);
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["rtt"] = benchmark::Counter(2, benchmark::Counter::kAvgThreads);
}

BENCHMARK(BM_Raw_Get)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Raw_Set)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Redis_Replay)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Redis_FirstExecution)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Redis_BeginAbandon)->Threads(1)->Threads(2)->UseRealTime();

// The server's counters: client round trips (calls of EVALSHA, EVAL and GET
// from INFO commandstats: scripts' inner commands are not counted there) and
// all commands processed (INFO stats: counts the scripts' inner commands).
struct server_counts {
  long long round_trips = 0;
  long long commands = 0;
};

long long stat(const std::string& info, const std::string& field) {
  const auto at = info.find(field);
  return at == std::string::npos ? 0 : std::atoll(info.c_str() + at + field.size());
}

server_counts counts(raw_conn& conn) {
  server_counts out;
  auto* r = static_cast<redisReply*>(redisCommand(conn.c, "INFO all"));
  if (r != nullptr && r->type == REDIS_REPLY_STRING) {
    const std::string info(r->str, r->len);
    out.round_trips = stat(info, "cmdstat_evalsha:calls=") + stat(info, "cmdstat_eval:calls=") +
                      stat(info, "cmdstat_get:calls=");
    out.commands = stat(info, "total_commands_processed:");
  }
  if (r != nullptr) freeReplyObject(r);
  return out;
}

// Measures round trips per operation with the server's own counters (on a
// shared server other clients' commands inflate them).
void print_round_trips() {
  raw_conn conn;
  constexpr int n = 100;
  auto& c = cache();
  auto measure = [&](const char* what, auto&& op) {
    const server_counts before = counts(conn);
    for (int i = 0; i < n; ++i) op(i);
    const server_counts after = counts(conn);
    std::printf("%-30s round trips %.2f, server commands %.2f\n", what,
                static_cast<double>(after.round_trips - before.round_trips) / n,
                static_cast<double>(after.commands - before.commands - 1) / n);
  };
  (void)c.execute("rtt-warm", 1, [] { return std::uint64_t(1); });  // opens a pooled connection
  measure("first execution (execute):",
          [&](int i) { (void)c.execute("rtt-" + std::to_string(i), 1, [] { return std::uint64_t(1); }); });
  measure("replay (execute):",
          [&](int i) { (void)c.execute("rtt-" + std::to_string(i), 1, [] { return std::uint64_t(1); }); });
  measure("begin + abandon (store):", [&](int i) {
    auto b = c.store().begin("rtt-abandon-" + std::to_string(i), 1, std::chrono::seconds(30));
    if (b.has_value()) (void)c.store().abandon("rtt-abandon-" + std::to_string(i), b.value().token);
  });
  measure("GET (raw hiredis):", [&](int) { freeReplyObject(redisCommand(conn.c, "GET rtt")); });
}

}  // namespace

// Own main: skip (exit 0) without a reachable Redis.
int main(int argc, char** argv) {
  {
    sturdy::redis::idempotency_store<int> probe(bench_options());
    if (!probe.ping().has_value()) {
      std::printf("redis_idempotency_bench: no Redis at %s (set STURDY_REDIS_URL); skipped\n",
                  address().c_str());
      return 0;
    }
  }
  print_round_trips();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
#endif  // STURDY_NO_HIREDIS
