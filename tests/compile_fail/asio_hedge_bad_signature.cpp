// expect: An attempt's completion signature must be void\(R\), void\(error_code, T\) or void\(error_code\)
// async_hedge cannot make a result out of an attempt completing with (int, int).
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>

#include "sturdy/asio/hedge.hpp"

void hedge_two_ints() {
  sturdy::asio::async_hedge(
      sturdy::asio::hedge_options{}, [](const sturdy::asio::hedge_attempt&) { return boost::asio::deferred.values(1, 2); },
      boost::asio::detached);
}
