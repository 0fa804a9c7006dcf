// Tests of core/log_budget: at most N lines per window, the rest counted and
// reported by the first line of a later window.
#include "unit_test.hpp"

#include "core/log_budget.hpp"

using namespace maestra::core;
using namespace maestra::core::unit;

TEST_SUITE("log_budget") {

TEST_CASE("a storm writes the budget, then one report of what was held back") {
  LogBudget budget(3, 1000ms);
  int written = 0;
  for (int i = 0; i < 10000; ++i) written += budget.take(t0 + Millis{i / 100}).write ? 1 : 0;
  CHECK(written == 3);
  CHECK(budget.held_back() == 9997);
  const auto next = budget.take(t0 + 1000ms);
  CHECK(next.write);
  CHECK(next.held_back == 9997);
  CHECK(budget.held_back() == 0);
}

TEST_CASE("the window boundary is exact") {
  LogBudget budget(1, 1000ms);
  CHECK(budget.take(t0).write);
  CHECK_FALSE(budget.take(t0 + 999ms).write);
  const auto at_boundary = budget.take(t0 + 1000ms);
  CHECK(at_boundary.write);
  CHECK(at_boundary.held_back == 1);
}

TEST_CASE("a quiet log writes every line and reports nothing") {
  LogBudget budget(2, 1000ms);
  for (int i = 0; i < 5; ++i) {
    const auto d = budget.take(t0 + Millis{i * 1000});
    CHECK(d.write);
    CHECK(d.held_back == 0);
  }
}

TEST_CASE("a timer reports what a window held back once it has ended, and only once") {
  LogBudget budget(1, 1000ms);
  budget.take(t0);
  budget.take(t0 + 10ms);
  budget.take(t0 + 20ms);
  CHECK(budget.close_window(t0 + 999ms) == 0);  // still open
  CHECK(budget.close_window(t0 + 1000ms) == 2);
  CHECK(budget.close_window(t0 + 5000ms) == 0);
  CHECK(budget.take(t0 + 5001ms).held_back == 0);
}

}  // TEST_SUITE
