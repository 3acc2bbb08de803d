// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/compensation.hpp
// -----------------------------------------------------------------------------
//
// `sturdy::compensation_scope` is an RAII saga guard: each step that
// succeeds registers how to undo it; if the scope ends without `commit()` —
// an exception, an early `return` of an error, a `BOOST_OUTCOME_TRY` — the
// undos run, last first. Unlike a scope guard it holds many steps, reacts to
// error returns as well as exceptions, survives undos that fail or throw
// (never `std::terminate`), retries them through an optional policy, reports
// what happened per step and hands whatever stays undone to a dead-letter
// sink.
//
//   active --commit()-----------> committed    (undos dropped, none run)
//   active --rollback() / ~scope-> rolled_back (every undo run once, reverse)
//
// Example:
//
//   sturdy::dead_letter_queue dlq;
//
//   sturdy::result<void> onboard(Db& db, Roles& roles, Mail& mail, std::string_view name) {
//     sturdy::compensation_scope saga(dlq, {.name = "onboarding"});
//     // step(): runs the action; registers the undo only if it succeeded.
//     // The undo may take the action's value (here the created user).
//     BOOST_OUTCOME_TRY(auto user, saga.step("create user",
//         [&] { return db.create_user(name); },                 // result<User>
//         [&](const User& u) { return db.delete_user(u.id); })); // result<void>
//     BOOST_OUTCOME_TRY(saga.step("assign role",
//         [&] { return roles.assign(user.id, "member"); },
//         [&] { roles.revoke(user.id, "member"); }));            // void, may throw
//     BOOST_OUTCOME_TRY(mail.send_welcome(user));  // fails -> both undone
//     return saga.commit();                        // keep everything
//   }
//
// Undos:
//   - take no arguments (or, with `step`, the action's value) and return
//     `void`, a plain value, or any result-like type the outcome adapters
//     support (`sturdy::result`, Boost.Outcome, `std::expected`,
//     `absl::Status` with its adapter). An error result is a failure.
//   - need NOT be `noexcept`: an exception thrown by an undo is caught and
//     recorded as that step's failure (`failure_info::exception`), and the
//     remaining undos still run, also while the stack unwinds from another
//     exception. (Undos talk to databases and networks; requiring noexcept
//     would only push a try/catch, and the loss of the error, into every
//     one.) Destructors of undo callables must not throw.
//   - run exactly once each, last registered first, on the thread that ends
//     the scope. An undo that re-enters its own scope finds it rolled back.
//
// Failure handling: by default every undo runs whatever the others do
// (`stop_at_first_failure = false`). A failed undo is retried when the scope
// has an undo policy: any object with `execute(fn)` returning
// `sturdy::execute_result_t<F>` (a `sturdy::retry_policy`, a circuit
// breaker, a `compose(...)` of them) — or per undo with
// `sturdy::undo_with(policy, undo)`. What still fails, or is skipped, is
// listed in the `compensation_report` that `rollback()` returns and pushed to
// the dead-letter sink (see sturdy/dead_letter.hpp), and announced to the
// listener (`compensation_step_failed`, then `compensation_rolled_back`).
// When the destructor rolls back, the sink and the listener are the only
// record: give the scope one (or call `rollback()` and read the report)
// whenever failures must be seen.
//
// Misuse (decided once): every call on a scope that is no longer active is
// refused with `errc::already_committed` or `errc::already_rolled_back` and
// changes nothing: `commit()` twice, `commit()` after `rollback()`, `add()`
// or `step()` after either (`step` then does not run the action),
// `rollback()` twice (the report carries the error and lists no steps).
//
// Ownership: the scope owns what it keeps. Step names, contexts and the
// saga name are copied (`saga.step(std::string("create ") + user, ...)` is
// safe); a step whose undo takes the action's value stores a copy of it, and
// a non-owning value (`sturdy::non_owning`: string_view, span, pointer) is
// refused at compile time. The sink and the policy are referenced: a
// temporary one (unless empty) is refused at compile time.
//
// Storage: no heap for up to 8 undos whose callables are at most 32 bytes
// (four pointers) and whose names and contexts are at most 15 characters
// each (see detail/undo_stack.hpp). A ninth undo moves them all to
// one heap array (doubling); a larger callable is boxed with `new`. Should
// that allocation fail, `add` returns `errc::capacity_exceeded` (nothing
// stored; the caller still holds the undo).
//
// Nothing stays done without an undo: in `step`, registering happens after
// the action succeeded, and may fail (memory for the entry, or copying the
// action's value into the undo, or copying the undo, throws). Then the undo
// runs at once, with the action's value (the stored copy if it was built,
// otherwise the caller's undo on the action's own value), through the
// scope's policy; if it fails it is dead-lettered and reported to the
// listener like a failed rollback step. `step` then returns
// `errc::capacity_exceeded` for std::bad_alloc and rethrows any other
// exception (the scope stays active, so unwinding rolls back the earlier
// steps). The one case that cannot be compensated: an undo whose own move
// constructor throws part-way and leaves it unusable (lambdas do not).
//
// Nested scopes: `child.commit_into(parent)` moves the child's undos onto
// the parent (in order) instead of dropping them; they then run, or not,
// with the parent.
//
// Thread safety: a scope belongs to one thread (it is a control-flow
// construct, like a lock guard). The sink and the policy it references may
// be shared: they must be thread-safe then (`dead_letter_queue` is).
// Testing: give the scope a `sturdy::testing::manual_clock` (dead-letter
// time stamps), a `dead_letter_queue`, a `sturdy::testing::recording_listener`
// and a policy built on `sturdy::testing::recording_sleeper`.

