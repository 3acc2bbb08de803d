// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/recording_sleeper.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::testing::recording_sleeper` is a `sleeper` that never sleeps: it
// records each requested delay and advances a `manual_clock` by it instead,
// so a test of a retry loop runs in microseconds and can assert the exact
// delays. It is a copyable handle; copies share the record.
//
// Example:
//
//   sturdy::testing::manual_clock clock;
//   sturdy::testing::recording_sleeper sleeper(clock);
//   auto r = sturdy::retry(opts, fn, gen, clock, sleeper);
//   EXPECT_EQ(sleeper.delays().size(), 2);
//   EXPECT_EQ(clock.now(), time_point{} + sleeper.total());
//
// `on_sleep(hook)` runs `hook(d)` at the start of every sleep, before the
// clock moves; a hook that requests stop on the token's source makes that
// sleep return false (cancelled) without advancing the clock, which is how
// tests cancel "mid-sleep" deterministically.
//
// Thread safety: `sleep_for`, `delays`, `total` and `count` may be called
// from several threads at once (a mutex guards the record). Set the hook
// before sharing the sleeper.

#ifndef STURDY_TESTING_RECORDING_SLEEPER_HPP_
#define STURDY_TESTING_RECORDING_SLEEPER_HPP_

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <utility>
#include <vector>

#include "sturdy/clock.hpp"
#include "sturdy/context.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace sturdy::testing {

class recording_sleeper {
 public:
  explicit recording_sleeper(manual_clock clock) : state_(std::make_shared<state>(std::move(clock))) {}

  bool sleep_for(duration d, std::stop_token stop) const {
    return sleep_if(d, [&] { return stop.stop_requested(); });
  }
  // The same for sturdy's own token (a retry under a call_context).
  // (A template, so that `sleep_for(d, {})` still means the form above.)
  template <class Token>
    requires std::same_as<Token, cancel_token>
  bool sleep_for(duration d, Token token) const {
    return sleep_if(d, [&] { return token.stop_requested(); });
  }

 private:
  template <class Stopped>
  bool sleep_if(duration d, Stopped stopped) const {
    if (state_->hook) state_->hook(d);
    if (stopped()) {
      std::lock_guard lock(state_->mu);
      ++state_->cancelled;
      return false;
    }
    {
      std::lock_guard lock(state_->mu);
      state_->delays.push_back(d);
    }
    state_->clock.advance(d);
    return true;
  }

 public:

  // Every completed sleep's requested delay, in order.
  [[nodiscard]] std::vector<duration> delays() const {
    std::lock_guard lock(state_->mu);
    return state_->delays;
  }
  // How many sleeps completed.
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(state_->mu);
    return state_->delays.size();
  }
  // How many sleeps were cut short by a stop request.
  [[nodiscard]] std::size_t cancelled_count() const {
    std::lock_guard lock(state_->mu);
    return state_->cancelled;
  }
  // The sum of all completed sleeps.
  [[nodiscard]] duration total() const {
    std::lock_guard lock(state_->mu);
    duration t{};
    for (auto d : state_->delays) t += d;
    return t;
  }
  void clear() const {
    std::lock_guard lock(state_->mu);
    state_->delays.clear();
    state_->cancelled = 0;
  }
  // Runs `hook(d)` at the start of each sleep (see the banner).
  void on_sleep(std::function<void(duration)> hook) const { state_->hook = std::move(hook); }

  [[nodiscard]] const manual_clock& clock() const noexcept { return state_->clock; }

 private:
  struct state {
    explicit state(manual_clock c) : clock(std::move(c)) {}
    manual_clock clock;
    mutable std::mutex mu;
    std::vector<duration> delays;
    std::size_t cancelled = 0;
    std::function<void(duration)> hook;
  };
  std::shared_ptr<state> state_;
};

static_assert(sleeper<recording_sleeper>);

}  // namespace sturdy::testing

#endif  // STURDY_TESTING_RECORDING_SLEEPER_HPP_
