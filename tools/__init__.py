"""The building blocks of the model step types: built-in tools, conversation sessions, extraction.

An implementation layer, like ``sluiceway.providers`` and ``sluiceway.handlers``:
it imports ``sluiceway.engine`` (the ``ToolRunner`` protocol ``Toolbox``
implements) and the error tree, nothing else of sluiceway; the facade builds
these from a spec and hands them to the engine.

- ``Toolbox``: Read, Write, Edit, Glob, Grep, LS and Bash, confined to a workspace
  (Bash inside bubblewrap; ``SANDBOXES``, ``DEFAULT_SANDBOX``, ``SandboxWarning``).
- ``SessionStore``: the conversations ``claude_session`` steps continue, on disk with ``persist``.
- ``extract_output`` / ``extract_value``: structured values from model text
  (``claude_extract``, a ``previous_response`` part's ``extract``).
"""

from ._extract import ExtractError as ExtractError
from ._extract import extract_output as extract_output
from ._extract import extract_value as extract_value
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
