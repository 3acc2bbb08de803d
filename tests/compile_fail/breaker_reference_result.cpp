// expect-first-error: sturdy cannot store a reference returned by the callable
// Issue 13 item 7: the breaker's execute refuses a reference-returning
// callable with the sentence first (outcome_callable no longer hides it
// behind overload resolution notes).
#include "sturdy/circuit_breaker.hpp"

int global_value = 0;

void use() {
  sturdy::circuit_breaker<> breaker({});
  auto r = breaker.execute([]() -> int& { return global_value; });
  (void)r;
}
