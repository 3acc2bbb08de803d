// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// fleet_sim: what sturdy's retry policies do to a whole fleet, in virtual time.
// -----------------------------------------------------------------------------
//
//   fleet_sim --scenario occ    [--clients 10,50,100] [--strategy all|a,b] [--runs 100]
//   fleet_sim --scenario outage [--clients 10000] [--config all|a,b|custom] [custom flags]
//
// Prints a summary table on stdout; `--csv FILE` writes the detailed CSV
// (occ: one row per strategy and N; outage: the time series), `-` for
// stdout. `--help` lists every flag. See docs/fleet-simulation.md.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "engine.hpp"
#include "occ.hpp"
#include "outage.hpp"

namespace {

using namespace sturdy::sim;
using sturdy::backoff;
using sturdy::jitter;

constexpr const char* kUsage = R"(fleet_sim: sturdy's retry policies at fleet scale, in virtual time.

Common:
  --scenario occ|outage     which experiment (default occ)
  --seed N                  random seed (default 1); same seed, same numbers
  --runs N                  runs per point (occ default 100, outage default 1;
                            outage with N > 1 averages the summary figures)
  --csv FILE                detailed CSV to FILE ('-' = stdout)
  --summary-csv FILE        the summary table as CSV
  --help

occ (AWS 2015 "Exponential Backoff And Jitter" experiment):
  --clients LIST            comma list of N (default 10,20,...,190)
  --strategy LIST|all       no_backoff, exponential, full_jitter, equal_jitter,
                            decorrelated_jitter, ratio_jitter, decorrelated_smooth,
                            linear_full_jitter (default all)
  --base-ms X --cap-ms X    backoff base and cap (default 5 and 2000)

outage (fleet vs a fixed-capacity service that fails for a window):
  --clients N               client processes (default 1000)
  --config LIST|all|extra   no_retry, naive_immediate, exponential, full_jitter,
                            jitter_ratio_budget, jitter_token_budget,
                            jitter_budget_breaker, sturdy_defaults (= all);
                            extra: jitter_adaptive_throttle,
                            jitter_ratio_finagle_defaults;
                            custom: built from the flags below
  --rate X                  requests/s per client (default 1)
  --capacity X              service capacity, requests/s (default 1.4 x demand)
  --queue-s X               queue bound in seconds of work (default 2)
  --timeout-ms X            client timeout per attempt (default 1000)
  --latency-ms X            one-way latency (default 1)
  --duration-s X            simulated time (default 600)
  --outage-start-s X        (default 120)
  --outage-s X              outage length (default 30)
  --mode stall|error        how the service fails (default stall)
  --bin-ms X                time-series bin (default 1000)
 custom config (--config custom; defaults = sturdy_defaults):
  --max-attempts N          attempts including the first (default 3)
  --backoff immediate|none|full|equal|ratio|decorrelated|smooth   (default full)
  --base-ms X --cap-ms X    (default 100 and 10000)
  --budget none|ratio|token|adaptive   (default token)
  --budget-ratio X          ratio budget share (default 0.1)
  --budget-floor X          ratio budget floor, retries/s per client (default 0.1)
  --budget-window-s X       ratio budget / throttle window (default 10 / 60)
  --max-tokens N            token bucket size (default 10)
  --token-ratio X           tokens per success (default 0.1)
  --throttle-k X            adaptive throttle K (default 2)
  --breaker                 add a circuit breaker per client
  --breaker-failures N      consecutive failures that trip it (default 5)
  --open-ms X               breaker open duration (default 5000)
)";

[[noreturn]] void die(const std::string& msg) {
  std::cerr << "fleet_sim: " << msg << "\n(--help lists the flags)\n";
  std::exit(2);
}

