// Randomized operation sequences (fixed seeds) on compensation_scope, checked
// step by step against a simple reference model: a vector of pending undos
// and a state.

#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "sturdy/compensation.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"
#include "sturdy/testing/manual_clock.hpp"

namespace {

using sturdy::errc;
using sturdy::result;
using sturdy::step_status;

enum class kind { ok, error, throws };

struct model_undo {
  int id;
  kind k;
};

struct model {
  sturdy::compensation_state state = sturdy::compensation_state::active;
  std::vector<model_undo> pending;
  bool stop_at_first_failure = false;

  [[nodiscard]] std::error_code misuse() const {
    if (state == sturdy::compensation_state::committed) return errc::already_committed;
    return errc::already_rolled_back;
  }

  // What a rollback must do: run (or skip) each pending undo in reverse.
  struct expected_step {
    int id;
    step_status status;
  };
  std::vector<expected_step> roll_back() {
    std::vector<expected_step> out;
    bool stop = false;
    for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
      step_status s = step_status::undone;
      if (stop) {
        s = step_status::skipped;
      } else if (it->k != kind::ok) {
        s = step_status::failed;
        stop = stop_at_first_failure;
      }
      out.push_back({it->id, s});
    }
    pending.clear();
    state = sturdy::compensation_state::rolled_back;
    return out;
  }
};

class harness {
 public:
  explicit harness(std::uint64_t seed) : gen_(seed) {}

  void run(int operations) {
    new_scope();
    for (int op = 0; op < operations; ++op) {
      step_once();
      if (HasFatalFailure() || HasNonfatalFailure()) return;
    }
    end_scope();
  }

 private:
  using scope_t = sturdy::compensation_scope<sturdy::dead_letter_queue, sturdy::run_once, sturdy::testing::manual_clock>;

