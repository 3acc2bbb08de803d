// expect: backoff_strategy
// A delay strategy without `state` and `next_delay(n, state&, gen)` is
// rejected by the concept, which the diagnostic names.
#include "sturdy/retry.hpp"

struct not_a_strategy {
  int next_delay(int) const { return 0; }
};

sturdy::basic_retry_options<not_a_strategy> options;