struct args {
  std::map<std::string, std::string> kv;
  [[nodiscard]] bool has(const std::string& k) const { return kv.count(k) != 0; }
  [[nodiscard]] std::string str(const std::string& k, const std::string& d) const {
    auto it = kv.find(k);
    return it == kv.end() ? d : it->second;
  }
  [[nodiscard]] double num(const std::string& k, double d) const {
    auto it = kv.find(k);
    if (it == kv.end()) return d;
    char* end = nullptr;
    const double v = std::strtod(it->second.c_str(), &end);
    if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v)) die("--" + k + " needs a number");
    return v;
  }
  [[nodiscard]] std::uint64_t count(const std::string& k, std::uint64_t d) const {
    const double v = num(k, static_cast<double>(d));
    if (v < 0 || v != std::floor(v) || v > 1e15) die("--" + k + " needs a non-negative integer");
    return static_cast<std::uint64_t>(v);
  }
};

args parse(int argc, char** argv) {
  static const char* const flags_without_value[] = {"help", "breaker"};
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    if (f.rfind("--", 0) != 0) die("unexpected argument '" + f + "'");
    f = f.substr(2);
    if (const auto eq = f.find('='); eq != std::string::npos) {
      a.kv[f.substr(0, eq)] = f.substr(eq + 1);
      continue;
    }
    bool bare = false;
    for (const char* b : flags_without_value) bare = bare || f == b;
    if (bare) {
      a.kv[f] = "1";
    } else {
      if (i + 1 >= argc) die("--" + f + " needs a value");
      a.kv[f] = argv[++i];
    }
  }
  static const char* const known[] = {"help",
                                      "scenario",
                                      "seed",
                                      "runs",
                                      "csv",
                                      "summary-csv",
                                      "clients",
                                      "strategy",
                                      "base-ms",
                                      "cap-ms",
                                      "config",
                                      "rate",
                                      "capacity",
                                      "queue-s",
                                      "timeout-ms",
                                      "latency-ms",
                                      "duration-s",
                                      "outage-start-s",
                                      "outage-s",
                                      "mode",
                                      "bin-ms",
                                      "max-attempts",
                                      "backoff",
                                      "budget",
                                      "budget-ratio",
                                      "budget-floor",
                                      "budget-window-s",
                                      "max-tokens",
                                      "token-ratio",
                                      "throttle-k",
                                      "breaker",
                                      "breaker-failures",
                                      "open-ms"};
  for (const auto& [k, v] : a.kv) {
    bool ok = false;
    for (const char* n : known) ok = ok || k == n;
    if (!ok) die("unknown flag --" + k);
  }
  return a;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// An output stream for a --csv style flag: nullptr when absent.
struct sink {
  std::ofstream file;
  std::ostream* out = nullptr;
  explicit sink(const std::string& path) {
    if (path.empty()) return;
    if (path == "-") {
      out = &std::cout;
      return;
    }
    file.open(path);
    if (!file) die("cannot write " + path);
    out = &file;
  }
};

double wall_seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// ---------------------------------------------------------------- occ

