"""The one-line display (``StepLineHandler``): exact lines per ending, the preview's cut, the TTY spinner.

The CLI tests (tests/test_cli_display.py) see it through a real ``sluiceway run``;
these drive the handler in-process, so each rule has a test of its own.
"""

from __future__ import annotations

import datetime
import io
import re

import attrs
import pytest
import trio
from handler_helpers import Events, make_context
from sluiceway.engine import Response
from sluiceway.handlers._line import LINE_CHARS, StepLineHandler, answer_preview

from sluiceway._errors import OverloadedError

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class TTY(io.StringIO):
    """A StringIO that says it is a terminal, and counts its flushes."""

    flushes = 0

    def isatty(self):
        return True

    def flush(self):
        self.flushes += 1
        super().flush()


class Pipe(TTY):
    def isatty(self):
        return False


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def make(stream=None, *, step="draft", position=(1, 2)):
    context = make_context(Pipe() if stream is None else stream, step=step, position=position)
    return StepLineHandler(context), context.stdout


async def test_one_line_when_the_step_ends_and_nothing_before():
    handler, out = make()
    ev = Events()
    await handler.handle_batch([ev.started(), ev.delta("Hello"), ev.message("Hello, world.")])
    assert out.getvalue() == ""
    await handler.handle(ev.done("Hello, world.\nSecond line."))
    assert out.getvalue() == "✓ draft (step 1 of 2): Hello, world. …\n"
    assert out.flushes == 1
    await handler.aclose()
    await handler.aclose()  # idempotent
    assert out.getvalue() == "✓ draft (step 1 of 2): Hello, world. …\n"


async def test_failed_and_cancelled_lines_do_not_repeat_the_cause():
    handler, out = make(position=None)
    ev = Events()
    await handler.handle_batch([ev.started(), ev.failed(OverloadedError("the API is overloaded"))])
    assert out.getvalue() == "✗ draft failed\n"
    handler, out = make(position=(3, 3))
    await handler.handle_batch([ev.started(), ev.cancelled()])
    assert out.getvalue() == "⨯ draft (step 3 of 3) cancelled\n"


async def test_other_steps_events_are_ignored():
    handler, out = make(step="batch[1]", position=None)
    ev = Events()
    await handler.handle_batch([
        ev.started(step="batch[0]"), ev.done("zero", step="batch[0]"),
        ev.started(step="batch[1]"), ev.done("one", step="batch[1]"),
        ev.done("two", step="batch[2]"),
    ])
    assert out.getvalue() == "✓ batch[1]: one\n"


async def test_an_empty_answer_has_no_colon():
    handler, out = make(position=None)
    ev = Events()
    await handler.handle(ev.done(""))
    assert out.getvalue() == "✓ draft\n"


def test_the_preview_is_the_first_line_cut_to_fit():
    def preview(text, **response):
        return answer_preview(Response(text=text, **response))

    exact = "x" * LINE_CHARS
    assert preview(exact) == exact
    assert preview(exact + "y") == "x" * (LINE_CHARS - 1) + "…"
    assert len(preview("z" * 500)) == LINE_CHARS
    assert preview("  first  \n\n  ") == "first"  # blank rest: no marker
    assert preview("first\nmore") == "first …"
    assert preview("\n\nlater line\nmore") == "later line …"
    assert preview("red \x1b[31mtext\x1b[0m\x07 ok") == "red [31mtext[0m ok"  # control codes gone
    assert preview("a\tb") == "a b"
    assert preview("", output={"when": datetime.date(2026, 1, 2)}) == '{"when": "2026-01-02"}'
    assert preview("", output={"name": "Ada", "tags": ["ü"]}) == '{"name": "Ada", "tags": ["ü"]}'
    assert preview("the text wins", output={"a": 1}) == "the text wins"
    assert preview("") == ""


SPINNER_LINE = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] draft · (\d+\.\d) s")
CURSOR = re.compile(r"\x1b\[(\d*)([A-Za-z])|\x1b\[\?25[lh]|\r|\n|[^\x1b\r\n]+")


