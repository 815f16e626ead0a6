"""One place maps the anthropic SDK's and the HTTP stack's errors to ``ProviderError``s.

``map_error`` chooses the most specific error of the tree in ``sluiceway._errors``
for an SDK exception (by HTTP status, or by the type of an error event sent
mid-stream), a transport exception (httpx2, httpcore2, anyio, trio) or anything
else; the caller raises it ``from`` the original, which stays its ``__cause__``.
"""

from __future__ import annotations

from typing import Any, Final

import anthropic
import anyio
import httpcore2
import httpx2
import trio

from sluiceway._errors import (
    AuthenticationError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StreamInterruptedError,
)

__all__ = ("map_error",)


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for key, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is not None:
            try:
                return max(float(value) / scale, 0.0)
            except ValueError:
                continue  # an HTTP date: not worth guessing the clock skew
    return None


# mid-stream error event type -> our error class
_EVENT_ERRORS: Final[dict[str, type[ProviderError]]] = {
    "overloaded_error": OverloadedError,
    "rate_limit_error": RateLimitedError,
    "api_error": StreamInterruptedError,
    "timeout_error": StreamInterruptedError,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
}


def map_error(exc: BaseException, step: str | None) -> ProviderError:
    """Return the ``ProviderError`` for an SDK or transport error; raise it ``from exc``.

    - error event mid-stream (``APIStatusError`` with status 200): by its type,
      ``overloaded_error`` -> ``OverloadedError``, ``rate_limit_error`` ->
      ``RateLimitedError``, ``api_error``/``timeout_error`` ->
      ``StreamInterruptedError``, others -> ``ProviderError``;
    - HTTP 401/403 -> ``AuthenticationError`` (the key was rejected); 429 ->
      ``RateLimitedError``, 529 -> ``OverloadedError``, both with ``retry_after``
      from the ``retry-after`` header; other statuses -> ``ProviderError``;
    - timeouts -> ``ProviderTimeoutError``; dropped or refused connections ->
      ``StreamInterruptedError``; anything else -> ``ProviderError``.
    """
    if isinstance(exc, ProviderError):
        return exc.with_step(step) if step else exc
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        kind = getattr(exc, "type", None)
        detail = getattr(exc, "api_message", None) or exc.message
        retry_after = _retry_after(exc.response.headers) if status != 200 else None
        if status == 200:
            cls = _EVENT_ERRORS.get(kind or "", ProviderError)
            return cls(f"the API sent an error event mid-stream: {kind}: {detail}", step=step)
        if status in (401, 403):
            return AuthenticationError(
                f"the API key was rejected (HTTP {status}: {detail})", step=step
            )
        if status == 429:
            return RateLimitedError(
                f"rate limited (HTTP 429: {detail})", step=step, retry_after=retry_after
            )
        if status == 529 or kind == "overloaded_error":
            return OverloadedError(
                f"the API is overloaded (HTTP {status}: {detail})",
                step=step,
                retry_after=retry_after,
            )
        if status >= 500:
            return ProviderError(
                f"server error (HTTP {status}: {detail})", step=step, retry_after=retry_after
            )
        return ProviderError(f"the API refused the request (HTTP {status}: {detail})", step=step)
    if isinstance(
        exc,
        (
            anthropic.APITimeoutError,
            httpx2.TimeoutException,
            httpcore2.TimeoutException,
            TimeoutError,
        ),
    ):
        return ProviderTimeoutError(f"the API timed out: {exc}", step=step)
    if isinstance(exc, anthropic.APIConnectionError):
        return StreamInterruptedError(f"could not reach the API: {exc}", step=step)
    if isinstance(
        exc,
        (
            httpx2.RemoteProtocolError,
            httpx2.NetworkError,
            httpx2.StreamError,
            httpcore2.NetworkError,
            httpcore2.ProtocolError,
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            trio.BrokenResourceError,
            ConnectionError,
        ),
    ):
        return StreamInterruptedError(f"the connection to the API was lost: {exc}", step=step)
    return ProviderError(f"unexpected error from the API client: {exc!r}", step=step)
