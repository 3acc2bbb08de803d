// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// limiter_sim: the "limiter" fleet-simulation scenario (bench/sim/limiter.hpp,
// docs/concurrency_limiter.md). Runs every configuration over the demand
// ramp and prints, per ramp step, goodput, p50/p99 of admitted calls,
// rejection rate and the mean limit, and whether issue 15's criterion holds.
//
//   limiter_sim [--seed N] [--step-s S] [--configs a,b,...]
//               [--csv bins.csv] [--summary-csv steps.csv]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "limiter.hpp"
#include "limiter_configs.hpp"

namespace {

using namespace sturdy::sim;

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto comma = s.find(',');
    out.emplace_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

int usage() {
  std::fprintf(stderr, "usage: limiter_sim [--seed N] [--step-s S] [--configs a,b] [--csv f] [--summary-csv f]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  limiter_params p;
  std::string csv;
  std::string summary_csv;
  std::vector<std::string> wanted;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--seed" && has_value) {
      p.seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--step-s" && has_value) {
      p.step = static_cast<vtime>(std::strtod(argv[++i], nullptr) * 1e9);
    } else if (a == "--configs" && has_value) {
      wanted = split(argv[++i]);
    } else if (a == "--csv" && has_value) {
      csv = argv[++i];
    } else if (a == "--summary-csv" && has_value) {
      summary_csv = argv[++i];
    } else {
      return usage();
    }
  }
  if (p.step < 100 * ns_per_ms) return usage();

  const double unloaded = unloaded_p99_ms(p);
  std::printf("service: %u servers, service time U[0.8, 1.2] x %.0f ms, capacity %.0f req/s; client timeout %.0f ms "
              "(%.0f x mean service time)\n",
              p.servers, to_ms(p.service_mean), p.capacity_per_s(), to_ms(p.timeout()), p.timeout_multiple);
  std::printf("unloaded p99 %.2f ms; criterion per step (after %.0f %% of it): p99 <= %.2f ms and goodput >= 90 %% "
              "of min(demand, capacity)\n\n",
              unloaded, p.settle_fraction * 100, 2 * unloaded);

  std::ofstream bins_out;
  std::ofstream steps_out;
  if (!csv.empty()) {
    bins_out.open(csv);
    bins_out << "config,t_s,demand,limit,goodput,p99_ms,rejected,in_flight\n";
  }
  if (!summary_csv.empty()) {
    steps_out.open(summary_csv);
    steps_out << "config,step,demand,goodput,goodput_ratio,p50_ms,p99_ms,rejection_rate,drop_rate,mean_limit,meets\n";
  }

  bool any = false;
  for (const limiter_config& c : limiter_configs(unloaded)) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), c.name) == wanted.end()) continue;
    any = true;
    const limiter_run r = run_limiter(p, c);
    std::printf("%-18s %s\n", c.name.c_str(), describe(c).c_str());
    std::printf("  %6s %8s %8s %8s %8s %8s %8s %6s\n", "demand", "goodput", "of need", "p50 ms", "p99 ms", "reject",
                "limit", "meets");
    int failing = 0;
    for (std::size_t s = 0; s < r.steps.size(); ++s) {
      const step_result& st = r.steps[s];
      const bool ok = meets_criterion(st, unloaded);
      failing += ok ? 0 : 1;
      std::printf("  %5.1fx %8.3f %7.1f%% %8.2f %8.2f %7.1f%% %8.1f %6s\n", st.demand, st.goodput,
                  st.goodput_ratio * 100, st.p50_ms, st.p99_ms, st.rejection_rate * 100, st.mean_limit,
                  ok ? "yes" : "no");
      if (steps_out) {
        steps_out << c.name << ',' << s << ',' << st.demand << ',' << st.goodput << ',' << st.goodput_ratio << ','
                  << st.p50_ms << ',' << st.p99_ms << ',' << st.rejection_rate << ',' << st.drop_rate << ','
                  << st.mean_limit << ',' << (ok ? 1 : 0) << '\n';
      }
    }
    if (failing == 0) {
      std::printf("  => meets the criterion at every step");
    } else {
      std::printf("  => fails the criterion at %d of %zu steps", failing, r.steps.size());
    }
    std::printf(" (%llu arrivals, %llu events)\n\n", static_cast<unsigned long long>(r.arrivals),
                static_cast<unsigned long long>(r.events));
    if (bins_out) {
      for (const bin_result& b : r.bins) {
        bins_out << c.name << ',' << b.t_s << ',' << b.demand << ',' << b.limit << ',' << b.goodput << ','
                 << b.p99_ms << ',' << b.rejected << ',' << b.in_flight << '\n';
      }
    }
  }
  if (!any) return usage();
  return 0;
}
