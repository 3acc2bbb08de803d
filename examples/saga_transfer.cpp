// A money transfer as a saga: debit A, credit B, write the ledger, notify.
// The notification service is down, so the completed steps are undone in
// reverse order. One undo (the ledger reversal) hits a transient error and
// succeeds on retry; another (the credit reversal) fails for good and lands
// in the dead-letter queue, from where an operator replays it once the
// fault is fixed. Runs instantly; no arguments.

#include <cstdio>
#include <map>
#include <string>
#include <string_view>

#include "sturdy/compensation.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/error.hpp"

namespace {

// The world: balances, a ledger, and switches for faults.
struct bank {
  std::map<std::string, long, std::less<>> balance{{"alice", 100}, {"bob", 20}};
  int ledger_entries = 0;
  int ledger_faults = 1;         // the next N ledger reversals fail (transient)
  bool accounts_locked = false;  // "bob" is locked: reversing his credit fails
};

// An undo policy: retries right away up to 3 times (a real program would use
// sturdy::retry_policy with backoff and jitter).
struct retry_thrice {
  template <class F>
  sturdy::execute_result_t<F> execute(F&& fn) {
    for (int attempt = 1;; ++attempt) {
      auto r = sturdy::invoke_wrapped(fn);
      if (sturdy::succeeded(r) || attempt == 3) return r;
      std::printf("    retrying after attempt %d\n", attempt);
    }
  }
};

sturdy::result<void> adjust(bank& b, std::string_view who, long amount) {
  if (who == "bob" && b.accounts_locked) return sturdy::errc::store_unavailable;
  b.balance.find(who)->second += amount;
  return sturdy::success();
}

sturdy::result<void> transfer(bank& b, sturdy::dead_letter_queue& dlq, retry_thrice& policy, long amount) {
  sturdy::compensation_scope saga(dlq, policy, {.name = "transfer"});

  BOOST_OUTCOME_TRY(saga.step("debit alice", [&] { return adjust(b, "alice", -amount); },
                              [&] { return adjust(b, "alice", +amount); }));
  BOOST_OUTCOME_TRY(saga.step({.name = "credit bob", .context = "bob:" + std::to_string(amount)},
                              [&] { return adjust(b, "bob", +amount); },
                              [&] { return adjust(b, "bob", -amount); }));
  BOOST_OUTCOME_TRY(saga.step("write ledger", [&] { return ++b.ledger_entries; },
                              [&](const int& entry) -> sturdy::result<void> {
                                if (b.ledger_faults > 0) {
                                  --b.ledger_faults;
                                  return sturdy::errc::store_unavailable;
                                }
                                std::printf("    ledger entry %d reversed\n", entry);
                                --b.ledger_entries;
                                return sturdy::success();
                              }));
  b.accounts_locked = true;  // meanwhile, an operator locks bob's account

  // The last step fails: everything above is undone as `saga` goes out of
  // scope. Here we roll back explicitly to print the report.
  const sturdy::result<void> notified = sturdy::errc::circuit_open;
  if (!notified) {
    std::printf("notify failed (%s); compensating:\n", notified.error().message().c_str());
    const auto report = saga.rollback();
    for (const auto& s : report) {
      std::printf("  %-13s %-7s %s\n", std::string(s.name).c_str(), std::string(sturdy::to_string(s.status)).c_str(),
                  s.failure.code ? s.failure.code.message().c_str() : "");
    }
    return notified.error();
  }
  return saga.commit();
}

}  // namespace

int main() {
  bank b;
  sturdy::dead_letter_queue dlq;
  retry_thrice policy;
  const auto r = transfer(b, dlq, policy, 30);
  std::printf("transfer: %s\n", r ? "done" : r.error().message().c_str());
  std::printf("balances: alice=%ld bob=%ld, ledger entries=%d\n", b.balance["alice"], b.balance["bob"],
              b.ledger_entries);

  std::printf("dead letters:\n");
  for (const auto& e : dlq.list()) std::printf("  %s\n", e.describe().c_str());

  b.accounts_locked = false;  // the operator fixes the fault and replays
  const std::size_t replayed = dlq.replay_all([&](const sturdy::dead_letter_entry& e) -> sturdy::result<void> {
    if (e.step == "credit bob") return adjust(b, "bob", -std::stol(e.context.substr(e.context.find(':') + 1)));
    return sturdy::errc::not_found;
  });
  std::printf("replayed %zu; balances: alice=%ld bob=%ld; queue size %zu\n", replayed, b.balance["alice"],
              b.balance["bob"], dlq.size());
  const bool consistent = b.balance["alice"] == 100 && b.balance["bob"] == 20 && b.ledger_entries == 0 && dlq.empty();
  return consistent ? 0 : 1;
}
