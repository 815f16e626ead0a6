"""sluiceway: streaming LLM pipelines on trio.

Layout: ``sluiceway.specs`` (pure data), ``sluiceway.engine`` (events, actors,
step streaming), ``sluiceway.providers`` and ``sluiceway.handlers``
(implementations), and this facade, which turns a spec into providers and
handlers and runs it.

Only the error tree (a leaf module) is imported here. Everything else is
imported on first use (module ``__getattr__``), so ``import sluiceway.specs``
loads no engine, provider or handler module, and ``import sluiceway`` is cheap.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the names below, as a type checker and an IDE see them
    from ._api import RunHandle as RunHandle
    from ._api import invoke as invoke
    from ._api import open_run as open_run
    from ._api import run as run
    from ._api import run_sync as run_sync
    from ._execution import ModeUnavailableError as ModeUnavailableError
    from ._execution import ResumeError as ResumeError
    from ._execution import ResumeWarning as ResumeWarning
    from ._execution import StepContext as StepContext
    from ._gc import tune_gc as tune_gc
    from ._load import load as load
    from ._load import loads as loads
    from ._result import RunResult as RunResult
    from ._result import StepResult as StepResult
    from .tools import FunctionTool as FunctionTool
    from .tools import ToolContext as ToolContext
    from .tools import allow as allow
    from .tools import deny as deny
    from .tools import tool as tool

#: Public name -> the private module that defines it, imported on first access.
_LAZY = {
    "RunHandle": "._api",
    "invoke": "._api",
    "open_run": "._api",
    "run": "._api",
    "run_sync": "._api",
    "ModeUnavailableError": "._execution",
    "ResumeError": "._execution",
    "ResumeWarning": "._execution",
    "StepContext": "._execution",
    "tune_gc": "._gc",
    "load": "._load",
    "loads": "._load",
    "RunResult": "._result",
    "StepResult": "._result",
    "FunctionTool": ".tools",
    "ToolContext": ".tools",
    "allow": ".tools",
    "deny": ".tools",
    "tool": ".tools",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
