// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/asio/compose.hpp              (CMake component sturdy::asio)
// -----------------------------------------------------------------------------
//
// Asynchronous layers composed like the blocking ones: first layer
// outermost, the call context (deadline, token) and the caller's Asio
// cancellation flowing inward.
//
//   auto pipeline = sturdy::asio::compose(
//       sturdy::asio::timeout_layer<>{{.timeout = 2s}},          // overall
//       sturdy::asio::breaker_layer{breaker},                      // records each outcome
//       sturdy::asio::limiter_layer{limiter, 50ms},                // queues without blocking
//       sturdy::asio::timeout_layer<>{{.timeout = 200ms}});        // per attempt
//   sturdy::result<Reply> r = co_await pipeline.async_run(
//       ctx, [&](const sturdy::call_context& c) { return client.async_get(key, c, boost::asio::deferred); },
//       boost::asio::use_awaitable);
//
// The layer shape (shared with async_retry's retry_layer): a layer L has
//
//   template <class MakeInner, class Token>
//   auto async_run(const sturdy::call_context& ctx, MakeInner&& make_inner, Token&& token);
//
// where `make_inner(const sturdy::call_context&)` returns an Asio
// asynchronous operation that has not started (a deferred operation or an
// awaitable<R>, completing with void(R) or void(error_code, T) -> result<T>;
// see sturdy/asio/detail/attempt.hpp), which L may call any number of times
// (a retry) or not at all (a rejection), and L's operation completes with
// void(R). L hands its inner operations the context it received, or one it
// tightened (a timeout's deadline, its own token).
// `compose(l1, ..., ln).async_run(ctx, make_attempt, token)` runs
// `l1.async_run(ctx, m1, token)` where m1(c) is
// `compose(l2, ..., ln).async_run(c, make_attempt, deferred)`, and ln's
// make_inner is `make_attempt` itself.
//
// The layers here (besides timeout_layer in sturdy/asio/timeout.hpp):
//   limiter_layer{limiter, max_wait}     async_acquire, run, record the
//                                        outcome on the permit as execute does
//   rate_limiter_layer{limiter, max_wait} async_acquire a turn, then run;
//                                        refused: the decision's error
//                                        (errc::rate_limited, ...)
//   breaker_layer{breaker}               try_acquire (errc::circuit_open),
//                                        run, record the outcome (a failure
//                                        after the caller's cancellation is
//                                        `ignored`, as the blocking execute);
//                                        retry_after(): the breaker's own
//   hedge_layer<Timer>{options}          async_hedge over the inner operation
//                                        (each hedge gets the same context)
//
// A breaker inside a retry (as in the blocking compose): a layer whose
// async_run also takes a `std::shared_ptr` to something with retry_after()
// (retry_layer: `async_run(ctx, inner, make_inner, token)`) is given one
// over the layers inside it when one of them has retry_after()
// (breaker_layer, a nested composed): the longest of theirs. The retry then waits, after
// errc::circuit_open, the breaker's retry_after() plus its backoff (within
// the deadline and max_server_delay; else circuit_open at once). The
// pointer aliases the layers' shared block (no allocation), so the call
// owns what it reads (a deferred or awaitable call may outlive the
// composed object).
// `composed::retry_after()` exists when a layer has it, so a composed
// pipeline is itself a retry_after_source for a retry around it.
//
// Why `sturdy::asio::compose` rather than an overload of `sturdy::compose`:
// the blocking compose nests callables that return results; async layers
// nest initiations that take a completion token. They share no code path,
// and an overload would pull Asio into every user of the core headers. See
// docs/async.md.
//
// Cancellation: the caller's cancellation slot reaches the running inner
// operation through every layer here (all types: terminal, partial,
// total). A cancellation between two steps of a layer (after admission,
// before the inner operation starts) is remembered: errc::cancelled, the
// permit given back unrecorded. A context whose token has fired is not
// admitted (its errc).
//
// Completion: each layer's handler runs exactly once, through its associated
// executor, never inside the initiating call.
//
// Lifetime: the layers are held by shared ownership from compose(); the
// primitives they refer to (limiter, breaker) must outlive the calls, and so
// must ctx.token's state. make_attempt is moved into the call's state.
//
// Thread safety: a composed pipeline may be used by any number of calls on
// any number of threads when its layers may (the ones here: yes).

