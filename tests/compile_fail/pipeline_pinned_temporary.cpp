// expect-first-error: sturdy::compose holds a pinned layer .* by reference, so it must be a named object
// Issue 12 item 8: a pinned layer (here a circuit breaker) is held by
// reference; a temporary one would dangle as soon as the statement ends.
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"

void use() {
  sturdy::retry_policy<> retry;
  auto p = sturdy::compose(retry, sturdy::circuit_breaker<>({}));
  (void)p;
}