int run_occ_scenario(const args& a) {
  const auto base = std::chrono::duration_cast<sturdy::duration>(
      std::chrono::duration<double, std::milli>(a.num("base-ms", 5)));
  const auto cap = std::chrono::duration_cast<sturdy::duration>(
      std::chrono::duration<double, std::milli>(a.num("cap-ms", 2000)));
  std::vector<occ_strategy> all = occ_strategies(base, cap);
  for (const auto& s : all) {
    if (auto m = s.delays.validation_message(); !m.empty()) die(std::string(m));
  }
  std::vector<occ_strategy> chosen;
  const std::string which = a.str("strategy", "all");
  if (which == "all") {
    chosen = all;
  } else {
    for (const std::string& name : split(which)) {
      bool found = false;
      for (const auto& s : all) {
        if (s.name == name) {
          chosen.push_back(s);
          found = true;
        }
      }
      if (!found) die("unknown strategy '" + name + "'");
    }
  }
  std::vector<std::uint32_t> ns;
  if (a.has("clients")) {
    for (const std::string& n : split(a.str("clients", ""))) {
      char* end = nullptr;
      const long v = std::strtol(n.c_str(), &end, 10);
      if (*end != '\0' || v < 1 || v > 100000) die("--clients needs positive integers");
      ns.push_back(static_cast<std::uint32_t>(v));
    }
  } else {
    for (std::uint32_t n = 10; n <= 190; n += 10) ns.push_back(n);
  }
  const auto runs = static_cast<std::uint32_t>(a.count("runs", 100));
  if (runs < 1) die("--runs must be >= 1");
  const std::uint64_t seed = a.count("seed", 1);

  sink csv(a.str("csv", ""));
  // The human summary goes to stderr when stdout carries the CSV.
  FILE* report = csv.out == &std::cout ? stderr : stdout;
  if (csv.out) *csv.out << "strategy,clients,runs,mean_calls,sd_calls,mean_completion_ms,sd_completion_ms\n";
  std::fprintf(report, "# occ: %zu strategies x %zu N x %u runs, seed %llu, base %.3g ms, cap %.4g ms\n",
               chosen.size(), ns.size(), runs, static_cast<unsigned long long>(seed), a.num("base-ms", 5),
               a.num("cap-ms", 2000));
  std::fprintf(report, "%-22s %6s %12s %16s\n", "strategy", "N", "mean_calls", "mean_time_ms");
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t events = 0;
  for (const auto& s : chosen) {
    for (std::uint32_t n : ns) {
      occ_params p;
      p.clients = n;
      const occ_summary r = summarise_occ(p, s, seed, runs);
      events += r.events;
      std::fprintf(report, "%-22s %6u %12.1f %16.1f%s\n", s.name.c_str(), n, r.mean_calls,
                   r.mean_completion_ms, r.truncated ? "  (truncated)" : "");
      if (csv.out) {
        *csv.out << s.name << ',' << n << ',' << runs << ',' << r.mean_calls << ',' << r.sd_calls << ','
                 << r.mean_completion_ms << ',' << r.sd_completion_ms << '\n';
      }
    }
  }
  const double wall = wall_seconds(t0);
  std::fprintf(report, "# %llu events in %.2f s wall (%.2f M events/s)\n",
               static_cast<unsigned long long>(events), wall, static_cast<double>(events) / wall / 1e6);
  return 0;
}

// ---------------------------------------------------------------- outage

outage_policy custom_policy(const args& a) {
  using namespace std::chrono;
  outage_policy p;
  p.name = "custom";
  const auto ms = [&](const char* k, double d) {
    return duration_cast<sturdy::duration>(duration<double, std::milli>(a.num(k, d)));
  };
  p.retry.max_attempts = static_cast<std::uint32_t>(a.count("max-attempts", 3));
  const std::string b = a.str("backoff", "full");
  const sturdy::duration base = ms("base-ms", 100), cap = ms("cap-ms", 10000);
  if (b == "immediate") {
    p.retry.backoff = backoff::constant(sturdy::duration::zero());
  } else if (b == "none") {
    p.retry.backoff = backoff::exponential(base, cap, jitter::none);
  } else if (b == "full") {
    p.retry.backoff = backoff::exponential(base, cap, jitter::full);
  } else if (b == "equal") {
    p.retry.backoff = backoff::exponential(base, cap, jitter::equal);
  } else if (b == "ratio") {
    p.retry.backoff = backoff::exponential(base, cap, jitter::ratio);
  } else if (b == "decorrelated") {
    p.retry.backoff = backoff::decorrelated(base, cap);
  } else if (b == "smooth") {
    p.retry.backoff = backoff::decorrelated_smooth(base, cap);
  } else {
    die("unknown --backoff '" + b + "'");
  }
  const std::string budget = a.str("budget", "token");
  if (budget == "none") {
    p.budget = budget_kind::none;
  } else if (budget == "ratio") {
    p.budget = budget_kind::ratio;
    p.ratio = {.ratio = a.num("budget-ratio", 0.1),
               .window = duration_cast<sturdy::duration>(duration<double>(a.num("budget-window-s", 10))),
               .min_retries_per_second = a.num("budget-floor", 0.1)};
  } else if (budget == "token") {
    p.budget = budget_kind::token;
    p.token = {.max_tokens = static_cast<std::uint32_t>(a.count("max-tokens", 10)),
               .token_ratio = a.num("token-ratio", 0.1)};
  } else if (budget == "adaptive") {
    p.budget = budget_kind::adaptive;
    p.adaptive = {.k = a.num("throttle-k", 2),
                  .window = duration_cast<sturdy::duration>(duration<double>(a.num("budget-window-s", 60)))};
  } else {
    die("unknown --budget '" + budget + "'");
  }
  if (a.has("breaker")) {
    p.use_breaker = true;
    p.breaker = fleet_breaker();
    p.breaker.consecutive_failure_threshold = static_cast<std::uint32_t>(a.count("breaker-failures", 5));
    p.breaker.open_duration = ms("open-ms", 5000);
    if (p.breaker.max_open_duration < p.breaker.open_duration)
      p.breaker.max_open_duration = p.breaker.open_duration;
  }
  return p;
}

