// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: bench/sim/occ.hpp
// -----------------------------------------------------------------------------
//
// Scenario "occ": the experiment of the AWS Architecture Blog post
// "Exponential Backoff And Jitter" (Marc Brooker, 2015). N clients each need
// one successful conditional write to a single row under optimistic
// concurrency:
//
//   client --read-->  server   (returns the row's version v)
//   client <--v----   server
//   client --write(if version == v)--> server   (succeeds and bumps the
//   client <--ok / conflict-----------  server    version, or fails)
//   on conflict: sleep backoff, start again with a read
//
// Every one-way message takes |Normal(10 ms, 2 ms)|; the server is
// instantaneous and serial. Measured per run: write calls (the blog's
// "work") and the time until the last client has its success.
//
// Retry numbering. The blog's simulator counts retries from 1 in the
// exponent: the k-th retry (k = 1, 2, ...) has ceiling min(cap, base * 2^k),
// so with base 5 ms the first retry's ceiling is 10 ms. sturdy numbers
// retries from 0 (`next_delay(n)` has ceiling base * 2^n). The scenario
// therefore asks sturdy for `next_delay(k, ...)` with k = the number of
// failed writes so far (>= 1): identical to the blog for every curve-based
// strategy, and for decorrelated jitter (which ignores n and draws from
// [base, 3 x previous sleep], previous starting at base) the mapping does
// not matter.
//
// Every delay comes from `sturdy::backoff::next_delay`; "no backoff" is
// `sturdy::backoff::constant(0)`.

#ifndef STURDY_BENCH_SIM_OCC_HPP_
#define STURDY_BENCH_SIM_OCC_HPP_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine.hpp"
#include "sturdy/backoff.hpp"

