"""The ``file`` handler: paths, text and jsonl formats, flush and fsync behaviour."""

from __future__ import annotations

import json
import os

import attrs
import pytest
import trio
from handler_helpers import Events, make_context
from sluiceway.engine import Failed
from sluiceway.handlers import FileHandler, HandlerConfigError, event_from_dict, event_to_dict

from sluiceway._errors import StreamInterruptedError
from sluiceway._registry import RegistryError, build_handlers


def make(tmp_path, step="draft", **options):
    context = make_context(output_dir=str(tmp_path), step=step, variables={"env": "dev"})
    return FileHandler(FileHandler.Options(**options), context)


@pytest.fixture
def fsyncs(monkeypatch):
    """Record fsync calls (by fd) while still syncing."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


# -- paths ----------------------------------------------------------------------


def test_default_path_is_step_log_inside_output_dir(tmp_path):
    handler = make(tmp_path)
    assert handler.path == tmp_path.resolve() / "draft.stream.log"


def test_templated_path(tmp_path):
    handler = make(tmp_path, file_path="logs/claude_{{execution_id}}_{{ step }}_{{env}}_{{vars.env}}_{{timestamp}}.log")
    assert handler.path == tmp_path.resolve() / "logs" / "claude_run-1_draft_dev_dev_20260101T123456.log"


def test_unknown_placeholder_is_refused(tmp_path):
    with pytest.raises(HandlerConfigError, match=r"unknown placeholder \{\{nope\}\}"):
        make(tmp_path, file_path="{{nope}}.log")


@pytest.mark.parametrize("path", ["../escape.log", "logs/../../escape.log", "{{step}}/../../x.log"])
def test_relative_path_may_not_escape_output_dir(tmp_path, path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HandlerConfigError, match="outside the output directory") as info:
        make(out, file_path=path)
    assert isinstance(info.value, ValueError)


def test_symlink_out_of_output_dir_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(HandlerConfigError, match="outside the output directory"):
        make(out, file_path="link/x.log")


async def test_absolute_path_is_used_as_written(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere" / "abs.log"
    handler = make(out, file_path=str(target))
    assert handler.path == target
    await handler.handle(Events().delta("x"))
    await handler.aclose()
    assert target.read_text() == "x\n"


def test_registry_rejects_escape_and_bad_format(tmp_path):
    def context_for(ref):
        return make_context(output_dir=str(tmp_path))

    with pytest.raises(HandlerConfigError):
        build_handlers(["file"], {"file_path": "../x.log"}, context_for)
    with pytest.raises(RegistryError, match=r"\$\.format"):
        build_handlers(["file"], {"format": "xml"}, context_for)
    with pytest.raises(RegistryError, match="unknown stream_handler_opts 'path'"):
        build_handlers(["file"], {"path": "x.log"}, context_for)


# -- text format ------------------------------------------------------------------


async def test_text_format_exact(tmp_path):
    handler = make(tmp_path)
    ev = Events()
    await handler.handle_batch(
        [
            ev.started(at=0.0),
            ev.delta("I'll read "),
            ev.delta("it."),
            ev.message("I'll read it."),
            ev.tool_use("Read", {"file_path": "lib/app.py"}),
            ev.tool_result("line 1\nline 2\n"),
            ev.tool_result("refused", is_error=True),
            ev.delta("Hello wor"),
            ev.retrying("overloaded"),
            ev.delta("Hello world", attempt=2),
            ev.message("Hello world", attempt=2),
            ev.done("Hello world", attempt=2, messages=3, duration=2.5),
        ]
    )
    await handler.aclose()
    assert handler.path.read_text(encoding="utf-8") == (
        "--- draft started: mock claude-test at 12:34:56 ---\n"
        "I'll read it.\n"
        '[tool use] Read {"file_path": "lib/app.py"}\n'
        "[tool result] Read: line 1\nline 2\n"
        "[tool error] Read: refused\n"
        "Hello wor\n"
        "--- attempt 1 superseded (overloaded); attempt 2 follows ---\n"
        "Hello world\n"
        "--- completed: 3 messages in 2500 ms ---\n"
    )


async def test_text_format_substeps_and_failure(tmp_path):
    handler = make(tmp_path, step="batch")
    ev = Events(step="batch")
    await handler.handle_batch(
        [
            ev.delta("a1 ", step="batch[0]"),
            ev.delta("b1", step="batch[1]"),
            ev.delta("a2", step="batch[0]"),
            ev.failed(StreamInterruptedError("connection lost"), step="batch[1]"),
            ev.cancelled(step="batch[0]"),
        ]
    )
    await handler.aclose()
    assert handler.path.read_text() == (
        "[batch[0]] a1 \n"
        "[batch[1]] b1\n"
        "[batch[0]] a2\n"
        "[batch[1]] --- failed: connection lost ---\n"
        "[batch[0]] --- cancelled ---\n"
    )


async def test_append_keeps_previous_content(tmp_path):
    (tmp_path / "draft.stream.log").write_text("before\n")
    handler = make(tmp_path, append=True)
    await handler.handle(Events().delta("after"))
    await handler.aclose()
    assert handler.path.read_text() == "before\nafter\n"
    handler = make(tmp_path)
    await handler.handle(Events().delta("replaced"))
    await handler.aclose()
    assert handler.path.read_text() == "replaced\n"


# -- jsonl ------------------------------------------------------------------------------


async def test_jsonl_round_trip(tmp_path):
    handler = make(tmp_path, format="jsonl", file_path="{{step}}.jsonl")
    ev = Events()
    events = [
        ev.started(),
        ev.delta("Hel"),
        ev.thinking("hmm"),
        ev.tool_input('{"file_path": '),
        ev.message("Hel"),
        ev.tool_use(),
        ev.tool_result("contents"),
        ev.retrying("overloaded"),
        ev.delta("Hello", attempt=2),
        ev.done("Hello", attempt=2),
        ev.failed(StreamInterruptedError("connection lost"), step="other"),
    ]
    await handler.handle_batch(events[:5])
    await handler.handle_batch(events[5:])
    await handler.aclose()
    lines = handler.path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records == [event_to_dict(e) for e in events]
    assert [r["type"] for r in records] == [type(e).__name__ for e in events]
    assert [(r["run_id"], r["step"], r["attempt"], r["seq"], r["at"]) for r in records] == [
        (e.run_id, e.step, e.attempt, e.seq, e.at) for e in events
    ]
    assert records[8]["attempt"] == 2 and records[8]["content"] == "Hello"
    assert records[9]["response"]["usage"] == {
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert records[9]["response"]["metrics"]["message_count"] == 2
    assert records[10]["error"] == "connection lost"
    rebuilt = [event_from_dict(r) for r in records]
    assert rebuilt == events  # Failed.error is not compared (eq=False); checked next
    assert isinstance(rebuilt[10], Failed) and str(rebuilt[10].error) == "connection lost"


def test_event_from_dict_rejects_garbage():
    with pytest.raises(ValueError, match="not an event type"):
        event_from_dict({"type": "Bogus"})
    with pytest.raises(ValueError, match=r"required field missing @ \$.content"):
        event_from_dict({"type": "Delta", "run_id": "r", "step": "s"})


# -- durability -------------------------------------------------------------------------


async def test_content_is_on_disk_per_batch_before_aclose(tmp_path, fsyncs):
    handler = make(tmp_path)
    ev = Events()
    await handler.handle(ev.delta("mid-message "))
    # Read through a separate descriptor: the bytes reached the OS, not a Python buffer.
    assert handler.path.read_text() == "mid-message "
    await handler.handle_batch([ev.delta("text"), ev.message("mid-message text")])
    assert handler.path.read_text() == "mid-message text\n"
    assert fsyncs == []  # fsync waits for the terminal event
    await handler.handle(ev.done("mid-message text"))
    assert len(fsyncs) == 1
    assert handler.path.read_text().endswith("--- completed: 2 messages in 1234 ms ---\n")
    await handler.aclose()
    assert len(fsyncs) == 1  # nothing written since: no second fsync
    await handler.aclose()


@pytest.mark.parametrize("terminal", [False, True])
async def test_aclose_syncs_only_after_its_last_write(tmp_path, monkeypatch, terminal):
    """A stream cut mid-line (no terminal event): aclose ends the line, and its fsync covers that too."""
    handler = make(tmp_path)
    synced_bytes = []  # the file as each fsync found it (read through a separate descriptor)
    real = os.fsync

    def fsync(fd):
        synced_bytes.append(handler.path.read_bytes())
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    ev = Events()
    await handler.handle(ev.delta("mid-"))
    await handler.handle_batch([ev.delta("line")])
    if terminal:
        await handler.handle(ev.message("mid-line"))
        await handler.handle(ev.done("mid-line"))
        await handler.handle(ev.delta("late", step="draft.sub"))  # not this step's terminal: no fsync of its own
    await handler.aclose()
    final = handler.path.read_bytes()
    assert final.endswith(b"\n") and final.startswith(b"mid-line\n")
    assert synced_bytes[-1] == final  # nothing written after the last fsync
    assert len(synced_bytes) == (2 if terminal else 1)


async def test_jsonl_is_on_disk_after_a_message_before_aclose(tmp_path):
    handler = make(tmp_path, format="jsonl")
    ev = Events()
    await handler.handle_batch([ev.delta("a"), ev.message("a")])
    assert [json.loads(x)["type"] for x in handler.path.read_text().splitlines()] == ["Delta", "Message"]
    await handler.aclose()


async def test_aclose_without_terminal_flushes_and_fsyncs(tmp_path, fsyncs):
    handler = make(tmp_path)
    await handler.handle(Events().delta("cut off"))
    await handler.aclose()
    assert handler.path.read_text() == "cut off\n"
    assert len(fsyncs) == 1


async def test_no_events_no_file(tmp_path):
    handler = make(tmp_path)
    await handler.aclose()
    assert not handler.path.exists()


async def test_one_write_per_batch(tmp_path, monkeypatch):
    handler = make(tmp_path)
    ev = Events()
    await handler.handle(ev.delta("open"))  # opens the file
    writes = []
    file = handler._file
    real_write = file.write
    monkeypatch.setattr(file, "write", lambda s: writes.append(s) or real_write(s), raising=False)
    await handler.handle_batch([ev.delta("a"), ev.delta("b"), ev.message("ab"), ev.tool_use()])
    assert len(writes) == 1
    await handler.aclose()


async def test_handle_after_close_is_an_error(tmp_path):
    handler = make(tmp_path)
    await handler.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await handler.handle(Events().delta("late"))


def test_policy_block_and_options_defaults():
    assert FileHandler.policy == "block"
    assert attrs.asdict(FileHandler.Options()) == {
        "file_path": "{{step}}.stream.log",
        "append": False,
        "format": "text",
    }


async def test_substep_terminals_flush_but_only_own_terminal_fsyncs(tmp_path, fsyncs):
    handler = make(tmp_path, step="batch")
    ev = Events(step="batch")
    await handler.handle_batch([ev.delta("a", step="batch[0]"), ev.done("a", step="batch[0]")])
    assert handler.path.read_text() == "[batch[0]] a\n[batch[0]] --- completed: 2 messages in 1234 ms ---\n"
    assert fsyncs == []
    await handler.handle(ev.done("a"))
    assert len(fsyncs) == 1
    await handler.aclose()
    assert len(fsyncs) == 1


# -- what the formats and paths hold exactly (the mutation profile's survivors, issue 20) ---------


def test_every_placeholder_fills_in(tmp_path):
    context = make_context(
        output_dir=str(tmp_path), step="draft", pipeline="pipe", variables={"env": "dev", "a.b": "dotted"}
    )
    template = "{{run_id}}-{{execution_id}}-{{pipeline}}-{{step}}-{{variables.env}}-{{vars.a.b}}.log"
    handler = FileHandler(FileHandler.Options(file_path=template), context)
    assert handler.path == tmp_path.resolve() / "run-1-run-1-pipe-draft-dev-dotted.log"


def test_only_vars_and_variables_name_a_variable(tmp_path):
    with pytest.raises(HandlerConfigError) as info:
        make(tmp_path, file_path="{{other.env}}.log")
    assert str(info.value) == (
        "file handler: unknown placeholder {{other.env}} in file_path '{{other.env}}.log'; "
        "known: env, execution_id, pipeline, run_id, step, timestamp"
    )


def test_an_escaping_path_names_where_it_resolves_and_the_output_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HandlerConfigError) as info:
        make(out, file_path="../x.log")
    assert str(info.value) == (
        f"file handler: file_path '../x.log' resolves to {str(tmp_path.resolve() / 'x.log')!r}, outside the "
        f"output directory {str(out.resolve())!r}; write an absolute path to log elsewhere"
    )


async def test_missing_directories_are_made(tmp_path):
    handler = make(tmp_path, file_path="a/b/c/{{step}}.log")
    await handler.handle(Events().delta("x"))
    await handler.aclose()
    assert (tmp_path / "a" / "b" / "c" / "draft.log").read_text() == "x\n"


async def test_text_shows_non_ascii_as_is_and_odd_tool_input_as_text(tmp_path):
    handler = make(tmp_path)
    ev = Events()
    await handler.handle_batch(
        [
            ev.started(model=None),
            ev.delta("héllo"),
            ev.tool_use("Write", {"text": "ünï", "path": tmp_path / "p"}),
            ev.done("héllo"),
        ]
    )
    await handler.aclose()
    assert handler.path.read_text(encoding="utf-8") == (
        "--- draft started: mock at 12:34:56 ---\n"
        "héllo\n"
        f'[tool use] Write {{"text": "ünï", "path": "{tmp_path / "p"}"}}\n'
        "--- completed: 2 messages in 1234 ms ---\n"
    )


async def test_jsonl_keeps_non_ascii_and_writes_odd_values_and_bare_errors_as_text(tmp_path):
    from decimal import Decimal

    from sluiceway.engine import PartialOutput

    handler = make(tmp_path, format="jsonl")
    ev = Events()
    output = PartialOutput(run_id="run-1", step="draft", value=Decimal("1.50"), complete=True)
    await handler.handle_batch([ev.delta("é"), output, ev.failed(RuntimeError())])
    await handler.aclose()
    text = handler.path.read_text(encoding="utf-8")
    assert '"content": "é"' in text
    records = [json.loads(line) for line in text.splitlines()]
    assert records[1]["value"] == "1.50"
    assert records[2]["type"] == "Failed" and records[2]["error"] == "RuntimeError"


def test_event_from_dict_names_what_is_wrong():
    with pytest.raises(ValueError) as info:
        event_from_dict({})
    assert str(info.value) == "not an event type: None"
    with pytest.raises(ValueError) as info:
        event_from_dict({"type": ["Delta"]})  # not a name: no lookup (a list is not hashable)
    assert str(info.value) == "not an event type: ['Delta']"
    with pytest.raises(ValueError) as info:
        event_from_dict({"type": "Delta", "run_id": "r"})
    assert str(info.value) == (
        "not a valid Delta event: required field missing @ $.step; required field missing @ $.content"
    )


async def test_a_handler_that_wrote_nothing_syncs_nothing(tmp_path, fsyncs):
    handler = make(tmp_path)
    await handler.handle(Events().thinking("not shown in text"))  # opens the file, writes nothing
    await handler.aclose()
    assert handler.path.read_text() == "" and fsyncs == []


async def test_the_file_is_utf8_never_the_locales_encoding(tmp_path):
    """The file is UTF-8, never the locale's default encoding. Python can tell: with
    ``-X warn_default_encoding`` a file opened without an encoding warns (an error here)."""
    import sys
    from pathlib import Path

    import sluiceway

    here = make(tmp_path / "here")
    await here.handle(Events().delta("é"))
    await here.aclose()
    assert here.path.read_bytes() == "é\n".encode()

    script = (
        "import trio, sys\n"
        "from handler_helpers import Events, make_context\n"
        "from sluiceway.handlers import FileHandler\n"
        "h = FileHandler(FileHandler.Options(), make_context(output_dir=sys.argv[1]))\n"
        "trio.run(h.handle, Events().delta('\\u00e9'))\n"
        "trio.run(h.aclose)\n"
    )
    # the sluiceway this process imported (the mutation profile's staged copy, when it runs)
    paths = [str(Path(sluiceway.__file__).parents[1]), str(Path(__file__).parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-X", "warn_default_encoding", "-W", "error::EncodingWarning", "-c", script]
    with trio.fail_after(60):
        await trio.run_process([*command, str(tmp_path)], env=env)
    assert (tmp_path / "draft.stream.log").read_bytes() == "é\n".encode()


async def test_text_shows_the_final_output_and_a_failures_message(tmp_path):
    from decimal import Decimal

    from sluiceway.engine import PartialOutput

    handler = make(tmp_path)
    env = {"run_id": "run-1", "step": "draft"}
    await handler.handle_batch(
        [
            PartialOutput(**env, value={"name": "Zoë"}),  # partial: left to the jsonl format
            PartialOutput(**env, value={"name": "Zoë", "price": Decimal("2.50")}, complete=True),
            Failed(**env, error=RuntimeError("boom"), message="the API is overloaded"),
            Failed(**env, error=RuntimeError("boom")),  # no message: the error's
        ]
    )
    await handler.aclose()
    assert handler.path.read_text(encoding="utf-8") == (
        '[output] {"name": "Zoë", "price": "2.50"}\n'
        "--- failed: the API is overloaded ---\n"
        "--- failed: boom ---\n"
    )
