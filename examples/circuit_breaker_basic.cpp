// A flaky dependency behind sturdy::circuit_breaker: the breaker opens after
// three consecutive failures, rejects while open, probes after the open
// duration and closes when the probe succeeds. Time is a manual clock so the
// example runs instantly and always prints the same thing.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

struct print_transitions {
  void operator()(const sturdy::breaker_state_changed& e) const {
    std::printf("  breaker: %.*s -> %.*s (%.*s)\n", static_cast<int>(to_string(e.from).size()),
                to_string(e.from).data(), static_cast<int>(to_string(e.to).size()), to_string(e.to).data(),
                static_cast<int>(to_string(e.reason).size()), to_string(e.reason).data());
  }
  void operator()(const auto&) const {}
};

bool dependency_up = false;

sturdy::result<std::string> fetch_price(int sku) {
  if (!dependency_up) return std::make_error_code(std::errc::connection_refused);
  return "price of " + std::to_string(sku) + ": 42";
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  sturdy::testing::manual_clock clock;
  const sturdy::circuit_breaker_options options{
      .consecutive_failure_threshold = 3,
      .open_duration = 10s,
  };
  if (auto ok = options.validate(); !ok) {
    std::printf("bad options: %.*s\n", static_cast<int>(options.validation_message().size()),
                options.validation_message().data());
    return 1;
  }
  sturdy::circuit_breaker<sturdy::testing::manual_clock, print_transitions> breaker(options, clock);

  for (int call = 1; call <= 8; ++call) {
    if (call == 6) {
      dependency_up = true;
      clock.advance(breaker.retry_after());  // wait out the open duration
      std::printf("  (dependency recovered; waited for the breaker)\n");
    }
    auto price = breaker.execute([&] { return fetch_price(call); });
    if (price) {
      std::printf("call %d: %s\n", call, price.value().c_str());
    } else if (price.error() == sturdy::errc::circuit_open) {
      const auto wait = std::chrono::duration_cast<std::chrono::seconds>(breaker.retry_after());
      std::printf("call %d: rejected by the breaker, retry in %lld s\n", call, static_cast<long long>(wait.count()));
    } else {
      std::printf("call %d: failed: %s\n", call, price.error().message().c_str());
    }
  }
  const auto m = breaker.metrics();
  std::printf("calls %llu, failures %llu, rejections %llu\n", static_cast<unsigned long long>(m.calls),
              static_cast<unsigned long long>(m.failures), static_cast<unsigned long long>(m.rejections));
  return breaker.state() == sturdy::breaker_state::closed ? 0 : 1;
}
