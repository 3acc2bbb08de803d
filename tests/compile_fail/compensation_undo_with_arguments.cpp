// expect: an undo must be callable with no arguments
// An undo registered with add() cannot take arguments: nothing would supply
// them. (step() passes the action's value to an undo that takes it.)
#include "sturdy/compensation.hpp"

void f() {
  sturdy::compensation_scope scope;
  (void)scope.add("bad", [](int) {});
}
