// A consumer of an installed sturdy: includes the umbrella header, uses every
// primitive once (retry with its default random generator and a budget, a
// breaker, the in-memory idempotency cache, a compensation scope with a
// dead-letter queue, compose) and prints "consumer ok". The README's link
// lines are checked by compiling exactly this program with them.
#include <cstdio>
#include <string>
#include <vector>

#include "sturdy/sturdy.hpp"

static sturdy::result<int> half(int v) {
  if (v % 2 != 0) return sturdy::errc::invalid_options;
  return v / 2;
}

int main() {
  sturdy::token_bucket_budget budget;
  const sturdy::retry_policy retry(sturdy::retry_options{
      .max_attempts = 3, .backoff = sturdy::backoff::exponential(std::chrono::nanoseconds(1), std::chrono::nanoseconds(2)),
      .budget = budget});
  int calls = 0;
  auto retried = retry.execute([&]() -> sturdy::result<int> {
    if (++calls < 2) return std::make_error_code(std::errc::connection_refused);
    return half(8);
  });

  sturdy::circuit_breaker<> breaker({});
  auto guarded = breaker.execute([]() -> sturdy::result<int> { return half(7); });

  sturdy::idempotency_cache<std::string> cache(sturdy::idempotency_options{});
  auto first = cache.execute("key", sturdy::stable_fingerprint("body"), [] { return sturdy::result<std::string>("r"); });
  auto again = cache.execute("key", sturdy::stable_fingerprint("body"), [] { return sturdy::result<std::string>("x"); });

  sturdy::dead_letter_queue dead_letters;
  std::vector<int> done;
  {
    sturdy::compensation_scope saga(dead_letters, {.name = "consumer"});
    (void)saga.step("push", [&] { done.push_back(1); }, [&] { done.pop_back(); });
  }  // no commit: undone

  auto pipeline = sturdy::compose(sturdy::retry_policy(sturdy::retry_options{.max_attempts = 2}), breaker);
  auto composed = pipeline.execute([]() -> sturdy::result<int> { return 4; });

  const bool ok = retried && retried.value() == 4 && calls == 2 && !guarded &&
                  guarded.error() == sturdy::errc::invalid_options && first.result && !first.replayed &&
                  again.replayed && again.result.value() == "r" && done.empty() && dead_letters.size() == 0 &&
                  composed && composed.value() == 4;
  if (!ok) {
    std::puts("consumer FAILED");
    return 1;
  }
  // __cplusplus shows the consumer's -std survived sturdy's flags.
  std::printf("consumer ok (sturdy %d, C++ %ld)\n", STURDY_VERSION, static_cast<long>(__cplusplus));
  return 0;
}
