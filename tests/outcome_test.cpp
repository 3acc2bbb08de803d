#include "sturdy/outcome.hpp"

#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <boost/outcome/boost_result.hpp>
#include <gtest/gtest.h>

namespace {

namespace outcome = BOOST_OUTCOME_V2_NAMESPACE;

// An error type that is neither an error code nor convertible to one: it
// joins through the ADL hooks.
struct app_error {
  int code;
};
std::error_code sturdy_to_error_code(const app_error& e) { return {e.code, std::generic_category()}; }
app_error sturdy_from_error_code(std::error_code ec, std::type_identity<app_error>) { return {ec.value()}; }

// Counts copies, so a test can prove the adapters never copy a value.
struct copy_counter {
  static inline int copies = 0;
  copy_counter() = default;
  copy_counter(const copy_counter&) { ++copies; }
  copy_counter(copy_counter&&) noexcept = default;
  copy_counter& operator=(const copy_counter&) {
    ++copies;
    return *this;
  }
  copy_counter& operator=(copy_counter&&) noexcept = default;
};

TEST(OutcomeTraitsTest, StdResultSuccessAndFailure) {
  auto ok = sturdy::invoke_wrapped([] { return sturdy::result<int>(5); });
  static_assert(std::is_same_v<decltype(ok), sturdy::result<int>>);
  EXPECT_TRUE(sturdy::succeeded(ok));
  auto bad = sturdy::invoke_wrapped([]() -> sturdy::result<int> { return sturdy::errc::cancelled; });
  EXPECT_FALSE(sturdy::succeeded(bad));
  const auto f = sturdy::failure_of(bad);
  EXPECT_EQ(f.code, sturdy::errc::cancelled);
  EXPECT_FALSE(f.is_exception());
  auto made = sturdy::make_failure<sturdy::result<int>>(sturdy::errc::circuit_open);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error(), sturdy::errc::circuit_open);
}

TEST(OutcomeTraitsTest, BoostEditionResultConvertsBoostErrorCodes) {
  using R = outcome::boost_result<int>;
  R bad{boost::system::error_code(boost::system::errc::timed_out, boost::system::generic_category())};
  EXPECT_FALSE(sturdy::succeeded(bad));
  EXPECT_EQ(sturdy::failure_of(bad).code, std::errc::timed_out);
  auto made = sturdy::make_failure<R>(sturdy::errc::circuit_open);
  ASSERT_FALSE(made);
  // The std::error_code travels inside boost::system::error_code unchanged.
  EXPECT_EQ(static_cast<std::error_code>(made.error()), sturdy::errc::circuit_open);
  EXPECT_TRUE(sturdy::succeeded(R{3}));
}

TEST(OutcomeTraitsTest, CustomErrorTypeJoinsThroughAdlHooks) {
  using R = outcome::basic_result<int, app_error, outcome::policy::terminate>;
  R bad{app_error{EIO}};
  EXPECT_FALSE(sturdy::succeeded(bad));
  EXPECT_EQ(sturdy::failure_of(bad).code, std::errc::io_error);
  auto made = sturdy::make_failure<R>(std::make_error_code(std::errc::timed_out));
  ASSERT_TRUE(made.has_error());
  EXPECT_EQ(made.error().code, ETIMEDOUT);
  static_assert(sturdy::can_make_error<app_error>);
  static_assert(!sturdy::can_make_error<int>);
}

TEST(OutcomeTraitsTest, StdOutcomeReportsStoredExceptions) {
  using O = sturdy::outcome<int>;
  O ex{std::make_exception_ptr(std::runtime_error("boom"))};
  EXPECT_FALSE(sturdy::succeeded(ex));
  const auto f = sturdy::failure_of(ex);
  ASSERT_TRUE(f.is_exception());
  EXPECT_FALSE(f.code);
  std::string what;
  EXPECT_TRUE(f.visit_exception<std::runtime_error>([&](const std::runtime_error& e) { what = e.what(); }));
  EXPECT_EQ(what, "boom");
  EXPECT_TRUE(f.exception_is<std::exception>());  // base classes match
  EXPECT_FALSE(f.exception_is<std::logic_error>());
  EXPECT_FALSE(f.visit_exception<std::logic_error>([&](const std::logic_error&) { what = "wrong"; }));
  EXPECT_EQ(what, "boom");
  EXPECT_FALSE(sturdy::failure_info{}.exception_is<std::exception>());
  O err{std::error_code(sturdy::errc::in_progress)};
  EXPECT_EQ(sturdy::failure_of(err).code, sturdy::errc::in_progress);
  EXPECT_TRUE(sturdy::succeeded(O{1}));
}

