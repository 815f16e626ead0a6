"""The building blocks of the model step types: built-in tools, conversation sessions, extraction.

An implementation layer, like ``sluiceway.providers`` and ``sluiceway.handlers``:
it imports ``sluiceway.engine`` (the ``ToolRunner`` protocol ``Toolbox``
implements) and the error tree, nothing else of sluiceway; the facade builds
these from a spec and hands them to the engine.

- ``Toolbox``: Read, Write, Edit, Glob, Grep, LS and Bash, confined to a workspace
  (Bash inside bubblewrap; ``SANDBOXES``, ``DEFAULT_SANDBOX``, ``SandboxWarning``).
- ``tool`` / ``FunctionTool``: Python functions as tools (schema from type hints, cattrs-checked input).
- ``open_mcp_tools``: MCP servers' tools (``mcp__<server>__<tool>``), with the ``mcp`` SDK.
- ``StepTools``: all of a step's tools behind the permission hook (``allow`` / ``deny``).
- ``OutputSpec``: typed output as a forced tool, parsed as it streams (``PartialJson``).
- ``SessionStore``: the conversations ``claude_session`` steps continue, on disk with ``persist``.
- ``extract_output`` / ``extract_value``: structured values from model text
  (``claude_extract``, a ``previous_response`` part's ``extract``).
"""

from ._extract import ExtractError as ExtractError
from ._extract import extract_output as extract_output
from ._extract import extract_value as extract_value
from ._function import FunctionTool as FunctionTool
from ._function import ToolInputError as ToolInputError
from ._function import as_function_tool as as_function_tool
from ._function import tool as tool
from ._mcp import MCP_CALL_TIMEOUT as MCP_CALL_TIMEOUT
from ._mcp import McpServerError as McpServerError
from ._mcp import McpTools as McpTools
from ._mcp import open_mcp_tools as open_mcp_tools
from ._output import OUTPUT_TOOL_NAME as OUTPUT_TOOL_NAME
from ._output import OutputSpec as OutputSpec
from ._output import OutputValidationError as OutputValidationError
from ._output import PartialJson as PartialJson
from ._permission import Allow as Allow
from ._permission import CanUseTool as CanUseTool
from ._permission import Deny as Deny
from ._permission import ToolContext as ToolContext
from ._permission import allow as allow
from ._permission import deny as deny
from ._runner import StepTools as StepTools
from ._sandbox import DEFAULT_SANDBOX as DEFAULT_SANDBOX
from ._sandbox import NO_BWRAP as NO_BWRAP
from ._sandbox import SANDBOXES as SANDBOXES
from ._sandbox import SandboxWarning as SandboxWarning
from ._sandbox import find_bwrap as find_bwrap
from ._schemas import ALL_TOOLS as ALL_TOOLS
from ._schemas import DEFAULT_TOOLS as DEFAULT_TOOLS
from ._sessions import SessionError as SessionError
from ._sessions import SessionStore as SessionStore
from ._toolbox import Toolbox as Toolbox
