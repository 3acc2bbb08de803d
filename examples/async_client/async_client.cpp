// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
//
// examples/async_client: hedged requests against a server with a heavy tail.
//
// The server (on 127.0.0.1, an ephemeral port, its own thread) answers each
// request after a latency drawn from a seeded mixture: 98 % around 2 ms
// (normal, sd 0.3 ms), 2 % uniform in [100 ms, 1 s]; 1 % of the requests
// fail ("err"). It does not notice a client that gave up (like most
// servers), so every request it receives is load.
//
// The client runs `--concurrency` workers, each calling sequentially, one
// connection per attempt, through sturdy::asio::async_hedge in three modes:
//   none      max_attempts 1 (no hedging)
//   fixed     a hedge after 10 ms ("The Tail at Scale"), up to 3 attempts
//   adaptive  a hedge after the p95 of recent primaries' latencies
// and prints p50 / p99 / p99.9 of the call latency, the extra load (server
// requests per call - 1) and the error rate. `--csv FILE` writes the
// percentiles for docs/async.md's chart (examples/async_client/plot.sh).
//
//   example_async_client [--requests 5000] [--concurrency 50] [--warmup 300] [--seed 1] [--csv FILE]

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sturdy/asio/hedge.hpp"
#include "sturdy/retry_budget.hpp"

namespace net = boost::asio;
using net::ip::tcp;
using namespace std::chrono_literals;
constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);

// --- the server -----------------------------------------------------------------

struct server_state {
  explicit server_state(std::uint64_t seed) : rng(seed) {}
  std::mt19937_64 rng;  // used by the server's thread only
  std::atomic<std::uint64_t> requests{0};

  // One reply's latency and whether it fails.
  std::pair<std::chrono::nanoseconds, bool> draw() {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const bool slow = u(rng) < 0.02;
    const bool fail = u(rng) < 0.01;
    double ms = 0;
    if (slow) {
      ms = std::uniform_real_distribution<double>(100.0, 1000.0)(rng);
    } else {
      ms = std::max(0.5, std::normal_distribution<double>(2.0, 0.3)(rng));
    }
    return {std::chrono::nanoseconds(static_cast<std::int64_t>(ms * 1e6)), fail};
  }
};

net::awaitable<void> session(tcp::socket socket, server_state& st) {
  std::string line;
  auto [ec, n] = co_await net::async_read_until(socket, net::dynamic_buffer(line), '\n', tuple_awaitable);
  if (ec) co_return;
  st.requests.fetch_add(1, std::memory_order_relaxed);
  const auto [latency, fail] = st.draw();
  net::steady_timer timer(co_await net::this_coro::executor, latency);
  (void)co_await timer.async_wait(tuple_awaitable);
  const std::string reply = fail ? std::string("err\n") : "ok " + line.substr(0, n);
  (void)co_await net::async_write(socket, net::buffer(reply), tuple_awaitable);
}

net::awaitable<void> listen(tcp::acceptor& acceptor, server_state& st) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
    if (ec) co_return;
    net::co_spawn(acceptor.get_executor(), session(std::move(socket), st), net::detached);
  }
}

// --- the client -----------------------------------------------------------------

// One attempt: connect, send "key index", read the reply. Cancelled (a
// hedge won), its pending operation completes with operation_aborted and
// the connection closes.
net::awaitable<sturdy::result<std::string>> attempt(tcp::endpoint server, std::uint64_t key, std::uint32_t index) {
  tcp::socket socket(co_await net::this_coro::executor);
  auto [ec] = co_await socket.async_connect(server, tuple_awaitable);
  if (ec) co_return sturdy::result<std::string>(std::error_code(ec));
  // Close with a reset: tens of thousands of connections in TIME_WAIT would
  // make later connects slow (the kernel's port search) and skew later modes.
  socket.set_option(net::socket_base::linger(true, 0), ec);
  const std::string request = std::to_string(key) + " " + std::to_string(index) + "\n";
  auto [wec, wn] = co_await net::async_write(socket, net::buffer(request), tuple_awaitable);
  (void)wn;
  if (wec) co_return sturdy::result<std::string>(std::error_code(wec));
  std::string reply;
  auto [rec, rn] = co_await net::async_read_until(socket, net::dynamic_buffer(reply), '\n', tuple_awaitable);
  if (rec) co_return sturdy::result<std::string>(std::error_code(rec));
  if (reply.compare(0, 3, "err") == 0) co_return sturdy::result<std::string>(std::make_error_code(std::errc::io_error));
  reply.resize(rn);
  co_return sturdy::result<std::string>(std::move(reply));
}

struct mode_result {
  const char* name;
  std::vector<double> latencies_ms;  // sorted
  double extra_load = 0;
  double error_rate = 0;
  std::uint64_t completions = 0;
};

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size()))) - 1;
  return sorted[std::min(i, sorted.size() - 1)];
}