#ifndef STURDY_ASIO_COMPOSE_HPP_
#define STURDY_ASIO_COMPOSE_HPP_

#include <cstddef>
#include <memory>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "sturdy/asio/admission.hpp"
#include "sturdy/asio/detail/attempt.hpp"
#include "sturdy/asio/hedge.hpp"
#include "sturdy/asio/timeout.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/context.hpp"
#include "sturdy/error.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/pipeline.hpp"  // retry_after_source, detail::has_retry_after

namespace sturdy::asio {

namespace detail {

// R of a layer's inner operation.
template <class MakeInner>
using inner_result_t = attempt_result_t<std::invoke_result_t<MakeInner&, const call_context&>>;

struct admitted_tag {};
struct ran_tag {};
struct early_tag {};

// What the admission layers share: admit (Admission::admit), then run the
// inner operation, then report its outcome (Admission::done); a cancellation
// between the two is remembered.
template <class R, class Admission, class MakeInner>
struct admitted_run {
  Admission admission;
  call_context ctx;
  MakeInner make;

  // Every step computes what it needs before `self` (which owns *this) is
  // moved into the next operation's handler.
  template <class Self>
  void operator()(Self& self) {
    self.reset_cancellation_state(boost::asio::enable_total_cancellation());
    if (ctx.token.stop_requested()) {
      const std::error_code ec = make_error_code(to_errc(ctx.token.reason()));
      return boost::asio::post(boost::asio::append(tagged<early_tag>(std::move(self)), ec));
    }
    auto admit = admission.starter();
    admit(tagged<admitted_tag>(std::move(self)));
  }
  template <class Self>
  void operator()(Self& self, early_tag, std::error_code ec) {
    self.complete(make_failure<R>(ec));
  }
  template <class Self, class Admitted>
  void operator()(Self& self, admitted_tag, Admitted a) {
    if (std::error_code ec = admission.accept(std::move(a))) return self.complete(make_failure<R>(ec));
    if (self.cancelled() != boost::asio::cancellation_type::none || ctx.token.stop_requested()) {
      admission.drop();
      const errc e = ctx.token.stop_requested() ? to_errc(ctx.token.reason()) : errc::cancelled;
      return self.complete(make_failure<R>(make_error_code(e)));
    }
    const boost::asio::any_io_executor ex = boost::asio::get_associated_executor(self);
    std::optional<std::decay_t<decltype(make_with_context(make, std::declval<const call_context&>()))>> op;
    try {
      op.emplace(make_with_context(make, static_cast<const call_context&>(ctx)));
    } catch (...) {  // make_inner threw: nothing started; a fatal failure, as in the other drivers
      admission.drop();
      return self.complete(make_failure<R>(std::make_error_code(std::errc::state_not_recoverable)));
    }
    start_attempt<R>(ex, std::move(*op), tagged<ran_tag>(std::move(self)));
  }
  template <class Self>
  void operator()(Self& self, ran_tag, R r) {
    const bool caller_cancelled = self.cancelled() != boost::asio::cancellation_type::none ||
                                  ctx.token.reason() == cancel_reason::cancelled;
    admission.done(r, caller_cancelled);
    self.complete(std::move(r));
  }
};

template <class Timer, class Limiter>
struct limiter_admission {
  Limiter* limiter;
  duration max_wait;
  // Not an optional: an empty permit reports nothing, and GCC 12 at -O2
  // sees a moved, disengaged optional as "maybe uninitialized".
  typename Limiter::permit permit{};

