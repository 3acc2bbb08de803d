// bench/retry_baseline.hpp: the retry policy as it was on main at 6d6b1f2,
// before the hardening round (function-pointer predicates, no refunds, no
// post-sleep deadline check, no retry_after_source), frozen in its own
// namespace `sturdy::retry_baseline` so that retry_bench measures the happy
// path before and after in the same binary and the same run. Generated from
// `git show 6d6b1f2:include/sturdy/retry.hpp`: only the namespaces changed.
// Not part of the library; do not include it anywhere else.
#ifndef STURDY_BENCH_RETRY_BASELINE_HPP_
#define STURDY_BENCH_RETRY_BASELINE_HPP_

#include "sturdy/retry.hpp"

namespace sturdy::retry_baseline {


// ----------------------------------------------------------------------------
// Server hints
// ----------------------------------------------------------------------------

// retry_hint
//
// What an error says about retrying: nothing, "retry after `delay`", or
// "do not retry".
struct retry_hint {
  enum class kind : std::uint8_t { none, delay, do_not_retry };
  kind verdict = kind::none;
  duration delay = duration::zero();  // meaningful for kind::delay

  [[nodiscard]] static constexpr retry_hint none() noexcept { return {}; }
  // Retry after `d` (HTTP Retry-After). A negative `d` means do not retry.
  [[nodiscard]] static constexpr retry_hint after(duration d) noexcept {
    if (d < duration::zero()) return do_not_retry();
    return {.verdict = kind::delay, .delay = d};
  }
  [[nodiscard]] static constexpr retry_hint do_not_retry() noexcept { return {.verdict = kind::do_not_retry}; }
  // gRPC `grpc-retry-pushback-ms`: a delay in ms; negative means do not
  // retry.
  [[nodiscard]] static constexpr retry_hint from_pushback_ms(std::int64_t ms) noexcept {
    if (ms < 0) return do_not_retry();
    constexpr std::int64_t max_ms = duration::max().count() / 1'000'000;
    return after(std::chrono::milliseconds(ms > max_ms ? max_ms : ms));
  }

  friend constexpr bool operator==(const retry_hint&, const retry_hint&) = default;
};

// retry_after_error
//
// Throw it (or a class derived from it) from a callable to carry a hint
// with the exception; the retry loop catches it by type at no extra cost.
class retry_after_error : public std::runtime_error {
 public:
  explicit retry_after_error(retry_hint hint, const char* what = "the server suggested a retry delay")
      : std::runtime_error(what), hint_(hint) {}
  [[nodiscard]] retry_hint hint() const noexcept { return hint_; }

