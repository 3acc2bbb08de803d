// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/hedge.hpp                (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// Hedged requests ("The Tail at Scale", gRPC A6 hedging, Polly hedging) on
// Asio: start the primary attempt; if no acceptable answer has come after a
// delay, start another, up to `max_attempts` in all; the first acceptable
// answer wins and the others are cancelled.
//
//   async_hedge<Timer>(options, make_attempt, token) -> void(R)
//
//   t = 0         launch attempt 0 (the primary)
//   every delay   launch the next attempt, if the budget allows it
//   a retryable   launch the next attempt AT ONCE (gRPC's rule), if the
//   failure       budget allows it; the hedge delay restarts from there
//   an accepted   finish with it; cancel the running attempts with
//   result        `options.cancel_losers`
//   a fatal       finish with it (gRPC: a fatal status commits)
//   failure
//   all failed    finish with the PRIMARY's failure (Polly)
//
// `make_attempt(const hedge_attempt& a)` starts nothing: it returns an Asio
// asynchronous operation (a deferred operation, e.g.
// `socket.async_read_some(buf, boost::asio::deferred)`, or a
// `boost::asio::awaitable<R>`), which async_hedge launches with its own
// cancellation slot. Every attempt of one call sees the same `a.key` (send
// it as the idempotency key, so servers can deduplicate) and its own
// `a.index` (0 = primary); `a` stays valid until that attempt completes (a
// coroutine lambda may keep the reference). Completion signatures and the R they give:
//   void(R)                      R (any result type sturdy supports)
//   void(error_code, T)          sturdy::result<T>
//   void(error_code)             sturdy::result<void>
//   awaitable<R>                 R; an exception escaping it is a fatal
//                                failure (std::errc::state_not_recoverable)
//
// The delay is `options.delay`, or adaptive: with `options.latencies` set,
// the `options.percentile` quantile of recent primaries' latencies (the
// lock-free `latency_histogram`), `options.delay` until it has
// `min_samples`. Every call records its primary's latency there (a primary
// cancelled because a hedge won records the time until it stopped: a lower
// bound, so the tail is not forgotten).
//
// The hedge budget: `options.budget` (any sturdy retry budget through
// retry_budget_ref) is asked before every hedge (`try_retry`), told of every
// attempt (`on_attempt(is_retry)`) and outcome (`on_outcome`; cancelled
// losers are neutral). An exhausted budget only stops NEW hedges; it never
// cancels running ones (failsafe-go #141).
//
// The decisions (launch / wait / finish) are made by `hedge_decider`, a pure
// object fed events; async_hedge only waits and launches (STYLE 3.8).
//
// Why not `awaitable operator||`: it treats an error returned in a result
// as success, so it cannot hedge error-returning calls.
//
// Example:
//
//   sturdy::asio::hedge_options opts{.max_attempts = 3, .delay = std::chrono::milliseconds(10)};
//   auto r = co_await sturdy::asio::async_hedge(
//       opts,
//       [&](const sturdy::asio::hedge_attempt& a) {
//         return client.async_get(key, a.key, boost::asio::deferred);  // void(error_code, Reply)
//       },
//       boost::asio::use_awaitable);                                  // r: sturdy::result<Reply>
//
// Cancellation: the caller's cancellation slot is forwarded (with its type)
// to every running attempt, and no further attempt starts; the call then
// finishes when they have all returned: with the first accepted result if
// one still comes, else the primary's result. A signal that arrives before
// the first attempt starts is remembered (errc::cancelled, nothing
// launched).
//
// Completion: the handler runs exactly once, through its associated
// executor, as soon as the outcome is decided; it does not wait for the
// cancelled losers (their completions are absorbed; the operation's state
// lives until the last returns). Attempts run on the handler's associated
// executor; all bookkeeping runs on a strand of it.
//
// Allocation: each call allocates its state (one shared block, with the
// options copied into it), a strand, and what its attempts allocate.
//
// Defaults: max_attempts 2, delay 2 s (Polly), no adaptive delay, no
// budget, every failure retryable, losers cancelled with `terminal`.
//
// Thread safety: options, histogram and budget may be shared by any number
// of calls on any number of threads (the histogram and the budgets are
// lock-free). Emit the caller's cancellation on its executor (Asio's rule).

#ifndef STURDY_ASIO_HEDGE_HPP_
#define STURDY_ASIO_HEDGE_HPP_

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/system/error_code.hpp>

