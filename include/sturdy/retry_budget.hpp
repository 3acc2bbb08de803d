// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/retry_budget.hpp
// -----------------------------------------------------------------------------
//
// Retry budgets limit how much extra load retries may add across all the
// calls of a process, so that a struggling dependency is not finished off
// by its clients' retries. Share one budget per dependency among every
// retry policy (and thread) that calls it. All three are lock-free.
//
//   token_bucket_budget    gRPC retry throttling (gRFC A6): tokens start at
//                          max_tokens; a failed attempt takes 1, a success
//                          gives token_ratio back; retries only while
//                          tokens > max_tokens / 2.
//   ratio_budget           Finagle / SRE book: a retry is admitted only
//                          while the retries in the sliding `window` stay
//                          within `ratio` of its requests plus a floor of
//                          `min_retries_per_second` * window (checked at
//                          admission; see the class comment).
//   adaptive_throttle      SRE book client-side throttling: a retry is
//                          rejected locally with probability
//                          max(0, (requests - k * accepts) / (requests + 1))
//                          over a sliding `window`.
//
// Example:
//
//   sturdy::token_bucket_budget budget({.max_tokens = 10, .token_ratio = 0.1});
//   sturdy::retry_policy policy(sturdy::retry_options{.budget = budget});
//   auto r = policy.execute([&] { return client.Get(key); });
//   if (!r && r.error() == sturdy::errc::budget_exhausted) { /* shed load */ }
//
// The budget protocol (`sturdy::retry_budget`): for every attempt that
// reached the dependency, a retry loop calls `on_attempt(is_retry)` and then
// `on_outcome(o)` (success, retryable failure, or neutral: a non-retryable
// error, or any failure that ended while the caller was cancelling;
// cancellation is never the dependency's failure), and `try_retry(entropy)`
// before each retry; `false` denies it. An attempt that an inner layer
// rejected without calling (an open breaker's `errc::circuit_open`) is not
// reported at all, and a retry that never ran (cancelled during its sleep,
// stopped by the deadline, rejected by a breaker) is refunded through the
// optional `refundable_retry_budget` extension. All three are noexcept; `entropy` is 64
// random bits from the policy's generator, drawn only for budgets that use
// it: a budget that ignores it says so with
// `static constexpr bool uses_entropy = false;` (the token bucket and the
// ratio budget do), so the loop draws nothing for it and a seeded jitter
// sequence does not depend on whether such a budget is attached. A budget
// without the member gets entropy. `sturdy::retry_budget_ref` erases the type
// so `retry_options` need not be a template over it. Each budget also has
// its natural API (`record_success()`, `try_admit()`, ...) for standalone
// use, e.g. by a simulator.
//
// Thread safety: every member function of every budget is lock-free and safe
// to call from any number of threads. Budgets are pinned (not copyable or
// movable); share them by reference and keep them alive as long as any
// policy refers to them.
//
// Uptime: the windowed budgets count exactly for any uptime and over the
// whole range of `time_point` (absolute 64-bit slice epochs; see
// detail/windowed_counter.hpp).
//
// Testing: `ratio_budget` and `adaptive_throttle` take a `clock_source`
// (use `sturdy::testing::manual_clock`), and every time-dependent member has
// an overload taking `now` explicitly.

#ifndef STURDY_RETRY_BUDGET_HPP_
#define STURDY_RETRY_BUDGET_HPP_

#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <random>
#include <string_view>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/detail/validation.hpp"
#include "sturdy/detail/windowed_counter.hpp"
#include "sturdy/error.hpp"