#ifndef STURDY_COMPENSATION_HPP_
#define STURDY_COMPENSATION_HPP_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "sturdy/clock.hpp"
#include "sturdy/config.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/detail/invoke_captured.hpp"
#include "sturdy/detail/small_vector.hpp"
#include "sturdy/detail/undo_stack.hpp"
#include "sturdy/error.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/ownership.hpp"

namespace sturdy {

// run_once: the default undo policy: calls the undo once. Also a valid
// `execute(fn)` policy anywhere else; empty and inlined away.
struct run_once {
  template <class F>
  [[nodiscard]] execute_result_t<F> execute(F&& fn) const {
    return invoke_wrapped(std::forward<F>(fn));
  }
};

namespace detail {
// A stand-in callable for checking the `undo_policy` concept.
struct undo_policy_probe {
  result<void> operator()() const;
};

// held<T, AsConst>: a reference to the caller's sink or policy, or, for an
// empty default-constructible type, the object itself (zero bytes). With
// AsConst (a policy whose execute(fn) is const, like retry_policy) a const
// object is accepted too and only ever used as const.
template <class T, bool AsConst = false>
class held {
 public:
  using object_type = std::conditional_t<AsConst, const T, T>;
  held(T& t) noexcept : p_(&t) {}  // NOLINT(google-explicit-constructor): used in CTAD-friendly ctors
  held(const T& t) noexcept  // NOLINT(google-explicit-constructor)
    requires AsConst
      : p_(&t) {}
  held(T&&) = delete;  // would dangle: the scopes refuse it with a sentence first
  held(const T&&) = delete;
  [[nodiscard]] object_type& get() const noexcept { return *p_; }
  [[nodiscard]] void* address() const noexcept { return const_cast<void*>(static_cast<const void*>(p_)); }

 private:
  object_type* p_;
};
template <class T, bool AsConst>
  requires(std::is_empty_v<T> && std::is_default_constructible_v<T>)
class held<T, AsConst> {
 public:
  using object_type = std::conditional_t<AsConst, const T, T>;
  held() noexcept = default;
  held(const T&) noexcept {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] object_type& get() const noexcept { return t_; }
  [[nodiscard]] void* address() const noexcept { return const_cast<void*>(static_cast<const void*>(&t_)); }

