// expect: The callable returns a non-owning view
// A std::span over a user-defined type, into a cache of a user-defined T that
// converts to and from that span: a replay would return a span over freed
// memory (issue 12, item 1).
#include <span>
#include <vector>

#include "sturdy/idempotency.hpp"

struct widget {
  int id = 0;
};

struct widget_list {
  std::vector<widget> items;
  widget_list() = default;
  explicit widget_list(std::span<const widget> s) : items(s.begin(), s.end()) {}
  operator std::span<const widget>() const { return items; }  // NOLINT: implicit on purpose
};

int main() {
  static const std::vector<widget> catalogue = {{1}, {2}};
  sturdy::idempotency_cache<widget_list> cache;
  auto r = cache.execute("k", 1, [] { return std::span<const widget>(catalogue); });
  return r.replayed ? 1 : 0;
}
