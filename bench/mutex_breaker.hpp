// The baseline the circuit breaker benchmark compares against: a breaker
// with the same semantics as sturdy::circuit_breaker's closed/open/half-open
// core (consecutive failures, count-based failure-rate window with minimum
// calls, open duration, N half-open probes, generations), written the way
// most peers are (Polly, gobreaker, resilience4j's default): one std::mutex
// taken before and after every call.
#ifndef STURDY_BENCH_MUTEX_BREAKER_HPP_
#define STURDY_BENCH_MUTEX_BREAKER_HPP_

#include <cstdint>
#include <mutex>
#include <vector>

#include "sturdy/clock.hpp"

namespace bench {

class mutex_breaker {
 public:
  struct options {
    std::uint32_t consecutive_failure_threshold = 5;
    double failure_rate_threshold = 0.5;
    std::uint32_t count_window_size = 100;
    std::uint32_t minimum_calls = 100;
    sturdy::duration open_duration = std::chrono::seconds(30);
    std::uint32_t half_open_probes = 1;
  };
  enum class state { closed, open, half_open };

  explicit mutex_breaker(options o) : o_(o), ring_(o.count_window_size, 0) {}

  // Returns the generation, or -1 when rejected.
  std::int64_t try_acquire() {
    std::lock_guard lock(mu_);
    if (state_ == state::closed) return static_cast<std::int64_t>(generation_);
    const sturdy::time_point now = std::chrono::steady_clock::now();
    if (state_ == state::open) {
      if (now < open_until_) return -1;
      set_state(state::half_open, now);
    }
    if (probes_admitted_ >= o_.half_open_probes) return -1;
    ++probes_admitted_;
    return static_cast<std::int64_t>(generation_);
  }

  void record(std::int64_t generation, bool success) {
    std::lock_guard lock(mu_);
    if (static_cast<std::uint64_t>(generation) != generation_) return;
    if (state_ == state::half_open) {
      if (!success) {
        set_state(state::open, std::chrono::steady_clock::now());
      } else if (++probe_successes_ >= o_.half_open_probes) {
        set_state(state::closed, {});
      }
      return;
    }
    consecutive_ = success ? 0 : consecutive_ + 1;
    if (!ring_.empty()) {
      std::uint8_t& cell = ring_[pos_ % ring_.size()];
      if (filled_ == ring_.size()) failures_ -= cell; else ++filled_;
      cell = success ? 0 : 1;
      failures_ += cell;
      ++pos_;
    }
    if (success) return;
    const bool consecutive_trip = o_.consecutive_failure_threshold != 0 && consecutive_ >= o_.consecutive_failure_threshold;
    const bool rate_trip = o_.failure_rate_threshold > 0 && filled_ >= o_.minimum_calls &&
                           static_cast<double>(failures_) >= o_.failure_rate_threshold * static_cast<double>(filled_);
    if (consecutive_trip || rate_trip) set_state(state::open, std::chrono::steady_clock::now());
  }

 private:
  void set_state(state s, sturdy::time_point now) {
    state_ = s;
    ++generation_;
    probes_admitted_ = 0;
    probe_successes_ = 0;
    if (s == state::open) open_until_ = now + o_.open_duration;
    if (s == state::closed) {
      consecutive_ = 0;
      pos_ = filled_ = failures_ = 0;
      std::fill(ring_.begin(), ring_.end(), std::uint8_t{0});
    }
  }

  options o_;
  std::mutex mu_;
  state state_ = state::closed;
  std::uint64_t generation_ = 0;
  sturdy::time_point open_until_{};
  std::uint32_t consecutive_ = 0;
  std::uint32_t probes_admitted_ = 0;
  std::uint32_t probe_successes_ = 0;
  std::vector<std::uint8_t> ring_;
  std::uint64_t pos_ = 0, filled_ = 0, failures_ = 0;
};

}  // namespace bench

#endif  // STURDY_BENCH_MUTEX_BREAKER_HPP_
