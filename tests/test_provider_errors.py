"""``map_error``, directly: which ``ProviderError`` each SDK and transport error becomes, its
message, and ``retry_after`` from the response's headers (no network)."""

from __future__ import annotations

import anthropic
import httpx2
import pytest
from sluiceway.providers._anthropic_errors import map_error

from sluiceway._errors import (
    AuthenticationError,
    OverloadedError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
    StreamInterruptedError,
)

REQUEST = httpx2.Request("POST", "http://api.test/v1/messages")


def status_error(status: int, kind: str | None, *, headers=None, api_message: str | None = "boom"):
    """The SDK's error for an HTTP *status* whose body names *kind* (no body when *kind* is None)."""
    body = None
    if kind is not None:
        body = {"type": "error", "error": {"type": kind, "message": api_message}}
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    return anthropic.APIStatusError(f"Error code: {status} - {body}", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "kind", "cls", "message", "retry_after"),
    [
        (401, "authentication_error", AuthenticationError, "the API key was rejected (HTTP 401: boom)", None),
        (403, "permission_error", AuthenticationError, "the API key was rejected (HTTP 403: boom)", None),
        (429, "rate_limit_error", RateLimitedError, "rate limited (HTTP 429: boom)", 2.5),
        (529, "overloaded_error", OverloadedError, "the API is overloaded (HTTP 529: boom)", 2.5),
        # by its status alone, or by its type alone
        (529, "api_error", OverloadedError, "the API is overloaded (HTTP 529: boom)", 2.5),
        (503, "overloaded_error", OverloadedError, "the API is overloaded (HTTP 503: boom)", 2.5),
        (500, "api_error", ProviderError, "server error (HTTP 500: boom)", 2.5),
        (502, "api_error", ProviderError, "server error (HTTP 502: boom)", 2.5),
        (400, "invalid_request_error", ProviderError, "the API refused the request (HTTP 400: boom)", None),
        (499, "invalid_request_error", ProviderError, "the API refused the request (HTTP 499: boom)", None),
    ],
)
def test_an_http_status_maps_to_its_error_with_the_apis_message(status, kind, cls, message, retry_after):
    exc = status_error(status, kind, headers={"retry-after": "2.5"})
    mapped = map_error(exc, "a.b")
    assert type(mapped) is cls
    assert mapped.message == message and str(mapped) == f"step 'a.b': {message}"
    assert mapped.step == "a.b" and mapped.retry_after == retry_after


def test_without_the_apis_message_the_sdks_is_shown():
    exc = status_error(529, None)
    mapped = map_error(exc, "s")
    assert type(mapped) is OverloadedError
    assert mapped.message == "the API is overloaded (HTTP 529: Error code: 529 - None)"
    exc = status_error(400, "invalid_request_error", api_message=None)
    assert map_error(exc, "s").message == f"the API refused the request (HTTP 400: {exc.message})"


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("overloaded_error", OverloadedError),
        ("rate_limit_error", RateLimitedError),
        ("api_error", StreamInterruptedError),
        ("timeout_error", StreamInterruptedError),
        ("authentication_error", AuthenticationError),
        ("permission_error", AuthenticationError),
        ("invalid_request_error", ProviderError),
        (None, ProviderError),
    ],
)
def test_an_error_event_mid_stream_maps_by_its_type_and_has_no_retry_after(kind, cls):
    exc = status_error(200, kind, headers={"retry-after": "9"})
    mapped = map_error(exc, "s")
    assert type(mapped) is cls and mapped.retry_after is None
    detail = "boom" if kind else exc.message
    assert mapped.message == f"the API sent an error event mid-stream: {kind}: {detail}"


def test_transport_errors_name_what_happened():
    cases = [
        (httpx2.ReadTimeout("slow", request=REQUEST), ProviderTimeoutError, "the API timed out: slow"),
        (TimeoutError("late"), ProviderTimeoutError, "the API timed out: late"),
        (anthropic.APIConnectionError(message="no route", request=REQUEST), StreamInterruptedError,
         "could not reach the API: no route"),
        (httpx2.RemoteProtocolError("peer closed", request=REQUEST), StreamInterruptedError,
         "the connection to the API was lost: peer closed"),
        (ConnectionResetError("reset"), StreamInterruptedError, "the connection to the API was lost: reset"),
        (RuntimeError("boom"), ProviderError, "unexpected error from the API client: RuntimeError('boom')"),
    ]
    for exc, cls, message in cases:
        mapped = map_error(exc, "s")
        assert type(mapped) is cls and mapped.message == message and mapped.step == "s"


def test_an_error_already_mapped_keeps_its_step_when_none_is_given():
    inner = OverloadedError("busy", step="inner", retry_after=3.0)
    assert map_error(inner, None) is inner
    assert map_error(inner, "") is inner
    assert map_error(inner, "inner") is inner
    outer = map_error(inner, "outer")
    assert outer is not inner and outer.step == "outer" and outer.retry_after == 3.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-4"}, 0.0),  # a negative wait is no wait
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # the finer one first
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),  # an unreadable one is skipped
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({}, None),
    ],
)
def test_retry_after_from_the_headers(headers, expected):
    mapped = map_error(status_error(429, "rate_limit_error", headers=headers), "s")
    assert type(mapped) is RateLimitedError and mapped.retry_after == expected