  static bool HasFatalFailure() { return ::testing::Test::HasFatalFailure(); }
  static bool HasNonfatalFailure() { return ::testing::Test::HasNonfatalFailure(); }

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen_); }

  const std::string& name_of(int id) {
    while (names_.size() <= static_cast<std::size_t>(id)) names_.push_back("u" + std::to_string(names_.size()));
    return names_[static_cast<std::size_t>(id)];
  }

  auto make_undo(int id, kind k) {
    return [this, id, k]() -> result<void> {
      calls_.push_back(id);
      if (k == kind::error) return errc::store_unavailable;
      if (k == kind::throws) throw std::runtime_error("undo " + std::to_string(id));
      return sturdy::success();
    };
  }

  kind random_kind() {
    const int r = pick(10);
    return r < 7 ? kind::ok : (r < 9 ? kind::error : kind::throws);
  }

  void new_scope() {
    m_ = model{};
    m_.stop_at_first_failure = pick(4) == 0;
    scope_.emplace(dlq_, sturdy::run_once{}, clock_,
                   sturdy::compensation_options{.name = "model", .stop_at_first_failure = m_.stop_at_first_failure});
  }

  // Destroying the scope rolls back if still active.
  void end_scope() {
    calls_.clear();
    const bool active = m_.state == sturdy::compensation_state::active;
    std::vector<model::expected_step> want;
    if (active) want = m_.roll_back();
    const auto before = dlq_.drain();
    ASSERT_TRUE(before.empty());
    scope_.reset();
    check_calls_and_letters(want);
  }

  void check_calls_and_letters(const std::vector<model::expected_step>& want) {
    std::vector<int> want_calls;
    std::vector<std::string> want_letters;
    for (const auto& s : want) {
      if (s.status != step_status::skipped) want_calls.push_back(s.id);
      if (s.status != step_status::undone) want_letters.push_back(name_of(s.id));
    }
    EXPECT_EQ(calls_, want_calls);
    std::vector<std::string> letters;
    for (const auto& e : dlq_.drain()) letters.push_back(e.step);
    EXPECT_EQ(letters, want_letters);
  }

  void step_once() {
    const int op = pick(100);
    if (op < 40) {  // add
      const int id = next_id_++;
      const kind k = random_kind();
      const auto r = scope_->add(name_of(id), make_undo(id, k));
      if (m_.state == sturdy::compensation_state::active) {
        ASSERT_TRUE(r);
        m_.pending.push_back({id, k});
      } else {
        ASSERT_EQ(r.error(), m_.misuse());
      }
    } else if (op < 65) {  // step, action succeeds or fails
      const int id = next_id_++;
      const kind k = random_kind();
      const bool action_ok = pick(3) != 0;
      bool ran = false;
      auto r = scope_->step(
          name_of(id),
          [&]() -> result<int> {
            ran = true;
            if (!action_ok) return errc::not_found;
            return id;
          },
          make_undo(id, k));
      if (m_.state == sturdy::compensation_state::active) {
        ASSERT_TRUE(ran);
        if (action_ok) {
          ASSERT_EQ(r.value(), id);
          m_.pending.push_back({id, k});
        } else {
          ASSERT_EQ(r.error(), errc::not_found);
        }
      } else {
        ASSERT_FALSE(ran);
        ASSERT_EQ(r.error(), m_.misuse());
      }
    } else if (op < 72) {  // nested child committed into the scope
      scope_t child(dlq_, sturdy::run_once{}, clock_);
      std::vector<model_undo> added;
      const int n = 1 + pick(4);
      for (int i = 0; i < n; ++i) {
        const int id = next_id_++;
        const kind k = random_kind();
        ASSERT_TRUE(child.add(name_of(id), make_undo(id, k)));
        added.push_back({id, k});
      }
      const auto r = child.commit_into(*scope_);
      if (m_.state == sturdy::compensation_state::active) {
        ASSERT_TRUE(r);
        m_.pending.insert(m_.pending.end(), added.begin(), added.end());
      } else {
        ASSERT_EQ(r.error(), m_.misuse());
        ASSERT_TRUE(child.commit());  // drop them; not part of the model
      }
    } else if (op < 80) {  // commit
      const auto r = scope_->commit();
      calls_.clear();
      if (m_.state == sturdy::compensation_state::active) {
        ASSERT_TRUE(r);
        m_.pending.clear();
        m_.state = sturdy::compensation_state::committed;
      } else {
        ASSERT_EQ(r.error(), m_.misuse());
      }
      ASSERT_TRUE(calls_.empty());
    } else if (op < 90) {  // explicit rollback
      calls_.clear();
      const bool active = m_.state == sturdy::compensation_state::active;
      const std::error_code misuse = active ? std::error_code{} : m_.misuse();
      std::vector<model::expected_step> want;
      if (active) want = m_.roll_back();
      const auto report = scope_->rollback();
      if (!active) {
        ASSERT_EQ(report.error(), misuse);
        ASSERT_EQ(report.size(), 0u);
      } else {
        ASSERT_EQ(report.size(), want.size());
        std::size_t failed = 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          EXPECT_EQ(report[i].name, name_of(want[i].id));
          EXPECT_EQ(report[i].status, want[i].status);
          EXPECT_EQ(report[i].dead_lettered, want[i].status != step_status::undone);
          failed += want[i].status != step_status::undone ? 1 : 0;
        }
        EXPECT_EQ(report.failed() + report.skipped(), failed);
        EXPECT_EQ(report.ok(), failed == 0);
      }
      check_calls_and_letters(want);
    } else {  // end the scope, start a new one
      end_scope();
      new_scope();
    }
    ASSERT_EQ(scope_->pending(), m_.pending.size());
    ASSERT_EQ(scope_->state(), m_.state);
  }

  std::mt19937_64 gen_;
  sturdy::testing::manual_clock clock_;
  sturdy::dead_letter_queue dlq_{{.capacity = 1 << 16}};
  std::optional<scope_t> scope_;
  model m_;
  std::deque<std::string> names_;  // stable storage for step names
  std::vector<int> calls_;
  int next_id_ = 0;
};

TEST(CompensationModelTest, RandomOperationSequencesMatchTheModel) {
  for (std::uint64_t seed : {1ULL, 2ULL, 3ULL, 42ULL, 1234ULL, 987654321ULL}) {
    SCOPED_TRACE(seed);
    harness h(seed);
    h.run(3000);
    if (HasFailure()) return;
  }
}

}  // namespace
