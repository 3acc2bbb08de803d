// expect-first-error: sturdy cannot store a reference returned by the callable
// Issue 13 item 7: through compose (retry around a breaker) the first error
// line is still the sentence.
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/retry.hpp"

int global_value = 0;

void use() {
  sturdy::circuit_breaker<> breaker({});
  auto p = sturdy::compose(sturdy::retry_policy<>(), breaker);
  auto r = p.execute([]() -> const int& { return global_value; });
  (void)r;
}
