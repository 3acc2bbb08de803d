// The baseline for bench/idempotency_bench.cpp: the idempotency cache a
// service would write by hand, with the same essentials as
// sturdy::idempotency_cache — one std::mutex, a std::unordered_map keyed by
// std::string (transparent lookup, so no allocation to look up either), an
// in-progress / completed state, the fingerprint check, a TTL, a stored
// sturdy::outcome<T>, replay marking, an entry bound with LRU eviction of
// completed entries (std::list). Duplicates in flight are rejected.
#ifndef STURDY_BENCH_IDEMPOTENCY_BASELINE_HPP_
#define STURDY_BENCH_IDEMPOTENCY_BASELINE_HPP_

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sturdy/error.hpp"

namespace bench {

template <class T>
class mutex_map_cache {
 public:
  explicit mutex_map_cache(std::size_t capacity, std::chrono::nanoseconds ttl)
      : capacity_(capacity), ttl_(ttl) {}

  struct result_type {
    sturdy::result<T> result;
    bool replayed;
  };

  template <class F>
  result_type execute(std::string_view key, std::uint64_t fingerprint, F&& fn) {
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) {
        node& n = it->second;
        if (n.completed && now < n.deadline) {
          if (n.fingerprint != fingerprint) return {sturdy::errc::key_mismatch, false};
          lru_.splice(lru_.begin(), lru_, n.lru);
          return {to_result(*n.value), true};
        }
        if (!n.completed && now < n.deadline) return {sturdy::errc::in_progress, false};
        // expired (either state): start over in place
        n.completed = false;
        n.value.reset();
        n.fingerprint = fingerprint;
        n.deadline = now + std::chrono::seconds(30);
      } else {
        while (map_.size() >= capacity_) {
          if (!evict_one(now)) return {sturdy::errc::capacity_exceeded, false};
        }
        auto [pos, _] = map_.try_emplace(std::string(key));
        lru_.push_front(&pos->first);
        pos->second.lru = lru_.begin();
        pos->second.fingerprint = fingerprint;
        pos->second.deadline = now + std::chrono::seconds(30);
      }
    }
    T v = fn();
    {
      std::lock_guard lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end() && !it->second.completed) {
        it->second.completed = true;
        it->second.value.emplace(v);
        it->second.deadline = std::chrono::steady_clock::now() + ttl_;
      }
    }
    return {std::move(v), false};
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return map_.size();
  }

 private:
  struct node {
    std::optional<sturdy::outcome<T>> value;
    std::chrono::steady_clock::time_point deadline;
    std::uint64_t fingerprint = 0;
    bool completed = false;
    typename std::list<const std::string*>::iterator lru;
  };
  struct hasher {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct eq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };

  static sturdy::result<T> to_result(const sturdy::outcome<T>& o) {
    if (o.has_error()) return o.error();
    return o.value();
  }

  bool evict_one(std::chrono::steady_clock::time_point now) {
    for (auto it = lru_.end(); it != lru_.begin();) {
      --it;
      auto m = map_.find(std::string_view(**it));
      if (m->second.completed || now >= m->second.deadline) {
        lru_.erase(it);
        map_.erase(m);
        return true;
      }
    }
    return false;
  }

  std::mutex mu_;
  std::unordered_map<std::string, node, hasher, eq> map_;
  std::list<const std::string*> lru_;
  std::size_t capacity_;
  std::chrono::nanoseconds ttl_;
};

}  // namespace bench

#endif  // STURDY_BENCH_IDEMPOTENCY_BASELINE_HPP_
