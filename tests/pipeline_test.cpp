#include "sturdy/pipeline.hpp"

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/testing/counting_allocator.hpp"

namespace {

// A layer that records when it is entered and left.
struct tracer {
  std::vector<std::string>* log;
  std::string name;
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    log->push_back(name + "+");
    auto r = sturdy::invoke_wrapped(std::forward<F>(fn));
    log->push_back(name + "-");
    return r;
  }
};

// A retry-like layer: runs fn up to `attempts` times while it fails.
struct again {
  int attempts;
  int runs = 0;
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    for (int i = 1;; ++i) {
      ++runs;
      auto r = sturdy::invoke_wrapped(fn);
      if (sturdy::succeeded(r) || i == attempts) return r;
    }
  }
};

// A breaker-like layer: rejects while `open`, counts calls it let through.
struct gate {
  bool open = false;
  int admitted = 0;
  gate() = default;
  gate(const gate&) = delete;  // pinned, like the real breaker
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    using R = sturdy::execute_result_t<F>;
    if (open) return sturdy::make_failure<R>(sturdy::errc::circuit_open);
    ++admitted;
    return sturdy::invoke_wrapped(std::forward<F>(fn));
  }
};

// A layer that only runs with a stop token.
struct token_aware {
  bool saw_token = false;
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn, std::stop_token token) {
    saw_token = token.stop_possible();
    return sturdy::invoke_wrapped(std::forward<F>(fn));
  }
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    return execute(std::forward<F>(fn), std::stop_token{});
  }
};

TEST(PipelineTest, FirstLayerIsOutermost) {
  std::vector<std::string> log;
  auto p = sturdy::compose(tracer{&log, "a"}, tracer{&log, "b"}, tracer{&log, "c"});
  auto r = p.execute([&] {
    log.push_back("fn");
    return 1;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), 1);
  EXPECT_EQ(log, (std::vector<std::string>{"a+", "b+", "c+", "fn", "c-", "b-", "a-"}));
}

TEST(PipelineTest, RetryOutsideBreakerRetriesRejections) {
  gate breaker;
  breaker.open = true;
  auto p = sturdy::compose(again{3}, breaker);
  int calls = 0;
  auto r = p.execute([&]() -> sturdy::result<int> { return ++calls; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), sturdy::errc::circuit_open);
  EXPECT_EQ(std::get<0>(p.layers()).runs, 3);  // three attempts, each rejected
  EXPECT_EQ(calls, 0);
}