  auto starter() const {
    return [l = limiter, w = max_wait](auto&& h) { async_acquire<Timer>(*l, w, std::forward<decltype(h)>(h)); };
  }
  std::error_code accept(result<typename Limiter::permit> p) {
    if (!p) return p.error();
    permit = std::move(p).value();
    return {};
  }
  void drop() { permit.record_ignored(); }
  template <class R>
  void done(const R& r, bool caller_cancelled) {
    if (succeeded(r)) return permit.record_success();
    if (caller_cancelled) return permit.record_ignored();
    permit.record(limiter->classify_failure(failure_of(r)));
  }
};

template <class Timer, class Limiter>
struct rate_admission {
  Limiter* limiter;
  duration max_wait;

  auto starter() const {
    return [l = limiter, w = max_wait](auto&& h) { async_acquire<Timer>(*l, w, std::forward<decltype(h)>(h)); };
  }
  std::error_code accept(const rate_limit_decision& d) { return d.allowed ? std::error_code{} : d.error(); }
  void drop() {}
  template <class R>
  void done(const R&, bool) {}
};

template <class Breaker>
struct breaker_admission {
  Breaker* breaker;
  std::optional<breaker_permit> permit{};

  auto starter() const {
    return [b = breaker](auto&& h) { async_acquire(*b, std::forward<decltype(h)>(h)); };
  }
  template <class P>
  std::error_code accept(P p) {
    if (!p) return p.error();
    permit.emplace(std::move(p).value());
    return {};
  }
  void drop() { breaker->record(*permit, call_outcome::ignored); }
  template <class R>
  void done(const R& r, bool caller_cancelled) {
    if (succeeded(r)) return breaker->record(*permit, call_outcome::success);
    breaker->record(*permit, caller_cancelled ? call_outcome::ignored : breaker->classify_failure(failure_of(r)));
  }
};

template <class Admission, class MakeInner, class CompletionToken>
auto run_admitted(Admission admission, const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) {
  using R = inner_result_t<std::decay_t<MakeInner>>;
  return boost::asio::async_compose<CompletionToken, void(R)>(
      admitted_run<R, Admission, std::decay_t<MakeInner>>{std::move(admission), ctx,
                                                           std::forward<MakeInner>(make_inner)},
      token);
}

// hedge_layer's make_attempt: every hedge runs the inner operation with the
// layer's context.
template <class MakeInner>
struct hedge_inner {
  call_context ctx;
  MakeInner make;
  auto operator()(const hedge_attempt&) { return make_with_context(make, static_cast<const call_context&>(ctx)); }
};

}  // namespace detail

// limiter_layer<Timer>{limiter, max_wait}: a concurrency limiter's permit
// around the inner operation (queued up to max_wait without blocking; 0:
// refuse at once), its outcome recorded as the limiter's execute records it
// (a failure after the caller's cancellation: ignored).
template <class Limiter, class Timer = boost::asio::steady_timer>
struct limiter_layer {
  Limiter& limiter;
  duration max_wait = duration::zero();

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return detail::run_admitted(detail::limiter_admission<Timer, Limiter>{&limiter, max_wait}, ctx,
                                std::forward<MakeInner>(make_inner), std::forward<CompletionToken>(token));
  }
};
template <class Limiter>
limiter_layer(Limiter&, duration) -> limiter_layer<Limiter>;
template <class Limiter>
limiter_layer(Limiter&) -> limiter_layer<Limiter>;

// rate_limiter_layer<Timer>{limiter, max_wait}: a rate limiter's turn before
// the inner operation (waited for up to max_wait on a Timer; 0: refuse at
// once). Refused: the decision's error (errc::rate_limited, ...).
template <class Limiter, class Timer = boost::asio::steady_timer>
struct rate_limiter_layer {
  Limiter& limiter;
  duration max_wait = duration::zero();

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return detail::run_admitted(detail::rate_admission<Timer, Limiter>{&limiter, max_wait}, ctx,
                                std::forward<MakeInner>(make_inner), std::forward<CompletionToken>(token));
  }
};
template <class Limiter>
rate_limiter_layer(Limiter&, duration) -> rate_limiter_layer<Limiter>;
template <class Limiter>
rate_limiter_layer(Limiter&) -> rate_limiter_layer<Limiter>;

