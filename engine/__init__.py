"""The streaming engine: events, tee, actors, step streaming, retries, metrics.

Knows providers, handlers and tools only through the protocols in ``_protocols``.
"""

from ._actors import HandlerWarning as HandlerWarning
from ._events import TERMINAL_EVENTS as TERMINAL_EVENTS
from ._events import Cancelled as Cancelled
from ._events import ContentBlock as ContentBlock
from ._events import Delta as Delta
from ._events import Done as Done
from ._events import Event as Event
from ._events import Failed as Failed
from ._events import Message as Message
from ._events import Metrics as Metrics
from ._events import Response as Response
from ._events import Retrying as Retrying
from ._events import RunFinished as RunFinished
from ._events import RunStarted as RunStarted
from ._events import StepStarted as StepStarted
from ._events import TextBlock as TextBlock
from ._events import ThinkingBlock as ThinkingBlock
from ._events import ThinkingDelta as ThinkingDelta
from ._events import ToolInputDelta as ToolInputDelta
from ._events import ToolResult as ToolResult
from ._events import ToolResultBlock as ToolResultBlock
from ._events import ToolUse as ToolUse
from ._events import ToolUseBlock as ToolUseBlock
from ._events import Usage as Usage
from ._group import stream_group as stream_group
from ._pricing import cost_usd as cost_usd
from ._protocols import Handler as Handler
from ._protocols import HandlerContext as HandlerContext
from ._protocols import HandlerPolicy as HandlerPolicy
from ._protocols import ModelRequest as ModelRequest
from ._protocols import Provider as Provider
from ._protocols import ToolRunner as ToolRunner
from ._provider_events import BlockStart as BlockStart
from ._provider_events import BlockStop as BlockStop
from ._provider_events import InputJsonChunk as InputJsonChunk
from ._provider_events import MessageDeltaInfo as MessageDeltaInfo
from ._provider_events import MessageStart as MessageStart
from ._provider_events import MessageStop as MessageStop
from ._provider_events import ProviderEvent as ProviderEvent
from ._provider_events import TextChunk as TextChunk
from ._provider_events import ThinkingChunk as ThinkingChunk
from ._retry import NO_RETRY as NO_RETRY
from ._retry import RETRY_CATEGORIES as RETRY_CATEGORIES
from ._retry import RetryPolicy as RetryPolicy
from ._run import RunContext as RunContext
from ._run import emit_run_finished as emit_run_finished
from ._run import emit_run_started as emit_run_started
from ._step import stream_step as stream_step
from ._step import to_api_block as to_api_block
from ._tee import DEFAULT_BUFFER_SIZE as DEFAULT_BUFFER_SIZE
from ._wiring import ChannelConsumer as ChannelConsumer
from ._wiring import Consumer as Consumer
from ._wiring import HandlerConsumer as HandlerConsumer
