"""The HTTP fast path engages with the installed HTTP stack, and says so when it does not.

The first test runs the real stack (the anthropic SDK, httpx2, httpcore2 and h11) over
loopback against the fake Messages API: when an upgrade or a rename moves a private
attribute the fast path reads, the door does not open and this test fails.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx2
import pytest
import trio
from fake_api_helpers import provider, request, text_of
from sluiceway.engine._provider_events import TextChunk
from sluiceway.providers import AnthropicStatistics, FastPathWarning, _fastbody
from sluiceway.providers._fastbody import TESTED_VERSIONS, FastBody, NoFastBody, open_fast_body

ROOT = Path(__file__).resolve().parent.parent


async def test_the_fast_path_engages_with_the_installed_http_stack(fake_api):
    p = provider(fake_api)
    connections = fake_api.stats()["connections"]
    took_over: list[bool] = []
    for _ in range(2):
        # paced: the reader waits at chunk boundaries, where the fast body takes over from h11
        async with p.stream(request("fake:slow?delay_ms=5&text=a b c")) as events:
            texts = []
            async for event in events:
                if isinstance(event, TextChunk):
                    texts.append(event.text)
                    assert isinstance(events._chunks, FastBody)
                    took_over.append(events._chunks._own)
        assert "".join(texts) == "a b c"
    stats = p.statistics()
    await p.aclose()
    assert stats == AnthropicStatistics(clients=1, open_streams=0, fast_bodies=2, slow_bodies=0)
    assert any(took_over)  # the framing was parsed by the fast body, not only by h11
    # the fast body hands the body's end back to h11: the connection was reused
    assert fake_api.stats()["connections"] - connections == 1


async def test_a_layout_it_was_not_tested_with_warns_once_and_streams_the_slow_way(fake_api, monkeypatch):
    monkeypatch.setattr(_fastbody, "_warned", False)
    monkeypatch.setattr(_fastbody, "TESTED_VERSIONS", {**TESTED_VERSIONS, "h11": "0.0"})
    _fastbody._version_problem.cache_clear()
    try:
        p = provider(fake_api)
        with pytest.warns(FastPathWarning, match=r"h11 \S+ is not a version the fast path was tested with") as caught:
            for text in ("x y", "z"):
                async with p.stream(request(f"fake:text?text={text}")) as events:
                    assert not isinstance(events._chunks, FastBody)
                    assert text_of([e async for e in events]) == text
        assert len(caught) == 1  # once per process, not per stream
        assert p.statistics().fast_bodies == 0 and p.statistics().slow_bodies == 2
        await p.aclose()
    finally:
        _fastbody._version_problem.cache_clear()


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx2.Response(200, headers={"content-encoding": "gzip"}), "compressed (gzip)"),
        (httpx2.Response(200, content=b"x"), "not an HTTP/1.1 response from httpcore"),
        (httpx2.Response(200, extensions={"http_version": b"HTTP/2"}), "not an HTTP/1.1 response"),
    ],
)
def test_a_reason_that_is_no_fault_of_the_layout_is_quiet(response, reason, monkeypatch):
    monkeypatch.setattr(_fastbody, "_warned", False)
    opened = open_fast_body(response)  # any warning would fail the test (filterwarnings = error)
    assert isinstance(opened, NoFastBody) and opened.expected and reason in opened.reason
    assert _fastbody._warned is False


def test_a_layout_that_does_not_match_on_the_tested_versions_warns(monkeypatch):
    monkeypatch.setattr(_fastbody, "_warned", False)
    # an HTTP/1.1 response from a network stream that no pool stream leads to
    response = httpx2.Response(200, extensions={"http_version": b"HTTP/1.1", "network_stream": object()})
    with pytest.warns(FastPathWarning, match="does not lead to httpcore's pool stream"):
        opened = open_fast_body(response)
    assert isinstance(opened, NoFastBody) and not opened.expected
    assert open_fast_body(response) == opened  # the second time: the same reason, no warning


def test_pyproject_declares_the_tested_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0]: dep for dep in project["dependencies"]}
    for package, series in TESTED_VERSIONS.items():
        major, minor = series.split(".")
        assert declared.get(package) == f"{package}>={series},<{major}.{int(minor) + 1}", package


async def test_statistics_count_clients_open_streams_and_bodies(fake_api):
    p = provider(fake_api, streams_per_client=1)
    assert p.statistics() == AnthropicStatistics(clients=0, open_streams=0, fast_bodies=0, slow_bodies=0)
    async with p.stream(request("fake:text?text=a")) as first, p.stream(request("fake:text?text=b")) as second:
        assert p.statistics() == AnthropicStatistics(clients=2, open_streams=2, fast_bodies=2, slow_bodies=0)
        assert text_of([e async for e in first]) == "a" and text_of([e async for e in second]) == "b"
    assert p.statistics().open_streams == 0
    await p.aclose()
    assert p.statistics() == AnthropicStatistics(clients=0, open_streams=0, fast_bodies=2, slow_bodies=0)
    await trio.lowlevel.checkpoint()
