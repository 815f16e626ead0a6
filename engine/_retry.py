"""The retry policy of ``claude_robust``: sans-IO, deterministic.

``RetryPolicy.decide(error, attempt)`` says whether a failed attempt is retried
and after how long; the step actor does the waiting (on the trio clock, so
tests use virtual time) and emits ``Retrying`` before the next attempt. One
budget governs: the SDK's own retries are off.

Delays (``attempt`` is the 1-based number of the attempt that just failed)::

    exponential   base_delay * 2 ** (attempt - 1)
    linear        base_delay * attempt
    fixed         base_delay

each capped at ``max_delay``. When the error carries ``retry_after`` (HTTP
``retry-after``, or the mock's injected value) and it is larger, it wins, even
above ``max_delay``: the server knows better than our cap, and retrying sooner
would only fail again. There is no jitter: delays are exact, so tests can assert
them and a run replays the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal

import attrs

from sluiceway._errors import AuthenticationError, ProviderError

__all__ = ("BACKOFFS", "NO_RETRY", "RETRY_CATEGORIES", "Backoff", "RetryPolicy")

Backoff = Literal["exponential", "linear", "fixed"]

#: The backoff shapes.
BACKOFFS: Final = frozenset({"exponential", "linear", "fixed"})

#: The ``retry_on`` categories: the ``category`` of ``ProviderError`` subclasses.
RETRY_CATEGORIES: Final = frozenset({"overloaded", "rate_limit", "connection", "timeout", "server_error"})


def _check_backoff(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    if value not in BACKOFFS:
        raise ValueError(f"backoff must be one of {sorted(BACKOFFS)}, got {value!r}")


def _check_retry_on(_inst: object, _attr: attrs.Attribute[frozenset[str]], value: frozenset[str]) -> None:
    unknown = sorted(value - RETRY_CATEGORIES)
    if unknown:
        raise ValueError(
            f"retry_on: unknown categor{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
            f"expected some of {sorted(RETRY_CATEGORIES)}"
        )


def _check_non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


def _string_set(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When to retry a failed model call, after how long, and on which model."""

    max_retries: int = attrs.field(default=3, validator=_check_non_negative)
    """Retries after the first attempt: at most ``max_retries + 1`` attempts."""
    backoff: Backoff = attrs.field(default="exponential", validator=_check_backoff)
    """How the delay grows: ``exponential``, ``linear`` or ``fixed``."""
    base_delay: float = attrs.field(default=1.0, validator=_check_non_negative)
    """Seconds: the first delay, and the unit of the others."""
    max_delay: float = attrs.field(default=30.0, validator=_check_non_negative)
    """Seconds: the cap of a computed delay (a larger ``retry_after`` still wins)."""
    retry_on: frozenset[str] = attrs.field(
        default=RETRY_CATEGORIES, converter=_string_set, validator=_check_retry_on
    )
    """Error categories that are retried (see ``RETRY_CATEGORIES``)."""
    fallback_model: str | None = None
    """The model to use after an overloaded failure, when set."""

    @classmethod
    def from_config(
        cls,
        max_retries: int = 3,
        backoff: Backoff = "exponential",
        base_delay_ms: float = 1000,
        max_delay_ms: float = 30000,
        retry_on: Iterable[str] = RETRY_CATEGORIES,
        fallback_model: str | None = None,
    ) -> RetryPolicy:
        """Build a policy from ``retry_config`` values (delays in milliseconds).

        The parameters are named like the fields of ``specs.RetryConfig``, so
        ``RetryPolicy.from_config(**attrs.asdict(step.retry_config))`` works.

        Raises:
            ValueError: an unknown backoff or category, or a negative number.
        """
        return cls(
            max_retries=max_retries,
            backoff=backoff,
            base_delay=base_delay_ms / 1000,
            max_delay=max_delay_ms / 1000,
            retry_on=frozenset(retry_on),
            fallback_model=fallback_model,
        )

    def retryable(self, error: BaseException) -> bool:
        """Return whether *error*'s kind is retried at all (regardless of the budget)."""
        if not isinstance(error, ProviderError) or isinstance(error, AuthenticationError):
            return False
        return error.category in self.retry_on

    def backoff_delay(self, attempt: int) -> float:
        """Return the computed delay after failed attempt *attempt* (1-based), capped."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if self.backoff == "exponential":
            # compare exponents first: 2 ** 10_000 as a float would overflow
            if attempt - 1 >= 1024:
                return self.max_delay if self.base_delay > 0 else 0.0
            delay = self.base_delay * 2.0 ** (attempt - 1)
        elif self.backoff == "linear":
            delay = self.base_delay * attempt
        else:
            delay = self.base_delay
        return min(delay, self.max_delay)

    def decide(self, error: BaseException, attempt: int) -> float | None:
        """Return the seconds to wait before the next attempt, or ``None`` to give up.

        Args:
            error: Why attempt *attempt* failed.
            attempt: The 1-based number of the attempt that failed.

        ``None`` when *error* is not a retryable ``ProviderError`` (other
        exceptions and ``AuthenticationError`` never retry) or the budget is
        spent (``attempt > max_retries``). Otherwise the backoff delay, or the
        error's ``retry_after`` when that is larger.
        """
        if not self.retryable(error) or attempt > self.max_retries:
            return None
        delay = self.backoff_delay(attempt)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > delay:
            return float(retry_after)
        return delay

    def model_for(self, attempt: int, error: BaseException | None, model: str) -> str:
        """Return the model for attempt *attempt*, after *error* failed one on *model*.

        Switches to ``fallback_model`` after an overloaded failure, when set.
        Pass the model of the failed attempt as *model*: once switched, later
        attempts stay on the fallback. The first attempt (``error`` ``None``)
        always uses *model*.
        """
        if (
            attempt > 1
            and self.fallback_model is not None
            and isinstance(error, ProviderError)
            and error.category == "overloaded"
        ):
            return self.fallback_model
        return model


#: A policy that never retries (every step type except ``claude_robust``).
NO_RETRY: Final = RetryPolicy(max_retries=0)
