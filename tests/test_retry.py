"""The claude_robust retry policy: exact delays, categories, budget, fallback model."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sluiceway.engine._retry import NO_RETRY, RETRY_CATEGORIES, RetryPolicy
from sluiceway.specs import RetryConfig

from sluiceway._errors import (
    AuthenticationError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StepError,
    StreamInterruptedError,
)

ERRORS: dict[str, type[ProviderError]] = {
    "overloaded": OverloadedError,
    "rate_limit": RateLimitedError,
    "connection": StreamInterruptedError,
    "timeout": ProviderTimeoutError,
    "server_error": ProviderError,
    "auth": AuthenticationError,
}


def test_categories_match_the_error_tree() -> None:
    assert {cls.category for name, cls in ERRORS.items() if name != "auth"} == RETRY_CATEGORIES
    assert set(RetryConfig().retry_on) == RETRY_CATEGORIES


def test_from_config_matches_spec_field_names() -> None:
    cfg = RetryConfig(
        max_retries=2, backoff="linear", base_delay_ms=250, max_delay_ms=600,
        retry_on=("overloaded",), fallback_model="claude-haiku",
    )
    policy = RetryPolicy.from_config(**attrs.asdict(cfg))
    assert policy == RetryPolicy(
        max_retries=2, backoff="linear", base_delay=0.25, max_delay=0.6,
        retry_on=frozenset({"overloaded"}), fallback_model="claude-haiku",
    )
    assert RetryPolicy.from_config() == RetryPolicy()


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("exponential", [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]),
        ("linear", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]),
        ("fixed", [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
    ],
)
def test_exact_delays(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(max_retries=6, backoff=backoff, base_delay=0.5, max_delay=5.0)  # type: ignore[arg-type]
    err = OverloadedError("busy")
    assert [policy.decide(err, a) for a in range(1, 7)] == expected
    assert policy.decide(err, 7) is None  # budget spent: 7 attempts = max_retries + 1


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(max_retries=10**6, base_delay=1.0, max_delay=60.0)
    assert policy.decide(OverloadedError("x"), 5000) == 60.0
    assert policy.backoff_delay(1025) == 60.0
    assert RetryPolicy(base_delay=0.0).backoff_delay(5000) == 0.0
    with pytest.raises(ValueError, match="1-based"):
        policy.backoff_delay(0)


def test_retry_after_wins_when_larger_even_above_max_delay() -> None:
    policy = RetryPolicy(max_retries=3, backoff="fixed", base_delay=1.0, max_delay=2.0)
    assert policy.decide(RateLimitedError("slow down", retry_after=0.2), 1) == 1.0
    assert policy.decide(RateLimitedError("slow down", retry_after=1.5), 1) == 1.5
    assert policy.decide(RateLimitedError("slow down", retry_after=90.0), 1) == 90.0
    assert policy.decide(OverloadedError("busy", retry_after=3.0), 2) == 3.0
    # but not when the budget is spent or the category is not retried
    assert policy.decide(RateLimitedError("slow down", retry_after=1.5), 4) is None
    only = RetryPolicy(retry_on={"overloaded"})
    assert only.decide(RateLimitedError("slow down", retry_after=1.5), 1) is None


def test_categories_and_non_provider_errors() -> None:
    policy = RetryPolicy(retry_on={"overloaded", "timeout"}, base_delay=1.0)
    assert policy.decide(OverloadedError("x"), 1) == 1.0
    assert policy.decide(ProviderTimeoutError("x"), 1) == 1.0
    assert policy.decide(RateLimitedError("x"), 1) is None
    assert policy.decide(StreamInterruptedError("x"), 1) is None
    assert policy.decide(ProviderError("x"), 1) is None
    everything = RetryPolicy()
    assert everything.decide(ProviderError("500"), 1) == 1.0
    # never: auth, non-provider errors
    assert everything.decide(AuthenticationError("bad key"), 1) is None
    assert everything.decide(ValueError("x"), 1) is None
    assert everything.decide(StepError("x", step="s"), 1) is None
    assert everything.decide(KeyboardInterrupt(), 1) is None
    assert NO_RETRY.decide(OverloadedError("x"), 1) is None


def test_validation() -> None:
    with pytest.raises(ValueError, match="backoff must be one of"):
        RetryPolicy(backoff="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown category \['auth'\]"):
        RetryPolicy(retry_on={"auth"})
    with pytest.raises(ValueError, match="max_retries must be >= 0"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="base_delay must be >= 0"):
        RetryPolicy.from_config(base_delay_ms=-5)
    with pytest.raises(ValueError, match="max_delay must be >= 0"):
        RetryPolicy(max_delay=float("nan"))


def test_model_for() -> None:
    policy = RetryPolicy(fallback_model="claude-haiku")
    assert policy.model_for(1, None, "claude-opus") == "claude-opus"
    assert policy.model_for(2, OverloadedError("x"), "claude-opus") == "claude-haiku"
    assert policy.model_for(2, RateLimitedError("x"), "claude-opus") == "claude-opus"
    # sticky: the caller passes the model of the failed attempt
    assert policy.model_for(3, RateLimitedError("x"), "claude-haiku") == "claude-haiku"
    assert RetryPolicy().model_for(2, OverloadedError("x"), "claude-opus") == "claude-opus"



def test_unknown_categories_are_named_in_the_message() -> None:
    expected = sorted(RETRY_CATEGORIES)
    with pytest.raises(ValueError) as one:
        RetryPolicy(retry_on={"auth"})
    assert str(one.value) == f"retry_on: unknown category ['auth']; expected some of {expected}"
    with pytest.raises(ValueError) as two:
        RetryPolicy(retry_on={"auth", "weather", "overloaded"})
    assert str(two.value) == f"retry_on: unknown categories ['auth', 'weather']; expected some of {expected}"


def test_exponential_delays_near_the_float_limit_without_a_cap() -> None:
    """Up to attempt 1024 the delay is computed (2.0 ** 1023 is still a float); from 1025 on, the cap."""
    policy = RetryPolicy(base_delay=1e-300, max_delay=float("inf"))
    assert policy.backoff_delay(1023) == 1e-300 * 2.0**1022
    assert policy.backoff_delay(1024) == 1e-300 * 2.0**1023
    assert policy.backoff_delay(1025) == float("inf")


def test_the_first_attempt_always_uses_the_model_asked_for() -> None:
    policy = RetryPolicy(fallback_model="claude-haiku")
    assert policy.model_for(1, OverloadedError("x"), "claude-opus") == "claude-opus"


# ---------------------------------------------------------------- stateful


class RetryMachine(RuleBasedStateMachine):
    """Drive calls through decide(): each call fails some times, then succeeds or gives up."""

    @initialize(
        max_retries=st.integers(0, 6),
        backoff=st.sampled_from(["exponential", "linear", "fixed"]),
        base_delay=st.sampled_from([0.0, 0.001, 0.1, 0.5, 1.0, 3.0]),
        max_delay=st.sampled_from([0.0, 0.05, 1.0, 2.5, 30.0]),
        retry_on=st.frozensets(st.sampled_from(sorted(RETRY_CATEGORIES))),
    )
    def setup(
        self, max_retries: int, backoff: str, base_delay: float, max_delay: float,
        retry_on: frozenset[str],
    ) -> None:
        self.policy = RetryPolicy(
            max_retries=max_retries, backoff=backoff, base_delay=base_delay,  # type: ignore[arg-type]
            max_delay=max_delay, retry_on=retry_on, fallback_model="fallback",
        )
        self.attempt = 1  # the attempt running now
        self.delays: list[float] = []  # backoff delays of this call (no retry_after)
        self.model = "primary"
        self.calls = 0

    def _end_call(self) -> None:
        assert self.attempt <= self.policy.max_retries + 1
        self.calls += 1
        self.attempt = 1
        self.delays = []
        self.model = "primary"

    @rule()
    def succeed(self) -> None:
        self._end_call()

    @rule(
        kind=st.sampled_from(sorted(ERRORS) + ["other"]),
        retry_after=st.none() | st.sampled_from([0.0, 0.2, 4.0, 100.0]),
    )
    def fail(self, kind: str, retry_after: float | None) -> None:
        error: BaseException = (
            RuntimeError("boom") if kind == "other" else ERRORS[kind]("x", retry_after=retry_after)
        )
        delay = self.policy.decide(error, self.attempt)
        retryable = kind in self.policy.retry_on  # "auth" and "other" never are
        if not retryable or self.attempt > self.policy.max_retries:
            assert delay is None  # non-retryable stops at once; the budget is a hard limit
            self._end_call()
            return
        assert delay is not None
        computed = self.policy.backoff_delay(self.attempt)
        assert 0 <= computed <= self.policy.max_delay
        if retry_after is not None and retry_after > computed:
            assert delay == retry_after
        else:
            assert delay == computed
            if self.delays:
                previous = self.delays[-1]
                if self.policy.backoff == "fixed":
                    assert delay == previous
                else:
                    assert delay >= previous  # monotone non-decreasing
            self.delays.append(delay)
        self.attempt += 1
        self.model = self.policy.model_for(self.attempt, error, self.model)
        if kind == "overloaded":
            assert self.model == "fallback"

    @precondition(lambda self: self.attempt > 1)
    @rule()
    def computed_delays_are_the_formula(self) -> None:
        p = self.policy
        for a in range(1, self.attempt):
            expected = {"exponential": p.base_delay * 2 ** (a - 1), "linear": p.base_delay * a,
                        "fixed": p.base_delay}[p.backoff]
            assert p.backoff_delay(a) == min(expected, p.max_delay)

    @invariant()
    def attempts_within_budget(self) -> None:
        if hasattr(self, "policy"):
            assert 1 <= self.attempt <= self.policy.max_retries + 1


RetryMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestRetryMachine = RetryMachine.TestCase
