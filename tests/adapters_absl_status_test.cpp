#include "sturdy/adapters/absl_status.hpp"

#include <gtest/gtest.h>

namespace {

TEST(AbslStatusAdapterTest, ClassifiesStatus) {
  auto ok = sturdy::invoke_wrapped([] { return absl::OkStatus(); });
  static_assert(std::is_same_v<decltype(ok), absl::Status>);
  EXPECT_TRUE(sturdy::succeeded(ok));
  const absl::Status bad = absl::UnavailableError("down");
  EXPECT_FALSE(sturdy::succeeded(bad));
  const auto f = sturdy::failure_of(bad);
  EXPECT_EQ(&f.code.category(), &sturdy::absl_status_category());
  EXPECT_EQ(f.code.value(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(f.code.message(), "UNAVAILABLE");
}

TEST(AbslStatusAdapterTest, ClassifiesStatusOr) {
  auto ok = sturdy::invoke_wrapped([] { return absl::StatusOr<int>(3); });
  EXPECT_TRUE(sturdy::succeeded(ok));
  absl::StatusOr<int> bad = absl::DeadlineExceededError("slow");
  EXPECT_EQ(sturdy::failure_of(bad).code.value(), static_cast<int>(absl::StatusCode::kDeadlineExceeded));
}

TEST(AbslStatusAdapterTest, SturdyErrorsRoundTripThroughStatus) {
  auto s = sturdy::make_failure<absl::StatusOr<int>>(sturdy::errc::circuit_open);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::IsUnavailable(s.status()));
  EXPECT_EQ(sturdy::failure_of(s).code, sturdy::errc::circuit_open);
  auto d = sturdy::make_failure<absl::Status>(sturdy::errc::deadline_exceeded);
  EXPECT_TRUE(absl::IsDeadlineExceeded(d));
  EXPECT_EQ(sturdy::failure_of(d).code, sturdy::errc::deadline_exceeded);
  // A foreign error code keeps its message.
  auto g = sturdy::make_failure<absl::Status>(std::make_error_code(std::errc::io_error));
  EXPECT_TRUE(absl::IsUnknown(g));
  EXPECT_NE(g.message().find("generic"), std::string_view::npos);
}

TEST(AbslStatusAdapterTest, ForeignPayloadIsNotMistakenForSturdy) {
  absl::Status s = absl::AbortedError("x");
  s.SetPayload(sturdy::sturdy_errc_payload_url, absl::Cord("not-a-number"));
  EXPECT_EQ(&sturdy::failure_of(s).code.category(), &sturdy::absl_status_category());
}

}  // namespace
