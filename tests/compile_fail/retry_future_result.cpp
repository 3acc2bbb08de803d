// expect-first-error: sturdy's synchronous execute cannot run a callable that returns a future
// Issue 13 item 3: a std::future would be taken for a successful plain value
// (nothing retried). Refused at compile time, with the sentence first.
#include <future>

#include "sturdy/retry.hpp"

void use() {
  auto r = sturdy::retry([] { return std::async(std::launch::deferred, [] { return 1; }); });
  (void)r;
}