 private:
  retry_hint hint_;
};

// ----------------------------------------------------------------------------
// Events (delivered to the policy's Listener)
// ----------------------------------------------------------------------------

// A failed attempt will be retried after `delay` (the "on_retry" event).
struct retry_scheduled {
  std::uint32_t attempt;   // the attempt that failed (1 = first call)
  duration delay;          // the chosen delay
  failure_info failure;    // why it failed
  bool from_server_hint;   // the delay came from a server hint
};
// Every allowed attempt failed; the last failure is returned/rethrown.
struct retries_exhausted {
  std::uint32_t attempts;
  failure_info failure;
};
// The budget denied a retry; the call returns errc::budget_exhausted (or
// rethrows the last exception).
struct retry_budget_denied {
  std::uint32_t attempt;
  failure_info failure;
};
// The remaining time cannot hold the delay plus an attempt; the call
// returns errc::deadline_exceeded (or rethrows the last exception).
// `attempt` 0: the deadline had passed before the first attempt (fn was
// never called; every duration and the failure are empty).
struct retry_deadline_exceeded {
  std::uint32_t attempt;
  duration delay;               // the delay that did not fit
  duration remaining;           // time left before the deadline
  duration estimated_attempt;   // the running estimate of one attempt
  failure_info failure;
};
// The server said not to retry; the failure is returned/rethrown.
struct retry_refused_by_server {
  std::uint32_t attempt;
  failure_info failure;
};
// The caller's stop_token stopped the loop; the call returns
// errc::cancelled (or rethrows the last exception). `attempt` is the number
// of attempts made (0: stopped before the first); `failure` is the last
// attempt's (empty when none was made).
struct retry_cancelled {
  std::uint32_t attempt;
  failure_info failure;
};

// ----------------------------------------------------------------------------
// Options
// ----------------------------------------------------------------------------

// sturdy::default_retry_if(f)
//
// The default retry predicate: retries every failure (error or exception)
// except sturdy's own verdicts that a retry cannot change: cancellation
// (anything equal to std::errc::operation_canceled), errc::budget_exhausted
// (an inner budget asked for less load) and errc::invalid_options.
[[nodiscard]] inline bool default_retry_if(const failure_info& f) noexcept {
  if (!f.code) return true;
  return !(f.code == std::errc::operation_canceled || f.code == errc::budget_exhausted ||
           f.code == errc::invalid_options);
}

// basic_retry_options<Backoff> / retry_options
//
// Aggregate; fill with designated initializers. `retry_policy` validates
// them at construction and refuses to run (errc::invalid_options) when they
// are invalid; call `validate()` / `validation_message()` on values read
// from configuration.
template <backoff_strategy Backoff = backoff>
struct basic_retry_options {
  // Attempts in total, the first call included: 3 means one call and at
  // most two retries. Default 3. Must be >= 1.
  std::uint32_t max_attempts = 3;
  // The delay strategy. Default: exponential from 100 ms, full jitter,
  // capped at 10 s.
  Backoff backoff{};
  // Limit on the whole call, first attempt included, measured with the
  // policy's clock. Zero means none. Default zero. Must be >= 0. A per-call
  // deadline may be passed to `execute` as well; the earlier one wins.
  duration max_elapsed = duration::zero();
  // Which failures to retry. Default (null): `sturdy::default_retry_if`.
  bool (*retry_if)(const failure_info&) = nullptr;
  // Extracts a server hint from a failure. Default (null): none (the
  // exception type, the ADL hook and errc::retry_refused still apply).
  retry_hint (*server_hint)(const failure_info&) = nullptr;
  // Server-suggested delays are clamped to [min_server_delay,
  // max_server_delay]. Defaults 0 and 60 s. Must be 0 <= min <= max.
  duration min_server_delay = duration::zero();
  duration max_server_delay = std::chrono::seconds(60);
  // The shared retry budget. Default: none (every retry allowed).
  retry_budget_ref budget{};

  // Empty when valid, otherwise a sentence naming the offending field.
  [[nodiscard]] constexpr std::string_view validation_message() const noexcept {
    if (max_attempts < 1) return "retry_options.max_attempts must be >= 1 (it counts the first call)";
    if (max_elapsed < duration::zero()) return "retry_options.max_elapsed must be >= 0 (0 = no limit)";
    if (min_server_delay < duration::zero()) return "retry_options.min_server_delay must be >= 0";
    if (max_server_delay < min_server_delay) {
      return "retry_options.max_server_delay must be >= min_server_delay";
    }
    if constexpr (requires(const Backoff& b) { { b.validation_message() } -> std::convertible_to<std::string_view>; }) {
      const std::string_view m = backoff.validation_message();
      if (!m.empty()) return m;
    }
    return {};
  }
  [[nodiscard]] result<void> validate() const noexcept {
    return detail::validation_result(validation_message());
  }
};

using retry_options = basic_retry_options<>;

namespace baseline_detail {

// The ADL hint hook on a result's error value, when there is one.
template <class R>
[[nodiscard]] retry_hint error_value_hint(const R& r) {
  if constexpr (requires { r.has_error(); r.assume_error(); }) {
    using E = std::remove_cvref_t<decltype(r.assume_error())>;
    if constexpr (requires(const E& e) { { sturdy_retry_hint(e) } -> std::convertible_to<retry_hint>; }) {
      if (r.has_error()) return sturdy_retry_hint(r.assume_error());
    }
  } else if constexpr (requires { r.has_value(); r.error(); typename R::error_type; }) {
    using E = typename R::error_type;
    if constexpr (requires(const E& e) { { sturdy_retry_hint(e) } -> std::convertible_to<retry_hint>; }) {
      if (!r.has_value()) return sturdy_retry_hint(r.error());
    }
  }
  return {};
}

}  // namespace baseline_detail

// ----------------------------------------------------------------------------
// retry_policy
// ----------------------------------------------------------------------------

// retry_policy<Backoff, Clock, Sleeper, Listener, Random>
//
// A copyable value: options plus the seams. Build it once and share it.
template <backoff_strategy Backoff = backoff, clock_source Clock = steady_clock_source,
          sleeper Sleeper = thread_sleeper, class Listener = null_listener,
          std::uniform_random_bit_generator Random = thread_local_random>
class retry_policy {
 public:
  using options_type = basic_retry_options<Backoff>;

