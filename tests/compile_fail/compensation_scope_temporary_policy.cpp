// expect: must be named objects that outlive the scope
// The scope keeps a reference to its undo policy: a temporary would dangle
// before the first undo runs.
#include "sturdy/compensation.hpp"
#include "sturdy/dead_letter.hpp"

struct counting_policy {
  int* calls;
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) const {
    ++*calls;
    return sturdy::invoke_wrapped(static_cast<F&&>(fn));
  }
};

void f(sturdy::dead_letter_queue& dlq, int& calls) {
  sturdy::compensation_scope saga(dlq, counting_policy{&calls});
  (void)saga.add([] {});
}
