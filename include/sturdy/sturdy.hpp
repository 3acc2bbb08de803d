// Copyright The sturdy Authors. SPDX-License-Identifier: BSL-1.0
// -----------------------------------------------------------------------------
// File: sturdy/sturdy.hpp
// -----------------------------------------------------------------------------
//
// The umbrella header: includes every public sturdy header except the
// opt-in adapters (`sturdy/adapters/...`), the optional Redis store and the
// test doubles (`sturdy/testing/...`).

#ifndef STURDY_STURDY_HPP_
#define STURDY_STURDY_HPP_

#include "sturdy/backoff.hpp"
#include "sturdy/callback.hpp"
#include "sturdy/chaos.hpp"
#include "sturdy/circuit_breaker.hpp"
#include "sturdy/clock.hpp"
#include "sturdy/compensation.hpp"
#include "sturdy/concurrency_limiter.hpp"
#include "sturdy/config.hpp"
#include "sturdy/context.hpp"
#include "sturdy/dead_letter.hpp"
#include "sturdy/deadline_propagation.hpp"
#include "sturdy/error.hpp"
#include "sturdy/fallback.hpp"
#include "sturdy/idempotency.hpp"
#include "sturdy/limit_algorithms.hpp"
#include "sturdy/listener.hpp"
#include "sturdy/outcome.hpp"
#include "sturdy/ownership.hpp"
#include "sturdy/pipeline.hpp"
#include "sturdy/rate_limiter.hpp"
#include "sturdy/registry.hpp"
#include "sturdy/retry.hpp"
#include "sturdy/retry_budget.hpp"
#include "sturdy/timeout.hpp"
#include "sturdy/timer.hpp"

#endif  // STURDY_STURDY_HPP_
