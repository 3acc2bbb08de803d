// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// Internals shared by the Asio drivers (sturdy/asio/*.hpp).

#ifndef STURDY_ASIO_DETAIL_COMMON_HPP_
#define STURDY_ASIO_DETAIL_COMMON_HPP_

#include <chrono>
#include <ratio>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>

#include "sturdy/clock.hpp"

namespace sturdy::asio::detail {

// A sturdy duration as the timer's duration: negative -> 0, rounded up,
// saturating (Asio's chrono traits saturate expires_after in turn).
template <class Timer>
[[nodiscard]] typename Timer::duration to_timer_duration(duration d) noexcept {
  using timer_duration = typename Timer::duration;
  static_assert(std::ratio_less_equal_v<std::nano, typename timer_duration::period>,
                "The timer's clock must count in nanoseconds or coarser units.");
  if (d <= duration::zero()) return timer_duration::zero();
  return std::chrono::ceil<timer_duration>(d);
}

// Completes `handler` with `args` on its associated executor, never inside
// the initiating function (Asio's rule). Uses the handler's associated
// allocator (Asio's recycling allocator by default): after the first
// operation on a thread, posting allocates nothing.
template <class Handler, class... Args>
void post_completion(Handler&& handler, Args&&... args) {
  auto ex = boost::asio::get_associated_executor(handler);
  boost::asio::post(ex, boost::asio::append(std::forward<Handler>(handler), std::forward<Args>(args)...));
}

// Completes a handler whose cancellation slot an operation connected: the
// slot is cleared on the handler's associated executor, right before the
// handler runs, so it never races with a signal emitted there (Asio's rule:
// emit on the handler's executor). A late signal finds the operation done.
template <class Handler, class... Args>
void post_completion_clearing_slot(Handler&& handler, Args&&... args) {
  auto ex = boost::asio::get_associated_executor(handler);
  boost::asio::post(ex, [h = std::forward<Handler>(handler), ... a = std::forward<Args>(args)]() mutable {
    auto slot = boost::asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    std::move(h)(std::move(a)...);
  });
}

}  // namespace sturdy::asio::detail

#endif  // STURDY_ASIO_DETAIL_COMMON_HPP_
