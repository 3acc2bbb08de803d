// expect: sturdy::fallback_to stores its value: pass an owning type
// A fallback value outlives the call that built the policy: a view would
// dangle, so it is refused.
#include <string>
#include <string_view>

#include "sturdy/fallback.hpp"

int main() {
  std::string s = "cached";
  auto fb = sturdy::fallback_to(std::string_view(s));
  (void)fb;
}
