// Benchmarks for sturdy/asio/retry.hpp: async_retry's happy path against a
// bare co_await of the same operation, in the same binary (report ratios
// and the absolute difference of medians):
//   (a) an operation that completes at once (a zero-duration steady_timer
//       wait): the absolute overhead of async_retry in ns;
//   (b) a loopback TCP round trip (64 bytes written and echoed back) to a
//       tiny echo server in this binary, on the same io_context: the ratio
//       (target <= 1.05).
// `AsyncRetry` is `co_await async_retry(..., use_awaitable)`: the coroutine
// driver. `AsyncRetryOp` is `co_await async_retry(..., deferred)`: the same
// call through retry_op (state block, strand, completion post), the driver
// every non-awaitable token gets.
// Every benchmark reports allocs/iter.
//
// Run:
//   build/dev/bench/asio_retry_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include <benchmark/benchmark.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "sturdy/asio/retry.hpp"
#include "sturdy/testing/counting_allocator.hpp"

namespace {

// Reports allocs/iter (this binary links the counting operator new).
struct alloc_counter {
  explicit alloc_counter(benchmark::State& s) : state(s), start(sturdy::testing::thread_allocations().allocations) {}
  ~alloc_counter() {
    const auto n = sturdy::testing::thread_allocations().allocations - start;
    state.counters["allocs/iter"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kAvgIterations);
  }
  alloc_counter(const alloc_counter&) = delete;
  alloc_counter& operator=(const alloc_counter&) = delete;
  benchmark::State& state;
  std::uint64_t start;
};

namespace net = boost::asio;
using tcp = net::ip::tcp;

const sturdy::retry_policy<> policy;  // defaults: 3 attempts; the happy path never waits

// (a) ---------------------------------------------------------------------------

void BM_AsioRetry_ZeroTimer_BareCoAwait(benchmark::State& state) {
  net::io_context io;
  net::steady_timer timer(io);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        const alloc_counter counter(state);
        for (auto _ : state) {
          timer.expires_after(std::chrono::nanoseconds(0));
          auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
          benchmark::DoNotOptimize(ec);
        }
      },
      net::detached);
  io.run();
}

template <class Token>
void zero_timer_retry(benchmark::State& state, Token token) {
  net::io_context io;
  net::steady_timer timer(io);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        const alloc_counter counter(state);
        for (auto _ : state) {
          sturdy::result<void> r = co_await sturdy::asio::async_retry(
              policy,
              [&](const sturdy::call_context&) {
                timer.expires_after(std::chrono::nanoseconds(0));
                return timer.async_wait(net::deferred);
              },
              token);
          benchmark::DoNotOptimize(r);
        }
      },
      net::detached);
  io.run();
}

void BM_AsioRetry_ZeroTimer_AsyncRetry(benchmark::State& state) { zero_timer_retry(state, net::use_awaitable); }
void BM_AsioRetry_ZeroTimer_AsyncRetryOp(benchmark::State& state) { zero_timer_retry(state, net::deferred); }

// (b) ---------------------------------------------------------------------------

net::awaitable<void> echo_session(tcp::socket s) {
  std::array<char, 64> buf{};
  for (;;) {
    auto [ec, n] = co_await net::async_read(s, net::buffer(buf), net::as_tuple(net::use_awaitable));
    if (ec) co_return;
    auto [wec, m] = co_await net::async_write(s, net::buffer(buf, n), net::as_tuple(net::use_awaitable));
    if (wec) co_return;
  }
}

// One round trip: write 64 bytes, read the 64 echoed.
net::awaitable<sturdy::result<std::size_t>> round_trip(tcp::socket& s) {
  std::array<char, 64> out{1, 2, 3};
  std::array<char, 64> in{};
  auto [wec, w] = co_await net::async_write(s, net::buffer(out), net::as_tuple(net::use_awaitable));
  if (wec) co_return std::error_code(wec);
  auto [rec, r] = co_await net::async_read(s, net::buffer(in), net::as_tuple(net::use_awaitable));
  if (rec) co_return std::error_code(rec);
  co_return w + r;
}

// 0: bare co_await; 1: async_retry with use_awaitable; 2: with deferred.
template <int Retry>
void tcp_bench(benchmark::State& state) {
  net::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  acceptor.async_accept([](std::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      net::co_spawn(s.get_executor(), echo_session(std::move(s)), net::detached);
    }
  });
  tcp::socket client(io);
  client.connect(acceptor.local_endpoint());
  client.set_option(tcp::no_delay(true));
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        const alloc_counter counter(state);
        for (auto _ : state) {
          if constexpr (Retry == 1) {
            sturdy::result<std::size_t> r = co_await sturdy::asio::async_retry(
                policy, [&](const sturdy::call_context&) { return round_trip(client); }, net::use_awaitable);
            benchmark::DoNotOptimize(r);
          } else if constexpr (Retry == 2) {
            sturdy::result<std::size_t> r = co_await sturdy::asio::async_retry(
                policy, [&](const sturdy::call_context&) { return round_trip(client); }, net::deferred);
            benchmark::DoNotOptimize(r);
          } else {
            sturdy::result<std::size_t> r = co_await round_trip(client);
            benchmark::DoNotOptimize(r);
          }
        }
        client.close();
      },
      net::detached);
  io.run();
}
void BM_AsioRetry_LoopbackTcp_BareCoAwait(benchmark::State& state) { tcp_bench<0>(state); }
void BM_AsioRetry_LoopbackTcp_AsyncRetry(benchmark::State& state) { tcp_bench<1>(state); }
void BM_AsioRetry_LoopbackTcp_AsyncRetryOp(benchmark::State& state) { tcp_bench<2>(state); }

BENCHMARK(BM_AsioRetry_ZeroTimer_BareCoAwait);
BENCHMARK(BM_AsioRetry_ZeroTimer_AsyncRetry);
BENCHMARK(BM_AsioRetry_ZeroTimer_AsyncRetryOp);
BENCHMARK(BM_AsioRetry_LoopbackTcp_BareCoAwait);
BENCHMARK(BM_AsioRetry_LoopbackTcp_AsyncRetry);
BENCHMARK(BM_AsioRetry_LoopbackTcp_AsyncRetryOp);

}  // namespace

