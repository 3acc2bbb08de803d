// A consumer of sturdy's redis component: the Redis idempotency store, linked
// with hiredis. No server is needed: a cache pointed at a closed loopback port
// must answer errc::store_unavailable without calling the function. Prints
// "consumer redis ok".
#include <cstdio>

#include "sturdy/redis/idempotency_store.hpp"
#include "sturdy/sturdy.hpp"

int main() {
  sturdy::redis::idempotency_cache<int> cache({}, {.host = "127.0.0.1", .port = 1});
  int calls = 0;
  auto r = cache.execute("key", sturdy::stable_fingerprint("body"), [&] { return ++calls; });
  if (r.result || r.result.error() != sturdy::errc::store_unavailable || calls != 0) {
    std::puts("consumer redis FAILED");
    return 1;
  }
  std::printf("consumer redis ok (sturdy %d)\n", STURDY_VERSION);
  return 0;
}
