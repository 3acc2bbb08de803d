// expect: it is a non-owning view
// An undo that takes the action's value makes the scope store that value
// until rollback; a std::string_view would dangle by then.
#include <string>
#include <string_view>

#include "sturdy/compensation.hpp"

void f() {
  sturdy::compensation_scope saga;
  (void)saga.step([] { return std::string_view("user-42"); }, [](std::string_view) {});
}