// breaker_layer{breaker}: the breaker's admission (errc::circuit_open when
// open) and the inner operation's outcome recorded (success; a failure as
// the breaker's failure_classifier says; ignored after the caller's
// cancellation). Slow-call detection is not applied by this layer.
template <class Breaker>
struct breaker_layer {
  Breaker& breaker;

  // The breaker's retry_after(): how long until it would admit a call (a
  // retry_layer outside it waits for it on errc::circuit_open).
  [[nodiscard]] duration retry_after() const { return breaker.retry_after(); }

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return detail::run_admitted(detail::breaker_admission<Breaker>{&breaker}, ctx,
                                std::forward<MakeInner>(make_inner), std::forward<CompletionToken>(token));
  }
};
template <class Breaker>
breaker_layer(Breaker&) -> breaker_layer<Breaker>;

// hedge_layer<Timer>{options}: async_hedge over the inner operation.
template <class Timer = boost::asio::steady_timer>
struct hedge_layer {
  hedge_options options{};

  template <class MakeInner, class CompletionToken>
  auto async_run(const call_context& ctx, MakeInner&& make_inner, CompletionToken&& token) const {
    return async_hedge<Timer>(options, detail::hedge_inner<std::decay_t<MakeInner>>{ctx, std::forward<MakeInner>(make_inner)},
                              std::forward<CompletionToken>(token));
  }
};

// composed<Layers...>: what compose() returns. Copyable (shares the layers).
template <class... Layers>
class composed {
  static_assert(sizeof...(Layers) >= 1, "sturdy::asio::compose needs at least one layer.");

 public:
  explicit composed(Layers... layers) : layers_(std::make_shared<shared_layers>(std::move(layers)...)) {}

  // async_run(ctx, make_attempt, token) -> void(R): the first layer
  // outermost; see the banner.
  template <class MakeAttempt, class CompletionToken>
  auto async_run(const call_context& ctx, MakeAttempt&& make_attempt, CompletionToken&& token) const {
    auto st = std::make_shared<state<std::decay_t<MakeAttempt>>>(state<std::decay_t<MakeAttempt>>{
        layers_, std::forward<MakeAttempt>(make_attempt)});
    return run_level<0>(st, ctx, std::forward<CompletionToken>(token));
  }
  // With no enclosing context.
  template <class MakeAttempt, class CompletionToken>
    requires(!std::is_same_v<std::decay_t<MakeAttempt>, call_context>)
  auto async_run(MakeAttempt&& make_attempt, CompletionToken&& token) const {
    return async_run(call_context{}, std::forward<MakeAttempt>(make_attempt), std::forward<CompletionToken>(token));
  }

  template <std::size_t I>
  [[nodiscard]] auto& layer() const noexcept {
    return std::get<I>(layers_->layers);
  }

  // The longest retry_after() of the layers that have one (breaker_layer):
  // how long until every one of them would admit a call. Present only when
  // some layer has it (so a pipeline is itself a retry_after_source).
  [[nodiscard]] duration retry_after() const
    requires(sturdy::detail::has_retry_after<Layers> || ...)
  {
    return layers_->template retry_after_from<0>();
  }

 private:
  static constexpr std::size_t count = sizeof...(Layers);

  // Whether any of the layers from I on has retry_after().
  template <std::size_t I>
  static constexpr bool any_retry_after_from() {
    if constexpr (I >= count) {
      return false;
    } else {
      return sturdy::detail::has_retry_after<std::tuple_element_t<I, std::tuple<Layers...>>> ||
             any_retry_after_from<I + 1>();
    }
  }