namespace sturdy {

// What one attempt meant to a budget.
enum class attempt_outcome : std::uint8_t {
  success,  // the call succeeded
  failure,  // a failure the retry policy considers retryable (overload-like)
  neutral,  // a failure that is not retryable (e.g. "not found"), or any
            // failure while the caller cancels: the dependency answered, or
            // the caller gave up; token buckets ignore it, throttles count it
            // as accepted
};

// retry_budget<B>: the protocol a retry loop drives (see the banner).
template <class B>
concept retry_budget = requires(B& b, bool is_retry, attempt_outcome o, std::uint64_t entropy) {
  { b.on_attempt(is_retry) } noexcept;
  { b.on_outcome(o) } noexcept;
  { b.try_retry(entropy) } noexcept -> std::same_as<bool>;
};

// refundable_retry_budget<B>: a budget that charges a retry when it admits
// it (`ratio_budget`) and can take the charge back when that retry never
// reaches the dependency (the caller cancelled during the backoff sleep,
// the deadline passed meanwhile, or an inner layer such as an open breaker
// rejected the attempt without calling). Optional: a budget without these
// members is driven through `try_retry` and never refunded (the token bucket
// and the throttle charge nothing at admission, so they need none).
//   try_retry_ticket(entropy): like try_retry; 0 = denied, otherwise a
//                              non-zero ticket naming the charge;
//   refund_retry(ticket):      takes that charge back.
template <class B>
concept refundable_retry_budget = requires(B& b, std::uint64_t entropy, std::uint64_t ticket) {
  { b.try_retry_ticket(entropy) } noexcept -> std::same_as<std::uint64_t>;
  { b.refund_retry(ticket) } noexcept;
};

// budget_uses_entropy_v<B>: whether `B::try_retry` reads its entropy
// argument: `B::uses_entropy` when declared, otherwise true (safe default).
template <class B>
inline constexpr bool budget_uses_entropy_v = [] {
  if constexpr (requires { B::uses_entropy; }) {
    return static_cast<bool>(B::uses_entropy);
  } else {
    return true;
  }
}();

// retry_budget_ref
//
// A non-owning, copyable handle to any `retry_budget`; default-constructed
// it refers to none (every retry allowed, nothing recorded). Two pointers;
// one indirect call per budget operation. The budget must outlive every
// handle.
class retry_budget_ref {
 public:
  constexpr retry_budget_ref() noexcept = default;
  template <retry_budget B>
    requires(!std::same_as<B, retry_budget_ref>)
  retry_budget_ref(B& budget) noexcept  // NOLINT(google-explicit-constructor): a handle
      : obj_(&budget), vt_(&vtable_for<B>) {}

  [[nodiscard]] explicit operator bool() const noexcept { return obj_ != nullptr; }
  void on_attempt(bool is_retry) const noexcept {
    if (obj_) vt_->on_attempt(obj_, is_retry);
  }
  void on_outcome(attempt_outcome o) const noexcept {
    if (obj_) vt_->on_outcome(obj_, o);
  }
  [[nodiscard]] bool try_retry(std::uint64_t entropy) const noexcept {
    return obj_ == nullptr || vt_->try_retry(obj_, entropy) != 0;
  }
  // Like `try_retry`, returning 0 when denied and otherwise a non-zero
  // ticket for `refund_retry` (1 when the budget keeps no charge to refund).
  [[nodiscard]] std::uint64_t try_retry_ticket(std::uint64_t entropy) const noexcept {
    return obj_ == nullptr ? 1 : vt_->try_retry(obj_, entropy);
  }
  // Takes back the charge of an admitted retry that never reached the
  // dependency (see `refundable_retry_budget`); nothing for other budgets.
  void refund_retry(std::uint64_t ticket) const noexcept {
    if (obj_ && vt_->refund_retry) vt_->refund_retry(obj_, ticket);
  }
  // Whether the budget reads `try_retry`'s entropy (false for none).
  [[nodiscard]] bool uses_entropy() const noexcept { return obj_ != nullptr && vt_->uses_entropy; }
  // Whether both refer to the same budget.
  friend bool operator==(const retry_budget_ref& a, const retry_budget_ref& b) noexcept {
    return a.obj_ == b.obj_;
  }

 private:
  struct vtable {
    void (*on_attempt)(void*, bool) noexcept;
    void (*on_outcome)(void*, attempt_outcome) noexcept;
    std::uint64_t (*try_retry)(void*, std::uint64_t) noexcept;  // 0 = denied, else a ticket
    void (*refund_retry)(void*, std::uint64_t) noexcept;         // null: nothing to refund
    bool uses_entropy;
  };
  template <class B>
  static constexpr auto refund_for() noexcept -> void (*)(void*, std::uint64_t) noexcept {
    if constexpr (refundable_retry_budget<B>) {
      return [](void* p, std::uint64_t t) noexcept { static_cast<B*>(p)->refund_retry(t); };
    } else {
      return nullptr;
    }
  }

