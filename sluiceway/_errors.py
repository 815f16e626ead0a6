"""The sluiceway exception tree.

This module is a leaf: it imports nothing of ours, so every layer (``specs``,
``engine``, ``providers``, ``handlers``) may import it without breaking the
one-way arrows of DESIGN.md.

::

    SluicewayError(Exception)
    ├─ SpecError(SluicewayError, ValueError)     bad YAML or spec; carries file, line, path
    ├─ ProviderError(SluicewayError)             __cause__ = the SDK or transport error
    │  ├─ AuthenticationError                    the API key was missing or rejected
    │  ├─ ProviderTimeoutError                   first-token / idle deadline, read timeout
    │  ├─ RateLimitedError                       .retry_after
    │  ├─ OverloadedError                        .retry_after
    │  └─ StreamInterruptedError                 connection lost or error event mid-stream
    ├─ HandlerError(SluicewayError)              .handler
    ├─ StepError(SluicewayError)                 .step
    └─ PipelineError(ExceptionGroup, SluicewayError)   one leaf per failed step
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = (
    "AuthenticationError",
    "HandlerError",
    "OverloadedError",
    "PipelineError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitedError",
    "SluicewayError",
    "SpecError",
    "SpecIssue",
    "StepError",
    "StreamInterruptedError",
)


class SluicewayError(Exception):
    """Base of every error sluiceway raises on purpose."""


class SpecIssue:
    """One problem found in a spec: where it is and what is wrong.

    Attributes:
        file: The file the spec came from, or ``"<string>"``.
        line: 1-based line, or ``None`` when the position is unknown.
        column: 1-based column, or ``None``.
        path: The field path, e.g. ``steps[2].stream_handler_opts.max_size``.
        message: What was expected and what was found.
    """

    __slots__ = ("column", "file", "line", "message", "path")

    def __init__(
        self,
        file: str,
        line: int | None,
        column: int | None,
        path: str,
        message: str,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"

    def __repr__(self) -> str:
        return f"SpecIssue({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpecIssue):
            return NotImplemented
        return (self.file, self.line, self.column, self.path, self.message) == (
            other.file,
            other.line,
            other.column,
            other.path,
            other.message,
        )

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a value with __eq__ should be


class SpecError(SluicewayError, ValueError):
    """A pipeline spec is invalid. Carries every issue found, not just the first.

    Attributes:
        issues: Each problem, with file, line, column and field path.
    """

    def __init__(self, issues: Sequence[SpecIssue] | str) -> None:
        if isinstance(issues, str):
            issues = [SpecIssue("<spec>", None, None, "", issues)]
        self.issues: tuple[SpecIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    @property
    def file(self) -> str | None:
        return self.issues[0].file if self.issues else None

    @property
    def line(self) -> int | None:
        return self.issues[0].line if self.issues else None

    @property
    def path(self) -> str | None:
        return self.issues[0].path if self.issues else None


class ProviderError(SluicewayError):
    """A model provider failed. ``__cause__`` is the SDK or transport error.

    Attributes:
        step: The step path the call belonged to, when known.
        retry_after: Seconds the server asked us to wait, when it said.
    """

    #: The ``retry_on`` category of claude_robust that this error belongs to.
    category: str = "server_error"

    def __init__(
        self, message: str, *, step: str | None = None, retry_after: float | None = None
    ) -> None:
        self.message = message
        self.step = step
        self.retry_after = retry_after
        super().__init__(f"step {step!r}: {message}" if step else message)

    def with_step(self, step: str) -> ProviderError:
        """Return a copy of this error that names *step* (keeps the cause)."""
        if self.step == step:
            return self
        new = type(self)(self.message, step=step, retry_after=self.retry_after)
        new.__cause__ = self.__cause__
        return new


class AuthenticationError(ProviderError):
    """The API key was missing, or the server rejected it (HTTP 401/403)."""

    category = "auth"


class ProviderTimeoutError(ProviderError):
    """No first token, or no progress, before the deadline; or a read timeout."""

    category = "timeout"


class RateLimitedError(ProviderError):
    """HTTP 429 or a ``rate_limit_error`` event. See ``retry_after``."""

    category = "rate_limit"


class OverloadedError(ProviderError):
    """HTTP 529 or an ``overloaded_error`` event."""

    category = "overloaded"


class StreamInterruptedError(ProviderError):
    """The connection dropped, or the server sent an error event mid-stream."""

    category = "connection"


class HandlerError(SluicewayError):
    """A stream handler raised. ``__cause__`` is its exception.

    Attributes:
        handler: The handler's name as configured (``simple``, a dotted path, ...).
    """

    def __init__(self, message: str, *, handler: str) -> None:
        self.handler = handler
        super().__init__(f"handler {handler!r}: {message}")


class StepError(SluicewayError):
    """A step failed for a reason that is not the provider's or a handler's.

    Attributes:
        step: The step path.
    """

    def __init__(self, message: str, *, step: str) -> None:
        self.step = step
        self.message = message
        super().__init__(f"step {step!r}: {message}")


class PipelineError(ExceptionGroup, SluicewayError):
    """One or more steps failed. Each leaf names its step."""

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> PipelineError:
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> PipelineError:  # type: ignore[override]  # typeshed types derive generically
        return PipelineError(self.message, excs)