 private:
  STURDY_NO_UNIQUE_ADDRESS mutable T t_;
};

// Whether an undo for step() takes the action's value.
template <class U, class V>
inline constexpr bool undo_takes_value = std::invocable<U&, const V&>;
template <class U>
inline constexpr bool undo_takes_value<U, void> = false;

// The value comes first: it is copied before the caller's undo is moved
// in, so a throwing copy leaves that undo intact (step() then runs it at
// once with the action's value).
template <class U, class V>
struct bound_undo {
  V value;
  U undo;
  decltype(auto) operator()() { return std::invoke(undo, std::as_const(value)); }
};
}  // namespace detail

// undo_policy<P>
//
// What a scope can retry undos with: `p.execute(fn)` calls `fn` (possibly
// several times) and returns `sturdy::execute_result_t<F>`.
template <class P>
concept undo_policy = requires(P& p, detail::undo_policy_probe& f) {
  { p.execute(f) } -> std::same_as<result<void>>;
};

static_assert(undo_policy<run_once>);

namespace detail {
// A policy whose execute(fn) works on a const object (retry_policy,
// run_once) may be handed to a scope as const.
template <class P>
inline constexpr bool runs_as_const = requires(const P& p, undo_policy_probe& f) {
  { p.execute(f) } -> std::same_as<result<void>>;
};
}  // namespace detail

// undo_with(policy, undo)
//
// Wraps one undo so that it runs through `policy.execute(...)`: per-step
// retries in a scope without a scope-wide policy. Keeps a reference to
// `policy` (it must outlive the scope). 8 bytes plus the undo's size.
template <class Policy, class F>
struct policy_bound_undo {
  Policy* policy;
  F undo;
  // Callable with exactly the arguments `undo` takes (none, or the action's
  // value), so that step() asks the right question: an unconstrained call
  // operator would claim to take the value and then fail to compile.
  template <class... A>
    requires std::invocable<F&, const A&...>
  auto operator()(const A&... args) {
    return policy->execute([&]() -> decltype(auto) { return std::invoke(undo, args...); });
  }
};

template <class Policy, class F>
[[nodiscard]] policy_bound_undo<Policy, std::decay_t<F>> undo_with(Policy& policy, F&& undo) {
  return {&policy, std::forward<F>(undo)};
}

// step_info: how a step is named in the report and the dead-letter entry.
// Both strings are owned (by this struct, then by the scope, the report and
// the dead-letter entry), so names built at run time ("create " + user) are
// safe; up to 15 characters each they are stored without a heap allocation.
struct step_info {
  // Shown in reports, events and dead-letter entries. Default "".
  std::string name{};
  // Free-form data a later replay needs (an id, JSON). Default "".
  std::string context{};
};

// What happened to one step's undo during rollback.
enum class step_status : std::uint8_t {
  undone,   // the undo succeeded
  failed,   // the undo failed (error or exception) after any retries
  skipped,  // not run: an earlier undo failed and stop_at_first_failure is set
};

[[nodiscard]] constexpr std::string_view to_string(step_status s) noexcept {
  switch (s) {
    case step_status::undone:
      return "undone";
    case step_status::failed:
      return "failed";
    case step_status::skipped:
      return "skipped";
  }
  return "unknown";
}

// One line of a compensation report.
struct step_record {
  std::string name{};     // step_info::name
  std::string context{};  // step_info::context
  step_status status = step_status::undone;
  failure_info failure{};      // the error/exception when failed; empty otherwise
  bool dead_lettered = false;  // the sink accepted an entry for this step
};

// compensation_report
//
// What `rollback()` did, one record per registered undo in the order they
// ran (last registered first).
class compensation_report {
 public:
  [[nodiscard]] std::span<const step_record> steps() const noexcept { return {steps_.begin(), steps_.size()}; }
  [[nodiscard]] const step_record* begin() const noexcept { return steps_.begin(); }
  [[nodiscard]] const step_record* end() const noexcept { return steps_.end(); }
  [[nodiscard]] std::size_t size() const noexcept { return steps_.size(); }
  [[nodiscard]] const step_record& operator[](std::size_t i) const noexcept { return steps_[i]; }

  [[nodiscard]] std::size_t undone() const noexcept { return undone_; }
  [[nodiscard]] std::size_t failed() const noexcept { return failed_; }
  [[nodiscard]] std::size_t skipped() const noexcept { return skipped_; }

  // Empty when every undo succeeded; `errc::compensation_failed` when some
  // failed or were skipped; `errc::already_committed` /
  // `errc::already_rolled_back` when rollback() was refused (no steps then).
  [[nodiscard]] std::error_code error() const noexcept { return error_; }
  [[nodiscard]] bool ok() const noexcept { return !error_; }
  // `error()` as a result, for BOOST_OUTCOME_TRY.
  [[nodiscard]] result<void> status() const noexcept {
    if (error_) return error_;
    return success();
  }
  // True when memory for the records ran out (more than 8 steps and the
  // allocation failed): the counts stay exact, the list is cut short.
  [[nodiscard]] bool truncated() const noexcept { return truncated_; }

 private:
  template <dead_letter_sink, undo_policy, clock_source, class>
  friend class compensation_scope;

