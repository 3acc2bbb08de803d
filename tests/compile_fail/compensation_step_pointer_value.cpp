// expect: it is a non-owning view
// A pointer returned by the action, kept for the undo, may dangle by
// rollback: refused at compile time.
#include "sturdy/compensation.hpp"

struct row {
  int id;
};

void f(row& r) {
  sturdy::compensation_scope saga;
  (void)saga.step([&] { return &r; }, [](row* p) { p->id = 0; });
}
