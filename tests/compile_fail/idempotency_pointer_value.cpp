// expect: idempotency_cache<T> keeps T past the call, so T must own its memory
// A cache of pointers would replay an address whose object may be gone
// (issue 12, item 1): refused at compile time with one sentence.
#include "sturdy/idempotency.hpp"

struct widget {
  int id = 0;
};

int main() {
  static widget w;
  sturdy::idempotency_cache<const widget*> cache;
  auto r = cache.execute("k", 1, [] { return &w; });
  return r.replayed ? 1 : 0;
}
