// expect-first-error: sturdy's synchronous execute cannot run a callable that returns a future
// Issue 13 item 3: std::shared_future through compose (retry and breaker).
#include <future>

#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"

void use() {
  sturdy::circuit_breaker<> breaker({});
  auto p = sturdy::compose(sturdy::retry_policy<>(), breaker);
  auto r = p.execute([] { return std::shared_future<int>(); });
  (void)r;
}