  detail::small_vector<step_record, detail::undo_inline_capacity> steps_;
  std::size_t undone_ = 0;
  std::size_t failed_ = 0;
  std::size_t skipped_ = 0;
  std::error_code error_;
  bool truncated_ = false;
};

// compensation_options
//
// Aggregate; fill with designated initializers. Every value is valid, so
// there is nothing to validate. There is no duration option: nothing in a
// scope waits or times out (an undo policy brings its own).
struct compensation_options {
  // The saga's name, in events and dead-letter entries (`saga`). Owned: a
  // name built at run time ("onboard-" + user) is safe; up to 15 characters
  // without a heap allocation. Default "".
  std::string name{};
  // false (default): every undo runs even after one fails. true: the first
  // failure stops the rollback and the remaining undos are skipped (reported
  // as `skipped` and dead-lettered with `errc::compensation_failed`): for
  // sagas whose undos depend on each other.
  bool stop_at_first_failure = false;
};

enum class compensation_state : std::uint8_t { active, committed, rolled_back };

// Events (see sturdy/listener.hpp). Emitted on the thread that rolls back.
//
// Events own their strings, so a listener may keep them (a recording
// listener, a queue to a logger thread). They are built only when the
// listener takes them: with the default null_listener nothing is copied.
//
// An undo failed or was skipped. Emitted after the sink saw the entry; the
// step's context is in the dead-letter entry.
struct compensation_step_failed {
  std::string saga;  // compensation_options::name
  std::string step;  // step_info::name
  step_status status = step_status::failed;  // failed or skipped
  failure_info failure;                      // empty when skipped
  bool dead_lettered = false;                // the sink kept an entry
};
// A rollback finished (explicit or by the destructor). Not emitted on commit.
struct compensation_rolled_back {
  std::string saga;
  std::size_t undone = 0;
  std::size_t failed = 0;
  std::size_t skipped = 0;
  bool by_destructor = false;
};

// compensation_scope<Sink, Policy, Clock, Listener>
//
// Pinned: not copyable or movable. `Sink` and `Policy` are referenced (they
// must outlive the scope) unless empty, then held by value at zero size.
// `Clock` (held by value) stamps dead-letter entries, read only on failure.
// `Listener` (held by value; make it a handle to share state) receives
// `compensation_step_failed` and `compensation_rolled_back`; the default
// `null_listener` costs nothing.
template <dead_letter_sink Sink = null_dead_letter_sink, undo_policy Policy = run_once,
          clock_source Clock = steady_clock_source, class Listener = null_listener>
class [[nodiscard]] compensation_scope final {
 public:
  using sink_type = Sink;
  using policy_type = Policy;
  using clock_type = Clock;
  using listener_type = Listener;

 private:
  using sink_ref = detail::held<Sink>;
  using policy_ref = detail::held<Policy, detail::runs_as_const<Policy>>;

  // The sink or policy argument, after refusing a temporary that the scope
  // would keep a reference to.
  template <class T, class Arg>
  static constexpr Arg& checked(Arg& arg) noexcept {
    static_assert(std::is_lvalue_reference_v<Arg> || std::is_empty_v<T>,
                  "compensation_scope keeps a reference to its dead-letter sink and undo policy, so they "
                  "must be named objects that outlive the scope, not temporaries.");
    return arg;
  }

 public:

  // Constructors. The sink and the policy are taken by reference (they must
  // outlive the scope; a temporary is refused at compile time) unless their
  // type is empty. A policy whose execute(fn) is const may be const. The
  // options are always the last argument, so `compensation_scope s(dlq, {})`
  // means "dlq, default options".
  compensation_scope() noexcept
    requires std::is_default_constructible_v<sink_ref> && std::is_default_constructible_v<policy_ref> &&
             std::is_default_constructible_v<Clock> && std::is_default_constructible_v<Listener>
  = default;
  explicit compensation_scope(compensation_options options) noexcept
    requires std::is_default_constructible_v<sink_ref> && std::is_default_constructible_v<policy_ref> &&
             std::is_default_constructible_v<Clock> && std::is_default_constructible_v<Listener>
      : options_(std::move(options)) {}
  template <class S>
    requires std::same_as<std::remove_cvref_t<S>, Sink> && std::is_default_constructible_v<policy_ref> &&
             std::is_default_constructible_v<Clock> && std::is_default_constructible_v<Listener>
  explicit compensation_scope(S&& sink, compensation_options options = {}) noexcept
      : sink_(checked<Sink, S>(sink)), options_(std::move(options)) {}
  template <class S, class P>
    requires std::same_as<std::remove_cvref_t<S>, Sink> && std::same_as<std::remove_cvref_t<P>, Policy> &&
             std::is_default_constructible_v<Clock> && std::is_default_constructible_v<Listener>
  compensation_scope(S&& sink, P&& policy, compensation_options options = {}) noexcept
      : sink_(checked<Sink, S>(sink)), policy_(checked<Policy, P>(policy)), options_(std::move(options)) {}
  template <class S, class P>
    requires std::same_as<std::remove_cvref_t<S>, Sink> && std::same_as<std::remove_cvref_t<P>, Policy> &&
             std::is_default_constructible_v<Listener>
  compensation_scope(S&& sink, P&& policy, Clock clock,
                     compensation_options options = {}) noexcept(std::is_nothrow_move_constructible_v<Clock>)
      : sink_(checked<Sink, S>(sink)),
        policy_(checked<Policy, P>(policy)),
        clock_(std::move(clock)),
        options_(std::move(options)) {}
  template <class S, class P>
    requires std::same_as<std::remove_cvref_t<S>, Sink> && std::same_as<std::remove_cvref_t<P>, Policy>
  compensation_scope(S&& sink, P&& policy, Clock clock, Listener listener,
                     compensation_options options = {}) noexcept(std::is_nothrow_move_constructible_v<Clock> &&
                                                                 std::is_nothrow_move_constructible_v<Listener>)
      : sink_(checked<Sink, S>(sink)),
        policy_(checked<Policy, P>(policy)),
        clock_(std::move(clock)),
        listener_(std::move(listener)),
        options_(std::move(options)) {}