TEST(OutcomeTraitsTest, PlainValueIsWrappedWithoutCopying) {
  copy_counter::copies = 0;
  auto r = sturdy::invoke_wrapped([] { return copy_counter{}; });
  static_assert(std::is_same_v<decltype(r), sturdy::result<copy_counter>>);
  EXPECT_TRUE(sturdy::succeeded(r));
  EXPECT_EQ(copy_counter::copies, 0);

  auto p = sturdy::invoke_wrapped([] { return std::make_unique<int>(7); });  // move-only
  ASSERT_TRUE(p);
  EXPECT_EQ(*p.value(), 7);

  // A plain type that converts to error_code is still a value, not an error.
  auto ec = sturdy::invoke_wrapped([] { return sturdy::errc::cancelled; });
  static_assert(std::is_same_v<decltype(ec), sturdy::result<sturdy::errc>>);
  EXPECT_TRUE(sturdy::succeeded(ec));
}

TEST(OutcomeTraitsTest, VoidBecomesResultVoid) {
  int calls = 0;
  auto r = sturdy::invoke_wrapped([&] { ++calls; });
  static_assert(std::is_same_v<decltype(r), sturdy::result<void>>);
  EXPECT_TRUE(sturdy::succeeded(r));
  EXPECT_EQ(calls, 1);
}

TEST(OutcomeTraitsTest, ExceptionsPropagateFromPlainAndResultCallables) {
  EXPECT_THROW((void)sturdy::invoke_wrapped([]() -> int { throw std::runtime_error("x"); }),
               std::runtime_error);
  EXPECT_THROW((void)sturdy::invoke_wrapped([]() -> sturdy::result<int> { throw std::logic_error("y"); }),
               std::logic_error);
}

TEST(OutcomeTraitsTest, ResultLikeConcept) {
  static_assert(sturdy::result_like<sturdy::result<int>>);
  static_assert(sturdy::result_like<const sturdy::result<void>&>);
  static_assert(sturdy::result_like<sturdy::outcome<std::string>>);
  static_assert(!sturdy::result_like<int>);
  static_assert(!sturdy::result_like<std::string>);
  static_assert(std::is_same_v<sturdy::execute_result_t<int (*)()>, sturdy::result<int>>);
  static_assert(std::is_same_v<sturdy::execute_result_t<sturdy::result<int> (*)()>, sturdy::result<int>>);
  static_assert(sturdy::outcome_callable<int (*)()>);
  // A reference result passes the concept and is refused with a sentence
  // when execute_result_t is formed (compile_fail/*reference_result.cpp).
  static_assert(sturdy::outcome_callable<int& (*)()>);
  SUCCEED();
}

// Issue 13 item 3: the detection rule for deferred results.
namespace deferred {
struct awaiter {
  bool await_ready() const noexcept { return true; }
  void await_suspend(void*) const noexcept {}
  int await_resume() const noexcept { return 1; }
};
struct member_co_await {
  awaiter operator co_await() const noexcept { return {}; }
};
struct free_co_await {};
[[maybe_unused]] inline awaiter operator co_await(free_co_await) noexcept { return {}; }
struct my_task {};
struct not_awaitable {
  bool await_ready() const noexcept { return true; }  // no await_resume
};
}  // namespace deferred
}  // namespace

template <>
struct sturdy::is_deferred_result<deferred::my_task> : std::true_type {};

namespace {

TEST(OutcomeTraitsTest, Issue13_DeferredResultsAreDetected) {
  static_assert(sturdy::deferred_result<std::future<int>>);
  static_assert(sturdy::deferred_result<std::future<void>>);
  static_assert(sturdy::deferred_result<std::shared_future<int&>>);
  static_assert(sturdy::deferred_result<deferred::awaiter>);
  static_assert(sturdy::deferred_result<deferred::member_co_await>);
  static_assert(sturdy::deferred_result<deferred::free_co_await>);
  static_assert(sturdy::deferred_result<const deferred::my_task&>);
  static_assert(!sturdy::deferred_result<deferred::not_awaitable>);
  static_assert(!sturdy::deferred_result<int>);
  static_assert(!sturdy::deferred_result<sturdy::result<std::future<int>*>>);
  SUCCEED();
}

TEST(OutcomeTraitsTest, MakeFailureKeepsAMessageWhereTheErrorCanCarryOne) {
  // std::error_code cannot: the message is dropped, the code kept.
  const auto r = sturdy::make_failure<sturdy::result<int>>(sturdy::errc::invalid_options, "x.y must be 1");
  EXPECT_EQ(r.error(), sturdy::errc::invalid_options);
}

}  // namespace