#include "sturdy/asio/detail/attempt.hpp"
#include "sturdy/asio/detail/common.hpp"
#include "sturdy/callback.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/retry_budget.hpp"

namespace sturdy::asio {

// -----------------------------------------------------------------------------
// latency_histogram: recent latencies in log-spaced buckets, lock-free.
// -----------------------------------------------------------------------------
//
// 8 buckets per power of two (relative error of a quantile <= 12.5 %), from
// 1 ns to duration::max() (~292 years). Two windows of `window_samples` samples each: a
// quantile reads both, and when the current window is full the older one is
// cleared and becomes current, so the estimate follows the last 1 to 2
// windows. record() is a few relaxed atomic increments; quantile() reads
// 2 x 512 counters. A quantile read while a window is being cleared may be
// slightly off (never undefined).
class latency_histogram {
 public:
  static constexpr std::uint32_t sub_buckets = 8;
  static constexpr std::uint32_t buckets = 61 * sub_buckets;  // up to duration::max()

  explicit latency_histogram(std::uint64_t window_samples = 1000) noexcept
      : window_(window_samples == 0 ? 1 : window_samples) {}
  latency_histogram(const latency_histogram&) = delete;
  latency_histogram& operator=(const latency_histogram&) = delete;

  void record(duration d) noexcept {
    const std::uint64_t e = epoch_.load(std::memory_order_acquire);
    window_state& w = windows_[e & 1];
    w.counts[index_of(d)].fetch_add(1, std::memory_order_relaxed);
    if (w.total.fetch_add(1, std::memory_order_relaxed) + 1 == window_) {
      // This window is full: clear the other one and make it current.
      window_state& next = windows_[(e + 1) & 1];
      for (auto& c : next.counts) c.store(0, std::memory_order_relaxed);
      next.total.store(0, std::memory_order_relaxed);
      epoch_.store(e + 1, std::memory_order_release);
    }
  }

  // The q-quantile (0 < q <= 1) as the upper bound of its bucket; nullopt
  // with fewer than `min_samples` samples.
  [[nodiscard]] std::optional<duration> quantile(double q, std::uint64_t min_samples = 1) const noexcept {
    std::uint64_t total = 0;
    for (const auto& w : windows_) total += w.total.load(std::memory_order_relaxed);
    if (total == 0 || total < min_samples || !(q > 0.0)) return std::nullopt;
    const double wanted_d = q >= 1.0 ? static_cast<double>(total) : q * static_cast<double>(total);
    std::uint64_t wanted = static_cast<std::uint64_t>(wanted_d);
    if (static_cast<double>(wanted) < wanted_d) ++wanted;
    if (wanted == 0) wanted = 1;
    std::uint64_t seen = 0;
    for (std::uint32_t i = 0; i < buckets; ++i) {
      seen += windows_[0].counts[i].load(std::memory_order_relaxed) + windows_[1].counts[i].load(std::memory_order_relaxed);
      if (seen >= wanted) return upper_bound_of(i);
    }
    return upper_bound_of(buckets - 1);
  }

  [[nodiscard]] std::uint64_t samples() const noexcept {
    return windows_[0].total.load(std::memory_order_relaxed) + windows_[1].total.load(std::memory_order_relaxed);
  }

  // Bucket arithmetic (public for tests).
  [[nodiscard]] static std::uint32_t index_of(duration d) noexcept {
    const std::uint64_t v = d.count() <= 0 ? 0 : static_cast<std::uint64_t>(d.count());
    if (v < sub_buckets) return static_cast<std::uint32_t>(v);
    const std::uint32_t msb = 63u - static_cast<std::uint32_t>(std::countl_zero(v));  // >= 3
    const std::uint32_t sub = static_cast<std::uint32_t>(v >> (msb - 3)) & (sub_buckets - 1);
    return (msb - 2) * sub_buckets + sub;
  }
  // The largest duration that falls in bucket i.
  [[nodiscard]] static duration upper_bound_of(std::uint32_t i) noexcept {
    if (i < sub_buckets) return duration(i);
    const std::uint32_t msb = i / sub_buckets + 2;
    const std::uint64_t sub = i % sub_buckets;
    const std::uint64_t low = (std::uint64_t{1} << msb) | (sub << (msb - 3));
    const std::uint64_t high = low + (std::uint64_t{1} << (msb - 3)) - 1;
    return duration(high > static_cast<std::uint64_t>(duration::max().count()) ? duration::max().count()
                                                                                : static_cast<duration::rep>(high));
  }