  compensation_scope(const compensation_scope&) = delete;
  compensation_scope& operator=(const compensation_scope&) = delete;

  // Rolls back unless committed or rolled back already. Never throws.
  ~compensation_scope() {
    if (state_ == compensation_state::active) rollback_impl<false>(nullptr);
  }

  // compensation_scope::add()
  //
  // Registers `undo` for a step that has already succeeded. Refused with
  // `errc::already_committed` / `errc::already_rolled_back` when the scope
  // is not active, `errc::capacity_exceeded` when memory for a ninth+ or a
  // large undo cannot be allocated; the undo is not registered then.
  template <class F>
  result<void> add(F&& undo) {
    return add_impl(names{}, std::forward<F>(undo));
  }
  template <class F>
  result<void> add(std::string_view name, F&& undo) {
    return add_impl(names{name, {}}, std::forward<F>(undo));
  }
  template <class F>
  result<void> add(const step_info& info, F&& undo) {
    return add_impl(names{info.name, info.context}, std::forward<F>(undo));
  }

 private:
  // A step's name and context as views of the caller's strings, alive for
  // the call that registers the step; the stack copies them.
  struct names {
    std::string_view name;
    std::string_view context;
  };

  template <class F>
  result<void> add_impl(names info, F&& undo) {
    check_undo<F>();
    if (STURDY_UNLIKELY(state_ != compensation_state::active)) return state_error();
    return push(info, std::forward<F>(undo));
  }

 public:
  // compensation_scope::step()
  //
  // Runs `action` (any return type the outcome adapters support) and, only
  // if it succeeded, registers `undo`, which takes no argument or the
  // action's value (`const T&`; the value is copied into the undo). Returns
  // what the action returned, as `execute_result_t<Action>`. An exception
  // from `action` propagates (the scope stays active, so unwinding rolls
  // back the earlier steps). On a scope that is not active, `action` is not
  // run and the misuse error is returned inside the result. If the undo
  // cannot be registered after the action succeeded, it runs at once
  // instead, and `step` returns `errc::capacity_exceeded` (out of memory)
  // or rethrows what copying the value or the undo threw (see the banner).
  template <class Action, class Undo>
  execute_result_t<Action> step(Action&& action, Undo&& undo) {
    return step_impl(names{}, std::forward<Action>(action), std::forward<Undo>(undo));
  }
  template <class Action, class Undo>
  execute_result_t<Action> step(std::string_view name, Action&& action, Undo&& undo) {
    return step_impl(names{name, {}}, std::forward<Action>(action), std::forward<Undo>(undo));
  }
  template <class Action, class Undo>
  execute_result_t<Action> step(const step_info& info, Action&& action, Undo&& undo) {
    return step_impl(names{info.name, info.context}, std::forward<Action>(action), std::forward<Undo>(undo));
  }