mode_result run_mode(const char* name, const sturdy::asio::hedge_options& opts, tcp::endpoint server,
                     server_state& st, int requests, int concurrency, int warmup) {
  net::io_context io;
  mode_result out{name, {}, 0, 0, 0};
  std::uint64_t errors = 0;
  auto make = [server](const sturdy::asio::hedge_attempt& a) { return attempt(server, a.key, a.index); };
  auto worker = [&](int calls, bool measure) -> net::awaitable<void> {
    for (int i = 0; i < calls; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      sturdy::result<std::string> r = co_await sturdy::asio::async_hedge(opts, make, net::use_awaitable);
      const auto t1 = std::chrono::steady_clock::now();
      ++out.completions;
      if (!measure) continue;
      out.latencies_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      if (!r) ++errors;
    }
  };
  // Warm-up (not measured): fills the adaptive histogram.
  if (warmup > 0) {
    for (int w = 0; w < concurrency; ++w) net::co_spawn(io, worker(warmup / concurrency, false), net::detached);
    io.run();
    io.restart();
  }
  const std::uint64_t before = st.requests.load();
  const std::uint64_t completions_before = out.completions;
  const int per_worker = requests / concurrency;
  for (int w = 0; w < concurrency; ++w) net::co_spawn(io, worker(per_worker, true), net::detached);
  io.run();
  const double calls = static_cast<double>(per_worker * concurrency);
  // Losers the server is still "working" on were received: count them.
  out.extra_load = static_cast<double>(st.requests.load() - before) / calls - 1.0;
  out.error_rate = static_cast<double>(errors) / calls;
  std::sort(out.latencies_ms.begin(), out.latencies_ms.end());
  if (out.completions - completions_before != static_cast<std::uint64_t>(per_worker * concurrency)) {
    std::fprintf(stderr, "%s: %llu completions for %d calls\n", name,
                 static_cast<unsigned long long>(out.completions - completions_before), per_worker * concurrency);
    std::exit(1);
  }
  return out;
}

int main(int argc, char** argv) {
  int requests = 5000, concurrency = 50, warmup = 300;
  std::uint64_t seed = 1;
  const char* csv = nullptr;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--concurrency")) concurrency = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
  }
  if (concurrency < 1 || requests < concurrency) {
    std::fprintf(stderr, "need --requests >= --concurrency >= 1\n");
    return 2;
  }

  // The server, on its own thread.
  net::io_context server_io;
  tcp::acceptor acceptor(server_io, tcp::endpoint(net::ip::address_v4::loopback(), 0));
  acceptor.listen(4096);
  server_state st(seed);
  net::co_spawn(server_io, listen(acceptor, st), net::detached);
  std::thread server_thread([&] { server_io.run(); });
  const tcp::endpoint server = acceptor.local_endpoint();

  // Hedges up to 3 attempts; a budget keeps the extra load bounded even if
  // the server slows down as a whole (10 % of calls plus a floor of tokens).
  sturdy::token_bucket_budget fixed_budget({.max_tokens = 100, .token_ratio = 0.1});
  sturdy::token_bucket_budget adaptive_budget({.max_tokens = 100, .token_ratio = 0.1});
  const sturdy::asio::hedge_options none{.max_attempts = 1};
  const sturdy::asio::hedge_options fixed{.max_attempts = 3, .delay = 10ms, .budget = fixed_budget};
  sturdy::asio::hedge_options adaptive{.max_attempts = 3, .delay = 10ms, .percentile = 0.95, .budget = adaptive_budget};
  adaptive.latencies = std::make_shared<sturdy::asio::latency_histogram>(2000);

  std::vector<mode_result> results;
  results.push_back(run_mode("none", none, server, st, requests, concurrency, warmup));
  results.push_back(run_mode("fixed 10ms", fixed, server, st, requests, concurrency, warmup));
  results.push_back(run_mode("adaptive p95", adaptive, server, st, requests, concurrency, warmup));
  const auto p95 = adaptive.latencies->quantile(0.95);

  std::printf("%-14s %9s %9s %9s %11s %7s\n", "mode", "p50 ms", "p99 ms", "p99.9 ms", "extra load", "errors");
  for (const auto& r : results) {
    std::printf("%-14s %9.2f %9.2f %9.2f %10.1f%% %6.2f%%\n", r.name, percentile(r.latencies_ms, 0.5),
                percentile(r.latencies_ms, 0.99), percentile(r.latencies_ms, 0.999), 100 * r.extra_load,
                100 * r.error_rate);
  }
  std::printf("adaptive delay at the end: %.2f ms (p95 of the primaries)\n",
              p95 ? std::chrono::duration<double, std::milli>(*p95).count() : 0.0);
  const double cut_fixed = percentile(results[0].latencies_ms, 0.999) / percentile(results[1].latencies_ms, 0.999);
  const double cut_adaptive = percentile(results[0].latencies_ms, 0.999) / percentile(results[2].latencies_ms, 0.999);
  std::printf("p99.9 cut: fixed %.1fx, adaptive %.1fx\n", cut_fixed, cut_adaptive);

  if (csv != nullptr) {
    if (FILE* f = std::fopen(csv, "w")) {
      std::fprintf(f, "percentile,none,fixed,adaptive\n");
      for (double q : {0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999}) {
        std::fprintf(f, "%g,%.3f,%.3f,%.3f\n", 100 * q, percentile(results[0].latencies_ms, q),
                     percentile(results[1].latencies_ms, q), percentile(results[2].latencies_ms, q));
      }
      std::fprintf(f, "# extra load %%: none %.2f fixed %.2f adaptive %.2f\n", 100 * results[0].extra_load,
                   100 * results[1].extra_load, 100 * results[2].extra_load);
      std::fclose(f);
    }
  }

  acceptor.close();
  server_io.stop();
  server_thread.join();
  return 0;
}
