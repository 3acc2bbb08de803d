// expect-first-error: sturdy cannot store a reference returned by the callable
// Issue 13 item 7: retrying a callable that returns a reference would hand
// back a reference the loop cannot keep alive. The first error line must be
// the sentence, not a template backtrace.
#include "sturdy/retry.hpp"

int global_value = 0;

void use() {
  auto r = sturdy::retry([]() -> int& { return global_value; });
  (void)r;
}
