// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/error.hpp
// -----------------------------------------------------------------------------
//
// sturdy's error model. Every failure that sturdy itself reports is a
// `std::error_code` built from `sturdy::errc`, carried in a `sturdy::result<T>`
// (Boost.Outcome's `std_result<T>`). sturdy never throws on its own account,
// so callers chain its calls with `BOOST_OUTCOME_TRY`.
//
// Example:
//
//   sturdy::result<int> parse(std::string_view s);
//
//   sturdy::result<int> twice(std::string_view s) {
//     BOOST_OUTCOME_TRY(auto v, parse(s));  // returns the error on failure
//     return 2 * v;
//   }
//
//   if (r.error() == sturdy::errc::circuit_open) { /* fail fast */ }
//   if (r.error() == std::errc::timed_out) { /* deadline_exceeded matches */ }
//
// Each `errc` maps to the closest portable `std::errc` condition, so code that
// only knows `std::errc` still classifies sturdy's errors sensibly.
//
// Thread safety: everything here is immutable or a pure function.

#ifndef STURDY_ERROR_HPP_
#define STURDY_ERROR_HPP_

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include <boost/outcome/std_outcome.hpp>
#include <boost/outcome/std_result.hpp>
#include <boost/outcome/try.hpp>

#include "sturdy/config.hpp"

namespace sturdy {

// sturdy::result<T>
//
// The return type of every fallible sturdy function: a value of type `T` or a
// `std::error_code`. Spelled out on purpose: Outcome's Boost-edition
// `result<T>` would mean `boost::system::error_code`.
template <class T>
using result = BOOST_OUTCOME_V2_NAMESPACE::std_result<T>;

// sturdy::outcome<T>: a value, an error code or an exception. Used where an
// exception thrown by a user's callable must be stored and handed on (the
// idempotency cache replays it to later callers).
template <class T>
using outcome = BOOST_OUTCOME_V2_NAMESPACE::std_outcome<T>;

// Outcome's success/failure helpers, re-exported for brevity.
using BOOST_OUTCOME_V2_NAMESPACE::failure;
using BOOST_OUTCOME_V2_NAMESPACE::success;

// sturdy::errc
//
// Every error sturdy reports. Zero is never used (it means "no error" in
// `std::error_code`). Values are stable: new ones are only appended.
enum class errc : int {
  // A circuit breaker rejected the call without running it (open, forced
  // open, or half-open with every probe slot taken).
  circuit_open = 1,
  // A retry loop used every attempt it was allowed; the last error is kept.
  retries_exhausted,
  // A retry budget (token bucket, ratio or adaptive throttle) denied a retry.
  budget_exhausted,
  // A deadline or total time limit left no room for another attempt.
  deadline_exceeded,
  // The caller's `std::stop_token` asked to stop.
  cancelled,
  // An idempotency key is being executed by another caller (HTTP 409).
  in_progress,
  // An idempotency key was reused with a different payload (HTTP 422).
  key_mismatch,
  // An idempotency key was empty (HTTP 400).
  missing_key,
  // An idempotency key was too long or otherwise unusable (HTTP 400).
  invalid_key,
  // An options struct failed validation; the message names the field where
  // the API offers one.
  invalid_options,
  // At least one compensation (undo) failed and was handed to a dead-letter
  // sink.
  compensation_failed,
  // A bounded container is full and nothing can be evicted.
  capacity_exceeded,
  // A completion or release carried a fencing token from an older owner.
  stale_token,
  // Waiting for another caller's result took longer than allowed.
  wait_timeout,
  // Misuse: the scope was already committed.
  already_committed,
  // Misuse: the scope was already rolled back.
  already_rolled_back,
  // The requested entry does not exist.
  not_found,
  // A shared store (e.g. Redis) could not be reached or timed out.
  store_unavailable,
  // Stored data could not be decoded (written by another program or
  // version).
  corrupt_data,
  // The server said not to retry (e.g. a negative gRPC retry pushback).
  retry_refused,
  // A concurrency limiter (bulkhead) had no permit free and its queue was
  // full or the wait ran out (HTTP 503).
  limit_exceeded,
  // A rate limiter refused the request: too many in the current period
  // (HTTP 429). The decision carries when to come back.
  rate_limited,
  // An idempotency cache ran the work, but storing its outcome threw (a
  // throwing copy of the value, a codec's encode, bad_alloc): the key was
  // completed with this error instead, so its work never runs again while
  // the key lives. Replays get it; the first caller got its own result.
  outcome_not_stored,
};

// sturdy::message(errc)
//
// The human-readable sentence for each value; never empty.
[[nodiscard]] constexpr std::string_view message(errc e) noexcept {
  switch (e) {
    case errc::circuit_open:
      return "circuit breaker is open: the call was rejected without running";
    case errc::retries_exhausted:
      return "all retry attempts failed";
    case errc::budget_exhausted:
      return "the retry budget denied another attempt";
    case errc::deadline_exceeded:
      return "the deadline leaves no time for another attempt";
    case errc::cancelled:
      return "the operation was cancelled by its caller";
    case errc::in_progress:
      return "a request with this idempotency key is still in progress";
    case errc::key_mismatch:
      return "the idempotency key was reused with a different payload";
    case errc::missing_key:
      return "the idempotency key is missing (empty)";
    case errc::invalid_key:
      return "the idempotency key is invalid (too long)";
    case errc::invalid_options:
      return "invalid options";
    case errc::compensation_failed:
      return "at least one compensation failed and was dead-lettered";
    case errc::capacity_exceeded:
      return "capacity exceeded and nothing can be evicted";
    case errc::stale_token:
      return "the fencing token is stale: another owner took over";
    case errc::wait_timeout:
      return "timed out waiting for the in-flight request to finish";
    case errc::already_committed:
      return "the scope was already committed";
    case errc::already_rolled_back:
      return "the scope was already rolled back";
    case errc::not_found:
      return "no such entry";
    case errc::store_unavailable:
      return "the shared store is unavailable";
    case errc::corrupt_data:
      return "stored data could not be decoded";
    case errc::retry_refused:
      return "the server asked not to retry";
    case errc::limit_exceeded:
      return "the concurrency limit is reached: no permit was free in time";
    case errc::rate_limited:
      return "the rate limit is reached: too many requests in this period";
    case errc::outcome_not_stored:
      return "the work ran, but its outcome could not be stored for replay";
  }
  return "unknown sturdy error";
}

namespace detail {

class error_category_impl final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "sturdy"; }