TEST(PipelineTest, BreakerOutsideRetrySeesOneCallPerLoop) {
  gate breaker;
  auto p = sturdy::compose(breaker, again{3});
  int calls = 0;
  auto r = p.execute([&]() -> sturdy::result<int> {
    ++calls;
    return sturdy::errc::store_unavailable;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(breaker.admitted, 1);
}

TEST(PipelineTest, LvaluesAreHeldByReferenceAndRvaluesByValue) {
  gate breaker;
  again retry{2};
  auto p = sturdy::compose(std::move(retry), breaker);
  static_assert(std::is_same_v<decltype(p), sturdy::pipeline<again, gate&>>);
  EXPECT_EQ(&std::get<1>(p.layers()), &breaker);
  (void)p.execute([] { return 0; });
  EXPECT_EQ(breaker.admitted, 1);
}

TEST(PipelineTest, PlainValuesAndExceptionsPassThrough) {
  gate breaker;
  auto p = sturdy::compose(breaker);
  auto r = p.execute([] { return std::string("x"); });
  static_assert(std::is_same_v<decltype(r), sturdy::result<std::string>>);
  EXPECT_EQ(r.value(), "x");
  EXPECT_THROW((void)p.execute([]() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
  breaker.open = true;
  auto v = p.execute([] {});
  static_assert(std::is_same_v<decltype(v), sturdy::result<void>>);
  EXPECT_EQ(v.error(), sturdy::errc::circuit_open);
}

TEST(PipelineTest, MakePolicyWrapsAMiddlewareLambda) {
  int failures_seen = 0;
  auto count_failures = sturdy::make_policy([&](auto&& next) {
    auto r = next();
    if (!r) ++failures_seen;
    return r;
  });
  auto fallback = sturdy::make_policy([](auto&& next) -> sturdy::result<int> {
    auto r = next();
    if (!r) return 42;
    return r;
  });
  auto p = sturdy::compose(fallback, count_failures);
  auto r = p.execute([]() -> sturdy::result<int> { return sturdy::errc::cancelled; });
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), 42);
  EXPECT_EQ(failures_seen, 1);
}

TEST(PipelineTest, PipelinesNest) {
  std::vector<std::string> log;
  auto inner = sturdy::compose(tracer{&log, "b"}, tracer{&log, "c"});
  auto outer = sturdy::compose(tracer{&log, "a"}, inner);
  (void)outer.execute([&] { log.push_back("fn"); });
  EXPECT_EQ(log, (std::vector<std::string>{"a+", "b+", "c+", "fn", "c-", "b-", "a-"}));
}

TEST(PipelineTest, StopTokenReachesLayersThatTakeOne) {
  token_aware t;
  gate g;
  auto p = sturdy::compose(g, t);
  std::stop_source src;
  (void)p.execute([] { return 1; }, src.get_token());
  EXPECT_TRUE(std::get<1>(p.layers()).saw_token);  // a copyable layer is copied in
  (void)p.execute([] { return 1; });
  EXPECT_FALSE(std::get<1>(p.layers()).saw_token);
  EXPECT_FALSE(t.saw_token);
}

// Issue 12 item 8: a named retry_policy was held by reference, so a factory
// returning compose(policy, breaker) built from a local returned a dangling
// pipeline (ASan: stack-use-after-return). Copyable layers are copied in;
// pinned ones (no copy, no move) are held by reference.
struct factory_made {
  gate breaker;
  auto make() {
    again local{3};  // dies when make() returns
    return sturdy::compose(local, breaker);
  }
};

TEST(PipelineTest, Issue12_CopyableLayersAreCopiedPinnedOnesReferenced) {
  factory_made f;
  auto p = f.make();
  static_assert(std::is_same_v<decltype(p), sturdy::pipeline<again, gate&>>);
  EXPECT_EQ(&std::get<1>(p.layers()), &f.breaker);
  int calls = 0;
  auto r = p.execute([&]() -> sturdy::result<int> {
    if (++calls < 3) return sturdy::errc::store_unavailable;
    return 7;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r.value(), 7);
  EXPECT_EQ(std::get<0>(p.layers()).runs, 3);  // the pipeline's own copy
  EXPECT_EQ(f.breaker.admitted, 3);

  again named{2};
  auto q = sturdy::compose(named, f.breaker);
  EXPECT_NE(&std::get<0>(q.layers()), &named);
  const again constant{2};
  static_assert(std::is_same_v<decltype(sturdy::compose(constant, f.breaker)), sturdy::pipeline<again, gate&>>);
}

// A move-only layer: moved in as an rvalue, referenced as an lvalue.
struct move_only_layer {
  std::unique_ptr<int> state = std::make_unique<int>(0);
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    ++*state;
    return sturdy::invoke_wrapped(std::forward<F>(fn));
  }
};

TEST(PipelineTest, MoveOnlyLayersAreMovedOrReferenced) {
  move_only_layer m;
  auto by_ref = sturdy::compose(m);
  static_assert(std::is_same_v<decltype(by_ref), sturdy::pipeline<move_only_layer&>>);
  auto owned = sturdy::compose(move_only_layer{});
  static_assert(std::is_same_v<decltype(owned), sturdy::pipeline<move_only_layer>>);
  (void)by_ref.execute([] { return 1; });
  EXPECT_EQ(*m.state, 1);
}

TEST(PipelineTest, ExecuteAllocatesNothing) {
  if (!sturdy::testing::counting_new_installed()) GTEST_SKIP() << "no counting allocator in this build";
  gate breaker;
  auto p = sturdy::compose(again{3}, breaker, sturdy::make_policy([](auto&& next) { return next(); }));
  sturdy::testing::allocation_scope scope;
  for (int i = 0; i < 100; ++i) {
    auto r = p.execute([i]() -> sturdy::result<int> { return i; });
    EXPECT_TRUE(r);
  }
  EXPECT_EQ(scope.allocations(), 0u);
}

}  // namespace
