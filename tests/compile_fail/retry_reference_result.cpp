// expect: sturdy cannot store a reference returned by the callable
// Retrying a callable that returns a reference would hand back a reference
// the loop cannot keep alive: the error must say so in one sentence.
#include "sturdy/retry.hpp"

int global_value = 0;

void use() {
  auto r = sturdy::retry([]() -> int& { return global_value; });
  (void)r;
}