  [[nodiscard]] std::string message(int ev) const override {
    return std::string(sturdy::message(static_cast<errc>(ev)));
  }

  [[nodiscard]] std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      case errc::circuit_open:
      case errc::budget_exhausted:
      case errc::store_unavailable:
      case errc::limit_exceeded:
      case errc::rate_limited:
        return std::make_error_condition(std::errc::resource_unavailable_try_again);
      case errc::deadline_exceeded:
      case errc::wait_timeout:
        return std::make_error_condition(std::errc::timed_out);
      case errc::cancelled:
        return std::make_error_condition(std::errc::operation_canceled);
      case errc::in_progress:
        return std::make_error_condition(std::errc::operation_in_progress);
      case errc::key_mismatch:
      case errc::missing_key:
      case errc::invalid_key:
      case errc::invalid_options:
        return std::make_error_condition(std::errc::invalid_argument);
      case errc::capacity_exceeded:
        return std::make_error_condition(std::errc::no_buffer_space);
      case errc::already_committed:
      case errc::already_rolled_back:
        return std::make_error_condition(std::errc::operation_not_permitted);
      case errc::not_found:
        return std::make_error_condition(std::errc::no_such_file_or_directory);
      case errc::corrupt_data:
        return std::make_error_condition(std::errc::illegal_byte_sequence);
      default:
        return {ev, *this};
    }
  }
};

}  // namespace detail

// sturdy::error_category()
//
// The one category of every `errc`; its name is "sturdy".
[[nodiscard]] inline const std::error_category& error_category() noexcept {
  static const detail::error_category_impl instance;
  return instance;
}

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace sturdy

template <>
struct std::is_error_code_enum<sturdy::errc> : std::true_type {};

#endif  // STURDY_ERROR_HPP_
