"""The pipeline spec model: frozen attrs classes, one per step type.

These classes are pure data. YAML is turned into them by ``_load`` (cattrs,
with its own converter); Python users build them directly::

    from sluiceway.specs import Pipeline, ClaudeStep
    spec = Pipeline(name="demo", steps=(ClaudeStep(name="hi", prompt="Say hi"),))

Field names follow the canonical YAML (the seeds' "current system").
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ._dump import dumps

__all__ = (
    "STEP_TYPES",
    "BatchConfig",
    "BatchTask",
    "ClaudeBatchStep",
    "ClaudeExtractStep",
    "ClaudeOptions",
    "ClaudeRobustStep",
    "ClaudeSessionStep",
    "ClaudeSmartStep",
    "ClaudeStep",
    "Defaults",
    "ExtractionConfig",
    "FilePart",
    "LlmStep",
    "McpServer",
    "MockSpec",
    "MockToolCall",
    "MockTurn",
    "ParallelClaudeStep",
    "ParallelTask",
    "Pipeline",
    "PreviousResponsePart",
    "Pricing",
    "PromptPart",
    "PythonStep",
    "RetryConfig",
    "SessionConfig",
    "StaticPart",
    "Step",
)

HandlerRef = str | tuple[str, ...]
"""A handler name (``simple``), a dotted path to a Handler class, or a list of them."""


# --------------------------------------------------------------------------- prompt parts


@attrs.frozen
class StaticPart:
    """Literal prompt text (templates allowed)."""

    content: str
    """The text."""
    type: Literal["static"] = "static"


@attrs.frozen
class FilePart:
    """The contents of a file, relative to the workspace."""

    path: str
    """The file's path."""
    type: Literal["file"] = "file"


@attrs.frozen
class PreviousResponsePart:
    """The output of an earlier step."""

    step: str
    """The earlier step's name."""
    extract: str | None = None
    """A JSON path (``$.a.b[0]``, or ``a.b``) into JSON output, or ``re:PATTERN`` for a regex group."""
    type: Literal["previous_response"] = "previous_response"


PromptPart = StaticPart | FilePart | PreviousResponsePart
Prompt = str | tuple[PromptPart, ...]


# --------------------------------------------------------------------------- options


@attrs.frozen
class McpServer:
    """An MCP server a step's tools come from: a ``command`` (stdio) or a ``url`` (streamable HTTP)."""

    command: str | None = None
    """The program to start; it speaks MCP on its stdin and stdout."""
    args: tuple[str, ...] = ()
    """The program's arguments."""
    env: dict[str, str] = attrs.field(factory=dict)
    """Environment variables added to the server's."""
    url: str | None = None
    """A streamable HTTP endpoint, instead of ``command``."""


@attrs.frozen
class ClaudeOptions:
    """Model and agent options (the seeds' ``claude_options``)."""

    max_turns: int | None = None
    """Tool-use loop limit: model calls per step."""
    allowed_tools: tuple[str, ...] | None = None
    """Built-in tools the model may use (``Read``, ``Write``, ``Edit``, ``Glob``, ``Grep``, ``LS``, ``Bash``);
    naming a function tool or an ``mcp__<server>[__<tool>]`` limits those to the ones named."""
    disallowed_tools: tuple[str, ...] | None = None
    """Tools removed from ``allowed_tools``."""
    system_prompt: str | None = None
    """Replaces the default system prompt."""
    append_system_prompt: str | None = None
    """Appended to the system prompt."""
    model: str | None = None
    """The model, e.g. ``claude-sonnet-4-5``."""
    fallback_model: str | None = None
    """Used when the model is overloaded (with claude_robust)."""
    max_tokens: int | None = None
    """Output cap per call."""
    temperature: float | None = None
    """Sampling temperature, 0..1."""
    timeout_ms: int | None = None
    """Whole-step timeout in milliseconds."""
    cwd: str | None = None
    """Working directory for tools, relative to the workspace."""
    first_token_timeout_ms: int | None = None
    """Deadline for the first content event of a call."""
    idle_timeout_ms: int | None = None
    """Deadline between content events (pings are not progress)."""
    sandbox: Literal["bubblewrap", "none"] | None = None
    """Where ``Bash`` runs: ``bubblewrap`` (the default: the workspace read-write, the system
    read-only, nothing else; needs ``bwrap``) or ``none`` (unconfined; warns on every run)."""
    sandbox_network: bool | None = None
    """Let ``Bash`` in the sandbox use the network (default ``false``: only loopback)."""
    tools: tuple[str, ...] | None = None
    """Function tools: dotted paths to ``@sluiceway.tool`` functions (a module beside the spec may be named)."""
    mcp_servers: dict[str, McpServer] | None = None
    """MCP servers by name; their tools are offered as ``mcp__<name>__<tool>``."""
    can_use_tool: str | None = None
    """A dotted path to a permission hook ``(tool_name, input, context) -> allow | deny``."""
    tool_timeout_ms: int | None = None
    """Deadline of one tool call (function and MCP tools)."""