 private:
  struct window_state {
    std::array<std::atomic<std::uint64_t>, buckets> counts{};
    std::atomic<std::uint64_t> total{0};
  };
  const std::uint64_t window_;
  std::atomic<std::uint64_t> epoch_{0};
  std::array<window_state, 2> windows_{};
};

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

struct hedge_options {
  // Attempts in all, the primary included: 1..16. Default 2 (Polly's one
  // hedge; gRPC caps at 5).
  std::uint32_t max_attempts = 2;
  // The hedge delay: how long after an attempt starts the next one starts
  // (0: all at once). >= 0. Default 2 s (Polly). With `latencies`, the
  // delay until the histogram has `min_samples`.
  duration delay = std::chrono::seconds(2);
  // Adaptive delay: the `percentile` quantile of `latencies` (shared by the
  // calls; owned jointly). Empty: fixed delay.
  std::shared_ptr<latency_histogram> latencies{};
  // In (0, 1]. Default 0.95 (hedging at the p95 adds about 5 % load).
  double percentile = 0.95;
  std::uint64_t min_samples = 100;
  // Limits the extra load: asked before every hedge. Default: none.
  retry_budget_ref budget{};
  // Whether a failure is retryable: it then starts the next attempt at once
  // and, if all fail, the call returns the primary's failure. A failure that
  // is not retryable (fatal) ends the call with it. Empty: every failure is
  // retryable (Polly).
  callback<bool(const failure_info&)> retryable{};
  // How losers are cancelled. Default terminal (what every Asio operation
  // supports).
  boost::asio::cancellation_type_t cancel_losers = boost::asio::cancellation_type::terminal;
  // Seeds the entropy handed to budgets that use it (adaptive_throttle).
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL;

  // Empty when valid; otherwise "hedge_options.<field> must ...".
  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (max_attempts < 1 || max_attempts > 16) return "hedge_options.max_attempts must be between 1 and 16";
    if (delay < duration::zero()) return "hedge_options.delay must be >= 0";
    if (!(percentile > 0.0 && percentile <= 1.0)) return "hedge_options.percentile must be in (0, 1]";
    return {};
  }
};

// What make_attempt is told.
struct hedge_attempt {
  std::uint32_t index = 0;  // 0: the primary
  std::uint64_t key = 0;    // the same for every attempt of one call
};

// -----------------------------------------------------------------------------
// The decision core
// -----------------------------------------------------------------------------

// How an attempt's result counts.
enum class hedge_verdict : std::uint8_t { accepted, retryable, fatal };

struct hedge_action {
  enum class kind : std::uint8_t {
    launch,  // start attempt `attempt`, then (re)arm the hedge timer for `arm`
             // (duration::max(): no timer)
    wait,    // nothing to do now (leave the timer as it is)
    finish,  // deliver attempt `attempt`'s result; cancel the running ones
  };
  kind what = kind::wait;
  std::uint32_t attempt = 0;
  duration arm = duration::max();
  friend bool operator==(const hedge_action&, const hedge_action&) = default;
};

// hedge_decider: one call's hedging decisions, from events. No I/O, no
// clock, no thread: the driver reports "the delay elapsed", "attempt i
// returned with verdict v", "the caller cancelled", and does what it says.
// Not thread-safe (one call's state; the driver serialises).
class hedge_decider {
 public:
  hedge_decider(std::uint32_t max_attempts, duration delay, retry_budget_ref budget = {},
                std::uint64_t seed = 0) noexcept
      : max_(max_attempts < 1 ? 1 : (max_attempts > 16 ? 16 : max_attempts)),
        delay_(delay < duration::zero() ? duration::zero() : delay),
        budget_(budget),
        entropy_(seed) {}

  // The call starts: launch the primary.
  [[nodiscard]] hedge_action start() noexcept {
    budget_.on_attempt(false);
    return launch_next();
  }

  // The hedge timer fired.
  [[nodiscard]] hedge_action on_delay_elapsed() noexcept {
    if (finished_ || cancelling_ || launched_ >= max_) return {};
    return try_hedge();
  }

