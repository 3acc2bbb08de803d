// expect: sturdy calls a callable with no arguments or with one `const sturdy::call_context&`
// A callable taking the context by non-const reference (or any other
// argument) cannot be called by a layer: it is refused at compile time.
#include "sturdy/context.hpp"

int main() {
  const sturdy::call_context ctx;
  auto r = sturdy::invoke_with_context([](sturdy::call_context& c) { return c.attempt; }, ctx);
  return static_cast<int>(r.value());
}
