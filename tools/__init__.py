"""The building blocks of the model step types: built-in tools, conversation sessions, extraction.

An implementation layer, like ``sluiceway.providers`` and ``sluiceway.handlers``:
it imports ``sluiceway.engine`` (the ``ToolRunner`` protocol ``Toolbox``
implements) and the error tree, nothing else of sluiceway; the facade builds
these from a spec and hands them to the engine.

- ``Toolbox``: Read, Write, Edit, Glob, Grep, LS and Bash, confined to a workspace.
- ``SessionStore``: the conversations ``claude_session`` steps continue, on disk with ``persist``.
- ``extract_output`` / ``extract_value``: structured values from model text
  (``claude_extract``, a ``previous_response`` part's ``extract``).
"""

from ._extract import ExtractError as ExtractError
from ._extract import extract_output as extract_output
from ._extract import extract_value as extract_value
from ._schemas import ALL_TOOLS as ALL_TOOLS
from ._schemas import DEFAULT_TOOLS as DEFAULT_TOOLS
from ._sessions import SessionError as SessionError
from ._sessions import SessionStore as SessionStore
from ._toolbox import Toolbox as Toolbox