  // The layers, shared by every copy of the pipeline and every call in
  // flight; with, for each I, a view of the layers from I on as one
  // retry_after(): what the aliasing pointer a layer gets points at (it
  // keeps this block alive).
  struct shared_layers {
    template <std::size_t I>
    struct from {
      const shared_layers* self;
      [[nodiscard]] duration retry_after() const { return self->template retry_after_from<I>(); }
    };
    template <std::size_t... I>
    static std::tuple<from<I>...> views_of(const shared_layers* self, std::index_sequence<I...>) {
      return {from<I>{self}...};
    }

    explicit shared_layers(Layers... ls) : layers(std::move(ls)...) {}
    shared_layers(const shared_layers&) = delete;  // the views point at this object
    shared_layers& operator=(const shared_layers&) = delete;

    template <std::size_t I>
    [[nodiscard]] duration retry_after_from() const {
      if constexpr (I >= count) {
        return duration::zero();
      } else {
        const duration rest = retry_after_from<I + 1>();
        if constexpr (sturdy::detail::has_retry_after<std::tuple_element_t<I, std::tuple<Layers...>>>) {
          const duration mine = std::get<I>(layers).retry_after();
          return mine > rest ? mine : rest;
        } else {
          return rest;
        }
      }
    }

    std::tuple<Layers...> layers;
    decltype(views_of(nullptr, std::make_index_sequence<count>{})) views =
        views_of(this, std::make_index_sequence<count>{});
  };

  template <std::size_t I>
  using view = typename shared_layers::template from<I>;

  template <class Make>
  struct state {
    std::shared_ptr<shared_layers> layers;
    Make make;
  };
  template <std::size_t I, class Make>
  struct level {  // make_inner of layer I - 1: runs layers I.. as a deferred operation
    std::shared_ptr<state<Make>> st;
    auto operator()(const call_context& c) const { return run_level<I>(st, c, boost::asio::deferred); }
  };
  template <class Make>
  struct attempt {  // make_inner of the last layer
    std::shared_ptr<state<Make>> st;
    auto operator()(const call_context& c) const { return detail::make_with_context(st->make, c); }
  };

  // Layer I around the rest. A layer that takes one (retry_layer) gets an
  // owning pointer to the layers inside it as one retry_after() when one of
  // them has it.
  template <std::size_t I, class Make, class CompletionToken>
  static auto run_level(const std::shared_ptr<state<Make>>& st, const call_context& ctx, CompletionToken&& token) {
    auto& layer = std::get<I>(st->layers->layers);
    if constexpr (I + 1 == count) {
      return layer.async_run(ctx, attempt<Make>{st}, std::forward<CompletionToken>(token));
    } else if constexpr (any_retry_after_from<I + 1>() &&
                         requires(level<I + 1, Make> inner, std::shared_ptr<const view<I + 1>> v) {
                           layer.async_run(ctx, std::move(v), std::move(inner),
                                           std::forward<CompletionToken>(token));
                         }) {
      // Owning, without allocating: an aliasing pointer into the shared block.
      std::shared_ptr<const view<I + 1>> inner(st->layers, &std::get<I + 1>(st->layers->views));
      return layer.async_run(ctx, std::move(inner), level<I + 1, Make>{st}, std::forward<CompletionToken>(token));
    } else {
      return layer.async_run(ctx, level<I + 1, Make>{st}, std::forward<CompletionToken>(token));
    }
  }

  std::shared_ptr<shared_layers> layers_;
};

// compose(layers...): the first layer outermost. Layers are copied (hold a
// primitive by reference: limiter_layer{limiter}, breaker_layer{breaker}).
template <class... Layers>
[[nodiscard]] composed<std::decay_t<Layers>...> compose(Layers&&... layers) {
  return composed<std::decay_t<Layers>...>(std::forward<Layers>(layers)...);
}

}  // namespace sturdy::asio

#endif  // STURDY_ASIO_COMPOSE_HPP_