namespace sturdy::sim {

struct occ_params {
  // Clients competing for the row. Default 10.
  std::uint32_t clients = 10;
  // One-way message latency |Normal(mean, sd)|. Defaults 10 ms and 2 ms.
  double latency_mean_ms = 10.0;
  double latency_sd_ms = 2.0;
  // Safety net: a run stops after this many write calls (a pathological
  // strategy could otherwise livelock). Default 10 million.
  std::uint64_t max_calls = 10'000'000;
};

// A named backoff strategy of the occ scenario.
struct occ_strategy {
  std::string name;
  backoff delays;
};

// The blog's four strategies plus sturdy's others, base 5 ms, cap 2000 ms.
[[nodiscard]] inline std::vector<occ_strategy> occ_strategies(
    duration base = std::chrono::milliseconds(5), duration cap = std::chrono::milliseconds(2000)) {
  return {
      {"no_backoff", backoff::constant(duration::zero())},
      {"exponential", backoff::exponential(base, cap, jitter::none)},
      {"full_jitter", backoff::exponential(base, cap, jitter::full)},
      {"equal_jitter", backoff::exponential(base, cap, jitter::equal)},
      {"decorrelated_jitter", backoff::decorrelated(base, cap)},
      {"ratio_jitter", backoff::exponential(base, cap, jitter::ratio)},
      {"decorrelated_smooth", backoff::decorrelated_smooth(base, cap)},
      {"linear_full_jitter", backoff::linear(base, cap, jitter::full)},
  };
}

struct occ_result {
  std::uint64_t calls = 0;          // write calls (the blog's work)
  std::uint64_t failed_writes = 0;  // conflicts
  std::uint64_t reads = 0;
  vtime completion = 0;                  // when the last client received its success
  std::vector<std::uint32_t> successes;  // per client (each must be exactly 1)
  std::uint64_t events = 0;
  bool truncated = false;  // stopped by max_calls
};

// One run of the scenario with `strategy`, drawing from `gen`.
[[nodiscard]] inline occ_result run_occ(const occ_params& p, const backoff& strategy, generator& gen) {
  enum class kind : std::uint8_t { read_arrive, read_reply, write_arrive, write_reply };
  struct event {
    kind what;
    std::uint32_t client;
  };
  struct client_state {
    std::uint64_t seen_version = 0;
    std::uint32_t failures = 0;  // failed writes so far = the blog's retry number of the next retry
    bool write_ok = false;
    backoff::state backoff_state{};
  };

  const double mean = p.latency_mean_ms * 1e6;
  const double sd = p.latency_sd_ms * 1e6;
  auto latency = [&] { return static_cast<vtime>(abs_normal(gen, mean, sd)); };

  event_queue<event> q;
  q.reserve(p.clients * 2);
  std::vector<client_state> clients(p.clients);
  occ_result r;
  r.successes.assign(p.clients, 0);
  std::uint64_t version = 0;
  std::uint32_t remaining = p.clients;

  for (std::uint32_t c = 0; c < p.clients; ++c) {
    ++r.reads;
    q.schedule(latency(), {kind::read_arrive, c});
  }
  while (!q.empty() && remaining > 0) {
    const event e = q.pop();
    client_state& cl = clients[e.client];
    switch (e.what) {
      case kind::read_arrive:
        cl.seen_version = version;
        q.schedule_after(latency(), {kind::read_reply, e.client});
        break;
      case kind::read_reply:
        ++r.calls;
        q.schedule_after(latency(), {kind::write_arrive, e.client});
        break;
      case kind::write_arrive:
        cl.write_ok = cl.seen_version == version;
        if (cl.write_ok) ++version;
        q.schedule_after(latency(), {kind::write_reply, e.client});
        break;
      case kind::write_reply:
        if (cl.write_ok) {
          ++r.successes[e.client];
          r.completion = q.now();
          --remaining;
          break;
        }
        ++r.failed_writes;
        ++cl.failures;
        if (r.calls >= p.max_calls) {
          r.truncated = true;
          remaining = 0;
          break;
        }
        {
          // The blog's retry k = cl.failures (from 1) is sturdy's n = k (see banner).
          const duration d = strategy.next_delay(cl.failures, cl.backoff_state, gen);
          ++r.reads;
          // Sleep, then the read's outbound message.
          q.schedule_after(from_duration(d) + latency(), {kind::read_arrive, e.client});
        }
        break;
    }
  }
  r.events = q.processed();
  return r;
}

// Mean and standard deviation over runs for one (strategy, N).
struct occ_summary {
  std::string strategy;
  std::uint32_t clients = 0;
  std::uint32_t runs = 0;
  double mean_calls = 0, sd_calls = 0;
  double mean_completion_ms = 0, sd_completion_ms = 0;
  std::uint64_t events = 0;
  bool truncated = false;
};

// `runs` runs; run i uses generator (seed, i) so every strategy and N sees
// the same latency streams' seeds.
[[nodiscard]] inline occ_summary summarise_occ(const occ_params& p, const occ_strategy& s, std::uint64_t seed,
                                               std::uint32_t runs) {
  occ_summary out;
  out.strategy = s.name;
  out.clients = p.clients;
  out.runs = runs;
  double sc = 0, scc = 0, st = 0, stt = 0;
  for (std::uint32_t i = 0; i < runs; ++i) {
    generator gen = make_generator(seed, (static_cast<std::uint64_t>(p.clients) << 32) | i);
    const occ_result r = run_occ(p, s.delays, gen);
    const double c = static_cast<double>(r.calls);
    const double t = to_ms(r.completion);
    sc += c;
    scc += c * c;
    st += t;
    stt += t * t;
    out.events += r.events;
    out.truncated = out.truncated || r.truncated;
  }
  const double n = runs > 0 ? static_cast<double>(runs) : 1.0;
  out.mean_calls = sc / n;
  out.mean_completion_ms = st / n;
  out.sd_calls = std::sqrt(std::fmax(0.0, scc / n - out.mean_calls * out.mean_calls));
  out.sd_completion_ms = std::sqrt(std::fmax(0.0, stt / n - out.mean_completion_ms * out.mean_completion_ms));
  return out;
}

}  // namespace sturdy::sim

#endif  // STURDY_BENCH_SIM_OCC_HPP_
