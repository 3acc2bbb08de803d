// expect-first-error: sturdy's synchronous execute cannot run a callable that returns a future, an awaitable or an Asio deferred operation
// Issue 13 item 3: an Asio deferred operation has not run when it is
// returned; the synchronous retry refuses it.
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "sturdy/retry.hpp"

void use(boost::asio::io_context& io) {
  auto r = sturdy::retry([&] { return boost::asio::post(io, boost::asio::deferred); });
  (void)r;
}
