"""A small MCP stdio server for the tests, written with the official ``mcp`` SDK.

Tools: ``add(a, b)``, ``echo(text)``, ``crash(message)`` (writes *message* to
stderr and exits at once: a server dying mid-call) and ``slow(seconds)``.
Run as ``python tests/mcp_server_sample.py``; it speaks MCP on stdin/stdout.
With ``--pid-file PATH`` it writes its process id there first.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("sample")


@server.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


@server.tool()
def crash(message: str) -> str:
    """Die at once, writing *message* to stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(3)


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "slept"


if __name__ == "__main__":
    if "--pid-file" in sys.argv:
        with open(sys.argv[sys.argv.index("--pid-file") + 1], "w") as f:
            f.write(str(os.getpid()))
    if "--fail-start" in sys.argv:
        sys.stderr.write("sample server: cannot start (asked to fail)\n")
        sys.exit(2)
    server.run("stdio")
