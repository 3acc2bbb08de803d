// expect: The callable returns a non-owning view
// A callable returning std::string_view into an idempotency_cache<std::string>
// would hand every replay a view of a stored copy destroyed when execute
// returns (issue 12, item 1): refused at compile time with one sentence.
#include <string>
#include <string_view>

#include "sturdy/idempotency.hpp"

int main() {
  static const std::string name = "order-1";
  sturdy::idempotency_cache<std::string> cache;
  auto r = cache.execute("k", 1, [] { return std::string_view(name); });
  return r.replayed ? 1 : 0;
}
