// expect: it is a non-owning view
// A std::span over the caller's own type is refused like a string_view: the
// scope would keep it until rollback, after the elements may be gone.
#include <span>
#include <vector>

#include "sturdy/compensation.hpp"

struct account {
  int id;
};

void f(std::vector<account>& accounts) {
  sturdy::compensation_scope saga;
  (void)saga.step([&] { return std::span<account>(accounts); }, [](std::span<account>) {});
}
