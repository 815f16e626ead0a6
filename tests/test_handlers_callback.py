"""The ``callback`` handler: import forms, sync and async functions, errors."""

from __future__ import annotations

import handler_helpers
import pytest
import trio
from handler_helpers import SEEN, Events, make_context
from sluiceway.handlers import CallbackHandler, HandlerConfigError

from sluiceway._registry import RegistryError, build_handlers


@pytest.fixture(autouse=True)
def clear_seen():
    SEEN.clear()
    yield
    SEEN.clear()


def make(**options):
    return CallbackHandler(CallbackHandler.Options(**options), make_context())


async def test_sync_function_by_module_and_name():
    handler = make(module="handler_helpers", function="sync_callback")
    ev = Events()
    events = [ev.started(), ev.delta("a"), ev.delta("b"), ev.done("ab")]
    await handler.handle(events[0])
    await handler.handle_batch(events[1:])
    await handler.aclose()
    await handler.aclose()
    assert SEEN == [("sync", e) for e in events]


@pytest.mark.parametrize("ref", ["handler_helpers:async_callback", "handler_helpers.async_callback"])
async def test_async_function_by_dotted_path_is_awaited(ref, autojump_clock):
    handler = make(function=ref)
    ev = Events()
    events = [ev.delta("a"), ev.delta("b")]
    start = trio.current_time()
    await handler.handle_batch(events)
    # Both calls were awaited, one after the other, before handle_batch returned.
    assert trio.current_time() - start == pytest.approx(1.0)
    assert SEEN == [("async", e) for e in events]


async def test_exceptions_propagate():
    handler = make(function="handler_helpers:failing_callback")
    with pytest.raises(ValueError, match="callback refused Delta"):
        await handler.handle(Events().delta("x"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"function": "no_such_module_xyz:f"}, "cannot import module 'no_such_module_xyz'"),
        ({"module": "handler_helpers", "function": "missing"}, "has no function 'missing'"),
        ({"function": "lonely"}, "needs a module"),
        ({"function": "handler_helpers:NOT_CALLABLE"}, "is not callable"),
    ],
)
def test_bad_references_fail_at_construction(options, message):
    with pytest.raises(HandlerConfigError, match=message) as info:
        make(**options)
    assert isinstance(info.value, ValueError)


def test_registry_builds_it_and_requires_function():
    (handler,) = build_handlers(
        ["callback"], {"function": "handler_helpers:sync_callback"}, lambda ref: make_context()
    )
    assert isinstance(handler, CallbackHandler)
    with pytest.raises(RegistryError, match=r"required field missing @ \$.function"):
        build_handlers(["callback"], {"module": "handler_helpers"}, lambda ref: make_context())
    assert CallbackHandler.policy == "block"


async def test_for_callable_sync_async_and_async_callable_object():
    got = []

    async def on_event(event):
        await trio.lowlevel.checkpoint()
        got.append(event.content)

    class Collector:
        async def __call__(self, event):
            await trio.lowlevel.checkpoint()
            got.append(event.content.upper())

    ev = Events()
    for fn in (on_event, Collector(), lambda e: got.append(e.content * 2)):
        handler = CallbackHandler.for_callable(fn, make_context())
        await handler.handle(ev.delta("x"))
        await handler.aclose()
    assert got == ["x", "X", "xx"]
    with pytest.raises(HandlerConfigError):
        CallbackHandler.for_callable(handler_helpers.NOT_CALLABLE, make_context())


async def test_a_plain_function_is_called_in_the_steps_task_an_async_one_through_the_actor(autojump_clock):
    from engine_helpers import ScriptedProvider, call_script, request
    from sluiceway.engine import HandlerConsumer, RunContext, stream_step

    tasks = {"sync": set(), "async": set()}

    def plain(event):
        tasks["sync"].add(trio.lowlevel.current_task())

    async def awaited(event):
        tasks["async"].add(trio.lowlevel.current_task())

    handlers = [CallbackHandler.for_callable(fn, make_context()) for fn in (plain, awaited)]
    assert handlers[0].handle_nowait is plain and handlers[1].handle_nowait is None
    assert make(module="handler_helpers", function="sync_callback").handle_nowait is handler_helpers.sync_callback

    step_task = []

    def on_chunk(n):
        step_task.append(trio.lowlevel.current_task())

    provider = ScriptedProvider([call_script([("text", list("abc"))], delay=0.1)], on_chunk=on_chunk)
    await stream_step(
        run=RunContext(run_id="r", origin=trio.current_time()), path="s", provider=provider, request=request(),
        consumers=[HandlerConsumer(h, f"h{i}") for i, h in enumerate(handlers)],
    )
    (step,) = set(step_task)
    # the plain function: its actor took StepStarted (before it parked), the step's task the rest
    assert step in tasks["sync"] and len(tasks["sync"]) == 2
    assert tasks["async"] and step not in tasks["async"]


def test_for_callable_names_the_function_and_keeps_the_context():
    def on_event(event):
        pass

    context = make_context()
    handler = CallbackHandler.for_callable(on_event, context)
    assert handler.options == CallbackHandler.Options(
        function="test_for_callable_names_the_function_and_keeps_the_context.<locals>.on_event", module=__name__
    )
    assert handler.context is context

    class NoNames:  # an object without __qualname__ or __module__ of its own
        __slots__ = ()

        def __call__(self, event):
            pass

        def __getattribute__(self, name):
            if name in ("__qualname__", "__module__"):
                raise AttributeError(name)
            return object.__getattribute__(self, name)

        def __repr__(self):
            return "<no names>"

    unnamed = CallbackHandler.for_callable(NoNames(), context)
    assert unnamed.options == CallbackHandler.Options(function="<no names>", module=None)
    with pytest.raises(HandlerConfigError) as info:
        CallbackHandler.for_callable(42, context)  # type: ignore[arg-type]
    assert str(info.value) == "callback handler: 42 is not callable"
