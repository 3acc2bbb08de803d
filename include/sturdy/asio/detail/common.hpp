// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// Internals shared by the Asio drivers (sturdy/asio/*.hpp).

#ifndef STURDY_ASIO_DETAIL_COMMON_HPP_
#define STURDY_ASIO_DETAIL_COMMON_HPP_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <ratio>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/strand.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>

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

// What every composed operation of sturdy::asio shares: the caller's
// handler (completed once), a strand of its executor on which every step
// runs, and the hook on the caller's cancellation slot. A signal records its
// type (remembered even when it comes before the operation's first step)
// and posts Derived::on_cancelled() to the strand. Derived is owned by a
// shared_ptr; the hook holds a weak_ptr, so a signal after the end is a
// no-op. `Executor`: the handler's associated executor, the strand's inner
// executor (a concrete executor type avoids the polymorphic wrapper's
// allocations per dispatch). From construction until the completion is
// posted, the operation keeps outstanding work on that executor (Asio's
// rule, as async_compose does): while the attempt runs elsewhere (another
// io_context), the handler's io_context.run() does not return early.
template <class Derived, class Handler, class Executor = boost::asio::any_io_executor>
class async_op_base : public std::enable_shared_from_this<Derived> {
 public:
  async_op_base(const async_op_base&) = delete;
  async_op_base& operator=(const async_op_base&) = delete;

 protected:
  async_op_base(Handler handler, const Executor& ex)
      : handler_(std::move(handler)),
        strand_(boost::asio::make_strand(ex)),
        work_(std::in_place, boost::asio::prefer(ex, boost::asio::execution::outstanding_work.tracked)) {}
  ~async_op_base() = default;

  // Connects the cancellation hook, then runs `first_step` on the strand.
  template <class Step>
  void start_on_strand(Step first_step) {
    auto slot = boost::asio::get_associated_cancellation_slot(*handler_);
    if (slot.is_connected()) slot.template emplace<cancel_hook>(this->weak_from_this());
    boost::asio::post(strand_, [self = this->shared_from_this(), first_step]() mutable { first_step(*self); });
  }

  // The cancellation type requested so far (none: 0).
  [[nodiscard]] boost::asio::cancellation_type_t cancel_requested() const noexcept {
    return static_cast<boost::asio::cancellation_type_t>(cancel_type_.load(std::memory_order_acquire));
  }

  // Completes the caller's handler (exactly once: the handler is moved out).
  template <class... Args>
  void complete(Args&&... args) {
    Handler h = std::move(*handler_);
    handler_.reset();
    post_completion_clearing_slot(std::move(h), std::forward<Args>(args)...);
    work_.reset();  // the posted completion now counts as the executor's work
  }

  std::optional<Handler> handler_;
  boost::asio::strand<Executor> strand_;

 private:
  struct cancel_hook {
    // A constructor: the slot constructs it with parentheses (clang 14 has no
    // parenthesised aggregate initialisation).
    explicit cancel_hook(std::weak_ptr<Derived> o) noexcept : op(std::move(o)) {}
    std::weak_ptr<Derived> op;
    void operator()(boost::asio::cancellation_type_t type) const {
      if (type == boost::asio::cancellation_type::none) return;
      if (std::shared_ptr<Derived> self = op.lock()) {
        self->cancel_type_.store(static_cast<unsigned>(type), std::memory_order_release);
        auto& strand = self->strand_;
        boost::asio::post(strand, [self = std::move(self)] { self->on_cancelled(); });
      }
    }
  };

  using work_executor = std::decay_t<decltype(boost::asio::prefer(
      std::declval<const Executor&>(), boost::asio::execution::outstanding_work.tracked))>;

  std::atomic<unsigned> cancel_type_{0};
  std::optional<work_executor> work_;  // released once the completion is posted
};

}  // namespace sturdy::asio::detail

#endif  // STURDY_ASIO_DETAIL_COMMON_HPP_
