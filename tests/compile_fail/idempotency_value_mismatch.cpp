// expect: must convert to the cache's value type T
// A callable whose success type does not convert to the cache's value type is
// refused at compile time with a sentence, not a template backtrace.
#include <string>

#include "sturdy/idempotency.hpp"

int main() {
  sturdy::idempotency_cache<int> cache;
  auto r = cache.execute("k", 1, [] { return std::string("not an int"); });
  return r.replayed ? 1 : 0;
}
