// expect-first-error: sturdy's synchronous execute cannot run a callable that returns a future, an awaitable
// Issue 13 item 3: anything awaitable (here the awaiter members) is refused
// by every synchronous execute, the breaker's included: the check lives in
// outcome.hpp.
#include "sturdy/circuit_breaker.hpp"

struct task {
  bool await_ready() const noexcept { return false; }
  void await_suspend(void*) const noexcept {}
  int await_resume() const noexcept { return 1; }
};

void use() {
  sturdy::circuit_breaker<> breaker({});
  auto r = breaker.execute([] { return task{}; });
  (void)r;
}
