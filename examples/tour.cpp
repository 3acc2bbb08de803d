// A short tour of what sturdy offers: the error model, the outcome adapters
// and composition. Runs in a blink; prints what happens.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "sturdy/sturdy.hpp"

namespace {

// A fragile dependency: fails the first `failures` calls.
struct flaky_service {
  int failures;
  int calls = 0;
  sturdy::result<std::string> fetch() {
    ++calls;
    if (calls <= failures) return std::make_error_code(std::errc::connection_reset);
    return std::string("payload #") + std::to_string(calls);
  }
};

// A tiny policy of our own: try up to three times.
struct three_tries {
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    for (int attempt = 1;; ++attempt) {
      auto r = sturdy::invoke_wrapped(fn);
      if (sturdy::succeeded(r) || attempt == 3) return r;
      std::printf("  attempt %d failed: %s\n", attempt, sturdy::failure_of(r).code.message().c_str());
    }
  }
};

sturdy::result<int> parse_port(const std::string& s) {
  if (s.empty() || s.size() > 5) return sturdy::errc::invalid_options;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return sturdy::errc::invalid_options;
    v = v * 10 + (c - '0');
  }
  return v;
}

sturdy::result<int> next_port(const std::string& s) {
  BOOST_OUTCOME_TRY(auto port, parse_port(s));  // returns the error on failure
  return port + 1;
}

}  // namespace

int main() {
  std::printf("sturdy %d.%d.%d tour\n\n", STURDY_VERSION_MAJOR, STURDY_VERSION_MINOR, STURDY_VERSION_PATCH);

  std::printf("1. Errors are std::error_codes from sturdy::errc, chained with BOOST_OUTCOME_TRY:\n");
  for (const char* s : {"8080", "80a0"}) {
    auto r = next_port(s);
    if (r) {
      std::printf("  next_port(\"%s\") = %d\n", s, r.value());
    } else {
      std::printf("  next_port(\"%s\") failed: %s (category %s)\n", s, r.error().message().c_str(),
                  r.error().category().name());
    }
  }

  std::printf("\n2. Any callable works: result<T>, plain values (exceptions are failures), void:\n");
  flaky_service svc{2};
  auto pipeline = sturdy::compose(sturdy::make_policy([](auto&& next) {
                                    std::printf("  [log] calling through the pipeline\n");
                                    return next();
                                  }),
                                  three_tries{});
  auto r = pipeline.execute([&] { return svc.fetch(); });
  std::printf("  -> %s after %d calls\n", r ? r.value().c_str() : r.error().message().c_str(), svc.calls);

  auto plain = pipeline.execute([] { return 6 * 7; });
  std::printf("  plain value wrapped in result<int>: %d\n", plain.value());
  try {
    (void)pipeline.execute([]() -> int { throw std::runtime_error("exceptions propagate to the caller"); });
  } catch (const std::exception& e) {
    std::printf("  caught: %s\n", e.what());
  }
  std::printf("\ndone.\n");
  return 0;
}
