// expect: must own its memory
// A Redis store of std::string_view would write a raw address to Redis, for
// another replica to replay (issue 12, items 1 and 2): refused at compile
// time with one sentence.
#include <string_view>

#include "sturdy/redis/idempotency_store.hpp"

int main() {
  sturdy::redis::idempotency_store<std::string_view> store;
  return store.options().port == 0 ? 1 : 0;
}
