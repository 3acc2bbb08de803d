// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: bench/sim/engine.hpp
// -----------------------------------------------------------------------------
//
// The fleet simulator's discrete-event engine: virtual time in integer
// nanoseconds, an event queue ordered by (time, insertion order), and a
// `clock_source` that reads the virtual time, so sturdy's own budgets and
// breaker see the simulation's clock.
//
//   sim::event_queue<my_event> q;
//   q.schedule(ms(5), my_event{...});
//   while (!q.empty()) { my_event e = q.pop(); /* q.now() is e's time */ }
//
// Determinism: events at the same instant run in the order they were
// scheduled (a sequence number breaks ties), and every random draw comes from
// one generator seeded by the caller, so a run is a pure function of
// (configuration, seed).
//
// Thread safety: none; one simulation runs on one thread.

#ifndef STURDY_BENCH_SIM_ENGINE_HPP_
#define STURDY_BENCH_SIM_ENGINE_HPP_

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sturdy/clock.hpp"

namespace sturdy::sim {

// Virtual time: nanoseconds since the start of the run.
using vtime = std::int64_t;

constexpr vtime ns_per_ms = 1'000'000;
constexpr vtime ns_per_s = 1'000'000'000;

[[nodiscard]] constexpr vtime from_duration(duration d) noexcept { return d.count(); }
[[nodiscard]] constexpr duration to_duration(vtime t) noexcept { return duration(t); }
[[nodiscard]] constexpr double to_ms(vtime t) noexcept { return static_cast<double>(t) / 1e6; }
[[nodiscard]] constexpr double to_s(vtime t) noexcept { return static_cast<double>(t) / 1e9; }

// virtual_clock
//
// A `sturdy::clock_source` reading an engine's virtual time (time 0 is
// `sturdy::time_point{}`). Copyable handle; the engine must outlive it.
class virtual_clock {
 public:
  explicit virtual_clock(const vtime& now) noexcept : now_(&now) {}
  [[nodiscard]] time_point now() const noexcept { return time_point(duration(*now_)); }

 private:
  const vtime* now_;
};

static_assert(clock_source<virtual_clock>);

// event_queue<Event>
//
// A binary min-heap of (time, sequence, Event). `Event` should be a small
// trivially copyable struct; handlers are the caller's `switch`, so no
// allocation or indirect call per event.
template <class Event>
class event_queue {
 public:
  event_queue() = default;
  event_queue(const event_queue&) = delete;
  event_queue& operator=(const event_queue&) = delete;

  void reserve(std::size_t n) { heap_.reserve(n); }

  // Schedules `e` at absolute virtual time `at` (never before now).
  void schedule(vtime at, const Event& e) {
    heap_.push_back(entry{at < now_ ? now_ : at, seq_++, e});
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  void schedule_after(vtime delay, const Event& e) { schedule(now_ + (delay > 0 ? delay : 0), e); }

  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }
  // Time of the next event; precondition: !empty().
  [[nodiscard]] vtime next_time() const noexcept { return heap_.front().time; }

  // Removes the earliest event and advances the clock to its time.
  Event pop() {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const entry e = heap_.back();
    heap_.pop_back();
    now_ = e.time;
    ++processed_;
    return e.event;
  }

  [[nodiscard]] vtime now() const noexcept { return now_; }
  // The variable holding the virtual time (for `virtual_clock`).
  [[nodiscard]] const vtime& now_ref() const noexcept { return now_; }
  [[nodiscard]] std::uint64_t processed() const noexcept { return processed_; }

 private:
  struct entry {
    vtime time;
    std::uint64_t seq;
    Event event;
  };
  static bool later(const entry& a, const entry& b) noexcept {
    return a.time != b.time ? a.time > b.time : a.seq > b.seq;
  }

  std::vector<entry> heap_;
  std::uint64_t seq_ = 0;
  std::uint64_t processed_ = 0;
  vtime now_ = 0;
};

// The run's generator: one per run, seeded from (seed, run index), so runs
// are independent and reproducible.
using generator = std::mt19937_64;
[[nodiscard]] inline generator make_generator(std::uint64_t seed, std::uint64_t run) {
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(run), static_cast<std::uint32_t>(run >> 32), 0x5eedu};
  return generator(seq);
}

// A uniform double in [0, 1) (53 random bits; identical on every standard
// library, unlike std::uniform_real_distribution).
[[nodiscard]] inline double uniform01(generator& g) { return static_cast<double>(g() >> 11) * 0x1.0p-53; }

// |Normal(mean, sd)| by Box-Muller (portable, unlike std::normal_distribution).
[[nodiscard]] inline double abs_normal(generator& g, double mean, double sd) {
  constexpr double two_pi = 6.283185307179586;
  const double u1 = 1.0 - uniform01(g);  // (0, 1]
  const double u2 = uniform01(g);
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2);
  return std::fabs(mean + sd * z);
}

// An exponential inter-arrival time with the given mean.
[[nodiscard]] inline double exponential(generator& g, double mean) {
  return -mean * std::log(1.0 - uniform01(g));
}

}  // namespace sturdy::sim

#endif  // STURDY_BENCH_SIM_ENGINE_HPP_
