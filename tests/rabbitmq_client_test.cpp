// sturdy::rabbitmq against a real broker (STURDY_RABBITMQ_URL; skipped when
// unset): publisher confirms, manual acks, prefetch, reconnection after the
// connection or the broker went away, the broker's dead-lettering after the
// delivery limit, the dead-letter sink and the operator's commands. Options
// and unreachable brokers need no broker.
#include <gtest/gtest.h>

#ifdef STURDY_NO_RABBITMQ
TEST(RabbitMqClient, NeedsLibrabbitmq) { GTEST_SKIP() << "built without librabbitmq (librabbitmq-dev)"; }
#else

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>
#include <set>
#include <string>
#include <vector>

#include "sturdy/compensation.hpp"
#include "support/rabbitmq_broker.hpp"
#include "support/redis_server.hpp"

namespace {

namespace rmq = sturdy::rabbitmq;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ---- no broker needed -------------------------------------------------------

TEST(RabbitMqOptions, WithUrlTakesEveryPart) {
  auto o = rmq::with_url({}, "amqp://alice:s3cret@10.0.0.5:5673/%2Fprod");
  ASSERT_TRUE(o);
  EXPECT_EQ(o.value().user, "alice");
  EXPECT_EQ(o.value().password, "s3cret");
  EXPECT_EQ(o.value().host, "10.0.0.5");
  EXPECT_EQ(o.value().port, 5673);
  EXPECT_EQ(o.value().vhost, "/prod");
  auto d = rmq::with_url({}, "amqp://broker");
  ASSERT_TRUE(d);
  EXPECT_EQ(d.value().host, "broker");
  EXPECT_EQ(d.value().port, 5672);
  EXPECT_EQ(d.value().vhost, "/");
}

TEST(RabbitMqOptions, WithUrlRefusesWhatDoesNotParse) {
  for (const char* bad : {"http://x:1/", "amqp://", "amqp://h:0/", "amqp://h:70000/", "amqp://h:12x/", "amqp://h/%zz"}) {
    EXPECT_EQ(rmq::with_url({}, bad).error(), sturdy::errc::invalid_options) << bad;
  }
}

TEST(RabbitMqOptions, EveryBadFieldIsNamed) {
  rmq::connection_options o;
  EXPECT_TRUE(o.validate());
  o.connect_timeout = sturdy::duration::zero();
  EXPECT_EQ(o.validation_message(), "rabbitmq::connection_options::connect_timeout must be > 0");
  o = {};
  o.command_timeout = sturdy::duration::zero();
  EXPECT_EQ(o.validation_message(), "rabbitmq::connection_options::command_timeout must be > 0");
  o = {};
  o.port = 0;
  EXPECT_EQ(o.validation_message(), "rabbitmq::connection_options::port must be != 0");
  o = {};
  o.host = "";
  EXPECT_EQ(o.validation_message(), "rabbitmq::connection_options::host must not be empty");
  rmq::topology t;
  t.delivery_limit = 0;
  EXPECT_EQ(t.validation_message(), "rabbitmq::topology::delivery_limit must be >= 1");
}

TEST(RabbitMqOptions, InvalidOptionsAnswerEveryCall) {
  rmq::connection_options o;
  o.port = 0;
  rmq::publisher pub(o);
  EXPECT_EQ(pub.publish({.exchange = "x", .routing_key = "q", .message_id = "1", .body = "b"}).error(),
            sturdy::errc::invalid_options);
  rmq::consumer con(o, {.queue = "q"});
  EXPECT_EQ(con.next(milliseconds(1)).error(), sturdy::errc::invalid_options);
  EXPECT_EQ(rmq::declare(o, {}).error(), sturdy::errc::invalid_options);
}

// Extreme timeouts: 1 ns and duration::max() are valid and bounded by what
// the broker does (here: nothing listens, the connect is refused at once).
TEST(RabbitMqUnreachable, FailsClosedWithinTheTimeoutsAtEveryExtreme) {
  for (sturdy::duration d : {sturdy::duration(1), sturdy::duration(milliseconds(200)), sturdy::duration::max()}) {
    rmq::connection_options o;
    o.port = static_cast<std::uint16_t>(sturdy::test::free_loopback_port());
    o.connect_timeout = d;
    o.command_timeout = d;
    int failures = 0;
    o.on_failure = [&failures](const rmq::failure& f) {
      EXPECT_FALSE(f.failed_open);
      ++failures;
    };
    rmq::publisher pub(o);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(pub.publish({.exchange = "x", .routing_key = "q", .message_id = "1", .body = "b"}).error(),
              sturdy::errc::store_unavailable);
    EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
    EXPECT_EQ(failures, 1);
    rmq::consumer con(o, {.queue = "q"});
    EXPECT_EQ(con.next(milliseconds(1)).error(), sturdy::errc::store_unavailable);
  }
}

TEST(RabbitMqUnreachable, FailOpenReportsAndSucceeds) {
  rmq::connection_options o;
  o.port = static_cast<std::uint16_t>(sturdy::test::free_loopback_port());
  o.on_unavailable = rmq::failure_mode::fail_open;
  std::vector<bool> opened;
  o.on_failure = [&opened](const rmq::failure& f) { opened.push_back(f.failed_open); };
  rmq::publisher pub(o);
  EXPECT_TRUE(pub.publish({.exchange = "x", .routing_key = "q", .message_id = "1", .body = "b"}));
  EXPECT_EQ(opened, (std::vector<bool>{false, true}));  // the failure, then the fail-open
}

// ---- against the broker ------------------------------------------------------

class RabbitMq : public ::testing::Test {
 protected:
  void SetUp() override {
    STURDY_REQUIRE_RABBITMQ();
    opts_ = sturdy::test::rabbitmq_options();
    topo_ = sturdy::test::unique_topology(::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_TRUE(rmq::declare(opts_, topo_));
  }
  rmq::outgoing msg(const std::string& id, const std::string& body = "payload") const {
    return {.exchange = topo_.exchange, .routing_key = topo_.queue, .message_id = id, .body = body};
  }
  rmq::connection_options opts_;
  rmq::topology topo_;
};

TEST_F(RabbitMq, ConfirmedMessagesAreConsumedAndAckedOnce) {
  rmq::publisher pub(opts_);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pub.publish(msg("m" + std::to_string(i), "body" + std::to_string(i))));
  rmq::consumer con(opts_, {.queue = topo_.queue, .prefetch = 2});
  for (int i = 0; i < 5; ++i) {
    auto d = con.next(seconds(5));
    ASSERT_TRUE(d);
    ASSERT_TRUE(d.value().has_value());
    EXPECT_EQ(d.value()->message_id, "m" + std::to_string(i));  // a quorum queue keeps the order
    EXPECT_EQ(d.value()->body, "body" + std::to_string(i));
    EXPECT_FALSE(d.value()->redelivered);
    ASSERT_TRUE(con.ack(*d.value()));
  }
  auto none = con.next(milliseconds(200));
  ASSERT_TRUE(none);
  EXPECT_FALSE(none.value().has_value());
}

TEST_F(RabbitMq, PrefetchBoundsUnackedDeliveries) {
  rmq::publisher pub(opts_);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pub.publish(msg("p" + std::to_string(i))));
  rmq::consumer con(opts_, {.queue = topo_.queue, .prefetch = 2});
  auto a = con.next(seconds(5));
  auto b = con.next(seconds(5));
  ASSERT_TRUE(a && a.value() && b && b.value());
  auto c = con.next(milliseconds(300));  // the window is full: the third waits
  ASSERT_TRUE(c);
  EXPECT_FALSE(c.value().has_value());
  ASSERT_TRUE(con.ack(*a.value()));
  auto c2 = con.next(seconds(5));
  ASSERT_TRUE(c2 && c2.value());
  EXPECT_EQ(c2.value()->message_id, "p2");
}