 private:
  template <class Action, class Undo>
  execute_result_t<Action> step_impl(names info, Action&& action, Undo&& undo) {
    static_assert(outcome_callable<Action>,
                  "compensation_scope::step: the action must be callable with no arguments and return a "
                  "value, void, or a result-like type (not a reference).");
    using R = execute_result_t<Action>;
    using V = typename outcome_traits<R>::value_type;
    if (STURDY_UNLIKELY(state_ != compensation_state::active)) return make_failure<R>(state_error_code());
    R r = invoke_wrapped(std::forward<Action>(action));
    if (!succeeded(r)) return r;
    using U = std::remove_reference_t<Undo>;  // the caller's undo, as named here
    std::exception_ptr error;
    registration how = registration::registered;
    if constexpr (detail::undo_takes_value<std::decay_t<Undo>, V>) {
      static_assert(!non_owning<V>,
                    "compensation_scope::step: the undo takes the action's value, which the scope stores "
                    "until rollback, but it is a non-owning view (a string_view, span, pointer or other "
                    "sturdy::non_owning type) that may dangle by then: return an owning value (std::string, "
                    "std::vector, ...) from the action, or capture what the undo needs.");
      static_assert(std::is_copy_constructible_v<V>,
                    "compensation_scope::step: an undo that takes the action's value needs a copyable "
                    "value (it is copied into the undo); capture what you need instead.");
      using B = detail::bound_undo<std::decay_t<Undo>, V>;
      check_undo<B>();
      how = register_or_undo<B>(
          info, [&] { return B{V(r.value()), std::forward<Undo>(undo)}; },
          [&]() -> decltype(auto) {
            if constexpr (std::invocable<U&, const V&>) {
              return std::invoke(undo, std::as_const(r.value()));
            } else {
              return result<void>(errc::compensation_failed);  // cannot call a const mutable lambda
            }
          },
          error);
    } else {
      static_assert(std::invocable<std::decay_t<Undo>&>,
                    "compensation_scope::step: the undo must be callable with no arguments or with the "
                    "action's value (const T&).");
      check_undo<Undo>();
      how = register_or_undo<std::decay_t<Undo>>(
          info, [&]() -> decltype(auto) { return std::forward<Undo>(undo); },
          [&]() -> decltype(auto) {
            if constexpr (std::invocable<U&>) {
              return std::invoke(undo);
            } else {
              return result<void>(errc::compensation_failed);
            }
          },
          error);
    }
    if (STURDY_UNLIKELY(how != registration::registered)) {
      if (how == registration::threw) std::rethrow_exception(error);
      return make_failure<R>(errc::capacity_exceeded);
    }
    return r;
  }


 public:
  // compensation_scope::commit()
  //
  // Keeps every step: drops all undos without running them.
  // `errc::already_committed` / `errc::already_rolled_back` otherwise.
  result<void> commit() noexcept {
    if (STURDY_UNLIKELY(state_ != compensation_state::active)) return state_error();
    state_ = compensation_state::committed;
    stack_.clear();
    return success();
  }

  // compensation_scope::commit_into()
  //
  // Commits this scope into `parent`: its undos move (in order) on top of
  // the parent's and run, or not, with the parent, under the parent's policy
  // and sink. Refused when either scope is not active (that scope's misuse
  // error), with `errc::invalid_options` when `parent` is this scope (it
  // would stay active and roll back at exit: not a commit), or with
  // `errc::capacity_exceeded` when the parent cannot grow; this scope then
  // stays active and unchanged.
  template <class S2, class C2, class L2>
  result<void> commit_into(compensation_scope<S2, Policy, C2, L2>& parent) noexcept {
    if (STURDY_UNLIKELY(state_ != compensation_state::active)) return state_error();
    if (STURDY_UNLIKELY(parent.state_ != compensation_state::active)) return parent.state_error();
    if (STURDY_UNLIKELY(static_cast<void*>(&parent) == static_cast<void*>(this))) return errc::invalid_options;
    try {
      parent.stack_.splice_from(stack_);
    } catch (const std::bad_alloc&) {
      return errc::capacity_exceeded;
    }
    state_ = compensation_state::committed;
    return success();
  }

  // compensation_scope::rollback()
  //
  // Runs every undo now, last registered first, and reports each. Never
  // throws. A second call (or one after commit) runs nothing and reports
  // the misuse error.
  [[nodiscard]] compensation_report rollback() noexcept {
    compensation_report report;
    if (STURDY_UNLIKELY(state_ != compensation_state::active)) {
      report.error_ = state_error_code();
      return report;
    }
    rollback_impl<true>(&report);
    return report;
  }

  [[nodiscard]] compensation_state state() const noexcept { return state_; }
  [[nodiscard]] bool active() const noexcept { return state_ == compensation_state::active; }
  // Undos registered and not yet run or dropped.
  [[nodiscard]] std::size_t pending() const noexcept { return stack_.size(); }
  [[nodiscard]] const compensation_options& options() const noexcept { return options_; }

 private:
  template <dead_letter_sink, undo_policy, clock_source, class>
  friend class compensation_scope;

  // Calls an undo through the scope's policy; never throws.
  struct runner {
    template <class F>
    static bool run(F& f, [[maybe_unused]] void* ctx, failure_info& out) noexcept {
      if constexpr (std::is_same_v<Policy, run_once>) {
        return detail::invoke_captured(f, out);
      } else {
        static_assert(result_like<decltype(static_cast<typename policy_ref::object_type*>(ctx)->execute(f))>,
                      "compensation_scope: the undo policy's execute(fn) must return a result-like type");
        using object = typename policy_ref::object_type;  // const for a const-executable policy
        return detail::invoke_captured([&] { return static_cast<object*>(ctx)->execute(f); }, out);
      }
    }
  };

