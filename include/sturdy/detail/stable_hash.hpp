// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/detail/stable_hash.hpp
// -----------------------------------------------------------------------------
//
// 64-bit FNV-1a: a hash whose value depends only on the input bytes, so it is
// the same in every process, on every run and every platform. Used by
// `sturdy::stable_fingerprint` (idempotency.hpp) for fingerprints that are
// compared across processes (a shared Redis store). Not a defence against an
// adversary who chooses payloads to collide; see docs/idempotency.md.
//
// Internal: no stability promise for the names here (the values are stable).

#ifndef STURDY_DETAIL_STABLE_HASH_HPP_
#define STURDY_DETAIL_STABLE_HASH_HPP_

#include <cstdint>
#include <string_view>

namespace sturdy::detail {

inline constexpr std::uint64_t fnv1a_offset_basis = 0xcbf29ce484222325ULL;
inline constexpr std::uint64_t fnv1a_prime = 0x100000001b3ULL;

// Continues an FNV-1a hash `h` over `bytes`.
[[nodiscard]] constexpr std::uint64_t fnv1a_append(std::uint64_t h, std::string_view bytes) noexcept {
  for (const char c : bytes) {
    h ^= static_cast<std::uint8_t>(c);
    h *= fnv1a_prime;
  }
  return h;
}

// Appends the 8 little-endian bytes of `v` (fixed order on every platform).
[[nodiscard]] constexpr std::uint64_t fnv1a_append_u64(std::uint64_t h, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xffU;
    h *= fnv1a_prime;
  }
  return h;
}

}  // namespace sturdy::detail

#endif  // STURDY_DETAIL_STABLE_HASH_HPP_
