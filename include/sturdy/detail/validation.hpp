// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/validation.hpp
// -----------------------------------------------------------------------------
//
// Internal: the one rule every options struct follows, so that `validate()`
// and `validation_message()` cannot disagree:
//
//   [[nodiscard]] result<void> validate() const noexcept {
//     return detail::validation_result(validation_message());
//   }
//
// Thread safety: stateless. No stability promise.

#ifndef STURDY_DETAIL_VALIDATION_HPP_
#define STURDY_DETAIL_VALIDATION_HPP_

#include <string_view>

#include "sturdy/error.hpp"

namespace sturdy::detail {

// Success for an empty message, otherwise errc::invalid_options.
[[nodiscard]] inline result<void> validation_result(std::string_view message) noexcept {
  if (message.empty()) return success();
  return make_error_code(errc::invalid_options);
}

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_VALIDATION_HPP_
