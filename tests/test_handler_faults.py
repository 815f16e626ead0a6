"""Issue 14, items 4 and 5: a handler that raises or hangs (in ``handle`` or ``aclose``) never costs
the step its response, and never hangs the run (``handler_timeout_ms``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from sluiceway.engine import HandlerWarning
from sluiceway.specs import loads

import sluiceway

SPEC = """
name: faults
steps:
  - name: ask
    type: claude
    prompt: "say it"
    mock: {response: "alpha beta gamma delta", delay_ms: 10}
    stream_handler: HANDLER
    on_handler_error: POLICY
"""


def spec(handler: str, policy: str, extra: str = "") -> Any:
    return loads(SPEC.replace("HANDLER", handler).replace("POLICY", policy) + extra)


def files(result: Any) -> tuple[dict[str, Any], str]:
    run_dir = Path(result.run_dir)
    return json.loads((run_dir / "result.json").read_text())["steps"]["ask"], (run_dir / "ask.txt").read_text()


@pytest.mark.parametrize("handler", ["fault_handlers.RaisesOnClose", "fault_handlers.HangsOnClose"])
async def test_a_handler_failing_in_aclose_under_fail_keeps_the_response(
    tmp_path: Path, autojump_clock: Any, handler: str
) -> None:
    result = await sluiceway.run(spec(handler, "fail"), output_dir=tmp_path)
    step, text_file = files(result)
    if handler.endswith("RaisesOnClose"):
        assert result.status == "failed" and result.steps["ask"].status == "failed"
        assert "aclose raised RuntimeError" in str(result.steps["ask"].error)
    else:  # a hanging aclose is abandoned after HANDLER_CLOSE_TIMEOUT (not a failure)
        assert result.status == "ok"
    # the stream completed: its response is kept, in result.json and <step>.txt
    assert step["text"] == "alpha beta gamma delta" == text_file
    assert step["usage"]["output_tokens"] > 0
    (h,) = result.handlers["ask"]
    assert h.closed == 1 and h.text() == "alpha beta gamma delta"


@pytest.mark.parametrize("policy", ["isolate", "fail"])
async def test_a_handler_that_never_returns_from_handle_does_not_hang_the_run(
    tmp_path: Path, autojump_clock: Any, policy: str
) -> None:
    with trio.fail_after(3600):
        if policy == "isolate":
            with pytest.warns(HandlerWarning, match="handle did not return within 30 s"):
                result = await sluiceway.run(spec("fault_handlers.HangsInHandle", policy), output_dir=tmp_path)
        else:
            result = await sluiceway.run(spec("fault_handlers.HangsInHandle", policy), output_dir=tmp_path)
    step, text_file = files(result)
    # the response was complete: kept, whatever the policy
    assert step["text"] == "alpha beta gamma delta" == text_file
    (h,) = result.handlers["ask"]
    assert h.closed == 1
    if policy == "fail":
        assert result.steps["ask"].status == "failed"
        error = result.steps["ask"].error
        assert isinstance(error, sluiceway.HandlerError) and "handle did not return within 30 s" in str(error)
    else:
        assert result.status == "ok"


async def test_handler_timeout_ms_sets_the_bound_and_none_turns_it_off(tmp_path: Path, autojump_clock: Any) -> None:
    start = trio.current_time()
    result = await sluiceway.run(
        spec("fault_handlers.HangsInHandle", "fail", "    handler_timeout_ms: 1500\n"), output_dir=tmp_path
    )
    assert result.steps["ask"].status == "failed" and "within 1.5 s" in str(result.steps["ask"].error)
    assert 1.5 <= trio.current_time() - start < 2.5
    with trio.move_on_after(100) as scope:  # no bound: it hangs (until cancelled)
        await sluiceway.run(
            spec("fault_handlers.HangsInHandle", "fail", "    handler_timeout_ms: none\n"), output_dir=tmp_path
        )
    assert scope.cancelled_caught
    # the defaults' bound applies to every step without its own
    text = SPEC.replace("HANDLER", "fault_handlers.HangsInHandle").replace("POLICY", "fail")
    defaults = loads(text.replace("name: faults\n", "name: faults\ndefaults: {handler_timeout_ms: 700}\n"))
    assert defaults.defaults.handler_timeout_ms == 700
    result = await sluiceway.run(defaults, output_dir=tmp_path)
    assert "within 0.7 s" in str(result.steps["ask"].error)


PARALLEL = """
name: faults
steps:
  - name: ask
    type: parallel_claude
    stream_handler: HANDLER
    on_handler_error: fail
    parallel_tasks:
      - {id: a, prompt: "a", mock: {response: "one two", delay_ms: 10}}
      - {id: b, prompt: "b", mock: {response: "three four", delay_ms: 10}}
"""


@pytest.mark.parametrize("handler", ["fault_handlers.RaisesOnClose", "fault_handlers.HangsInHandle"])
async def test_a_composite_steps_outputs_survive_a_failing_handler(
    tmp_path: Path, autojump_clock: Any, handler: str
) -> None:
    result = await sluiceway.run(loads(PARALLEL.replace("HANDLER", handler)), output_dir=tmp_path)
    assert result.steps["ask"].status == "failed"
    assert isinstance(result.steps["ask"].error, sluiceway.HandlerError)
    step, text_file = files(result)
    assert step["output"] == ["one two", "three four"]
    assert json.loads(text_file) == ["one two", "three four"]


@pytest.mark.parametrize("handler", ["fault_handlers.HangsInHandle", "fault_handlers.RaisesInHandle"])
async def test_a_handler_failing_mid_stream_under_fail_keeps_the_partial_output(
    tmp_path: Path, autojump_clock: Any, handler: str
) -> None:
    extra = "    stream_buffer_size: 1\n    handler_timeout_ms: 2000\n"
    result = await sluiceway.run(spec(handler, "fail", extra), output_dir=tmp_path)
    step, text_file = files(result)
    why = "within 2 s" if "Hangs" in handler else "handle raised RuntimeError"
    assert result.steps["ask"].status == "failed" and why in str(result.steps["ask"].error)
    # the producer was held up by the stalled handler (buffer 1), then stopped: what it had is kept
    assert step["text"] == text_file and "alpha beta gamma delta".startswith(step["text"]) and step["text"]


async def test_a_python_steps_handler_that_hangs_is_bounded(tmp_path: Path, autojump_clock: Any) -> None:
    text = """
name: faults
steps:
  - name: py
    type: python
    callable: json:dumps
    stream_handler: fault_handlers.HangsAtOnce
    handler_timeout_ms: 1000
"""
    with trio.fail_after(60), pytest.warns(RuntimeWarning, match="did not return within 1 s"):
        result = await sluiceway.run(loads(text), output_dir=tmp_path)
    assert result.steps["py"].status in ("ok", "failed")
    (h,) = result.handlers["py"]
    assert h.closed == 1