  template <class F>
  static constexpr void check_undo() noexcept {
    using D = std::decay_t<F>;
    static_assert(std::is_constructible_v<D, F>,
                  "compensation_scope: the undo must be move- or copy-constructible (it is stored).");
    static_assert(std::invocable<D&>,
                  "compensation_scope: an undo must be callable with no arguments (use step() for an "
                  "undo that takes the action's value).");
    static_assert(!std::is_reference_v<std::invoke_result_t<D&>>,
                  "compensation_scope: an undo must return void, a value or a result-like type, not a "
                  "reference.");
  }

  template <class F>
  result<void> push(names info, F&& undo) {
    try {
      stack_.template push<runner>(info.name, info.context, std::forward<F>(undo));
    } catch (const std::bad_alloc&) {
      return errc::capacity_exceeded;
    }
    return success();
  }

  enum class registration : std::uint8_t { registered, out_of_memory, threw };

  // For step(), after the action succeeded: builds the undo to store (type
  // `D`, from `make()`; this may copy the action's value) and registers it.
  // If building throws, runs `direct` (the caller's undo on the action's
  // value) at once instead; if storing throws, runs the built undo at once.
  // Either way a failing undo is dead-lettered (see the banner). `error`
  // receives an exception other than std::bad_alloc.
  template <class D, class Make, class Direct>
  registration register_or_undo(names info, Make&& make, Direct&& direct,
                                std::exception_ptr& error) noexcept {
    registration how = registration::registered;
    try {
      D local(std::forward<Make>(make)());
      return push_or_undo(info, local, error);
    } catch (const std::bad_alloc&) {
      how = registration::out_of_memory;
    } catch (...) {
      how = registration::threw;
      error = std::current_exception();
    }
    undo_at_once(info, direct);
    return how;
  }

  template <class D>
  registration push_or_undo(names info, D& local, std::exception_ptr& error) noexcept {
    registration how = registration::registered;
    try {
      stack_.template push<runner>(info.name, info.context, std::move(local));
      return how;
    } catch (const std::bad_alloc&) {
      how = registration::out_of_memory;
    } catch (...) {
      how = registration::threw;
      error = std::current_exception();
    }
    undo_at_once(info, local);  // push never moved from `local` unless D's move threw
    return how;
  }

  template <class F>
  void undo_at_once(names info, F& undo) noexcept {
    failure_info failure;
    if (!runner::run(undo, policy_.address(), failure)) {
      std::optional<time_point> now;
      const bool lettered = dead_letter(info.name, info.context, step_status::failed, failure, now);
      announce_failed_step(info.name, step_status::failed, failure, lettered);
    }
  }

  [[nodiscard]] std::error_code state_error_code() const noexcept {
    return make_error_code(state_ == compensation_state::committed ? errc::already_committed
                                                                   : errc::already_rolled_back);
  }
  [[nodiscard]] result<void> state_error() const noexcept { return state_error_code(); }

  template <bool Report>
  void rollback_impl(compensation_report* report) noexcept {
    state_ = compensation_state::rolled_back;
    if constexpr (Report) {
      try {
        report->steps_.reserve(stack_.size());
      } catch (...) {
        report->truncated_ = true;
      }
    }
    void* const ctx = policy_.address();
    struct {
      std::size_t undone = 0, failed = 0, skipped = 0;
    } done;  // the event is built at the end, only for a listener that takes it
    bool stop = false;
    std::optional<time_point> now;
    failure_info failure;
    while (!stack_.empty()) {
      detail::undo_entry& e = stack_.top();
      step_status status = step_status::undone;
      if (STURDY_UNLIKELY(stop)) {
        status = step_status::skipped;
      } else if (STURDY_UNLIKELY(!e.vt->invoke(e.buf, ctx, failure))) {
        status = step_status::failed;
        stop = options_.stop_at_first_failure;
      }
      bool lettered = false;
      if (STURDY_UNLIKELY(status != step_status::undone)) {
        lettered = dead_letter(e.name, e.context, status, failure, now);
        announce_failed_step(e.name, status, failure, lettered);
      }
      switch (status) {
        case step_status::undone:
          ++done.undone;
          break;
        case step_status::failed:
          ++done.failed;
          break;
        case step_status::skipped:
          ++done.skipped;
          break;
      }
      if constexpr (Report) {
        if (STURDY_LIKELY(report->steps_.size() < report->steps_.capacity())) {
          // `failure` is empty unless this step failed (it is reset below).
          report->steps_.emplace_back(step_record{std::move(e.name), std::move(e.context), status, failure, lettered});
        }
      }
      if (STURDY_UNLIKELY(status == step_status::failed)) {
        failure.code.clear();
        failure.exception = nullptr;
      }
      stack_.pop();
    }
    if constexpr (Report) {
      report->undone_ = done.undone;
      report->failed_ = done.failed;
      report->skipped_ = done.skipped;
      if (done.failed + done.skipped > 0) report->error_ = make_error_code(errc::compensation_failed);
    }
    if constexpr (listener_for<Listener, compensation_rolled_back> &&
                  !std::is_same_v<std::remove_cv_t<Listener>, null_listener>) {
      compensation_rolled_back event{{}, done.undone, done.failed, done.skipped, !Report};
      try {
        event.saga = options_.name;
      } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory: announce it unnamed
      }
      emit(listener_, event);
    }
  }