def screen(written: str) -> list[str]:
    """What a terminal shows after *written*: lines, with cursor-up, erase-line and CR applied."""
    lines, row = [""], 0
    for token in CURSOR.finditer(ANSI_COLOR.sub("", written)):
        text, (count, code) = token[0], (token[1], token[2])
        if text == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
        elif text == "\r" or text.startswith("\x1b[?25"):
            continue  # column tracking is not needed: every redraw erases whole lines
        elif code == "A":
            row -= int(count or 1)
        elif code == "K":
            lines[row] = ""
        elif code is None:
            lines[row] += text
    return [line for line in lines if line] if row >= 0 else ["<cursor above the screen>"]


ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")


async def test_on_a_tty_a_spinner_shows_the_time_since_the_step_started(autojump_clock):
    handler, out = make(TTY(), position=None)
    ev = Events()
    await trio.sleep(10)  # the clock's origin is not the step's start
    await handler.handle(ev.started())
    await trio.sleep(1.25)
    await handler.handle(ev.delta("Hi"))  # any event of the step redraws the spinner
    assert [SPINNER_LINE.fullmatch(line)[1] for line in screen(out.getvalue())] == ["1.2"]
    assert "\x1b[36m" in out.getvalue()  # the frame in cyan
    assert "\x1b[2mdraft · 1.2 s" in out.getvalue()  # the text dim
    await handler.handle(ev.done("Hi there."))
    assert screen(out.getvalue()) == ["✓ draft: Hi there."]  # the spinner erased, the line in its place
    written = out.getvalue()
    await handler.aclose()
    assert out.getvalue() == written  # nothing after the line


async def test_the_spinner_turns_between_events():
    handler, out = make(TTY(), position=None)
    ev = Events()
    await handler.handle(ev.started())
    await trio.sleep(0.6)  # real time: the ticker thread asks for redraws, no event arrives
    redraws = len(SPINNER_LINE.findall(ANSI_COLOR.sub("", out.getvalue())))
    assert redraws >= 2, out.getvalue()
    await handler.handle(ev.cancelled())
    assert screen(out.getvalue()) == ["⨯ draft cancelled"]
    await handler.aclose()


async def test_the_stream_is_looked_up_at_each_write(monkeypatch):
    first, second = Pipe(), Pipe()
    context = attrs.evolve(make_context(position=None), stdout=None)  # None: sys.stdout, as it is then
    handler = StepLineHandler(context)
    ev = Events()
    monkeypatch.setattr("sys.stdout", first)
    await handler.handle(ev.done("one"))
    monkeypatch.setattr("sys.stdout", second)
    await handler.handle(ev.cancelled())
    assert (first.getvalue(), second.getvalue()) == ("✓ draft: one\n", "⨯ draft cancelled\n")


async def test_off_a_tty_there_is_no_spinner(autojump_clock):
    handler, out = make(position=None)
    ev = Events()
    await handler.handle(ev.started())
    await trio.sleep(2)
    await handler.handle(ev.delta("Hi"))
    assert out.getvalue() == ""
    await handler.handle(ev.done("Hi."))
    assert out.getvalue() == "✓ draft: Hi.\n"


async def test_a_closed_handler_starts_no_spinner(autojump_clock):
    handler, out = make(TTY(), position=None)
    await handler.aclose()
    ev = Events()
    await handler.handle(ev.started())
    await trio.sleep(1)
    await handler.handle(ev.delta("x"))
    assert out.getvalue() == ""


@pytest.mark.parametrize("kind", ["simple", "console", "line"])
async def test_a_models_escape_sequences_never_reach_the_terminal(kind):
    from sluiceway.handlers import ConsoleHandler, SimpleHandler

    hostile = "ok\x1b]0;pwned\x07\x1b[2J\x9b31m\x08 done\ttab"
    context = make_context(TTY(), position=None)
    handler = (
        StepLineHandler(context) if kind == "line"
        else {"simple": SimpleHandler, "console": ConsoleHandler}[kind](
            {"simple": SimpleHandler, "console": ConsoleHandler}[kind].Options(), context
        )
    )
    ev = Events()
    await handler.handle_batch([ev.started(), ev.delta(hostile), ev.message(hostile), ev.done(hostile)])
    await handler.aclose()
    written = context.stdout.getvalue()
    assert "ok]0;pwned[2J31m done" in written  # the text is shown, the sequences are not
    assert "pwned\x07" not in written and "\x1b]" not in written and "\x1b[2J" not in written
    assert "\x9b" not in written and "\x08" not in written