@attrs.frozen
class MockToolCall:
    """A tool call the mock model makes."""

    name: str
    """The tool (``Read``, ``Write``, ...)."""
    input: dict[str, Any] = attrs.field(factory=dict)
    """The JSON input."""


@attrs.frozen
class MockTurn:
    """One scripted model call of a tool-use loop."""

    text: str = ""
    """The text the model writes."""
    thinking: str | None = None
    """Thinking text, streamed before the text."""
    tool_calls: tuple[MockToolCall, ...] = ()
    """Tool calls after the text; the loop continues when there are any."""


@attrs.frozen
class MockSpec:
    """Scripts the embedded mock provider for one step."""

    response: str | None = None
    """The response text (a single turn). Derived from the prompt when absent."""
    turns: tuple[MockTurn, ...] = ()
    """A multi-call script; overrides ``response``."""
    tool_calls: tuple[MockToolCall, ...] = ()
    """Tool calls of a single-turn script (then a final turn says ``response``)."""
    thinking: str | None = None
    """Thinking text of a single-turn script."""
    pattern: Literal["fast", "slow", "chunked", "realistic"] = "fast"
    """Pacing: ``fast`` (no delay), ``slow``, ``chunked`` (bursts), ``realistic`` (jittered)."""
    delay_ms: float | None = None
    """Delay between deltas, overriding the pattern's."""
    first_token_delay_ms: float | None = None
    """Delay before the first delta, overriding the pattern's."""
    chunk_size: int | None = None
    """Characters per delta, overriding the pattern's."""
    error: Literal["overloaded", "rate_limit", "connection_lost", "timeout", "server_error"] | None = None
    """An injected error."""
    error_after: int | None = None
    """Deltas delivered before the injected error (0: before any output)."""
    error_attempts: int | None = None
    """How many attempts fail with the injected error (default: all)."""
    error_turn: int | None = None
    """Only calls of this turn of the tool loop (0-based) fail (default: every turn)."""
    retry_after: float | None = None
    """``retry_after`` seconds the injected rate_limit/overloaded error carries."""
    model: str | None = None
    """The model name the mock reports."""


@attrs.frozen
class Pricing:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0


@attrs.frozen
class SessionConfig:
    """``claude_session``: a conversation shared across steps (and runs, with persist)."""

    session_name: str
    """Steps with the same session name share the conversation."""
    persist: bool = False
    """Store under the workspace and resume on the next run."""
    max_history: int | None = None
    """Keep at most this many messages of history."""


@attrs.frozen
class ExtractionConfig:
    """``claude_extract``: what to pull out of the streamed text."""

    format: Literal["json", "markdown", "summary", "text"] = "json"
    """The output format."""
    schema: dict[str, Any] | None = None
    """A JSON Schema the extracted JSON must satisfy."""


@attrs.frozen
class BatchConfig:
    """``claude_batch`` limits, and where the tasks run (``executor``)."""

    max_parallel: int = 3
    """Tasks running at once (with ``executor: ray``: at once on each actor)."""
    timeout_per_task: float | None = None
    """Seconds per task."""
    executor: Literal["local", "ray"] = "local"
    """``local``: in this process. ``ray``: on Ray actors (``pip install 'sluiceway[ray]'``;
    docs/scale_out.md), every event streamed back to this process's handlers."""
    ray_address: str | None = None
    """``executor: ray``: the cluster to join (``auto``, or an address such as ``ray://host:10001``
    or ``host:6379``). Unset: a local cluster started for the run and stopped at its end."""
    actors: int = 2
    """``executor: ray``: how many long-lived actors share the tasks (one shard each)."""
    runtime_env: dict[str, Any] = attrs.field(factory=dict)
    """``executor: ray``: the actors' Ray runtime environment (``pip``, ``env_vars``,
    ``working_dir``...), passed through; live mode adds the API key and base URL to its
    ``env_vars``."""


