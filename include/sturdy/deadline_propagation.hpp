// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/deadline_propagation.hpp
// -----------------------------------------------------------------------------
//
// Carrying a deadline across processes: write the remaining budget into
// request metadata, read it back on the server as a local deadline.
//
//   - gRPC's `grpc-timeout` header: 1 to 8 ASCII digits and a unit,
//     H (hours), M (minutes), S (seconds), m (ms), u (µs), n (ns): "100m",
//     "5S". Writing picks the finest unit whose value fits in 8 digits and
//     rounds *down*, so the server's deadline is never later than ours.
//   - a plain milliseconds header for HTTP (e.g. Envoy's
//     `x-envoy-expected-rq-timeout-ms`): decimal digits, rounded down.
//
// Reading never yields a deadline later than a local cap: a client cannot
// buy more time than the server allows (`local_cap`), and an absent header
// (an empty string) gives exactly the cap. A malformed header is an error
// (std::errc::invalid_argument) the server decides about.
//
// Example:
//
//   // client
//   if (auto v = sturdy::grpc_timeout_for(ctx.deadline)) md.add("grpc-timeout", v->view());
//   // server
//   auto d = sturdy::deadline_from_grpc_timeout(md.get("grpc-timeout"), std::chrono::seconds(10));
//   sturdy::call_context ctx{.deadline = d ? d.value() : sturdy::deadline::after(std::chrono::seconds(10))};
//
// Nothing here allocates (values are formatted into a small buffer).
//
// Thread safety: pure functions (the deadline readers read the clock).

#ifndef STURDY_DEADLINE_PROPAGATION_HPP_
#define STURDY_DEADLINE_PROPAGATION_HPP_

#include <cstdint>
#include <optional>
#include <string_view>
#include <system_error>

#include "sturdy/clock.hpp"
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"