  // Attempt `i` returned.
  [[nodiscard]] hedge_action on_result(std::uint32_t i, hedge_verdict v) noexcept {
    if (i >= 16 || (running_ & bit(i)) == 0) return {};  // unknown or already returned
    running_ &= ~bit(i);
    if (finished_ || cancelling_) {
      budget_.on_outcome(v == hedge_verdict::accepted ? attempt_outcome::success : attempt_outcome::neutral);
      if (finished_) return {};
      if (v == hedge_verdict::accepted) return finish(i);
      return running_ == 0 ? finish(0) : hedge_action{};
    }
    switch (v) {
      case hedge_verdict::accepted:
        budget_.on_outcome(attempt_outcome::success);
        return finish(i);
      case hedge_verdict::fatal:
        budget_.on_outcome(attempt_outcome::neutral);
        return finish(i);
      case hedge_verdict::retryable:
        break;
    }
    budget_.on_outcome(attempt_outcome::failure);
    if (launched_ < max_) {
      hedge_action a = try_hedge();
      if (a.what == hedge_action::kind::launch) return a;
    }
    return running_ == 0 ? finish(0) : hedge_action{};  // all failed: the primary's failure
  }

  // The caller cancelled: no new attempt; the driver cancels the running
  // ones; the call finishes when they have all returned.
  void on_cancel() noexcept { cancelling_ = true; }

  [[nodiscard]] std::uint32_t launched() const noexcept { return launched_; }
  [[nodiscard]] std::uint16_t running_mask() const noexcept { return running_; }
  [[nodiscard]] bool finished() const noexcept { return finished_; }
  [[nodiscard]] std::uint32_t hedges_denied() const noexcept { return denied_; }

 private:
  static std::uint16_t bit(std::uint32_t i) noexcept { return static_cast<std::uint16_t>(1u << i); }

