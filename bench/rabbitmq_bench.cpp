// The broker path, message by message: publish with confirm, consume, process
// (no-op), ack, against a RabbitMQ broker (`STURDY_RABBITMQ_URL`, default
// amqp://guest:guest@127.0.0.1:5672/), on a durable quorum queue:
//
//   BM_Bare            a bare librabbitmq loop (the baseline, same run)
//   BM_Sturdy          sturdy::rabbitmq::publisher + consumer
//   BM_SturdyWorker    the same plus the worker's layers around the no-op:
//                      idempotency cache keyed by the message id (in memory),
//                      retry, circuit breaker
//   BM_Interleaved     the three above, message by message in rotating
//                      order, each timed on its own: the ratios to read
// each with 1 and 2 workers (threads; each has its own connections and its
// own queue on the one broker, so 2 workers measure the broker's parallel
// throughput). items_per_second = messages through the whole path.
//
// Without a reachable broker every benchmark is skipped (it is smoke-run in
// ctest).
#ifdef STURDY_NO_RABBITMQ
#include <cstdio>
int main() {
  std::printf("rabbitmq_bench: built without librabbitmq; skipped\n");
  return 0;
}
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include <benchmark/benchmark.h>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/rabbitmq/client.hpp"
#include "sturdy/retry.hpp"

