// Retrying a flaky HTTP-like call with sturdy: exponential backoff with
// full jitter, a total time limit, a server's Retry-After hint honoured
// within bounds, a shared retry budget, and a listener that logs retries.
//
// The "server" here is simulated: it answers 503 twice (the second time
// with Retry-After: 2 s, which the policy clamps to 50 ms), then 200.
#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>

#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"

namespace {

using namespace std::chrono_literals;

struct http_response {
  int status;
  std::chrono::seconds retry_after;  // 0: no header
  std::string body;
};

// An error carrying what the server said; sturdy reads the hint via ADL.
struct http_error {
  int status;
  std::chrono::seconds retry_after;
};
std::error_code sturdy_to_error_code(const http_error& e) {
  return e.status == 503 ? std::make_error_code(std::errc::resource_unavailable_try_again)
                         : std::make_error_code(std::errc::protocol_error);
}
http_error sturdy_from_error_code(std::error_code, std::type_identity<http_error>) { return {0, 0s}; }
sturdy::retry_hint sturdy_retry_hint(const http_error& e) {
  return e.retry_after > 0s ? sturdy::retry_hint::after(e.retry_after) : sturdy::retry_hint::none();
}

using http_result = BOOST_OUTCOME_V2_NAMESPACE::basic_result<std::string, http_error,
                                                             BOOST_OUTCOME_V2_NAMESPACE::policy::terminate>;

// The simulated server.
int g_calls = 0;
http_response server_get(const std::string& path) {
  ++g_calls;
  if (g_calls == 1) return {503, 0s, ""};
  if (g_calls == 2) return {503, 2s, ""};
  return {200, 0s, "contents of " + path};
}

http_result get(const std::string& path) {
  http_response r = server_get(path);
  if (r.status != 200) return http_error{r.status, r.retry_after};
  return std::move(r.body);
}

struct log_retries {
  void operator()(const sturdy::retry_scheduled& e) const {
    std::printf("attempt %u failed (%s); retrying in %lld ms%s\n", e.attempt, e.failure.code.message().c_str(),
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count()),
                e.from_server_hint ? " (server hint, clamped)" : "");
  }
  void operator()(const auto&) const {}
};

}  // namespace

int main() {
  static sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 0.1});
  const sturdy::retry_policy<sturdy::backoff, sturdy::steady_clock_source, sturdy::thread_sleeper, log_retries>
      policy(sturdy::retry_options{
          .max_attempts = 4,
          .backoff = sturdy::backoff::exponential(10ms, 100ms, sturdy::jitter::full),
          .max_elapsed = 2s,
          .max_server_delay = 50ms,  // never wait longer than this on a server's say-so
          .budget = budget,
      });

  http_result page = policy.execute([] { return get("/inventory/42"); });
  if (!page) {
    std::printf("failed with HTTP %d\n", page.error().status);
    return 1;
  }
  std::printf("got \"%s\" after %d calls; budget has %.1f tokens\n", page.value().c_str(), g_calls,
              budget.tokens());
  return 0;
}
