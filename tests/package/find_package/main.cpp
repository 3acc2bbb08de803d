// A consumer of an installed sturdy: includes the umbrella header, uses the
// error model and an injected Abseil generator, and prints "consumer ok".
#include <cstdio>

#include "absl/random/random.h"
#include "sturdy/sturdy.hpp"

static sturdy::result<int> half(int v) {
  if (v % 2 != 0) return sturdy::errc::invalid_options;
  return v / 2;
}

static sturdy::result<int> quarter(int v) {
  BOOST_OUTCOME_TRY(auto h, half(v));
  return half(h);
}

int main() {
  absl::BitGen gen(std::seed_seq{42});
  const int r = absl::Uniform(gen, 0, 10);
  auto ok = quarter(8);
  auto bad = quarter(6);
  if (!ok || ok.value() != 2 || bad || bad.error() != sturdy::errc::invalid_options || r < 0) {
    std::puts("consumer FAILED");
    return 1;
  }
  std::printf("consumer ok (sturdy %d)\n", STURDY_VERSION);
  return 0;
}
