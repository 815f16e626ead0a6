"""How a run is asked to run: ``RunOptions``, the modes, and the provider each mode opens."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal, TextIO

import attrs

from .._errors import AuthenticationError, SluicewayError, SpecError
from .._registry import resolve_provider
from ..engine import Provider
from ..providers import RecordingProvider
from ..specs import Pipeline

__all__ = ("DEFAULT_OPTIONS", "Mode", "ModeUnavailableError", "RunOptions", "new_provider", "open_mode_provider")

Mode = Literal["mock", "live", "replay"]


class ModeUnavailableError(SluicewayError):
    """The requested mode's provider is not available or cannot be set up
    (no cassette, a cassette file that cannot be opened or written)."""


@attrs.frozen(kw_only=True)
class RunOptions:
    """How to run a spec: everything that is not in the spec itself."""

    mode: Mode = "mock"
    """``mock`` (embedded, the default), ``live`` (Anthropic API) or ``replay`` (a cassette)."""
    variables: Mapping[str, Any] = attrs.field(factory=dict)
    """Overrides of the spec's ``variables`` (``--set KEY=VALUE``)."""
    output_dir: str | os.PathLike[str] | None = None
    """Overrides the spec's ``output_dir``; default ``./outputs``."""
    workspace: str | os.PathLike[str] | None = None
    """Overrides the spec's ``workspace_dir``; default the spec file's folder (or the cwd)."""
    handlers: tuple[str, ...] | None = None
    """Replace every streaming step's handlers with these (``--handler``); their
    options are the step's ``stream_handler_opts`` that these handlers declare."""
    stream: bool = True
    """``False`` (``--no-stream``) attaches no handlers to any step; results are still collected."""
    display: bool = False
    """Give each step that has no handler a default display (``sluiceway run`` does, unless
    ``--quiet``): on a terminal the ``console`` view (streamed answer, spinner, live progress
    of batches); piped, or for a step that does not stream, one line per step."""
    stdout: TextIO | None = None
    """Where console handlers write (``None``: ``sys.stdout`` at write time)."""
    stderr: TextIO | None = None
    """Where diagnostics go (``None``: ``sys.stderr`` at write time)."""
    cassette: str | None = None
    """``replay`` mode: the cassette to replay."""
    record: str | None = None
    """Record every provider event of the run into this cassette file."""
    speed: float = 1.0
    """``replay``: playback speed factor."""
    instant: bool = False
    """``replay``: no delays at all."""
    provider: Provider | None = None
    """Use this provider instance for model steps instead of the mode's (tests, ``invoke``).
    The run closes it at its end."""
    live_options: Mapping[str, Any] = attrs.field(factory=dict)
    """``live`` mode: keyword arguments for its ``AnthropicProvider`` (``max_starting``,
    ``streams_per_client``, ...; ``--max-starting``, ``--streams-per-client``). Any other
    mode with live options is an error (``ModeUnavailableError``), not a silent no-op."""
    resume: str | os.PathLike[str] | None = None
    """The folder of an earlier run of this pipeline to resume (``--resume RUN_DIR``): its saved
    responses whose inputs hash the same are replayed, not paid for again. The run is a new run,
    in a new folder."""
    executor: Literal["local", "ray"] | None = None
    """Where every ``claude_batch`` step runs (``--executor``); ``None``: each step's own
    ``batch_config.executor``."""
    run_id: str | None = None
    """Force the run id (default: ``run_<UTC time>_<random>``)."""
    tools: tuple[Any, ...] = ()
    """Function tools (``@sluiceway.tool``) every model step offers (the Python API's ``tools=``)."""
    can_use_tool: Any = None
    """The permission hook of every model step without its own (``can_use_tool=``)."""
    handler_plan: Any = None
    """The Python API's ``handlers=`` / ``on_event=`` objects (a ``_handler_sources.HandlerPlan``):
    ``replaces(step_name)`` drops the spec's handlers of a step, ``build(step, spec, context_for)``
    returns the ``(handler, name)`` pairs to attach to a streaming step."""


#: The options of a run given none (frozen: safe as a shared default).
DEFAULT_OPTIONS: Final = RunOptions()


def new_provider(ref: str, **kwargs: Any) -> Provider:
    """A new provider of a built-in name (``mock``, ``claude``...) or a dotted path to a class."""
    cls = resolve_provider(ref)
    return cls(**kwargs)


def open_mode_provider(spec: Pipeline, options: RunOptions) -> Provider:
    """The run's provider for its mode (and ``--record``). The caller closes it."""
    if options.live_options and (options.mode != "live" or options.provider is not None):
        given = ", ".join(sorted(options.live_options))
        where = "a given provider" if options.provider is not None else f"{options.mode} mode"
        raise ModeUnavailableError(f"live options ({given}) apply to live mode's own provider, not to {where}")
    if options.provider is not None:
        provider = options.provider
    elif options.mode == "mock":
        provider = new_provider("mock")
    elif options.mode == "live":
        provider = _live_provider(options)
    elif options.mode == "replay":
        provider = _replay_provider(spec, options)
    else:
        raise ModeUnavailableError(f"unknown mode {options.mode!r}; expected mock, live or replay")
    if options.record is not None:
        try:
            provider = RecordingProvider(provider, options.record, pipeline=spec.name)
        except OSError as exc:
            raise ModeUnavailableError(f"cannot record into {options.record!r}: {exc}") from exc
    return provider


def _live_provider(options: RunOptions) -> Provider:
    try:
        provider = new_provider("claude", **options.live_options)
    except (TypeError, ValueError) as exc:
        if not options.live_options:
            raise
        # an unknown option, or a value out of range
        raise ModeUnavailableError(f"live mode: bad live options: {exc}") from exc
    if getattr(provider, "api_key", "unknown") is None:
        # fail before the run starts, not at its first step
        raise AuthenticationError("no Anthropic API key: set ANTHROPIC_API_KEY (live mode needs one)")
    return provider


def _replay_provider(spec: Pipeline, options: RunOptions) -> Provider:
    if options.cassette is None:
        raise ModeUnavailableError("replay mode needs a cassette: --cassette FILE, or cassette= from Python")
    cls = resolve_provider("replay")
    kwargs: dict[str, Any] = {"pipeline": spec.name}
    if options.instant:
        kwargs["instant"] = True
    else:
        kwargs["speed"] = options.speed
    try:
        return cls(options.cassette, **kwargs)
    except (OSError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise  # a corrupted cassette, or one from another pipeline: file:line issues
        raise ModeUnavailableError(f"cannot replay {options.cassette!r}: {exc}") from exc
