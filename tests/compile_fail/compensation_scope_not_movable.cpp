// expect: (use of deleted function|call to deleted constructor|deleted)
// A compensation scope is pinned: moving it would move the undos away from
// the stack frame whose exit they guard.
#include <utility>

#include "sturdy/compensation.hpp"

void f() {
  sturdy::compensation_scope a;
  sturdy::compensation_scope b(std::move(a));
  (void)b.commit();
}
