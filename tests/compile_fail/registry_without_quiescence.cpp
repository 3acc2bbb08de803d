// expect: needs to know when a P may be evicted
// A registry evicts only entries that may be evicted without losing
// protection; a primitive that cannot say when that is cannot be registered.
#include <string_view>

#include "sturdy/registry.hpp"

struct opaque {
  using options_type = int;
  explicit opaque(int) {}
};

int main() {
  sturdy::registry<opaque> reg({.max_entries = 4});
  return reg.get("k") ? 0 : 1;
}