  template <class B>
  static constexpr vtable vtable_for{
      [](void* p, bool r) noexcept { static_cast<B*>(p)->on_attempt(r); },
      [](void* p, attempt_outcome o) noexcept { static_cast<B*>(p)->on_outcome(o); },
      [](void* p, std::uint64_t e) noexcept -> std::uint64_t {
        if constexpr (refundable_retry_budget<B>) {
          return static_cast<B*>(p)->try_retry_ticket(e);
        } else {
          return static_cast<B*>(p)->try_retry(e) ? 1 : 0;
        }
      },
      refund_for<B>(),
      budget_uses_entropy_v<B>,
  };

  void* obj_ = nullptr;
  const vtable* vt_ = nullptr;
};

// ----------------------------------------------------------------------------
// token_bucket_budget: gRPC retry throttling (gRFC A6)
// ----------------------------------------------------------------------------

struct token_bucket_options {
  // Bucket size; the count starts full. Default 10 (gRPC's documented
  // example). Must be in [1, 1000] as in gRFC A6.
  std::uint32_t max_tokens = 10;
  // Tokens returned by each success. Default 0.1. Must be > 0 and <=
  // max_tokens, with at most three decimal places (gRFC A6 keeps the count
  // in thousandths).
  double token_ratio = 0.1;

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (max_tokens < 1 || max_tokens > 1000) return "token_bucket_options.max_tokens must be in [1, 1000]";
    if (!(token_ratio > 0.0) || token_ratio > static_cast<double>(max_tokens)) {
      return "token_bucket_options.token_ratio must be > 0 and <= max_tokens";
    }
    const double milli = token_ratio * 1000.0;
    if (std::fabs(milli - std::round(milli)) > 1e-6) {
      return "token_bucket_options.token_ratio must have at most three decimal places";
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

// token_bucket_budget
//
// One cache-line-aligned atomic holding the token count in thousandths.
// A success on a full bucket and a failure on an empty one write nothing.
// Constructed from invalid options it denies every retry (check `validate()`
// first, or `valid()`).
class token_bucket_budget {
 public:
  explicit token_bucket_budget(token_bucket_options options = {}) noexcept
      : valid_(options.validate().has_value()),
        max_milli_(valid_ ? options.max_tokens * 1000u : 0u),
        ratio_milli_(valid_ ? static_cast<std::uint32_t>(std::lround(options.token_ratio * 1000.0)) : 0u),
        milli_(max_milli_) {}
  token_bucket_budget(const token_bucket_budget&) = delete;
  token_bucket_budget& operator=(const token_bucket_budget&) = delete;

  // A failed attempt: one token less, not below zero.
  void record_failure() noexcept {
    std::uint32_t cur = milli_.load(std::memory_order_relaxed);
    while (cur > 0) {
      const std::uint32_t next = cur > 1000u ? cur - 1000u : 0u;
      if (milli_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
    }
  }
  // A success: token_ratio more, not above max_tokens.
  void record_success() noexcept {
    std::uint32_t cur = milli_.load(std::memory_order_relaxed);
    while (cur < max_milli_) {
      const std::uint32_t next = max_milli_ - cur > ratio_milli_ ? cur + ratio_milli_ : max_milli_;
      if (milli_.compare_exchange_weak(cur, next, std::memory_order_relaxed)) return;
    }
  }
  // Whether a retry is allowed now: tokens > max_tokens / 2.
  [[nodiscard]] bool allows_retry() const noexcept {
    return valid_ && milli_.load(std::memory_order_relaxed) > max_milli_ / 2;
  }
  // The current token count (a snapshot).
  [[nodiscard]] double tokens() const noexcept {
    return static_cast<double>(milli_.load(std::memory_order_relaxed)) / 1000.0;
  }
  // The current count in thousandths of a token (exact).
  [[nodiscard]] std::uint32_t milli_tokens() const noexcept { return milli_.load(std::memory_order_relaxed); }
  [[nodiscard]] bool valid() const noexcept { return valid_; }

  // The budget protocol.
  static constexpr bool uses_entropy = false;
  void on_attempt(bool) noexcept {}
  void on_outcome(attempt_outcome o) noexcept {
    if (o == attempt_outcome::success) {
      record_success();
    } else if (o == attempt_outcome::failure) {
      record_failure();
    }
  }
  [[nodiscard]] bool try_retry(std::uint64_t) noexcept { return allows_retry(); }

 private:
  const bool valid_;
  const std::uint32_t max_milli_;
  const std::uint32_t ratio_milli_;
  alignas(cache_line_size) std::atomic<std::uint32_t> milli_;
};

static_assert(retry_budget<token_bucket_budget>);

// ----------------------------------------------------------------------------
// ratio_budget: Finagle RetryBudget / SRE per-client retry budget
// ----------------------------------------------------------------------------

struct ratio_budget_options {
  // Retries allowed per request over the window. Default 0.2 (Finagle's
  // 20 %; the SRE book suggests 0.1). Must be finite, in [0, 1000].
  double ratio = 0.2;
  // The sliding window over which requests and retries are counted, in ten
  // slices. Default 10 s. Must be >= 10 ms.
  duration window = std::chrono::seconds(10);
  // Floor: this many retries per second are always allowed (so a service
  // with little traffic can still retry). Default 10. Must be finite, >= 0.
  double min_retries_per_second = 10.0;

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (!(ratio >= 0.0 && ratio <= 1000.0)) return "ratio_budget_options.ratio must be in [0, 1000]";
    if (window < std::chrono::milliseconds(10)) return "ratio_budget_options.window must be >= 10 ms";
    if (!(min_retries_per_second >= 0.0 && min_retries_per_second <= 1e12)) {
      return "ratio_budget_options.min_retries_per_second must be finite and >= 0";
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

// ratio_budget<Clock>
//
// Counts first attempts (requests) and retries in two lock-free sliding
// windows. A retry is taken tentatively, then the window is checked and the
// retry undone if it broke the limit, so concurrent callers never overshoot
// at admission: when a retry is admitted, the window ending at that moment
// holds retries <= ratio * requests + floor. That is all it promises: the
// window slides in slices (one tenth of `window`), and requests can age out
// of it before the retries they allowed, so a window observed later may
// hold more retries than its own requests would allow (by at most the
// retries admitted on the strength of one slice of requests). Under
// contention a retry may be denied that a serial order would have allowed.
// Constructed from invalid options it denies every retry.
template <clock_source Clock = steady_clock_source>
class ratio_budget {
 public:
  static constexpr std::size_t slices = 10;

  explicit ratio_budget(ratio_budget_options options = {}, Clock clock = Clock())
      : clock_(std::move(clock)),
        valid_(options.validate().has_value()),
        ratio_(options.ratio),
        reserve_(options.min_retries_per_second *
                 std::chrono::duration<double>(options.window).count()),
        width_(valid_ ? options.window / static_cast<duration::rep>(slices) : std::chrono::milliseconds(1)),
        origin_(clock_.now()),
        requests_(width_),
        retries_(width_) {}
  ratio_budget(const ratio_budget&) = delete;
  ratio_budget& operator=(const ratio_budget&) = delete;

  // A new request (a first attempt).
  void record_request() noexcept { record_request(clock_.now()); }
  void record_request(time_point now) noexcept { requests_.increment(epoch(now)); }

  // Takes one retry from the budget if the window allows it.
  [[nodiscard]] bool try_acquire_retry() noexcept { return try_acquire_retry(clock_.now()); }
  [[nodiscard]] bool try_acquire_retry(time_point now) noexcept {
    if (!valid_) return false;
    const std::uint64_t e = epoch(now);
    retries_.increment(e);
    const auto retries = static_cast<double>(retries_.sum(e));
    const auto requests = static_cast<double>(requests_.sum(e));
    if (retries <= ratio_ * requests + reserve_) return true;
    retries_.decrement(e);
    return false;
  }

  // Snapshots of the window's counts.
  [[nodiscard]] std::uint64_t requests_in_window() const noexcept { return requests_in_window(clock_.now()); }
  [[nodiscard]] std::uint64_t retries_in_window() const noexcept { return retries_in_window(clock_.now()); }
  [[nodiscard]] std::uint64_t requests_in_window(time_point now) const noexcept {
    return requests_.sum(epoch(now));
  }
  [[nodiscard]] std::uint64_t retries_in_window(time_point now) const noexcept {
    return retries_.sum(epoch(now));
  }
  // The retry allowance of a window: ratio * requests + floor.
  [[nodiscard]] double allowance(std::uint64_t requests) const noexcept {
    return ratio_ * static_cast<double>(requests) + reserve_;
  }
  [[nodiscard]] bool valid() const noexcept { return valid_; }
  [[nodiscard]] duration slice_width() const noexcept { return width_; }
  [[nodiscard]] time_point origin() const noexcept { return origin_; }

  // The budget protocol.
  static constexpr bool uses_entropy = false;
  void on_attempt(bool is_retry) noexcept {
    if (!is_retry) record_request();
  }
  void on_outcome(attempt_outcome) noexcept {}
  [[nodiscard]] bool try_retry(std::uint64_t) noexcept { return try_acquire_retry(); }
  // The refund extension: the ticket is the admission's slice (epoch + 1),
  // so a refund takes the retry back from the slice that counted it (and
  // from nowhere once that slice has been reused).
  [[nodiscard]] std::uint64_t try_retry_ticket(std::uint64_t) noexcept {
    if (!valid_) return 0;
    const time_point now = clock_.now();
    return try_acquire_retry(now) ? epoch(now) + 1 : 0;
  }
  void refund_retry(std::uint64_t ticket) noexcept {
    if (ticket != 0) retries_.decrement(ticket - 1);
  }

 private:
  [[nodiscard]] std::uint64_t epoch(time_point now) const noexcept { return requests_.epoch(origin_, now); }

  STURDY_NO_UNIQUE_ADDRESS mutable Clock clock_;
  const bool valid_;
  const double ratio_;
  const double reserve_;
  const duration width_;
  const time_point origin_;
  alignas(cache_line_size) detail::windowed_counter<slices> requests_;
  alignas(cache_line_size) detail::windowed_counter<slices> retries_;
};

static_assert(retry_budget<ratio_budget<>>);
static_assert(refundable_retry_budget<ratio_budget<>>);

// ----------------------------------------------------------------------------
// adaptive_throttle: SRE book client-side adaptive throttling
// ----------------------------------------------------------------------------

struct adaptive_throttle_options {
  // The multiplier K: the client may send up to k times the requests the
  // backend accepts before it starts rejecting locally. Default 2. Must be
  // finite and >= 1.
  double k = 2.0;
  // The sliding window for requests and accepts, in twelve slices. Default
  // 2 min (the SRE book's). Must be >= 12 ms.
  duration window = std::chrono::minutes(2);

  [[nodiscard]] std::string_view validation_message() const noexcept {
    if (!(k >= 1.0 && k <= 1e12)) return "adaptive_throttle_options.k must be finite and >= 1";
    if (window < std::chrono::milliseconds(12)) return "adaptive_throttle_options.window must be >= 12 ms";
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

// adaptive_throttle<Clock>
//
// Standalone use (admission control for every request):
//   if (!throttle.try_admit(gen)) return overloaded;   // counts the request
//   auto r = call();
//   if (backend_answered(r)) throttle.record_accept();
// As a retry budget, first attempts are always sent; each wanted retry is
// rejected locally with the throttle's probability (counting itself as a
// request). Every attempt sent is counted when its outcome arrives: the
// request and, unless the outcome is a retryable failure, the accept, with
// one clock read (`on_attempt` does nothing); a rejected retry is counted
// as a request at once. Constructed from invalid options it rejects every
// retry.
template <clock_source Clock = steady_clock_source>
class adaptive_throttle {
 public:
  static constexpr std::size_t slices = 12;

  explicit adaptive_throttle(adaptive_throttle_options options = {}, Clock clock = Clock())
      : clock_(std::move(clock)),
        valid_(options.validate().has_value()),
        k_(options.k),
        width_(valid_ ? options.window / static_cast<duration::rep>(slices) : std::chrono::milliseconds(1)),
        origin_(clock_.now()),
        requests_(width_),
        accepts_(width_) {}
  adaptive_throttle(const adaptive_throttle&) = delete;
  adaptive_throttle& operator=(const adaptive_throttle&) = delete;

  // max(0, (requests - k * accepts) / (requests + 1)) over the window.
  [[nodiscard]] double rejection_probability() const noexcept { return rejection_probability(clock_.now()); }
  [[nodiscard]] double rejection_probability(time_point now) const noexcept {
    return probability(epoch(now), 0);
  }

  // Counts a request and admits it with probability 1 - p. `entropy` is 64
  // random bits (or pass a generator).
  [[nodiscard]] bool try_admit(std::uint64_t entropy) noexcept { return try_admit(entropy, clock_.now()); }
  [[nodiscard]] bool try_admit(std::uint64_t entropy, time_point now) noexcept {
    if (!valid_) return false;
    const std::uint64_t e = epoch(now);
    requests_.increment(e);
    return unit(entropy) >= probability(e, 0);
  }
  template <std::uniform_random_bit_generator Gen>
  [[nodiscard]] bool try_admit_with(Gen& gen) noexcept(noexcept(gen())) {
    return try_admit(std::uniform_int_distribution<std::uint64_t>()(gen));
  }

  // Counts a request without asking for admission.
  void record_request() noexcept { record_request(clock_.now()); }
  void record_request(time_point now) noexcept { requests_.increment(epoch(now)); }
  // The backend accepted a request (answered it, even with an error that
  // is not an overload signal).
  void record_accept() noexcept { record_accept(clock_.now()); }
  void record_accept(time_point now) noexcept { accepts_.increment(epoch(now)); }
  // A request that was sent and ended: counts it, and the accept when
  // `accepted`, with one `now`.
  void record_outcome(bool accepted) noexcept { record_outcome(accepted, clock_.now()); }
  void record_outcome(bool accepted, time_point now) noexcept {
    const std::uint64_t e = epoch(now);
    requests_.increment(e);
    if (accepted) accepts_.increment(e);
  }

  [[nodiscard]] std::uint64_t requests_in_window(time_point now) const noexcept {
    return requests_.sum(epoch(now));
  }
  [[nodiscard]] std::uint64_t accepts_in_window(time_point now) const noexcept {
    return accepts_.sum(epoch(now));
  }
  [[nodiscard]] bool valid() const noexcept { return valid_; }

  // The budget protocol (see the class comment).
  static constexpr bool uses_entropy = true;
  void on_attempt(bool) noexcept {}
  void on_outcome(attempt_outcome o) noexcept { record_outcome(o != attempt_outcome::failure); }
  [[nodiscard]] bool try_retry(std::uint64_t entropy) noexcept {
    if (!valid_) return false;
    const std::uint64_t e = epoch(clock_.now());
    if (unit(entropy) >= probability(e, 1)) return true;  // sent: counted with its outcome
    requests_.increment(e);                                 // rejected locally: a request all the same
    return false;
  }

 private:
  // The rejection probability at epoch `e` with `pending` requests not yet
  // counted.
  [[nodiscard]] double probability(std::uint64_t e, std::uint64_t pending) const noexcept {
    const auto req = static_cast<double>(requests_.sum(e) + pending);
    const auto acc = static_cast<double>(accepts_.sum(e));
    const double p = (req - k_ * acc) / (req + 1.0);
    return p > 0.0 ? p : 0.0;
  }
  [[nodiscard]] static double unit(std::uint64_t entropy) noexcept {
    return static_cast<double>(entropy >> 11) * 0x1.0p-53;  // [0, 1)
  }
  [[nodiscard]] std::uint64_t epoch(time_point now) const noexcept { return requests_.epoch(origin_, now); }

  STURDY_NO_UNIQUE_ADDRESS mutable Clock clock_;
  const bool valid_;
  const double k_;
  const duration width_;
  const time_point origin_;
  alignas(cache_line_size) detail::windowed_counter<slices> requests_;
  alignas(cache_line_size) detail::windowed_counter<slices> accepts_;
};

static_assert(retry_budget<adaptive_throttle<>>);

}  // namespace sturdy

#endif  // STURDY_RETRY_BUDGET_HPP_