  hedge_action try_hedge() noexcept {
    if (!budget_.try_retry(next_entropy())) {
      ++denied_;
      return {};
    }
    budget_.on_attempt(true);
    return launch_next();
  }
  hedge_action launch_next() noexcept {
    const std::uint32_t i = launched_++;
    running_ |= bit(i);
    return {hedge_action::kind::launch, i, launched_ < max_ ? delay_ : duration::max()};
  }
  hedge_action finish(std::uint32_t i) noexcept {
    finished_ = true;
    return {hedge_action::kind::finish, i, duration::max()};
  }
  std::uint64_t next_entropy() noexcept {  // splitmix64
    std::uint64_t z = (entropy_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  std::uint32_t max_;
  duration delay_;
  retry_budget_ref budget_;
  std::uint64_t entropy_;
  std::uint32_t launched_ = 0;
  std::uint32_t denied_ = 0;
  std::uint16_t running_ = 0;
  bool finished_ = false;
  bool cancelling_ = false;
};

// -----------------------------------------------------------------------------
// The Asio driver
// -----------------------------------------------------------------------------

namespace detail {

template <class R, class Timer, class MakeAttempt, class Handler>
class hedge_op : public async_op_base<hedge_op<R, Timer, MakeAttempt, Handler>, Handler> {
  using base = async_op_base<hedge_op, Handler>;
  friend base;

 public:
  hedge_op(const hedge_options& options, MakeAttempt make, Handler handler, const boost::asio::any_io_executor& ex,
           std::uint64_t key)
      : base(std::move(handler), ex),
        options_(options),
        make_(std::move(make)),
        ex_(ex),
        timer_(ex),
        key_(key),
        core_(options_.max_attempts, options_.delay, options_.budget, options_.seed ^ key) {}
  void start() {
    this->start_on_strand([](hedge_op& op) { op.begin(); });
  }

 private:
  void on_cancelled() { cancel(); }

  struct attempt_done {
    std::shared_ptr<hedge_op> self;
    std::uint32_t index;
    void operator()(R r) { self->on_attempt(index, std::move(r)); }
  };

  void begin() {
    if (this->cancel_requested() != boost::asio::cancellation_type::none) {  // before anything started
      return deliver(make_failure<R>(make_error_code(errc::cancelled)));
    }
    if (options_.latencies) {
      if (auto q = options_.latencies->quantile(options_.percentile, options_.min_samples)) {
        core_ = hedge_decider(options_.max_attempts, *q, options_.budget, options_.seed ^ key_);
      }
    }
    started_ = Timer::clock_type::now();
    apply(core_.start(), nullptr);
  }

  void apply(const hedge_action& a, R* just_returned) {
    switch (a.what) {
      case hedge_action::kind::wait:
        return;
      case hedge_action::kind::launch:
        rearm(a.arm);
        return launch(a.attempt);
      case hedge_action::kind::finish:
        if (just_returned != nullptr && a.attempt == last_index_) return deliver(std::move(*just_returned));
        return deliver(std::move(*primary_));
    }
  }

  void launch(std::uint32_t i) {
    attempts_[i] = hedge_attempt{i, key_};  // lives as long as the attempt (coroutines may keep the reference)
    launch_attempt<R>(ex_, make_(static_cast<const hedge_attempt&>(attempts_[i])), signals_[i].slot(), this->strand_,
                      attempt_done{this->shared_from_this(), i});
  }

  void rearm(duration d) {
    ++timer_generation_;
    if (d == duration::max()) {
      timer_.cancel();
      return;
    }
    timer_.expires_after(to_timer_duration<Timer>(d));
    timer_.async_wait(boost::asio::bind_executor(
        this->strand_, [self = this->shared_from_this(), g = timer_generation_](const boost::system::error_code& ec) {
          if (!ec && g == self->timer_generation_) self->apply(self->core_.on_delay_elapsed(), nullptr);
        }));
  }

  void on_attempt(std::uint32_t i, R r) {
    if (i == 0 && options_.latencies) {
      options_.latencies->record(
          std::chrono::duration_cast<duration>(Timer::clock_type::now() - started_));
    }
    last_index_ = i;
    hedge_verdict v = hedge_verdict::accepted;
    if (!succeeded(r)) {
      const failure_info f = failure_of(r);
      v = !options_.retryable || options_.retryable(f) ? hedge_verdict::retryable : hedge_verdict::fatal;
      if (i == 0) {  // kept: if every attempt fails, the call returns it
        primary_.emplace(std::move(r));
        return apply(core_.on_result(i, v), &*primary_);
      }
    }
    apply(core_.on_result(i, v), &r);
  }

  void cancel() {
    if (done_) return;
    core_.on_cancel();
    rearm(duration::max());
    const auto type = this->cancel_requested();
    for (std::uint32_t j = 0; j < 16; ++j) {
      if ((core_.running_mask() & (1u << j)) != 0) signals_[j].emit(type);
    }
  }

  void deliver(R r) {
    if (done_) return;
    done_ = true;
    rearm(duration::max());
    for (std::uint32_t j = 0; j < 16; ++j) {
      if ((core_.running_mask() & (1u << j)) != 0) signals_[j].emit(options_.cancel_losers);
    }
    this->complete(std::move(r));
  }

  hedge_options options_;
  MakeAttempt make_;
  boost::asio::any_io_executor ex_;
  Timer timer_;
  std::uint64_t key_;
  hedge_decider core_;
  std::array<boost::asio::cancellation_signal, 16> signals_;
  std::array<hedge_attempt, 16> attempts_{};
  std::optional<R> primary_;
  typename Timer::clock_type::time_point started_{};
  std::uint64_t timer_generation_ = 0;
  std::uint32_t last_index_ = 0;
  bool done_ = false;
};

inline std::uint64_t next_hedge_key() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

template <class R, class Timer>
struct initiate_hedge {
  template <class Handler, class MakeAttempt>
  void operator()(Handler&& handler, const hedge_options& options, MakeAttempt&& make) const {
    if (!options.validation_message().empty()) {
      return post_completion(std::forward<Handler>(handler), make_failure<R>(make_error_code(errc::invalid_options)));
    }
    using op_type = hedge_op<R, Timer, std::decay_t<MakeAttempt>, std::decay_t<Handler>>;
    boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
    auto op = std::make_shared<op_type>(options, std::forward<MakeAttempt>(make), std::forward<Handler>(handler), ex,
                                        next_hedge_key());
    op->start();
  }
};

}  // namespace detail

// The result type of async_hedge for a make_attempt.
template <class MakeAttempt>
using hedge_result_t =
    typename detail::attempt_result<std::decay_t<std::invoke_result_t<MakeAttempt&, const hedge_attempt&>>>::type;

// async_hedge<Timer>(options, make_attempt, token) -> void(R)
//
// See the banner. Invalid options: make_failure<R>(errc::invalid_options),
// nothing launched (the message: options.validation_message()).
template <class Timer = boost::asio::steady_timer, class MakeAttempt, class CompletionToken>
  requires std::invocable<MakeAttempt&, const hedge_attempt&>
auto async_hedge(const hedge_options& options, MakeAttempt&& make_attempt, CompletionToken&& token) {
  using R = hedge_result_t<MakeAttempt>;
  static_assert(result_like<R>, "An attempt must complete with a result type sturdy supports (or error_code, T).");
  // The options by value: a deferred operation may be launched after they are gone.
  return boost::asio::async_initiate<CompletionToken, void(R)>(detail::initiate_hedge<R, Timer>{}, token, options,
                                                               std::forward<MakeAttempt>(make_attempt));
}

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_HEDGE_HPP_