namespace sturdy {

// header_value: a formatted header value, in place.
struct header_value {
  char data[24] = {};
  std::uint8_t size = 0;
  [[nodiscard]] std::string_view view() const noexcept { return {data, size}; }
  friend bool operator==(const header_value& a, std::string_view b) noexcept { return a.view() == b; }
};

namespace detail {

struct grpc_unit {
  char symbol;
  std::int64_t ns;
};
inline constexpr grpc_unit grpc_units[] = {
    {'n', 1}, {'u', 1'000}, {'m', 1'000'000}, {'S', 1'000'000'000}, {'M', 60'000'000'000}, {'H', 3'600'000'000'000},
};
inline constexpr std::int64_t grpc_max_value = 99'999'999;  // 8 digits

inline header_value format_decimal(std::uint64_t v, char suffix) noexcept {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  header_value out;
  while (n > 0) out.data[out.size++] = tmp[--n];
  if (suffix != '\0') out.data[out.size++] = suffix;
  return out;
}

// Digits only, at most `max_digits`; the value, or nullopt.
inline std::optional<std::uint64_t> parse_digits(std::string_view s, std::size_t max_digits) noexcept {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

// v * unit_ns as a duration, saturating at duration::max().
[[nodiscard]] constexpr duration scale_saturating(std::uint64_t v, std::int64_t unit_ns) noexcept {
  const auto max = static_cast<std::uint64_t>(duration::max().count());
  const auto u = static_cast<std::uint64_t>(unit_ns);
  if (v > max / u) return duration::max();
  return duration(static_cast<duration::rep>(v * u));
}

inline result<deadline> capped_deadline(result<duration> budget, bool absent, duration local_cap,
                                        clock_ref clock) noexcept {
  if (local_cap < duration::zero()) return make_error_code(errc::invalid_options);
  if (!absent && !budget) return budget.error();
  const duration b = absent || budget.value() > local_cap ? local_cap : budget.value();
  return deadline::after(b, clock);
}

}  // namespace detail

// sturdy::format_grpc_timeout(budget)
//
// The `grpc-timeout` value for `budget` (negative counts as zero): the
// finest unit whose value fits in 8 digits, rounded down ("0n" for zero).
[[nodiscard]] inline header_value format_grpc_timeout(duration budget) noexcept {
  const std::int64_t ns = budget > duration::zero() ? budget.count() : 0;
  for (const auto& u : detail::grpc_units) {
    const std::int64_t v = ns / u.ns;
    if (v <= detail::grpc_max_value) return detail::format_decimal(static_cast<std::uint64_t>(v), u.symbol);
  }
  return detail::format_decimal(static_cast<std::uint64_t>(detail::grpc_max_value), 'H');  // unreachable for ns
}

// sturdy::parse_grpc_timeout(value)
//
// The budget a `grpc-timeout` value carries (saturating at
// duration::max()), or std::errc::invalid_argument when it is not 1-8
// digits followed by one of H M S m u n.
[[nodiscard]] inline result<duration> parse_grpc_timeout(std::string_view value) noexcept {
  if (value.size() < 2) return std::make_error_code(std::errc::invalid_argument);
  const char unit = value.back();
  const auto digits = detail::parse_digits(value.substr(0, value.size() - 1), 8);
  if (!digits) return std::make_error_code(std::errc::invalid_argument);
  for (const auto& u : detail::grpc_units) {
    if (u.symbol == unit) return detail::scale_saturating(*digits, u.ns);
  }
  return std::make_error_code(std::errc::invalid_argument);
}

// sturdy::format_timeout_ms(budget) / parse_timeout_ms(value)
//
// The plain milliseconds form: decimal digits, rounded down (negative
// counts as zero). Parsing takes 1 to 19 digits and saturates at
// duration::max(); anything else is std::errc::invalid_argument.
[[nodiscard]] inline header_value format_timeout_ms(duration budget) noexcept {
  const std::int64_t ns = budget > duration::zero() ? budget.count() : 0;
  return detail::format_decimal(static_cast<std::uint64_t>(ns / 1'000'000), '\0');
}
[[nodiscard]] inline result<duration> parse_timeout_ms(std::string_view value) noexcept {
  const auto digits = detail::parse_digits(value, 19);
  if (!digits) return std::make_error_code(std::errc::invalid_argument);
  return detail::scale_saturating(*digits, 1'000'000);
}

// sturdy::grpc_timeout_for(d) / timeout_ms_for(d)
//
// The header value for the time left before `d` (read on d's clock), or
// nullopt when `d` is none (send no header).
[[nodiscard]] inline std::optional<header_value> grpc_timeout_for(const deadline& d) noexcept {
  if (d.is_none()) return std::nullopt;
  return format_grpc_timeout(d.remaining());
}
[[nodiscard]] inline std::optional<header_value> timeout_ms_for(const deadline& d) noexcept {
  if (d.is_none()) return std::nullopt;
  return format_timeout_ms(d.remaining());
}

// sturdy::deadline_from_grpc_timeout(value, local_cap[, clock])
// sturdy::deadline_from_timeout_ms(value, local_cap[, clock])
//
// A deadline on `clock` (default: the steady clock) at now + the header's
// budget, never later than now + `local_cap`; an empty value (no header)
// gives now + `local_cap` (duration::max(): no deadline). A malformed value
// is std::errc::invalid_argument; a negative cap errc::invalid_options.
[[nodiscard]] inline result<deadline> deadline_from_grpc_timeout(std::string_view value, duration local_cap,
                                                                 clock_ref clock = {}) noexcept {
  return detail::capped_deadline(value.empty() ? result<duration>(duration::zero()) : parse_grpc_timeout(value),
                                 value.empty(), local_cap, clock);
}
[[nodiscard]] inline result<deadline> deadline_from_timeout_ms(std::string_view value, duration local_cap,
                                                               clock_ref clock = {}) noexcept {
  return detail::capped_deadline(value.empty() ? result<duration>(duration::zero()) : parse_timeout_ms(value),
                                 value.empty(), local_cap, clock);
}

}  // namespace sturdy

#endif  // STURDY_DEADLINE_PROPAGATION_HPP_