@attrs.frozen
class BatchTask:
    """One batch task."""

    prompt: Prompt
    """The task's prompt."""
    name: str | None = None
    """A label; ``NAME[i]`` is the sub-step path either way."""


@attrs.frozen
class RetryConfig:
    """``claude_robust`` retry policy; one budget governs (the SDK's own retries are off)."""

    max_retries: int = 3
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    base_delay_ms: int = 1000
    max_delay_ms: int = 30000
    retry_on: tuple[
        Literal["overloaded", "rate_limit", "connection", "timeout", "server_error"], ...
    ] = ("overloaded", "rate_limit", "connection", "timeout", "server_error")
    fallback_model: str | None = None
    """Switch to this model after the first overloaded failure."""


Bound = int | Literal["none"]
"""A bound in milliseconds, or ``none``: no bound."""


# --------------------------------------------------------------------------- steps


@attrs.frozen(kw_only=True)
class _StepBase:
    name: str
    """The step's name (``id`` is accepted as an alias in YAML)."""
    prompt: Prompt | None = None
    """A string, or a list of parts (``static``, ``file``, ``previous_response``)."""
    condition: str | None = None
    """Run only when this is true: ``steps.NAME.text contains 'x'``, ``vars.flag``, ``not ...``."""
    output_to_file: str | None = None
    """Write the step's output to this file (relative to the run's output folder)."""
    claude_options: ClaudeOptions = ClaudeOptions()
    """Model and agent options."""
    stream: bool = True
    """Stream events to the handlers as they arrive."""
    stream_handler: HandlerRef | None = None
    """Handler name(s) or dotted path(s); ``None`` uses the defaults (or none)."""
    stream_handler_opts: dict[str, Any] = attrs.field(factory=dict)
    """Options for the handler(s); unknown options are errors."""
    stream_buffer_size: int | None = None
    """Events each consumer channel holds; bounds memory, never adds latency."""
    on_handler_error: Literal["isolate", "fail"] | None = None
    """``isolate`` (warn once, keep going; the default) or ``fail`` the step."""
    handler_timeout_ms: Bound | None = None
    """How long one handler call (``handle``, ``handle_batch``) may take before it counts as
    that handler's failure under ``on_handler_error`` (default 30000); ``none``: no bound."""
    mock: MockSpec | None = None
    """Scripts the mock provider."""


@attrs.frozen(kw_only=True)
class ClaudeStep(_StepBase):
    """A Claude call with a tool-use loop up to ``max_turns``."""

    type: Literal["claude"] = "claude"


@attrs.frozen(kw_only=True)
class ClaudeSmartStep(_StepBase):
    """A Claude call whose options start from a preset."""

    preset: Literal["development", "production", "analysis", "chat"] = "development"
    type: Literal["claude_smart"] = "claude_smart"


@attrs.frozen(kw_only=True)
class ClaudeSessionStep(_StepBase):
    """A Claude call that continues a named conversation."""

    session_config: SessionConfig
    type: Literal["claude_session"] = "claude_session"


@attrs.frozen(kw_only=True)
class ClaudeExtractStep(_StepBase):
    """A Claude call whose text is extracted (and validated) as structured output."""

    extraction_config: ExtractionConfig = ExtractionConfig()
    type: Literal["claude_extract"] = "claude_extract"


@attrs.frozen(kw_only=True)
class ClaudeBatchStep(_StepBase):
    """Many prompts, at most ``max_parallel`` at once; each a sub-step ``NAME[i]``."""

    batch_config: BatchConfig = BatchConfig()
    tasks: tuple[BatchTask, ...] = ()
    """Explicit tasks."""
    items: tuple[Any, ...] = ()
    """Items; each renders ``prompt`` with ``{{item}}`` (and ``{{index}}``)."""
    type: Literal["claude_batch"] = "claude_batch"


