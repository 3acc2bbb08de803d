// Test support for the Redis rate limiter's tests: the Redis address the
// tests use (failing, not skipping, when there is none) and store options
// for it with a private key prefix, fail-closed, and a command timeout a busy
// CI machine can meet.
#ifndef STURDY_TESTS_SUPPORT_REDIS_RATE_LIMITER_HPP_
#define STURDY_TESTS_SUPPORT_REDIS_RATE_LIMITER_HPP_

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "sturdy/redis/rate_limiter.hpp"
#include "support/redis_server.hpp"

namespace sturdy::test {

inline redis::limiter_store_options limiter_store_at(const std::string& address, const std::string& prefix) {
  auto o = redis::with_address(redis::limiter_store_options{}, address);
  EXPECT_TRUE(o.has_value()) << "bad redis address '" << address << "'";
  redis::limiter_store_options out = o.has_value() ? o.value() : redis::limiter_store_options{};
  out.key_prefix = prefix;
  out.command_timeout = std::chrono::seconds(2);
  out.on_unavailable = redis::failure_mode::fail_closed;
  return out;
}

inline std::string required_redis_address() {
  const std::string address = redis_address();
  EXPECT_FALSE(address.empty()) << "no Redis: set STURDY_REDIS_URL or put redis-server on PATH";
  return address;
}

}  // namespace sturdy::test

#endif  // STURDY_TESTS_SUPPORT_REDIS_RATE_LIMITER_HPP_
