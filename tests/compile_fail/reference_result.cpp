// expect: sturdy cannot store a reference returned by the callable
// A callable returning a reference cannot be wrapped: the primitive would
// keep a dangling reference. The error must say so in one sentence.
#include "sturdy/outcome.hpp"

int global_value = 0;

void use() {
  auto r = sturdy::invoke_wrapped([]() -> int& { return global_value; });
  (void)r;
}
