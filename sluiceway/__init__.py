"""sluiceway: streaming LLM pipelines on trio.

Layout: ``sluiceway.specs`` (pure data), ``sluiceway.engine`` (events, actors,
executor), ``sluiceway.providers`` and ``sluiceway.handlers`` (implementations),
and this facade, which turns a spec into providers and handlers and runs it.
"""

# _errors is a leaf every layer imports; import it first.
from ._errors import AuthenticationError as AuthenticationError
from ._errors import HandlerError as HandlerError
from ._errors import OverloadedError as OverloadedError
from ._errors import PipelineError as PipelineError
from ._errors import ProviderError as ProviderError
from ._errors import ProviderTimeoutError as ProviderTimeoutError
from ._errors import RateLimitedError as RateLimitedError
from ._errors import SluicewayError as SluicewayError
from ._errors import SpecError as SpecError
from ._errors import SpecIssue as SpecIssue
from ._errors import StepError as StepError
from ._errors import StreamInterruptedError as StreamInterruptedError

__version__ = "0.1.0"
from ._api import RunHandle as RunHandle
from ._api import invoke as invoke
from ._api import open_run as open_run
from ._api import run as run
from ._api import run_sync as run_sync
from ._execution import ModeUnavailableError as ModeUnavailableError
from ._execution import StepContext as StepContext
from ._gc import tune_gc as tune_gc
from ._load import load as load
from ._load import loads as loads
from ._result import RunResult as RunResult
from ._result import StepResult as StepResult
