// The broker path, message by message: publish with confirm, consume, process
// (no-op), ack, against a RabbitMQ broker (`STURDY_RABBITMQ_URL`, default
// amqp://guest:guest@127.0.0.1:5672/), on a durable quorum queue:
//
//   BM_Bare            a bare librabbitmq loop (the baseline, same run)
//   BM_Sturdy          sturdy::rabbitmq::publisher + consumer
//   BM_SturdyWorker    the same plus the worker's layers around the no-op:
//                      idempotency cache keyed by the message id (in memory),
//                      retry, circuit breaker
// each with 1 and 2 workers (threads; each has its own connections, all on
// one queue). items_per_second = messages through the whole path.
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

// One queue per benchmark and thread count (every thread declares it:
// idempotent, and done before it subscribes).
rmq::topology topology_for(const benchmark::State& state, const char* name) {
  const std::string p =
      "sturdy.bench." + std::to_string(::getpid()) + "." + name + "." + std::to_string(state.threads());
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

void BM_Bare(benchmark::State& state) {
  const rmq::topology t = topology_for(state, "bare");
  const rmq::connection_options o = options();
  bare_conn pub, con;
  if (!setup(state, t) || !pub.open(o) || !con.open(o)) {
    state.SkipWithError("no broker at STURDY_RABBITMQ_URL");
    return;
  }
  amqp_confirm_select(pub.s, 1);
  (void)amqp_get_rpc_reply(pub.s);
  amqp_basic_qos(con.s, 1, 0, 1, 0);
  (void)amqp_get_rpc_reply(con.s);
  amqp_basic_consume(con.s, 1, amqp_cstring_bytes(t.queue.c_str()), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  (void)amqp_get_rpc_reply(con.s);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    const std::string id = message_id();
    amqp_basic_properties_t props{};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
    props.delivery_mode = 2;
    props.message_id = amqp_cstring_bytes(id.c_str());
    amqp_basic_publish(pub.s, 1, amqp_cstring_bytes(t.exchange.c_str()), amqp_cstring_bytes(t.queue.c_str()), 1, 0,
                       &props, amqp_cstring_bytes("payload"));
    ++seq;
    for (;;) {  // the confirm
      amqp_frame_t f;
      if (amqp_simple_wait_frame(pub.s, &f) != AMQP_STATUS_OK) {
        state.SkipWithError("connection lost");
        return;
      }
      if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD &&
          static_cast<amqp_basic_ack_t*>(f.payload.method.decoded)->delivery_tag >= seq)
        break;
    }
    amqp_maybe_release_buffers(pub.s);
    amqp_envelope_t env;
    amqp_maybe_release_buffers(con.s);
    if (amqp_consume_message(con.s, &env, nullptr, 0).reply_type != AMQP_RESPONSE_NORMAL) {
      state.SkipWithError("consume failed");
      return;
    }
    benchmark::DoNotOptimize(env.message.body.len);  // the no-op process
    amqp_basic_ack(con.s, 1, env.delivery_tag, 0);
    amqp_destroy_envelope(&env);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- sturdy ---------------------------------------------------------------------
template <bool WithLayers>
void run_sturdy(benchmark::State& state, const char* name) {
  const rmq::topology t = topology_for(state, name);
  if (!setup(state, t)) {
    state.SkipWithError("no broker at STURDY_RABBITMQ_URL");
    return;
  }
  rmq::publisher pub(options());
  rmq::consumer con(options(), {.queue = t.queue, .prefetch = 1});
  sturdy::idempotency_cache<int> cache({.ttl = std::chrono::minutes(5)});
  sturdy::circuit_breaker<> breaker({});
  auto layers = sturdy::compose(sturdy::retry_policy(sturdy::retry_options{.max_attempts = 3}), breaker);
  for (auto _ : state) {
    if (!pub.publish({.exchange = t.exchange, .routing_key = t.queue, .message_id = message_id(), .body = "payload"})) {
      state.SkipWithError("publish failed");
      return;
    }
    auto d = con.next(std::chrono::seconds(5));
    if (!d || !d.value()) {
      state.SkipWithError("consume failed");
      return;
    }
    const rmq::delivery& m = *d.value();
    if constexpr (WithLayers) {
      auto r = cache.execute(m.message_id, sturdy::stable_fingerprint(m.body), [&]() -> sturdy::result<int> {
        return layers.execute([&]() -> sturdy::result<int> { return static_cast<int>(m.body.size()); });
      });
      benchmark::DoNotOptimize(r);
    } else {
      benchmark::DoNotOptimize(m.body.size());
    }
    (void)con.ack(m);
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_Sturdy(benchmark::State& state) { run_sturdy<false>(state, "sturdy"); }
void BM_SturdyWorker(benchmark::State& state) { run_sturdy<true>(state, "worker"); }

BENCHMARK(BM_Bare)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_Sturdy)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_SturdyWorker)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
#endif  // STURDY_NO_RABBITMQ