TEST_F(RabbitMq, UnroutableMessagesAreRefusedNotDropped) {
  rmq::publisher pub(opts_);
  EXPECT_EQ(pub.publish({.exchange = topo_.exchange, .routing_key = "nobody", .message_id = "u", .body = "x"}).error(),
            sturdy::errc::not_found);
  EXPECT_TRUE(pub.publish(msg("after")));  // the publisher is still usable
}

TEST_F(RabbitMq, WrongPasswordIsAMisconfigurationNotAnOutage) {
  rmq::connection_options o = opts_;
  o.password = "wrong";
  o.on_unavailable = rmq::failure_mode::fail_open;  // never fails open on a refusal
  rmq::publisher pub(o);
  const auto r = pub.publish(msg("w"));
  ASSERT_FALSE(r);
  // librabbitmq announces authentication_failure_close, so the broker says
  // ACCESS_REFUSED instead of just closing the socket.
  EXPECT_EQ(r.error(), sturdy::errc::invalid_options) << r.error().message();
  o.vhost = "/no-such-vhost";
  o.password = opts_.password;
  rmq::publisher other(o);
  EXPECT_EQ(other.publish(msg("v")).error(), sturdy::errc::invalid_options);
}

TEST_F(RabbitMq, ConsumingAMissingQueueIsNotFound) {
  rmq::consumer con(opts_, {.queue = topo_.queue + ".missing"});
  EXPECT_EQ(con.next(milliseconds(10)).error(), sturdy::errc::not_found);
}

