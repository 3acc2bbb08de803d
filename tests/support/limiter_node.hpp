// A waiter node for tests of the concurrency limiter's core API: counts how
// often the limiter woke it (a hand-over, or recheck_waiters()).
#ifndef STURDY_TESTS_SUPPORT_LIMITER_NODE_HPP_
#define STURDY_TESTS_SUPPORT_LIMITER_NODE_HPP_

#include "sturdy/concurrency_limiter.hpp"

namespace sturdy::test {

struct counted_node {
  int wakes = 0;
  limiter_waiter node{[](limiter_waiter& w) noexcept { ++static_cast<counted_node*>(w.context())->wakes; }, this};
};

}  // namespace sturdy::test

#endif  // STURDY_TESTS_SUPPORT_LIMITER_NODE_HPP_
