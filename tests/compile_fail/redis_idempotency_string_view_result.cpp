// expect: The callable returns a non-owning view
// The same rule with the Redis store: a callable returning std::string_view
// into a redis::idempotency_cache<std::string> is refused (issue 12, item 1).
#include <string>
#include <string_view>

#include "sturdy/redis/idempotency_store.hpp"

int main() {
  static const std::string name = "order-1";
  sturdy::redis::idempotency_cache<std::string> cache({}, {});
  auto r = cache.execute("k", 1, [] { return std::string_view(name); });
  return r.replayed ? 1 : 0;
}
