// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// example_onboarding_broker: the onboarding example's asynchronous step on
// RabbitMQ (see broker_flow.hpp and docs/onboarding.md, "The broker variant").
//
//   example_onboarding_broker signup --db F [--users N] [--poison-user K]
//   example_onboarding_broker relay  --db F --amqp URL [--duplicate-every N] [--crash-after-publish N]
//   example_onboarding_broker worker --db F --amqp URL --redis HOST:PORT [--name W] [--crash-after-send N]
//                                    [--fail-every N] [--idle-exit-ms M] [--lease-ms L]
//   example_onboarding_broker fix    --db F --user K
//   example_onboarding_broker dlq    --amqp URL list | inspect ID | replay ID | discard ID
//   example_onboarding_broker check  --db F
// Common: --prefix P (queue and key names), --delivery-limit N, --max-seconds S, --quiet.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "broker_flow.hpp"

int main(int argc, char** argv) {
  namespace b = onboarding::broker;
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " signup|relay|worker|fix|dlq|check [options] (see broker_main.cpp)\n";
    return 2;
  }
  const std::string cmd = argv[1];
  b::options o;
  std::vector<std::string> positional;
  std::int64_t user = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto number = [&]() -> int { return std::atoi(value().c_str()); };
    if (a == "--db") o.db_path = value();
    else if (a == "--amqp") o.amqp_url = value();
    else if (a == "--redis") o.redis = value();
    else if (a == "--prefix") o.prefix = value();
    else if (a == "--name") o.name = value();
    else if (a == "--delivery-limit") o.delivery_limit = number();
    else if (a == "--users") o.users = number();
    else if (a == "--poison-user") o.poison_user = number();
    else if (a == "--duplicate-every") o.duplicate_every = number();
    else if (a == "--crash-after-publish") o.crash_after_publish = number();
    else if (a == "--pace-ms") o.pace_ms = number();
    else if (a == "--crash-after-send") o.crash_after_send = number();
    else if (a == "--fail-every") o.fail_every = number();
    else if (a == "--idle-exit-ms") o.idle_exit_ms = number();
    else if (a == "--max-seconds") o.max_seconds = number();
    else if (a == "--lease-ms") o.lease_ms = number();
    else if (a == "--user") user = number();
    else if (a == "--quiet") o.quiet = true;
    else if (!a.empty() && a[0] == '-') {
      std::cerr << "unknown option " << a << "\n";
      return 2;
    } else positional.push_back(a);
  }
  if (cmd != "dlq" && o.db_path.empty()) {
    std::cerr << cmd << " needs --db FILE\n";
    return 2;
  }
  if (cmd == "signup") return b::signup(o, std::cout);
  if (cmd == "relay") return b::relay(o, std::cout);
  if (cmd == "worker") return b::worker(o, std::cout);
  if (cmd == "fix") return b::fix(o, user, std::cout);
  if (cmd == "check") return b::check_command(o, std::cout);
  if (cmd == "dlq" && !positional.empty())
    return b::dlq_command(o, positional[0], positional.size() > 1 ? positional[1] : std::string{}, std::cout);
  std::cerr << "unknown command " << cmd << "\n";
  return 2;
}
