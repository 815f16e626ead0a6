"""The ``console`` handler: header, live text, panels, statistics, colors, progress."""

from __future__ import annotations

import io
import re
import sys

import attrs
import pytest
from handler_helpers import Events, Usage, make_context
from sluiceway.handlers import ConsoleHandler
from sluiceway.handlers._console import _bar

from sluiceway._errors import OverloadedError
from sluiceway._registry import RegistryError, build_handlers

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Cursor movement, line erasing and cursor visibility: what a live region redraws with.
CONTROL = re.compile(r"\x1b\[(?:\?25[lh]|[0-9]*[AK])|\r")
# SGR color parameters: 30-37, 38;..., 40-47, 48;..., 90-97, 100-107.
COLOR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


class TTY(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    for name in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def make(stream=None, step="draft", **options):
    context = make_context(stream, step=step)
    return ConsoleHandler(ConsoleHandler.Options(**options), context), context.stdout


def conversation(ev):
    return [
        ev.started(),
        ev.thinking("let me think"),
        ev.delta("I'll read "),
        ev.delta("it."),
        ev.message("I'll read it."),
        ev.tool_use("Read", {"file_path": "a.py"}),
        ev.tool_result("line1\nline2"),
        ev.delta("Hello wor"),
        ev.retrying("overloaded", delay=1.0),
        ev.delta("Hello world", attempt=2),
        ev.message("Hello world", attempt=2),
        ev.done("Hello world", attempt=2),
    ]


async def test_full_output_off_tty_is_plain_and_exact():
    handler, out = make()
    await handler.handle_batch(conversation(Events()))
    await handler.aclose()
    text = out.getvalue()
    assert "\x1b" not in text  # not a TTY: no colors, no cursor codes
    assert text == (
        "▶ draft · mock · claude-test " + "─" * 51 + "\n"
        "I'll read it.\n"
        "╭─ tool use: Read ──────╮\n"
        "│ {                     │\n"
        '│   "file_path": "a.py" │\n'
        "│ }                     │\n"
        "╰───────────────────────╯\n"
        "╭─ tool result: Read ─╮\n"
        "│ line1               │\n"
        "│ line2               │\n"
        "╰─────────────────────╯\n"
        "Hello wor\n"
        "↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s\n"
        "Hello world\n"
        "╭─ ✓ draft completed ─────────╮\n"
        "│ messages     2              │\n"
        "│ tokens       12 in / 34 out │\n"
        "│ first token  120 ms         │\n"
        "│ tokens/s     45.2           │\n"
        "│ cost         $0.00120       │\n"
        "│ duration     1.23 s         │\n"
        "╰─────────────────────────────╯\n"
    )


async def test_text_appears_live_per_batch():
    handler, out = make(show_header=False)
    ev = Events()
    await handler.handle(ev.delta("Hel"))
    assert out.getvalue() == "Hel"
    await handler.handle(ev.delta("lo"))
    assert out.getvalue() == "Hello"
    await handler.handle(ev.message("Hello"))
    assert out.getvalue() == "Hello\n"


async def test_options_off():
    handler, out = make(show_header=False, show_stats=False, show_tool_use=False, show_tool_results=False)
    await handler.handle_batch(conversation(Events()))
    await handler.aclose()
    assert out.getvalue() == (
        "I'll read it.\n"
        "Hello wor\n"
        "↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s\n"
        "Hello world\n"
        "✓ Stream completed: 2 messages in 1234 ms\n"
    )


async def test_show_thinking():
    handler, out = make(show_header=False, show_thinking=True)
    ev = Events()
    await handler.handle_batch([ev.thinking("hmm"), ev.thinking(" ok"), ev.delta("Answer")])
    await handler.aclose()
    assert out.getvalue() == "thinking: hmm ok\nAnswer\n"


async def test_failed_cancelled_and_tool_error():
    handler, out = make(show_header=False)
    ev = Events()
    await handler.handle_batch(
        [
            ev.tool_result("outside the workspace", is_error=True),
            ev.delta("part"),
            ev.failed(OverloadedError("API overloaded")),
            ev.cancelled(step="draft.b"),
        ]
    )
    assert out.getvalue() == (
        "╭─ tool error: Read ────╮\n"
        "│ outside the workspace │\n"
        "╰───────────────────────╯\n"
        "part\n"
        "✗ Stream failed: API overloaded\n"
        "[draft.b] ✗ Stream cancelled\n"
    )


async def test_long_tool_result_is_cut():
    handler, out = make(show_header=False)
    await handler.handle(Events().tool_result("\n".join(f"l{i}" for i in range(25))))
    text = out.getvalue()
    assert "l19" in text and "l20" not in text
    assert "… (5 more lines)" in text


async def test_substeps_prefixed_and_progress_only_on_tty():
    def batch_events():
        ev = Events(step="batch")
        return [
            ev.started(step_type="claude_batch"),
            ev.started(step="batch[0]"),
            ev.started(step="batch[1]"),
            ev.delta("one", step="batch[0]"),
            ev.delta("two", step="batch[1]"),
            ev.done("one", step="batch[0]"),
            ev.failed(OverloadedError("busy"), step="batch[1]"),
        ]

    handler, out = make(step="batch", show_stats=False)
    await handler.handle_batch(batch_events())
    await handler.aclose()
    assert out.getvalue() == (
        "▶ batch · mock · claude-test " + "─" * 51 + "\n"
        "[batch[0]] ▶ started · mock · claude-test\n"
        "[batch[1]] ▶ started · mock · claude-test\n"
        "[batch[0]] one\n"
        "[batch[1]] two\n"
        "[batch[0]] ✓ Stream completed: 2 messages in 1234 ms\n"
        "[batch[1]] ✗ Stream failed: busy\n"
    )
    assert "tasks done" not in out.getvalue()

    # On a TTY (issue 15 item 6): a live progress bar and one live line per running
    # sub-step instead of prefixed text lines; each completion stays above the bar, and
    # the bar's last state (every task done) is what remains at the end.
    handler, tty = make(TTY(), step="batch", show_stats=False)
    await handler.handle_batch(batch_events())
    await handler.aclose()
    text = CONTROL.sub("", ANSI.sub("", tty.getvalue()))
    assert "[batch[0]] one" not in text and "[batch[1]] two" not in text
    assert "▶ started" not in text
    done = text.index("[batch[0]] ✓ Stream completed: 2 messages in 1234 ms\n")
    failed = text.index("[batch[1]] ✗ Stream failed: busy\n")
    final = text.rindex("2/2 tasks done · 1 failed")
    assert done < failed < final
    assert text[:final].rsplit("\n", 1)[-1].startswith("batch ━")


async def test_substep_stats_are_one_line():
    handler, out = make(step="par", show_header=False)
    await handler.handle(Events(step="par").done(step="par.a"))
    assert out.getvalue() == (
        "[par.a] ✓ completed · messages 2 · tokens 12 in / 34 out · first token 120 ms · "
        "tokens/s 45.2 · cost $0.00120 · duration 1.23 s\n"
    )


async def test_unknown_stats_show_a_dash():
    handler, out = make(show_header=False)
    ev = Events()
    done = ev.done("x", cost_usd=None)
    metrics = attrs.evolve(done.response.metrics, time_to_first_token=None, output_tokens_per_second=None)
    await handler.handle(attrs.evolve(done, response=attrs.evolve(done.response, metrics=metrics)))
    text = out.getvalue()
    assert re.search(r"first token  –", text) and re.search(r"tokens/s     –", text)
    assert re.search(r"cost         –", text)


# -- colors -----------------------------------------------------------------------------


async def test_colors_on_a_tty_by_default():
    handler, tty = make(TTY())
    await handler.handle_batch(conversation(Events()))
    assert COLOR_SGR.search(tty.getvalue())


async def test_no_color_env_turns_colors_off_on_a_tty(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    handler, tty = make(TTY())
    await handler.handle_batch(conversation(Events()))
    assert "tool use: Read" in tty.getvalue()
    assert not COLOR_SGR.search(tty.getvalue())


async def test_color_false_on_a_tty_and_true_off_a_tty(monkeypatch):
    handler, tty = make(TTY(), color=False)
    await handler.handle_batch(conversation(Events()))
    assert not COLOR_SGR.search(tty.getvalue())

    monkeypatch.setenv("NO_COLOR", "1")  # an explicit color: true wins over the environment
    handler, out = make(color=True)
    await handler.handle_batch(conversation(Events()))
    assert COLOR_SGR.search(out.getvalue())


async def test_writes_to_sys_stdout_resolved_at_write_time(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    context = attrs.evolve(make_context(), stdout=None)  # None: sys.stdout, looked up per write
    handler = ConsoleHandler(ConsoleHandler.Options(show_header=False), context)
    await handler.handle(Events().delta("first"))
    monkeypatch.setattr(sys, "stdout", second)
    await handler.handle(Events().delta("second"))
    await handler.aclose()
    assert (first.getvalue(), second.getvalue()) == ("first", "second\n")


async def test_aclose_is_idempotent():
    handler, out = make(show_header=False)
    await handler.handle(Events().delta("x"))
    await handler.aclose()
    await handler.aclose()
    assert out.getvalue() == "x\n"


def test_registry_options():
    (handler,) = build_handlers(
        ["console"], {"show_thinking": True, "color": False}, lambda ref: make_context()
    )
    assert handler.options == ConsoleHandler.Options(show_thinking=True, color=False)
    with pytest.raises(RegistryError, match="unknown stream_handler_opts 'colour'"):
        build_handlers(["console"], {"colour": True}, lambda ref: make_context())
    assert ConsoleHandler.policy == "coalesce"


async def test_short_durations_in_ms_and_large_costs_in_cents():
    handler, out = make(step="par", show_header=False)
    await handler.handle(Events(step="par").done(step="par.a", duration=0.002, cost_usd=2.5))
    assert out.getvalue().endswith("cost $2.50 · duration 2 ms\n")


# -- a bounded rate (issue 14 item 11) ----------------------------------------------------


class CountingTTY(TTY):
    """A terminal that counts its writes."""

    writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


class CountingPipe(io.StringIO):
    """A pipe that counts its writes."""

    writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


async def _feed_batch(handler, *, tasks: int, deltas: int, every: float) -> tuple[int, float]:
    """Feed a batch: *tasks* sub-steps, *deltas* each, interleaved; virtual *every* seconds a round.

    Deltas go one at a time through ``handle_nowait``, as the engine hands them to a
    synchronous handler. Returns the deltas fed and the virtual seconds it took.
    """
    import trio

    ev = Events(step="batch")
    start = trio.current_time()
    handler.handle_nowait(ev.started(step_type="claude_batch"))
    for i in range(tasks):
        handler.handle_nowait(ev.started(step=f"batch[{i}]"))
    fed = 0
    for _ in range(deltas):
        for i in range(tasks):
            handler.handle_nowait(ev.delta("word ", step=f"batch[{i}]"))
            fed += 1
        await trio.sleep(every)
    for i in range(tasks):
        handler.handle_nowait(ev.message("word " * deltas, step=f"batch[{i}]"))
        handler.handle_nowait(ev.done("word " * deltas, step=f"batch[{i}]"))
    handler.handle_nowait(ev.done(""))
    await handler.aclose()
    return fed, trio.current_time() - start


@pytest.mark.parametrize("stream_type", [CountingTTY, CountingPipe], ids=["tty", "pipe"])
async def test_a_big_batch_is_written_at_a_bounded_rate_not_per_delta(autojump_clock, stream_type):
    from sluiceway.handlers._live import REFRESH_PER_SECOND

    handler, out = make(stream_type(), step="batch", show_stats=False)
    fed, duration = await _feed_batch(handler, tasks=50, deltas=200, every=0.01)
    assert fed == 10_000 and duration == pytest.approx(2.0)
    # Writes are bounded by the refresh rate over the (virtual) time, plus the ends: not by
    # the deltas (before the fix every delta was a write: 10,000 or more).
    frames = REFRESH_PER_SECOND * duration + 1
    assert out.writes <= 12 * (frames + 5), out.writes  # rich writes a frame in a few pieces
    assert out.writes < fed / 20
    text = CONTROL.sub("", ANSI.sub("", out.getvalue()))
    assert text.count("✓ Stream completed") == 51  # every sub-step's completion, and the step's
    if stream_type is CountingTTY:
        assert "50/50 tasks done" in text
        assert "[batch[7]] word" not in text  # no text lines: live lines instead
    else:
        assert "\x1b" not in out.getvalue()  # piped: plain and append-only
        assert "[batch[7]] word \n" in out.getvalue()  # prefixed lines, as before


async def test_live_lines_show_each_running_substeps_latest_words(autojump_clock):
    import trio

    handler, tty = make(CountingTTY(), step="batch", show_stats=False)
    ev = Events(step="batch")
    await handler.handle_batch([ev.started(step_type="claude_batch"), ev.started(step="batch[0]"), ev.started(step="batch[1]")])
    await handler.handle(ev.delta("the first task speaks", step="batch[0]"))
    await trio.sleep(1.0)
    await handler.handle(ev.delta(" slowly", step="batch[0]"))
    frame = CONTROL.sub("", ANSI.sub("", tty.getvalue())).rsplit("batch ", 1)[-1]
    assert "0/2 tasks done · 2 running" in frame
    assert re.search(r"batch\[0\]\s+1\.0 s\s+the first task speaks slowly", frame), frame
    assert re.search(r"batch\[1\]\s+1\.0 s\s+waiting for the first token", frame), frame
    await handler.aclose()


async def test_spinner_with_elapsed_time_until_the_first_token():
    import trio

    handler, tty = make(TTY(), step="draft")
    ev = Events()
    await handler.handle(ev.started())
    await trio.sleep(0.5)  # real time: the spinner turns by itself (a ticker), no event needed
    waiting = CONTROL.sub("", ANSI.sub("", tty.getvalue()))
    assert re.search(r"waiting for the first token · 0\.[3-9] s", waiting), waiting
    await handler.handle(ev.delta("Hello"))
    await handler.handle(ev.message("Hello"))
    await handler.aclose()
    text = ANSI.sub("", tty.getvalue())
    assert text.index("▶ draft") < text.index("waiting for the first token") < text.index("Hello\n")
    # the spinner's line was erased (transient) before the text: no spinner after it
    assert "waiting" not in text[text.index("Hello"):]


async def test_header_says_step_i_of_n():
    context = attrs.evolve(make_context(), position=(2, 5))
    handler = ConsoleHandler(ConsoleHandler.Options(), context)
    await handler.handle(Events().started())
    assert context.stdout.getvalue().startswith("▶ draft (step 2 of 5) · mock · claude-test ─")


# -- exact colored output of a mixed stream -----------------------------------------------


def mixed_stream(ev):
    """A step with sub-steps, off a TTY: every kind of line the handler writes, and stats edge values."""
    return [
        ev.started(model=None),
        ev.thinking("hmm"),
        ev.delta("Hi.\n"),
        ev.message("Hi."),
        ev.started(step="draft.a"),
        ev.delta("one", step="draft.a"),
        ev.retrying("overloaded", step="draft.a", delay=1.0),
        ev.done(
            "one",
            step="draft.a",
            usage=Usage(5, 6, cache_read_input_tokens=7, cache_creation_input_tokens=0),
            cost_usd=1.0,
            duration=0.9996,
        ),
        ev.failed(OverloadedError("busy"), step="draft.b"),
        ev.cancelled(step="draft.c"),
        ev.done(
            "Hi.",
            cost_usd=2.5,
            duration=1.0,
            usage=Usage(1, 2, cache_read_input_tokens=0, cache_creation_input_tokens=3),
        ),
    ]


async def test_forced_colors_exact_output_with_stats():
    # Header bold with a blue rule, thinking dim/italic, sub-step text header bold cyan, retry and
    # cancel yellow, failure bold red, completion green, stats names bold in a green panel.
    # A cost of exactly $1 switches to cents; 0.9996 s still shows in ms; 1.0 s in seconds.
    handler, out = make(color=True, show_thinking=True)
    await handler.handle_batch(mixed_stream(Events()))
    await handler.aclose()
    assert (
        out.getvalue()
        == "\x1b[1m▶ draft · mock · default model\x1b[0m \x1b[34m─────────────────────────────────────────────────\x1b[0m\n\x1b[2mthinking: \x1b[0m\x1b[2;3mhmm\x1b[0m\nHi.\n\x1b[2m[draft.a] ▶ started · mock · claude-test\x1b[0m\n\x1b[1;36m[draft.a] \x1b[0mone\n\x1b[33m[draft.a] ↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s\x1b[0m\n\x1b[32m[draft.a] ✓ completed · messages 2 · tokens 5 in / 6 out (cache 7 read, 0 written) · first token 120 ms · tokens/s 45.2 · cost $1.00 · duration 1000 ms\x1b[0m\n\x1b[1;31m[draft.b] ✗ Stream failed: busy\x1b[0m\n\x1b[33m[draft.c] ✗ Stream cancelled\x1b[0m\n\x1b[32m╭─\x1b[0m\x1b[32m ✓ draft completed \x1b[0m\x1b[32m────────────────────────────────\x1b[0m\x1b[32m─╮\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mmessages   \x1b[0m\x1b[1m  \x1b[0m2                                      \x1b[32m│\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mtokens     \x1b[0m\x1b[1m  \x1b[0m1 in / 2 out (cache 0 read, 3 written) \x1b[32m│\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mfirst token\x1b[0m\x1b[1m  \x1b[0m120 ms                                 \x1b[32m│\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mtokens/s   \x1b[0m\x1b[1m  \x1b[0m45.2                                   \x1b[32m│\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mcost       \x1b[0m\x1b[1m  \x1b[0m$2.50                                  \x1b[32m│\x1b[0m\n\x1b[32m│\x1b[0m \x1b[1mduration   \x1b[0m\x1b[1m  \x1b[0m1.00 s                                 \x1b[32m│\x1b[0m\n\x1b[32m╰─────────────────────────────────────────────────────╯\x1b[0m\n"
    )


async def test_forced_colors_exact_output_without_stats():
    handler, out = make(color=True, show_stats=False)
    await handler.handle_batch(mixed_stream(Events()))
    await handler.aclose()
    assert (
        out.getvalue()
        == "\x1b[1m▶ draft · mock · default model\x1b[0m \x1b[34m─────────────────────────────────────────────────\x1b[0m\nHi.\n\x1b[2m[draft.a] ▶ started · mock · claude-test\x1b[0m\n\x1b[1;36m[draft.a] \x1b[0mone\n\x1b[33m[draft.a] ↻ attempt 1 failed (overloaded); output above is discarded; attempt 2 follows in 1.0 s\x1b[0m\n\x1b[32m[draft.a] ✓ Stream completed: 2 messages in 1000 ms\x1b[0m\n\x1b[1;31m[draft.b] ✗ Stream failed: busy\x1b[0m\n\x1b[33m[draft.c] ✗ Stream cancelled\x1b[0m\n\x1b[32m✓ Stream completed: 2 messages in 1000 ms\x1b[0m\n"
    )


@pytest.mark.parametrize(
    ("completed", "total", "plain", "styles"),
    [
        (0, 4, "", [(0, 30, "bar.back")]),
        (1, 4, "━" * 7 + "╸", [(0, 8, "bar.complete"), (8, 30, "bar.back")]),
        (1, 3, "━" * 10, [(0, 10, "bar.complete"), (10, 30, "bar.back")]),
        (2, 3, "━" * 20, [(0, 20, "bar.complete"), (20, 30, "bar.back")]),
        (3, 3, "━" * 30, [(0, 30, "bar.finished")]),
        (5, 4, "━" * 30, [(0, 30, "bar.finished")]),
    ],
)
def test_progress_bar_in_halves(completed, total, plain, styles):
    # Plain: the done part then blanks; colored: the rest drawn as a dim track, finished in its own style.
    bar = _bar(completed, total, plain=True)
    assert bar.plain == plain.ljust(30) and not bar.spans
    bar = _bar(completed, total, plain=False)
    assert bar.plain == plain + "━" * (30 - len(plain))
    assert [(span.start, span.end, span.style) for span in bar.spans] == styles


@pytest.mark.parametrize(
    ("stream", "color", "system", "no_color"),
    [
        (TTY, True, "truecolor", False),  # forced on a terminal: its full palette
        (io.StringIO, True, "standard", False),  # forced into a pipe: the 16 standard colors
        (TTY, False, None, True),
    ],
)
def test_console_color_settings(monkeypatch, stream, color, system, no_color):
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLORTERM", "truecolor")
    handler, _ = make(stream(), color=color)
    console = handler._get_console()
    assert (console.color_system, console.no_color, console.is_terminal) == (system, no_color, stream is TTY)
    assert (console._highlight, console._emoji, console._markup, console.is_jupyter) == (False,) * 4


async def test_forced_colors_exact_tool_panels():
    # Tool use cyan, a tool error red and cut to 20 lines plus a count, a tool result green.
    handler, out = make(color=True, show_header=False)
    ev = Events()
    await handler.handle_batch(
        [
            ev.tool_use("Grep", {"q": "é"}),
            ev.tool_result("\n".join(f"l{i}" for i in range(22)) + "\n", name="Grep", is_error=True),
            ev.tool_result("ok", name="Grep"),
        ]
    )
    await handler.aclose()
    assert out.getvalue() == (
        '\x1b[36m╭─\x1b[0m\x1b[36m tool use: Grep \x1b[0m\x1b[36m─╮\x1b[0m\n\x1b[36m│\x1b[0m {                \x1b[36m│\x1b[0m\n\x1b[36m│\x1b[0m   "q": "é"       \x1b[36m│\x1b[0m\n\x1b[36m│\x1b[0m }                \x1b[36m│\x1b[0m\n\x1b[36m╰──────────────────╯\x1b[0m\n\x1b[31m╭─\x1b[0m\x1b[31m tool error: Grep \x1b[0m\x1b[31m─╮\x1b[0m\n\x1b[31m│\x1b[0m l0                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l1                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l2                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l3                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l4                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l5                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l6                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l7                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l8                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l9                 \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l10                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l11                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l12                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l13                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l14                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l15                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l16                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l17                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l18                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m l19                \x1b[31m│\x1b[0m\n\x1b[31m│\x1b[0m … (2 more lines)   \x1b[31m│\x1b[0m\n\x1b[31m╰────────────────────╯\x1b[0m\n\x1b[32m╭─\x1b[0m\x1b[32m tool result: Grep \x1b[0m\x1b[32m─╮\x1b[0m\n\x1b[32m│\x1b[0m ok                  \x1b[32m│\x1b[0m\n\x1b[32m╰─────────────────────╯\x1b[0m\n'
    )


async def test_a_sub_steps_tool_panels_keep_their_step_in_the_title():
    # a plain-string panel title is read as rich markup: "[draft.a]" would vanish as a tag
    handler, out = make(step="draft")
    ev = Events()
    await handler.handle_batch([
        ev.started(), ev.tool_use("Grep", step="draft.a"), ev.tool_result("x", name="Grep", step="draft.a"),
    ])
    await handler.aclose()
    text = out.getvalue()
    assert "╭─ [draft.a] tool use: Grep ─" in text
    assert "╭─ [draft.a] tool result: Grep ─" in text
