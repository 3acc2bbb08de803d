// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/testing/recording_listener.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::testing::recording_listener` takes every event any primitive
// emits and keeps a copy, in order, so a test can assert what happened. It
// is a copyable handle: the primitive holds one copy, the test another.
//
// Example:
//
//   sturdy::testing::recording_listener events;
//   sturdy::circuit_breaker<manual_clock, recording_listener> b(opts, clock, events);
//   ...
//   auto changes = events.of<sturdy::breaker_state_changed>();
//   ASSERT_EQ(changes.size(), 1);
//   EXPECT_EQ(changes[0].to, sturdy::breaker_state::open);
//
// Thread safety: recording and reading may happen from several threads at
// once (a mutex guards the record); the order is the order in which the
// mutex was taken.

#ifndef STURDY_TESTING_RECORDING_LISTENER_HPP_
#define STURDY_TESTING_RECORDING_LISTENER_HPP_

#include <any>
#include <cstddef>
#include <memory>
#include <mutex>
#include <typeindex>
#include <vector>

namespace sturdy::testing {

class recording_listener {
 public:
  recording_listener() : state_(std::make_shared<state>()) {}

  template <class Event>
  void operator()(const Event& e) const {
    std::lock_guard lock(state_->mu);
    state_->events.emplace_back(e);
  }

  // Copies of every recorded event of type `Event`, in order.
  template <class Event>
  [[nodiscard]] std::vector<Event> of() const {
    std::lock_guard lock(state_->mu);
    std::vector<Event> out;
    for (const auto& a : state_->events) {
      if (const auto* e = std::any_cast<Event>(&a)) out.push_back(*e);
    }
    return out;
  }
  // How many events of type `Event` were recorded.
  template <class Event>
  [[nodiscard]] std::size_t count() const {
    std::lock_guard lock(state_->mu);
    std::size_t n = 0;
    for (const auto& a : state_->events) n += a.type() == typeid(Event) ? 1 : 0;
    return n;
  }
  // The types of all events, in order (for "A happened before B" checks).
  [[nodiscard]] std::vector<std::type_index> types() const {
    std::lock_guard lock(state_->mu);
    std::vector<std::type_index> out;
    out.reserve(state_->events.size());
    for (const auto& a : state_->events) out.emplace_back(a.type());
    return out;
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(state_->mu);
    return state_->events.size();
  }
  void clear() const {
    std::lock_guard lock(state_->mu);
    state_->events.clear();
  }

 private:
  struct state {
    std::mutex mu;
    std::vector<std::any> events;
  };
  std::shared_ptr<state> state_;
};

}  // namespace sturdy::testing

#endif  // STURDY_TESTING_RECORDING_LISTENER_HPP_
