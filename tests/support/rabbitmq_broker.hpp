// Test support for the RabbitMQ tests: the broker `scripts/test.sh` started
// (tests/support/rabbitmq_server.sh) as given by the environment:
//   STURDY_RABBITMQ_URL  amqp://guest:guest@127.0.0.1:PORT/ (unset: the tests skip)
//   STURDY_RABBITMQ_DIR  the broker's folder, for restarting it (unset: the
//                        restart tests skip)
// plus names unique to this process, and a bounded wait.
#ifndef STURDY_TESTS_SUPPORT_RABBITMQ_BROKER_HPP_
#define STURDY_TESTS_SUPPORT_RABBITMQ_BROKER_HPP_

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "sturdy/rabbitmq/client.hpp"

#ifndef STURDY_RABBITMQ_SCRIPT
#error "define STURDY_RABBITMQ_SCRIPT (the path of tests/support/rabbitmq_server.sh)"
#endif

namespace sturdy::test {

inline const char* rabbitmq_url() noexcept { return std::getenv("STURDY_RABBITMQ_URL"); }

// The broker's options, short timeouts for tests.
inline rabbitmq::connection_options rabbitmq_options() {
  rabbitmq::connection_options o;
  o.connect_timeout = std::chrono::seconds(2);
  o.command_timeout = std::chrono::seconds(5);
  const char* url = rabbitmq_url();
  auto r = rabbitmq::with_url(o, url == nullptr ? "amqp://127.0.0.1:5672/" : url);
  return r ? r.value() : o;
}

// A topology with names unique to this process and `tag`.
inline rabbitmq::topology unique_topology(const std::string& tag, std::int64_t delivery_limit = 3) {
  const std::string p = "sturdy.test." + std::to_string(::getpid()) + "." + tag;
  return {.exchange = p + ".x", .queue = p + ".q", .delivery_limit = delivery_limit,
          .dead_letter_exchange = p + ".dlx", .dead_letter_queue = p + ".dlq"};
}

// Restarts the broker's application (rabbitmqctl stop_app, start_app): every
// connection drops, durable queues and persistent messages survive. False
// when STURDY_RABBITMQ_DIR is unset or rabbitmqctl failed.
inline bool rabbitmq_ctl(const std::string& args) {
  const char* dir = std::getenv("STURDY_RABBITMQ_DIR");
  if (dir == nullptr) return false;
  const std::string cmd = std::string("bash '") + STURDY_RABBITMQ_SCRIPT + "' ctl '" + dir + "' " + args +
                          " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// Polls `pred` every 20 ms until it holds or `limit` passed (real servers only).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace sturdy::test

#define STURDY_REQUIRE_RABBITMQ()                                                               \
  do {                                                                                          \
    if (::sturdy::test::rabbitmq_url() == nullptr)                                              \
      GTEST_SKIP() << "STURDY_RABBITMQ_URL is unset: start a broker (scripts/test.sh does)"; \
  } while (0)

#endif  // STURDY_TESTS_SUPPORT_RABBITMQ_BROKER_HPP_
