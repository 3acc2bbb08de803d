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
//     whose value is the `absl::StatusCode`;
//   - a sturdy error put into a status (a breaker rejecting, a retry giving
//     up) gets the closest canonical code (circuit_open -> kUnavailable,
//     deadline_exceeded -> kDeadlineExceeded, ...), sturdy's message, and a
//     payload under `sturdy_errc_payload_url` that holds the `errc` value, so
//     the original `sturdy::errc` comes back out unchanged.
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

// sturdy::error_code_to_status(ec): the status carrying `ec` (see banner).
[[nodiscard]] inline absl::Status error_code_to_status(std::error_code ec) {
  if (!ec) return absl::OkStatus();
  if (ec.category() == absl_status_category()) {
    return absl::Status(static_cast<absl::StatusCode>(ec.value()), ec.message());
  }
  if (ec.category() == error_category()) {
    absl::Status s(detail::canonical_code(static_cast<errc>(ec.value())), ec.message());
    s.SetPayload(sturdy_errc_payload_url, absl::Cord(std::to_string(ec.value())));
    return s;
  }
  return absl::Status(absl::StatusCode::kUnknown,
                      std::string(ec.category().name()) + ": " + ec.message());
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
};

}  // namespace sturdy

#endif  // STURDY_ADAPTERS_ABSL_STATUS_HPP_
