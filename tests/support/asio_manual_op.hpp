// Test support for sturdy::asio: an attempt that the test completes by hand
// and that records the cancellation it is sent.
//
//   manual_op<int> op;                 // one pending attempt
//   auto deferred = op.start();        // an Asio deferred operation, void(sturdy::result<int>)
//   ... op.complete(42);               // completes it (through the handler's executor)
//   op.seen                            // the cancellation type it received (none: 0)
//
// recorded_completion<R> / recorder(io, c): a handler that records what it
// got and when (virtual time).
//
// With `honour_cancel` (the default) a cancellation completes it at once
// with std::errc::operation_canceled; otherwise it is only recorded (an
// attempt that ignores cancellation).

#ifndef STURDY_TESTS_SUPPORT_ASIO_MANUAL_OP_HPP_
#define STURDY_TESTS_SUPPORT_ASIO_MANUAL_OP_HPP_

#include <functional>
#include <memory>
#include <system_error>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>

#include "sturdy/outcome.hpp"
#include "sturdy/testing/asio_virtual_clock.hpp"

namespace sturdy::testing {

template <class T>
class manual_op {
 public:
  using result_type = sturdy::result<T>;

  bool honour_cancel = true;
  int started = 0;
  boost::asio::cancellation_type_t seen = boost::asio::cancellation_type::none;

  // The deferred operation; starting it registers the handler here.
  auto start() {
    return boost::asio::async_initiate<decltype(boost::asio::deferred), void(result_type)>(
        [this](auto handler) {
          ++started;
          using H = decltype(handler);
          auto h = std::make_shared<std::optional<H>>(std::move(handler));
          auto slot = boost::asio::get_associated_cancellation_slot(**h);
          complete_ = [h](result_type r) {
            if (!h->has_value()) return;
            H handler = std::move(**h);
            h->reset();
            auto s = boost::asio::get_associated_cancellation_slot(handler);
            if (s.is_connected()) s.clear();
            auto ex = boost::asio::get_associated_executor(handler);
            boost::asio::post(ex, boost::asio::append(std::move(handler), std::move(r)));
          };
          if (slot.is_connected()) {
            slot.assign([this](boost::asio::cancellation_type_t t) {
              seen = t;
              if (honour_cancel) complete(make_failure<result_type>(std::make_error_code(std::errc::operation_canceled)));
            });
          }
        },
        boost::asio::deferred);
  }

  [[nodiscard]] bool pending() const { return static_cast<bool>(complete_); }

  void complete(result_type r) {
    auto c = std::move(complete_);
    complete_ = nullptr;
    if (c) c(std::move(r));
  }

 private:
  std::function<void(result_type)> complete_;
};

// What a completion handler received, and when (virtual time).
template <class R>
struct recorded_completion {
  int calls = 0;
  std::optional<R> value;
  sturdy::duration at{};
};

// A handler, bound to `io`, that records into `c`.
template <class R>
auto recorder(boost::asio::io_context& io, recorded_completion<R>& c) {
  return boost::asio::bind_executor(io, [&c](R r) {
    ++c.calls;
    c.value.emplace(std::move(r));
    c.at = asio_virtual_clock::now().time_since_epoch();
  });
}

}  // namespace sturdy::testing

#endif  // STURDY_TESTS_SUPPORT_ASIO_MANUAL_OP_HPP_