TEST_F(RabbitMq, ADroppedConsumerConnectionRedeliversAndReconnects) {
  rmq::publisher pub(opts_);
  ASSERT_TRUE(pub.publish(msg("r1")));
  rmq::consumer con(opts_, {.queue = topo_.queue});
  auto first = con.next(seconds(5));
  ASSERT_TRUE(first && first.value());
  con.disconnect();  // as if the worker's connection died mid-message
  EXPECT_EQ(con.ack(*first.value()).error(), sturdy::errc::stale_token);
  auto again = con.next(seconds(5));
  ASSERT_TRUE(again && again.value()) << (again ? "timeout" : again.error().message());
  EXPECT_EQ(again.value()->message_id, "r1");
  EXPECT_TRUE(again.value()->redelivered);
  EXPECT_EQ(again.value()->delivery_count, 1);
  EXPECT_EQ(con.ack(*first.value()).error(), sturdy::errc::stale_token);  // the old tag stays stale
  EXPECT_TRUE(con.ack(*again.value()));
  EXPECT_EQ(con.reconnects(), 1u);
}

TEST_F(RabbitMq, APoisonMessageIsDeadLetteredByTheBrokerAfterTheDeliveryLimit) {
  rmq::publisher pub(opts_);
  ASSERT_TRUE(pub.publish(msg("poison", "bad")));
  rmq::consumer con(opts_, {.queue = topo_.queue});
  int deliveries = 0;
  for (;;) {
    auto d = con.next(milliseconds(500));
    ASSERT_TRUE(d);
    if (!d.value()) break;
    EXPECT_EQ(d.value()->delivery_count, deliveries);
    ++deliveries;
    ASSERT_TRUE(con.reject(*d.value(), /*requeue=*/true));
    ASSERT_LE(deliveries, 10);
  }
  // x-delivery-limit 3: the first delivery and 3 redeliveries, then the DLQ.
  EXPECT_EQ(deliveries, topo_.delivery_limit + 1);
  rmq::dead_letter_admin admin(opts_, topo_);
  std::vector<rmq::delivery> dead;
  ASSERT_TRUE(sturdy::test::eventually([&] {
    auto l = admin.list();
    if (l) dead = l.value();
    return dead.size() == 1;
  }));
  EXPECT_EQ(dead[0].message_id, "poison");
  EXPECT_EQ(dead[0].body, "bad");
  // The fix is deployed: replay moves it back to the work queue, once.
  ASSERT_TRUE(admin.replay("poison"));
  auto l = admin.list();
  ASSERT_TRUE(l);
  EXPECT_TRUE(l.value().empty());
  auto d = con.next(seconds(5));
  ASSERT_TRUE(d && d.value());
  EXPECT_EQ(d.value()->message_id, "poison");
  EXPECT_EQ(d.value()->delivery_count, 0);  // a fresh message: a full delivery budget again
  EXPECT_TRUE(con.ack(*d.value()));
  EXPECT_EQ(admin.replay("poison").error(), sturdy::errc::not_found);
}

