// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/adapters/absl_status.hpp
// -----------------------------------------------------------------------------
//
// Lets every sturdy primitive accept callables returning `absl::Status` or
// `absl::StatusOr<T>`. Opt in by including this header and linking
// `absl::status` and `absl::statusor`; the core library does not need them.
//
// Mapping:
//   - a non-OK status becomes a `std::error_code` in `absl_status_category()`
//     whose value is the `absl::StatusCode`. The category maps each code to
//     the portable `std::errc` condition, so `sturdy::default_retry_if` and
//     predicates written against `std::errc` work for statuses too:
//       kCancelled          -> operation_canceled (never retried by default)
//       kDeadlineExceeded   -> timed_out
//       kUnavailable        -> resource_unavailable_try_again
//       kInvalidArgument    -> invalid_argument
//       kNotFound           -> no_such_file_or_directory
//       kAlreadyExists      -> file_exists
//       kPermissionDenied,
//       kUnauthenticated    -> permission_denied
//       kResourceExhausted  -> no_buffer_space
//       kFailedPrecondition -> operation_not_permitted
//       kOutOfRange         -> result_out_of_range
//       kUnimplemented      -> function_not_supported
//       kDataLoss           -> illegal_byte_sequence
//     (kUnknown, kAborted and kInternal have no portable equivalent and
//     match only themselves);
//   - a sturdy error put into a status (a breaker rejecting, a retry giving
//     up) gets the closest canonical code (circuit_open -> kUnavailable,
//     deadline_exceeded -> kDeadlineExceeded, ...), sturdy's message, and a
//     payload under `sturdy_errc_payload_url` that holds the `errc` value, so
//     the original `sturdy::errc` comes back out unchanged;
//   - a sturdy error that comes with a message (an options validation
//     message naming the field, via `sturdy::from_error_code(ec, message)`)
//     puts that message into the status.
//
// Example:
//
//   #include "sturdy/adapters/absl_status.hpp"
//   absl::StatusOr<User> u = breaker.execute([&] { return repo.Find(id); });
//   if (absl::IsUnavailable(u.status())) ...   // open breaker, or repo down
//
// Thread safety: stateless.

#ifndef STURDY_ADAPTERS_ABSL_STATUS_HPP_
#define STURDY_ADAPTERS_ABSL_STATUS_HPP_

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"

namespace sturdy {

// The payload type URL under which sturdy stores its `errc` in a status.
// (absl::string_view: Debian builds Abseil with its own string_view type.)
inline constexpr absl::string_view sturdy_errc_payload_url = "sturdy.errc";

namespace detail {
class absl_status_category_impl final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "absl.status"; }
  [[nodiscard]] std::string message(int ev) const override {
    return absl::StatusCodeToString(static_cast<absl::StatusCode>(ev));
  }
  [[nodiscard]] std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<absl::StatusCode>(ev)) {
      case absl::StatusCode::kCancelled:
        return std::make_error_condition(std::errc::operation_canceled);
      case absl::StatusCode::kDeadlineExceeded:
        return std::make_error_condition(std::errc::timed_out);
      case absl::StatusCode::kUnavailable:
        return std::make_error_condition(std::errc::resource_unavailable_try_again);
      case absl::StatusCode::kInvalidArgument:
        return std::make_error_condition(std::errc::invalid_argument);
      case absl::StatusCode::kNotFound:
        return std::make_error_condition(std::errc::no_such_file_or_directory);
      case absl::StatusCode::kAlreadyExists:
        return std::make_error_condition(std::errc::file_exists);
      case absl::StatusCode::kPermissionDenied:
      case absl::StatusCode::kUnauthenticated:
        return std::make_error_condition(std::errc::permission_denied);
      case absl::StatusCode::kResourceExhausted:
        return std::make_error_condition(std::errc::no_buffer_space);
      case absl::StatusCode::kFailedPrecondition:
        return std::make_error_condition(std::errc::operation_not_permitted);
      case absl::StatusCode::kOutOfRange:
        return std::make_error_condition(std::errc::result_out_of_range);
      case absl::StatusCode::kUnimplemented:
        return std::make_error_condition(std::errc::function_not_supported);
      case absl::StatusCode::kDataLoss:
        return std::make_error_condition(std::errc::illegal_byte_sequence);
      default:
        return {ev, *this};
    }
  }
};