  explicit retry_policy(options_type options = {}, Clock clock = Clock(), Sleeper sleeper = Sleeper(),
                        Listener listener = Listener(), Random random = Random())
      : options_(std::move(options)),
        clock_(std::move(clock)),
        sleeper_(std::move(sleeper)),
        listener_(std::move(listener)),
        random_(std::move(random)),
        valid_(options_.validation_message().empty()) {}

  // retry_policy::execute()
  //
  // Calls `fn` until it succeeds or the loop stops (see the banner). Returns
  // `execute_result_t<F>`; rethrows the last exception whenever the last
  // attempt threw. The overloads take the caller's stop token and an
  // absolute deadline (the earlier of it and `max_elapsed` applies; a
  // deadline already passed means `fn` is never called).
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) const {
    return run(fn, std::stop_token(), time_point::max());
  }
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop) const {
    return run(fn, stop, time_point::max());
  }
  template <std::invocable F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn, std::stop_token stop, time_point deadline) const {
    return run(fn, stop, deadline);
  }

  [[nodiscard]] const options_type& options() const noexcept { return options_; }
  // False when the options failed validation (execute then returns
  // errc::invalid_options without calling).
  [[nodiscard]] bool valid() const noexcept { return valid_; }

 private:
  enum class action : std::uint8_t { retry, return_last, return_code };
  struct verdict {
    action what;
    errc code;
  };
  // Per-call state the first attempt needs (kept small: it is set up on
  // the success path too).
  struct call_state {
    bool stopped_early = false;  // no attempt made (invalid options, stop, deadline passed)
    bool timed = false;
    retry_hint hint{};
    std::exception_ptr thrown;  // the last attempt's exception, if any
    time_point deadline;        // set when timed
    time_point attempt_start;   // set when timed
  };
  // Per-call state only the retry loop needs.
  struct loop_state {
    typename Backoff::state backoff_state{};
    bool has_estimate = false;
    duration estimate{};
  };

  // One attempt; an exception is caught into `cs` and a placeholder failure
  // returned in its place (never handed to the caller).
  template <class F>
  [[nodiscard]] execute_result_t<F> attempt(F& fn, call_state& cs) const {
    return detail::invoke_captured<retry_after_error>(fn, cs.thrown, errc::retries_exhausted,
                                                      [&](const retry_after_error& e) noexcept { cs.hint = e.hint(); });
  }

  // Checks, starts the clock if needed, and makes the first attempt.
  template <class F>
  [[nodiscard]] execute_result_t<F> first_attempt(F& fn, const std::stop_token& stop, time_point deadline,
                                                  call_state& cs) const {
    using R = execute_result_t<F>;
    if (STURDY_UNLIKELY(!valid_)) {
      cs.stopped_early = true;
      return make_failure<R>(errc::invalid_options);
    }
    if (STURDY_UNLIKELY(stop.stop_requested())) {
      cs.stopped_early = true;
      emit(listener_, retry_cancelled{0, {}});
      return make_failure<R>(errc::cancelled);
    }
    if (deadline != time_point::max() || options_.max_elapsed > duration::zero()) {
      cs.timed = true;
      cs.attempt_start = clock_.now();
      cs.deadline = deadline;
      if (options_.max_elapsed > duration::zero() &&
          options_.max_elapsed < detail::time_between(cs.attempt_start, cs.deadline)) {
        cs.deadline = cs.attempt_start + options_.max_elapsed;
      }
      if (STURDY_UNLIKELY(cs.deadline <= cs.attempt_start)) {  // passed already: never start
        cs.stopped_early = true;
        emit(listener_, retry_deadline_exceeded{0, duration::zero(), duration::zero(), duration::zero(), {}});
        return make_failure<R>(errc::deadline_exceeded);
      }
    }
    options_.budget.on_attempt(false);
    return attempt(fn, cs);
  }

  // Every path returns the one object `r`, so it is built in the caller's
  // return slot (NRVO): the success path copies nothing.
  template <class F>
  [[nodiscard]] execute_result_t<F> run(F& fn, const std::stop_token& stop, time_point deadline) const {
    using R = execute_result_t<F>;
    call_state cs;
    R r = first_attempt(fn, stop, deadline, cs);
    if (STURDY_LIKELY(!cs.thrown && !cs.stopped_early && succeeded(r))) {
      options_.budget.on_outcome(attempt_outcome::success);
      return r;
    }
    if (!cs.stopped_early) retry_loop(fn, r, stop, cs);
    return r;
  }

  // After a failed first attempt: retries until success or a stop; leaves
  // the outcome in `r` (or rethrows the callee's last exception: whenever
  // the last attempt threw, whatever the stop reason).
  template <class F>
  void retry_loop(F& fn, execute_result_t<F>& r, const std::stop_token& stop, call_state& cs) const {
    using R = execute_result_t<F>;
    loop_state ls;
    for (std::uint32_t attempt_no = 1;; ++attempt_no) {
      verdict v{};
      if (cs.thrown) {
        v = after_failure(attempt_no, failure_info{.code = {}, .exception = cs.thrown}, cs.hint, cs, ls, stop);
      } else {
        v = after_failure(attempt_no, failure_of(r), baseline_detail::error_value_hint(r), cs, ls, stop);
      }
      if (v.what == action::return_last) {
        if (cs.thrown) std::rethrow_exception(cs.thrown);
        return;
      }
      if (v.what == action::return_code) {
        if (cs.thrown) std::rethrow_exception(cs.thrown);
        r = make_failure<R>(v.code);
        return;
      }
      options_.budget.on_attempt(true);
      cs.thrown = nullptr;
      cs.hint = {};
      r = attempt(fn, cs);
      if (!cs.thrown && succeeded(r)) {
        options_.budget.on_outcome(attempt_outcome::success);
        return;
      }
    }
  }

  // Everything after a failed attempt: decide, and sleep when retrying.
  [[nodiscard]] verdict after_failure(std::uint32_t attempt, failure_info failure, retry_hint hint,
                                      call_state& cs, loop_state& ls,
                                      const std::stop_token& stop) const {
    const bool retryable = options_.retry_if ? options_.retry_if(failure) : retry_baseline::default_retry_if(failure);
    const bool stopped = stop.stop_requested();
    // The attempt is recorded first, whatever happens next (the throttle
    // counted it as a request). Cancellation is never the callee's
    // failure: an attempt that failed while the caller was stopping is
    // neutral, like a non-retryable error.
    options_.budget.on_outcome(retryable && !stopped ? attempt_outcome::failure : attempt_outcome::neutral);
    if (!retryable) return {action::return_last, {}};
    if (attempt >= options_.max_attempts) {
      emit(listener_, retries_exhausted{attempt, std::move(failure)});
      return {action::return_last, {}};
    }
    if (hint.verdict == retry_hint::kind::none && options_.server_hint) hint = options_.server_hint(failure);
    if (hint.verdict == retry_hint::kind::none && failure.code == errc::retry_refused) {
      hint = retry_hint::do_not_retry();
    }
    if (hint.verdict == retry_hint::kind::do_not_retry) {
      emit(listener_, retry_refused_by_server{attempt, std::move(failure)});
      return {action::return_last, {}};
    }
    // Only now, when the loop would otherwise retry, does a stop request
    // replace the failure.
    if (stopped) {
      emit(listener_, retry_cancelled{attempt, std::move(failure)});
      return {action::return_code, errc::cancelled};
    }
    duration delay{};
    const bool hinted = hint.verdict == retry_hint::kind::delay;
    if (hinted) {
      delay = hint.delay < options_.min_server_delay   ? options_.min_server_delay
              : hint.delay > options_.max_server_delay ? options_.max_server_delay
                                                        : hint.delay;
    } else {
      delay = options_.backoff.next_delay(attempt - 1, ls.backoff_state, random_);
    }
    if (cs.timed) {
      const time_point now = clock_.now();
      const duration took = detail::time_between(cs.attempt_start, now);
      // A cheap running estimate: the mean of this attempt and the last
      // estimate (an EWMA with weight 1/2).
      ls.estimate = ls.has_estimate ? ls.estimate / 2 + took / 2 : took;
      ls.has_estimate = true;
      const duration remaining = detail::time_between(now, cs.deadline);
      if (detail::saturating_add(delay, ls.estimate) > remaining) {
        emit(listener_, retry_deadline_exceeded{attempt, delay, remaining, ls.estimate, std::move(failure)});
        return {action::return_code, errc::deadline_exceeded};
      }
    }
    if (options_.budget) {
      // Entropy only for budgets that read it: no draw (and no shift of a
      // seeded jitter sequence) for the token bucket or the ratio budget.
      const std::uint64_t entropy = options_.budget.uses_entropy() ? absl::Uniform<std::uint64_t>(random_) : 0;
      if (!options_.budget.try_retry(entropy)) {
        emit(listener_, retry_budget_denied{attempt, std::move(failure)});
        return {action::return_code, errc::budget_exhausted};
      }
    }
    emit(listener_, retry_scheduled{attempt, delay, failure, hinted});
    if (!sleeper_.sleep_for(delay, stop)) {
      emit(listener_, retry_cancelled{attempt, std::move(failure)});
      return {action::return_code, errc::cancelled};
    }
    if (cs.timed) cs.attempt_start = clock_.now();
    return {action::retry, {}};
  }

  options_type options_;
  STURDY_NO_UNIQUE_ADDRESS mutable Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS mutable Sleeper sleeper_;
  STURDY_NO_UNIQUE_ADDRESS mutable Listener listener_;
  STURDY_NO_UNIQUE_ADDRESS mutable Random random_;
  bool valid_;
};

