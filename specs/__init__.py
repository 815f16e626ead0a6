"""Pipeline specs: pure data. YAML -> cattrs -> attrs spec classes, validation,
legacy-option normalization, migration and JSON Schema. Imports no engine."""

from ._model import STEP_TYPES as STEP_TYPES
from ._model import BatchConfig as BatchConfig
from ._model import BatchTask as BatchTask
from ._model import ClaudeBatchStep as ClaudeBatchStep
from ._model import ClaudeExtractStep as ClaudeExtractStep
from ._model import ClaudeOptions as ClaudeOptions
from ._model import ClaudeRobustStep as ClaudeRobustStep
from ._model import ClaudeSessionStep as ClaudeSessionStep
from ._model import ClaudeSmartStep as ClaudeSmartStep
from ._model import ClaudeStep as ClaudeStep
from ._model import Defaults as Defaults
from ._model import ExtractionConfig as ExtractionConfig
from ._model import FilePart as FilePart
from ._model import LlmStep as LlmStep
from ._model import MockSpec as MockSpec
from ._model import MockToolCall as MockToolCall
from ._model import MockTurn as MockTurn
from ._model import ParallelClaudeStep as ParallelClaudeStep
from ._model import ParallelTask as ParallelTask
from ._model import Pipeline as Pipeline
from ._model import PreviousResponsePart as PreviousResponsePart
from ._model import Pricing as Pricing
from ._model import PromptPart as PromptPart
from ._model import PythonStep as PythonStep
from ._model import RetryConfig as RetryConfig
from ._model import SessionConfig as SessionConfig
from ._model import StaticPart as StaticPart
from ._model import Step as Step