TEST_F(RabbitMq, TheSinkDeadLettersCompensationFailuresForTheOperator) {
  rmq::dead_letter_exchange_sink sink(opts_, topo_, "dl-");
  {
    sturdy::compensation_scope saga(sink, {.name = "onboarding"});
    ASSERT_TRUE(saga.add(sturdy::step_info{.name = "assign role", .context = "user=42"},
                         []() -> sturdy::result<void> { return sturdy::errc::circuit_open; }));
  }  // not committed: the undo runs, fails, lands in the dead-letter queue
  sturdy::dead_letter_entry direct;
  direct.step = "send email";
  direct.context = "user=7";
  ASSERT_TRUE(sink.push(std::move(direct)));
  rmq::dead_letter_admin admin(opts_, topo_);
  auto l = admin.list();
  ASSERT_TRUE(l);
  ASSERT_EQ(l.value().size(), 2u);
  EXPECT_EQ(l.value()[0].message_id, "dl-1");
  EXPECT_EQ(l.value()[0].body, "user=42");
  EXPECT_EQ(l.value()[0].header_value("x-sturdy-saga"), "onboarding");
  EXPECT_EQ(l.value()[0].header_value("x-sturdy-step"), "assign role");
  EXPECT_EQ(l.value()[0].header_value("x-sturdy-reason"), "undo_failed");
  EXPECT_EQ(l.value()[0].header_value("x-sturdy-error"), sturdy::make_error_code(sturdy::errc::circuit_open).message());
  auto one = admin.inspect("dl-2");
  ASSERT_TRUE(one);
  EXPECT_EQ(one.value().body, "user=7");
  EXPECT_EQ(admin.inspect("dl-9").error(), sturdy::errc::not_found);
  const auto discarded = admin.discard("dl-1");
  ASSERT_TRUE(discarded) << discarded.error().message();
  EXPECT_EQ(admin.discard("dl-1").error(), sturdy::errc::not_found);
  ASSERT_TRUE(admin.replay("dl-2"));
  l = admin.list();
  ASSERT_TRUE(l);
  EXPECT_TRUE(l.value().empty());
  rmq::consumer con(opts_, {.queue = topo_.queue});
  auto d = con.next(seconds(5));
  ASSERT_TRUE(d && d.value());
  EXPECT_EQ(d.value()->message_id, "dl-2");
  EXPECT_EQ(d.value()->header_value("x-sturdy-step"), "send email");
}

// One publisher shared by threads: every publish is confirmed once, and
// every message arrives.
TEST_F(RabbitMq, APublisherIsSafeToShareAcrossThreads) {
  rmq::publisher pub(opts_);
  constexpr int kThreads = 2, kEach = 25;
  std::atomic<int> confirmed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        char id[32];
        std::snprintf(id, sizeof(id), "t%d-%d", t, i);  // (GCC 12 -O3: a false -Wrestrict on string +)
        if (pub.publish(msg(id))) confirmed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(confirmed.load(), kThreads * kEach);
  rmq::consumer con(opts_, {.queue = topo_.queue, .prefetch = 16});
  std::set<std::string> ids;
  for (;;) {
    auto d = con.next(milliseconds(300));
    ASSERT_TRUE(d);
    if (!d.value()) break;
    ids.insert(d.value()->message_id);
    ASSERT_TRUE(con.ack(*d.value()));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kThreads * kEach));
  EXPECT_EQ(pub.reconnects(), 0u);
}

// The broker restarted mid-run: the publisher and the consumer reconnect on
// their next call, and every message the broker confirmed is delivered.
TEST_F(RabbitMq, BrokerRestartLosesNoConfirmedMessage) {
  if (std::getenv("STURDY_RABBITMQ_DIR") == nullptr) GTEST_SKIP() << "STURDY_RABBITMQ_DIR unset: cannot restart";
  rmq::publisher pub(opts_);
  rmq::consumer con(opts_, {.queue = topo_.queue, .prefetch = 4});
  std::set<std::string> confirmed;
  std::set<std::string> received;
  auto drain_some = [&](int n) {
    for (int i = 0; i < n; ++i) {
      auto d = con.next(milliseconds(50));
      if (!d || !d.value()) return;
      if (con.ack(*d.value())) received.insert(d.value()->message_id);
    }
  };
  int id = 0;
  for (; id < 20; ++id) {
    if (pub.publish(msg("b" + std::to_string(id)))) confirmed.insert("b" + std::to_string(id));
  }
  drain_some(10);
  ASSERT_TRUE(sturdy::test::rabbitmq_ctl("stop_app"));
  // While it is down: publishes fail (never falsely confirmed); the consumer
  // hands out what it had buffered (prefetch), then fails.
  EXPECT_FALSE(pub.publish(msg("down")));
  EXPECT_TRUE(sturdy::test::eventually([&] { return !con.next(milliseconds(10)); }, seconds(5)));
  ASSERT_TRUE(sturdy::test::rabbitmq_ctl("start_app"));
  for (; id < 40; ++id) {
    const std::string m = "b" + std::to_string(id);
    ASSERT_TRUE(sturdy::test::eventually([&] { return static_cast<bool>(pub.publish(msg(m))); }));
    confirmed.insert(m);
  }
  ASSERT_TRUE(sturdy::test::eventually([&] {
    drain_some(50);
    return std::includes(received.begin(), received.end(), confirmed.begin(), confirmed.end());
  }, seconds(30)));
  EXPECT_GE(pub.reconnects(), 1u);
  EXPECT_GE(con.reconnects(), 1u);
}

}  // namespace

#endif  // STURDY_NO_RABBITMQ
