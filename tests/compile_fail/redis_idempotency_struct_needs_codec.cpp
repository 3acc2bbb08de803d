// expect: needs sturdy::redis::codec<T>
// A struct holding a pointer is trivially copyable, but its bytes mean nothing
// in another process: the built-in byte codec takes only arithmetic types,
// enum classes and types opted in with use_byte_codec (issue 12, item 2).
#include "sturdy/redis/idempotency_store.hpp"

struct named {
  const char* name;
  int n;
};

int main() {
  sturdy::redis::idempotency_store<named> store;
  return store.options().port == 0 ? 1 : 0;
}
