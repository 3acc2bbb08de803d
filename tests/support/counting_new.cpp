// The counting global allocator for every test executable (see
// sturdy/testing/counting_allocator.hpp).
#include "sturdy/testing/counting_allocator.hpp"

STURDY_TESTING_DEFINE_COUNTING_NEW();