int run_outage_scenario(const args& a) {
  outage_params p;
  p.clients = static_cast<std::uint32_t>(a.count("clients", 1000));
  p.rate_per_client = a.num("rate", 1.0);
  p.capacity_per_s = a.num("capacity", 0.0);
  p.queue_limit_s = a.num("queue-s", 2.0);
  const auto ns_of = [](double v, double scale) { return static_cast<vtime>(v * scale); };
  p.timeout = ns_of(a.num("timeout-ms", 1000), 1e6);
  p.latency = ns_of(a.num("latency-ms", 1), 1e6);
  p.run_time = ns_of(a.num("duration-s", 600), 1e9);
  p.outage_start = ns_of(a.num("outage-start-s", 120), 1e9);
  p.outage_end = p.outage_start + ns_of(a.num("outage-s", 30), 1e9);
  p.bin = ns_of(a.num("bin-ms", 1000), 1e6);
  const std::string mode = a.str("mode", "stall");
  if (mode == "stall") {
    p.mode = outage_mode::stall;
  } else if (mode == "error") {
    p.mode = outage_mode::error;
  } else {
    die("unknown --mode '" + mode + "'");
  }
  if (auto m = p.validation_message(); !m.empty()) die(std::string(m));

  std::vector<outage_policy> all = outage_policies();
  std::vector<outage_policy> extra = outage_extra_policies();
  std::vector<outage_policy> chosen;
  for (const std::string& name : split(a.str("config", "all"))) {
    if (name == "all") {
      chosen.insert(chosen.end(), all.begin(), all.end());
    } else if (name == "extra") {
      chosen.insert(chosen.end(), extra.begin(), extra.end());
    } else if (name == "custom") {
      chosen.push_back(custom_policy(a));
    } else {
      bool found = false;
      for (const auto* list : {&all, &extra}) {
        for (const auto& pol : *list) {
          if (pol.name == name) {
            chosen.push_back(pol);
            found = true;
          }
        }
      }
      if (!found) die("unknown config '" + name + "'");
    }
  }
  for (const auto& pol : chosen) {
    if (auto m = pol.validation_message(); !m.empty()) die(pol.name + ": " + std::string(m));
  }
  const auto runs = static_cast<std::uint32_t>(a.count("runs", 1));
  if (runs < 1) die("--runs must be >= 1");
  const std::uint64_t seed = a.count("seed", 1);

  sink csv(a.str("csv", ""));
  sink summary_csv(a.str("summary-csv", ""));
  FILE* report = (csv.out == &std::cout || summary_csv.out == &std::cout) ? stderr : stdout;
  if (csv.out) {
    *csv.out << "config,t_s,requests,first_attempts,retries,arrivals,rejected,served,wasted,succeeded,failed,"
                "budget_denied,breaker_rejected,load,goodput\n";
  }
  if (summary_csv.out) {
    *summary_csv.out << "config,clients,amplification_outage,amplification_after,success_rate,"
                        "success_rate_after,recovery_s,recovered,peak_load,events,wall_s\n";
  }
  std::fprintf(report,
               "# outage: %u clients x %.3g req/s = %.0f req/s demand; capacity %.0f req/s; queue %.3g s; "
               "timeout %.0f ms; outage %s [%.0f s, %.0f s) of %.0f s; seed %llu; %u run(s)\n",
               p.clients, p.rate_per_client, p.demand_per_s(), p.capacity(), p.queue_limit_s,
               to_ms(p.timeout), mode.c_str(), to_s(p.outage_start), to_s(p.outage_end), to_s(p.run_time),
               static_cast<unsigned long long>(seed), runs);
  std::fprintf(report, "%-30s %8s %8s %8s %8s %10s %9s %6s %10s %8s\n", "config", "amp_out", "amp_aft",
               "success", "succ_aft", "recovery_s", "recovered", "peak", "events/s", "wall_s");
  const double bin_s = to_s(p.bin);
  for (const auto& pol : chosen) {
    outage_result mean;
    double amp_o = 0, amp_a = 0, sr = 0, sra = 0, rec = 0, peak = 0, wall = 0;
    std::uint64_t events = 0;
    std::uint32_t recovered = 0, rec_n = 0;
    for (std::uint32_t i = 0; i < runs; ++i) {
      generator gen = make_generator(seed, i);
      const auto t0 = std::chrono::steady_clock::now();
      outage_result r = run_outage(p, pol, gen);
      wall += wall_seconds(t0);
      summarise_outage(p, r);
      amp_o += r.amplification_outage;
      amp_a += r.amplification_after;
      sr += r.success_rate;
      sra += r.success_rate_after;
      if (r.recovered) {
        ++recovered;
        rec += r.recovery_s;
        ++rec_n;
      }
      peak += r.peak_load;
      events += r.events;
      if (i == 0) mean = std::move(r);
    }
    const double n = runs;
    const double rec_mean = rec_n > 0 ? rec / rec_n : -1;
    char rec_text[32] = "never";
    if (rec_n > 0) std::snprintf(rec_text, sizeof rec_text, "%.1f", rec_mean);
    std::fprintf(report, "%-30s %8.2f %8.2f %7.1f%% %7.1f%% %10s %6u/%-2u %6.2f %9.2fM %8.2f\n",
                 pol.name.c_str(), amp_o / n, amp_a / n, 100 * sr / n, 100 * sra / n, rec_text, recovered,
                 runs, peak / n, static_cast<double>(events) / wall / 1e6, wall / n);
    if (summary_csv.out) {
      *summary_csv.out << pol.name << ',' << p.clients << ',' << amp_o / n << ',' << amp_a / n << ','
                       << sr / n << ',' << sra / n << ',' << rec_mean << ',' << recovered << ',' << peak / n
                       << ',' << events / runs << ',' << wall / n << '\n';
    }
    if (csv.out) {
      const auto b_end = static_cast<std::size_t>(p.run_time / p.bin);
      for (std::size_t b = 0; b < b_end && b < mean.bins.size(); ++b) {
        const outage_bin& x = mean.bins[b];
        *csv.out << pol.name << ',' << static_cast<double>(b) * bin_s << ',' << x.requests << ','
                 << x.first_attempts << ',' << x.retries << ',' << x.arrivals << ',' << x.rejected << ','
                 << x.served << ',' << x.wasted << ',' << x.succeeded << ',' << x.failed << ','
                 << x.budget_denied << ',' << x.breaker_rejected << ','
                 << static_cast<double>(x.arrivals) / (p.capacity() * bin_s) << ','
                 << static_cast<double>(x.succeeded) / (p.demand_per_s() * bin_s) << '\n';
      }
    }
  }
  std::fprintf(
      report,
      "# amp = attempts sent / requests (outage window; 60 s after); success = succeeded / finished;\n"
      "# recovery = s from the end of the outage until goodput >= 95%% of demand (5 s average);\n"
      "# recovered = also >= 95%% over the last 30 s; peak = max arrivals per bin / capacity.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const args a = parse(argc, argv);
  if (a.has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  const std::string scenario = a.str("scenario", "occ");
  if (scenario == "occ") return run_occ_scenario(a);
  if (scenario == "outage") return run_outage_scenario(a);
  die("unknown --scenario '" + scenario + "'");
}
