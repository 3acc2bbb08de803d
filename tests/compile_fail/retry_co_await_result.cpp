// expect-first-error: sturdy's synchronous execute cannot run a callable that returns a future, an awaitable
// Issue 13 item 3: a type with a free operator co_await is awaitable too.
#include "sturdy/retry.hpp"

namespace lib {
struct lazy {};
struct awaiter {
  bool await_ready() const noexcept { return true; }
  void await_suspend(void*) const noexcept {}
  int await_resume() const noexcept { return 1; }
};
inline awaiter operator co_await(lazy) { return {}; }
}  // namespace lib

void use() {
  auto r = sturdy::retry([] { return lib::lazy{}; });
  (void)r;
}