// ----------------------------------------------------------------------------
// Free functions
// ----------------------------------------------------------------------------

// sturdy::retry(fn) / retry(options, fn[, stop])
//
// One-off retry with the default clock, sleeper and generator.
template <std::invocable F>
[[nodiscard]] execute_result_t<F> retry(F&& fn) {
  return retry_policy<>().execute(std::forward<F>(fn));
}
template <backoff_strategy Backoff, std::invocable F>
[[nodiscard]] execute_result_t<F> retry(const basic_retry_options<Backoff>& options, F&& fn,
                                        std::stop_token stop = {}) {
  return retry_policy<Backoff>(options).execute(std::forward<F>(fn), std::move(stop));
}

// sturdy::retry(options, fn, gen, clock, sleeper[, stop])
//
// With an explicit generator (held by reference for the call), clock and
// sleeper: the form tests use.
template <backoff_strategy Backoff, std::invocable F, std::uniform_random_bit_generator Gen,
          clock_source Clock, sleeper Sleeper>
[[nodiscard]] execute_result_t<F> retry(const basic_retry_options<Backoff>& options, F&& fn, Gen& gen,
                                        Clock clock, Sleeper sleeper, std::stop_token stop = {}) {
  return retry_policy<Backoff, Clock, Sleeper, null_listener, detail::urbg_ref<Gen>>(
             options, std::move(clock), std::move(sleeper), null_listener(), detail::urbg_ref<Gen>(gen))
      .execute(std::forward<F>(fn), std::move(stop));
}

}  // namespace sturdy::retry_baseline

#endif  // STURDY_BENCH_RETRY_BASELINE_HPP_