  // Tells the listener (if it takes the event) that a step stays undone.
  void announce_failed_step([[maybe_unused]] std::string_view step, [[maybe_unused]] step_status status,
                            [[maybe_unused]] const failure_info& failure,
                            [[maybe_unused]] bool lettered) noexcept {
    if constexpr (listener_for<Listener, compensation_step_failed> &&
                  !std::is_same_v<std::remove_cv_t<Listener>, null_listener>) {
      try {
        emit(listener_, compensation_step_failed{options_.name, std::string(step), status, failure, lettered});
      } catch (...) {  // NOLINT(bugprone-empty-catch): out of memory building the event: not announced
      }
    }
  }

  // Hands a step that stays undone to the sink; true when the sink kept it.
  bool dead_letter([[maybe_unused]] std::string_view name, [[maybe_unused]] std::string_view context,
                   [[maybe_unused]] step_status status,
                   [[maybe_unused]] const failure_info& failure,
                   [[maybe_unused]] std::optional<time_point>& now) noexcept {
    if constexpr (sink_discards_entries_v<Sink>) {
      return false;
    } else {
      try {
        if (!now) now = clock_.now();
        dead_letter_entry d;
        d.saga = options_.name;
        d.step = name;
        d.context = context;
        d.at = *now;
        if (status == step_status::failed) {
          d.reason = dead_letter_reason::undo_failed;
          d.code = failure.code;
          d.exception = failure.exception;
          d.exception_text = exception_text_of(failure.exception);
        } else {
          d.reason = dead_letter_reason::undo_skipped;
          d.code = make_error_code(errc::compensation_failed);
        }
        result<void> kept = sink_.get().push(std::move(d));
        return kept.has_value();
      } catch (...) {
        return false;
      }
    }
  }

  detail::undo_stack stack_;
  STURDY_NO_UNIQUE_ADDRESS sink_ref sink_;
  STURDY_NO_UNIQUE_ADDRESS policy_ref policy_;
  STURDY_NO_UNIQUE_ADDRESS Clock clock_;
  STURDY_NO_UNIQUE_ADDRESS Listener listener_;
  compensation_options options_;
  compensation_state state_ = compensation_state::active;
};

// Deduction: a sink (and a policy, and a clock) passed to the constructor
// fix the template arguments; `compensation_scope scope;` uses the defaults.
template <class S>
  requires dead_letter_sink<std::remove_cvref_t<S>>
compensation_scope(S&&) -> compensation_scope<std::remove_cvref_t<S>>;
template <class S>
  requires dead_letter_sink<std::remove_cvref_t<S>>
compensation_scope(S&&, compensation_options) -> compensation_scope<std::remove_cvref_t<S>>;
template <class S, class P>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>>
compensation_scope(S&&, P&&) -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>>;
template <class S, class P>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>>
compensation_scope(S&&, P&&, compensation_options)
    -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>>;
template <class S, class P, class C>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>> &&
           clock_source<std::remove_cvref_t<C>>
compensation_scope(S&&, P&&, C&&) -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>,
                                                         std::remove_cvref_t<C>>;
template <class S, class P, class C>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>> &&
           clock_source<std::remove_cvref_t<C>>
compensation_scope(S&&, P&&, C&&, compensation_options)
    -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>, std::remove_cvref_t<C>>;

template <class S, class P, class C, class L>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>> &&
           clock_source<std::remove_cvref_t<C>> && (!std::is_same_v<std::remove_cvref_t<L>, compensation_options>)
compensation_scope(S&&, P&&, C&&, L&&) -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>,
                                                              std::remove_cvref_t<C>, std::remove_cvref_t<L>>;
template <class S, class P, class C, class L>
  requires dead_letter_sink<std::remove_cvref_t<S>> && undo_policy<std::remove_cvref_t<P>> &&
           clock_source<std::remove_cvref_t<C>>
compensation_scope(S&&, P&&, C&&, L&&, compensation_options)
    -> compensation_scope<std::remove_cvref_t<S>, std::remove_cvref_t<P>, std::remove_cvref_t<C>,
                          std::remove_cvref_t<L>>;

}  // namespace sturdy

#endif  // STURDY_COMPENSATION_HPP_