namespace {

namespace rmq = sturdy::rabbitmq;

rmq::connection_options options() {
  const char* url = std::getenv("STURDY_RABBITMQ_URL");
  auto o = rmq::with_url({}, url != nullptr && *url != '\0' ? url : "amqp://guest:guest@127.0.0.1:5672/");
  rmq::connection_options out = o ? o.value() : rmq::connection_options{};
  out.command_timeout = std::chrono::seconds(5);
  return out;
}

// One queue per benchmark, thread count and worker: each worker publishes to
// and consumes from its own queue. (On one shared queue a worker that
// finished its iterations waits at the benchmark's end barrier holding a
// prefetched message the other worker waits for.)
rmq::topology topology_for(const benchmark::State& state, const char* name) {
  const std::string p = "sturdy.bench." + std::to_string(::getpid()) + "." + name + "." +
                        std::to_string(state.threads()) + "." + std::to_string(state.thread_index());
  return {.exchange = p + ".x", .queue = p + ".q", .delivery_limit = 5, .dead_letter_exchange = p + ".dlx",
          .dead_letter_queue = p + ".dlq"};
}

std::atomic<std::uint64_t> next_id{0};
std::string message_id() { return "m" + std::to_string(next_id.fetch_add(1, std::memory_order_relaxed)); }

bool setup(benchmark::State& state, const rmq::topology& t) {
  (void)state;
  return static_cast<bool>(rmq::declare(options(), t));
}

// ---- the baseline: librabbitmq by hand ----------------------------------------
struct bare_conn {
  amqp_connection_state_t s = nullptr;
  bool open(const rmq::connection_options& o) {
    s = amqp_new_connection();
    amqp_socket_t* sock = amqp_tcp_socket_new(s);
    if (amqp_socket_open(sock, o.host.c_str(), o.port) != AMQP_STATUS_OK) return false;
    if (amqp_login(s, o.vhost.c_str(), 0, AMQP_DEFAULT_FRAME_SIZE, 0, AMQP_SASL_METHOD_PLAIN, o.user.c_str(),
                   o.password.c_str())
            .reply_type != AMQP_RESPONSE_NORMAL)
      return false;
    amqp_channel_open(s, 1);
    return amqp_get_rpc_reply(s).reply_type == AMQP_RESPONSE_NORMAL;
  }
  ~bare_conn() {
    if (s == nullptr) return;
    amqp_channel_close(s, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(s, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(s);
  }
};

// The bare loop's connections and one message through them.
struct bare_path {
  bare_conn pub, con;
  std::uint64_t seq = 0;
  std::string exchange, queue;
  bool open(const rmq::connection_options& o, const rmq::topology& t) {
    exchange = t.exchange;
    queue = t.queue;
    if (!pub.open(o) || !con.open(o)) return false;
    amqp_confirm_select(pub.s, 1);
    if (amqp_get_rpc_reply(pub.s).reply_type != AMQP_RESPONSE_NORMAL) return false;
    amqp_basic_qos(con.s, 1, 0, 1, 0);
    if (amqp_get_rpc_reply(con.s).reply_type != AMQP_RESPONSE_NORMAL) return false;
    amqp_basic_consume(con.s, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    return amqp_get_rpc_reply(con.s).reply_type == AMQP_RESPONSE_NORMAL;
  }
  bool once() {
    const std::string id = message_id();
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.delivery_mode = 2;
    props.message_id = amqp_cstring_bytes(id.c_str());
    if (amqp_basic_publish(pub.s, 1, amqp_cstring_bytes(exchange.c_str()), amqp_cstring_bytes(queue.c_str()), 1, 0,
                           &props, amqp_cstring_bytes("payload")) != AMQP_STATUS_OK)
      return false;
    ++seq;
    for (;;) {  // the confirm
      amqp_frame_t f;
      if (amqp_simple_wait_frame(pub.s, &f) != AMQP_STATUS_OK) return false;
      if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD &&
          static_cast<amqp_basic_ack_t*>(f.payload.method.decoded)->delivery_tag >= seq)
        break;
    }
    amqp_maybe_release_buffers(pub.s);
    amqp_envelope_t env;
    amqp_maybe_release_buffers(con.s);
    if (amqp_consume_message(con.s, &env, nullptr, 0).reply_type != AMQP_RESPONSE_NORMAL) return false;
    benchmark::DoNotOptimize(env.message.body.len);  // the no-op process
    const bool ok = amqp_basic_ack(con.s, 1, env.delivery_tag, 0) == AMQP_STATUS_OK;
    amqp_destroy_envelope(&env);
    return ok;
  }
};

void BM_Bare(benchmark::State& state) {
  const rmq::topology t = topology_for(state, "bare");
  bare_path bare;
  if (!setup(state, t) || !bare.open(options(), t)) {
    state.SkipWithError("no broker at STURDY_RABBITMQ_URL");
    return;
  }
  for (auto _ : state) {
    if (!bare.once()) {
      state.SkipWithError("connection lost");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- sturdy ---------------------------------------------------------------------
// sturdy's publisher and consumer, optionally with the worker's layers.
template <bool WithLayers>
struct sturdy_path {
  rmq::topology t;
  rmq::publisher pub;
  rmq::consumer con;
  sturdy::idempotency_cache<int> cache{{.ttl = std::chrono::minutes(5)}};
  sturdy::circuit_breaker<> breaker{{}};
  decltype(sturdy::compose(sturdy::retry_policy(sturdy::retry_options{}), breaker)) layers =
      sturdy::compose(sturdy::retry_policy(sturdy::retry_options{.max_attempts = 3}), breaker);
  explicit sturdy_path(rmq::topology topo)
      : t(std::move(topo)), pub(options()), con(options(), {.queue = t.queue, .prefetch = 1}) {}
  bool once() {
    if (!pub.publish({.exchange = t.exchange, .routing_key = t.queue, .message_id = message_id(), .body = "payload"}))
      return false;
    auto d = con.next(std::chrono::seconds(5));
    if (!d || !d.value()) return false;
    const rmq::delivery& m = *d.value();
    if constexpr (WithLayers) {
      auto r = cache.execute(m.message_id, sturdy::stable_fingerprint(m.body), [&]() -> sturdy::result<int> {
        return layers.execute([&]() -> sturdy::result<int> { return static_cast<int>(m.body.size()); });
      });
      benchmark::DoNotOptimize(r);
    } else {
      benchmark::DoNotOptimize(m.body.size());
    }
    return static_cast<bool>(con.ack(m));
  }
};

template <bool WithLayers>
void run_sturdy(benchmark::State& state, const char* name) {
  const rmq::topology t = topology_for(state, name);
  if (!setup(state, t)) {
    state.SkipWithError("no broker at STURDY_RABBITMQ_URL");
    return;
  }
  sturdy_path<WithLayers> path(t);
  for (auto _ : state) {
    if (!path.once()) {
      state.SkipWithError("publish or consume failed");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_Sturdy(benchmark::State& state) { run_sturdy<false>(state, "sturdy"); }
void BM_SturdyWorker(benchmark::State& state) { run_sturdy<true>(state, "worker"); }

// The three paths interleaved, message by message, in rotating order, each
// timed on its own: the ratios hold while the shared machine's load (and
// the broker's fsync latency) swings. Counters: microseconds per message
// (bare_us, sturdy_us, worker_us) and the ratios sturdy/bare and
// worker/bare (1.00 = no cost; 1.10 = 10 % fewer messages per second).
void BM_Interleaved(benchmark::State& state) {
  const rmq::topology tb = topology_for(state, "ib");
  const rmq::topology ts = topology_for(state, "is");
  const rmq::topology tw = topology_for(state, "iw");
  bare_path bare;
  if (!setup(state, tb) || !setup(state, ts) || !setup(state, tw) || !bare.open(options(), tb)) {
    state.SkipWithError("no broker at STURDY_RABBITMQ_URL");
    return;
  }
  sturdy_path<false> plain(ts);
  sturdy_path<true> worker(tw);
  std::chrono::nanoseconds spent[3] = {};
  std::uint64_t turn = 0;
  for (auto _ : state) {
    for (int k = 0; k < 3; ++k) {
      const int which = static_cast<int>((turn + static_cast<std::uint64_t>(k)) % 3);
      const auto start = std::chrono::steady_clock::now();
      const bool ok = which == 0 ? bare.once() : which == 1 ? plain.once() : worker.once();
      spent[which] += std::chrono::steady_clock::now() - start;
      if (!ok) {
        state.SkipWithError("publish or consume failed");
        return;
      }
    }
    ++turn;
  }
  const double n = static_cast<double>(state.iterations());
  const auto us = [&](int i) { return std::chrono::duration<double, std::micro>(spent[i]).count() / n; };
  state.counters["bare_us"] = benchmark::Counter(us(0), benchmark::Counter::kAvgThreads);
  state.counters["sturdy_us"] = benchmark::Counter(us(1), benchmark::Counter::kAvgThreads);
  state.counters["worker_us"] = benchmark::Counter(us(2), benchmark::Counter::kAvgThreads);
  state.counters["sturdy/bare"] = benchmark::Counter(us(1) / us(0), benchmark::Counter::kAvgThreads);
  state.counters["worker/bare"] = benchmark::Counter(us(2) / us(0), benchmark::Counter::kAvgThreads);
  state.SetItemsProcessed(3 * state.iterations());
}

BENCHMARK(BM_Bare)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Sturdy)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SturdyWorker)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Interleaved)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
#endif  // STURDY_NO_RABBITMQ