[[nodiscard]] inline absl::StatusCode canonical_code(errc e) noexcept {
  switch (e) {
    case errc::circuit_open:
    case errc::store_unavailable:
      return absl::StatusCode::kUnavailable;
    case errc::deadline_exceeded:
    case errc::wait_timeout:
      return absl::StatusCode::kDeadlineExceeded;
    case errc::cancelled:
      return absl::StatusCode::kCancelled;
    case errc::budget_exhausted:
    case errc::capacity_exceeded:
    case errc::retries_exhausted:
      return absl::StatusCode::kResourceExhausted;
    case errc::in_progress:
      return absl::StatusCode::kAborted;
    case errc::key_mismatch:
    case errc::stale_token:
    case errc::already_committed:
    case errc::already_rolled_back:
      return absl::StatusCode::kFailedPrecondition;
    case errc::missing_key:
    case errc::invalid_key:
    case errc::invalid_options:
      return absl::StatusCode::kInvalidArgument;
    case errc::not_found:
      return absl::StatusCode::kNotFound;
    case errc::corrupt_data:
      return absl::StatusCode::kDataLoss;
    default:
      return absl::StatusCode::kUnknown;
  }
}
}  // namespace detail

// The category of error codes made from `absl::Status`; its name is
// "absl.status" and its values are `absl::StatusCode`s.
[[nodiscard]] inline const std::error_category& absl_status_category() noexcept {
  static const detail::absl_status_category_impl instance;
  return instance;
}

// sturdy::status_to_error_code(s): the error code for a non-OK status
// (sturdy's own errc when the status carries it).
[[nodiscard]] inline std::error_code status_to_error_code(const absl::Status& s) {
  if (s.ok()) return {};
  if (auto p = s.GetPayload(sturdy_errc_payload_url)) {
    const std::string bytes(*p);
    int v = 0;
    bool valid = !bytes.empty() && bytes.size() <= 4;
    for (char c : bytes) {
      valid = valid && c >= '0' && c <= '9';
      if (valid) v = v * 10 + (c - '0');
    }
    if (valid && v > 0) return make_error_code(static_cast<errc>(v));
  }
  return {static_cast<int>(s.code()), absl_status_category()};
}

// sturdy::error_code_to_status(ec[, message]): the status carrying `ec`
// (see banner); a non-empty `message` replaces the code's generic message.
[[nodiscard]] inline absl::Status error_code_to_status(std::error_code ec, std::string_view message = {}) {
  if (!ec) return absl::OkStatus();
  const std::string text = message.empty() ? ec.message() : std::string(message);
  if (ec.category() == absl_status_category()) {
    return absl::Status(static_cast<absl::StatusCode>(ec.value()), text);
  }
  if (ec.category() == error_category()) {
    absl::Status s(detail::canonical_code(static_cast<errc>(ec.value())), text);
    s.SetPayload(sturdy_errc_payload_url, absl::Cord(std::to_string(ec.value())));
    return s;
  }
  return absl::Status(absl::StatusCode::kUnknown, std::string(ec.category().name()) + ": " + text);
}

template <>
struct outcome_traits<absl::Status> {
  static constexpr bool is_result_like = true;
  using value_type = void;
  [[nodiscard]] static bool has_value(const absl::Status& s) noexcept { return s.ok(); }
  [[nodiscard]] static failure_info failure(const absl::Status& s) {
    return {.code = status_to_error_code(s), .exception = {}};
  }
  [[nodiscard]] static absl::Status from_error(std::error_code ec) { return error_code_to_status(ec); }
  [[nodiscard]] static absl::Status from_error(std::error_code ec, std::string_view message) {
    return error_code_to_status(ec, message);
  }
};

template <class T>
struct outcome_traits<absl::StatusOr<T>> {
  static constexpr bool is_result_like = true;
  using value_type = T;
  [[nodiscard]] static bool has_value(const absl::StatusOr<T>& s) noexcept { return s.ok(); }
  [[nodiscard]] static failure_info failure(const absl::StatusOr<T>& s) {
    return {.code = status_to_error_code(s.status()), .exception = {}};
  }
  [[nodiscard]] static absl::StatusOr<T> from_error(std::error_code ec) {
    return error_code_to_status(ec);
  }
  [[nodiscard]] static absl::StatusOr<T> from_error(std::error_code ec, std::string_view message) {
    return error_code_to_status(ec, message);
  }
};

}  // namespace sturdy

namespace absl {

// The ADL hooks of `sturdy::from_error_code<E>(ec, message)` and
// `sturdy::from_error_code<E>(ec)` for statuses (declared in namespace absl,
// where argument-dependent lookup of `std::type_identity<absl::Status>`
// finds them): the message naming the invalid field reaches the status.
[[nodiscard]] inline Status sturdy_from_error_code(std::error_code ec, std::string_view message,
                                                   std::type_identity<Status>) {
  return sturdy::error_code_to_status(ec, message);
}
[[nodiscard]] inline Status sturdy_from_error_code(std::error_code ec, std::type_identity<Status>) {
  return sturdy::error_code_to_status(ec);
}

}  // namespace absl

#endif  // STURDY_ADAPTERS_ABSL_STATUS_HPP_
