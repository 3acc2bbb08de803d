// expect: sturdy calls a callable with no arguments or with one `const sturdy::call_context&`
// A timeout cannot call a callable that takes some other argument.
#include "sturdy/timeout.hpp"

int main() {
  const sturdy::timeout_policy<> limit(sturdy::timeout_options{});
  auto r = limit.execute([](int x) { return x; });
  return r ? 0 : 1;
}