@attrs.frozen(kw_only=True)
class ClaudeRobustStep(_StepBase):
    """A Claude call with retries that never duplicate output."""

    retry_config: RetryConfig = RetryConfig()
    type: Literal["claude_robust"] = "claude_robust"


@attrs.frozen(kw_only=True)
class ParallelTask:
    """One branch of ``parallel_claude``; its sub-step path is ``STEP.ID``."""

    id: str
    prompt: Prompt
    claude_options: ClaudeOptions = ClaudeOptions()
    mock: MockSpec | None = None


@attrs.frozen(kw_only=True)
class ParallelClaudeStep(_StepBase):
    """Branches run concurrently in a child nursery."""

    parallel_tasks: tuple[ParallelTask, ...] = ()
    fail_fast: bool = True
    """The first failure cancels its siblings (which still get ``Cancelled``)."""
    type: Literal["parallel_claude"] = "parallel_claude"


@attrs.frozen(kw_only=True)
class LlmStep(_StepBase):
    """A model call through a named provider."""

    provider: str = "claude"
    """``claude``, ``mock``, or a dotted path to a Provider class."""
    type: Literal["llm"] = "llm"


@attrs.frozen(kw_only=True)
class PythonStep(_StepBase):
    """Calls a user function (sync or async) with a context of prior results."""

    callable: str
    """``package.module:function`` or ``package.module.function``."""
    input_stream: str | None = None
    """Another step whose live events this step consumes, concurrently with it."""
    args: dict[str, Any] = attrs.field(factory=dict)
    """Keyword arguments passed in the context."""
    type: Literal["python"] = "python"


Step = (
    ClaudeStep
    | ClaudeSmartStep
    | ClaudeSessionStep
    | ClaudeExtractStep
    | ClaudeBatchStep
    | ClaudeRobustStep
    | ParallelClaudeStep
    | LlmStep
    | PythonStep
)

STEP_TYPES: dict[str, type] = {
    "claude": ClaudeStep,
    "claude_smart": ClaudeSmartStep,
    "claude_session": ClaudeSessionStep,
    "claude_extract": ClaudeExtractStep,
    "claude_batch": ClaudeBatchStep,
    "claude_robust": ClaudeRobustStep,
    "parallel_claude": ParallelClaudeStep,
    "llm": LlmStep,
    "python": PythonStep,
}


# --------------------------------------------------------------------------- pipeline


@attrs.frozen(kw_only=True)
class Defaults:
    """Settings every step inherits unless it sets its own."""

    claude_options: ClaudeOptions = ClaudeOptions()
    """Merged under each step's options, field by field."""
    stream_handler: HandlerRef | None = None
    stream_handler_opts: dict[str, Any] = attrs.field(factory=dict)
    stream_buffer_size: int | None = None
    on_handler_error: Literal["isolate", "fail"] | None = None
    handler_timeout_ms: Bound | None = None
    pricing: dict[str, Pricing] = attrs.field(factory=dict)
    """Overrides of the built-in price table, by model name."""


@attrs.frozen(kw_only=True)
class Pipeline:
    """A whole pipeline: the root of a spec."""

    name: str
    steps: tuple[Step, ...]
    description: str | None = None
    defaults: Defaults = Defaults()
    environment: dict[str, Any] = attrs.field(factory=dict)
    """Free-form environment settings (``mode: development``...)."""
    variables: dict[str, Any] = attrs.field(factory=dict)
    """Values for ``{{vars.NAME}}``; ``--set KEY=VALUE`` overrides them."""
    workspace_dir: str | None = None
    """Where tools run and relative files resolve (default: the spec's folder)."""
    output_dir: str | None = None
    """Where ``<run_id>/result.json`` and step outputs go (default: ``./outputs``)."""
    source: str | None = attrs.field(default=None, eq=False, repr=False)
    """The file the spec was loaded from, if any (not part of the spec's value)."""

    def to_yaml(self) -> str:
        """The canonical YAML of this spec; ``sluiceway.specs.loads(spec.to_yaml()) == spec``."""
        return dumps(self)
