"""Where a ``Bash`` command runs: inside bubblewrap (the default), or on the host when a step opts out.

With ``bubblewrap`` the command sees a machine of its own, built per command by
``bwrap`` (https://github.com/containers/bubblewrap):

- the workspace, read-write, at its real path (so ``pwd`` and paths in the
  output mean the same inside and out);
- the system read-only: ``/usr`` and the ``/bin``, ``/sbin``, ``/lib*`` links or
  folders, and a short list of ``/etc`` entries that programs need to start and
  resolve names (``_ETC_ENTRIES``; no ``shadow``, no ``ssl/private``);
- a private, empty ``/tmp`` (also ``HOME``), a minimal ``/dev``, and a ``/proc``
  of a new PID namespace whose ``/proc/sys`` is read-only;
- nothing else: no home folder, no other file of the machine;
- new PID, IPC, UTS and cgroup namespaces, and a new network namespace (only
  loopback) unless the step allows the network;
- a cleared environment (``_SANDBOX_ENV``), for the command and for ``bwrap``
  itself: ``bwrap`` is the namespace's pid 1, and its ``/proc/1/environ`` is
  readable inside;
- no capabilities (``--cap-drop ALL``: a root caller stays root by uid, but
  cannot remount, mount or change the host's sysctls), and a new session
  (``--new-session``: no ``TIOCSTI`` into our terminal).

When the command returns, pid 1 exits and the kernel kills every process left
in the namespace: background jobs, ``setsid``, ``nohup`` and double forks all
end with the command. ``--die-with-parent`` ends the sandbox when ``bwrap``'s
parent dies, and killing ``bwrap`` (a timeout, a cancellation) ends its pid 1,
and with it everything inside.

What it does not confine: CPU time, memory, disk space and the number of
processes (the command's timeout is the only bound), the contents of the
read-only system, the machine's kernel and its information files in ``/proc``,
the clock, and, when the network is allowed, everything reachable on it
(abstract unix sockets of the host included).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

__all__ = (
    "DEFAULT_SANDBOX",
    "NO_BWRAP",
    "SANDBOXES",
    "SandboxKind",
    "SandboxWarning",
    "bwrap_argv",
    "find_bwrap",
    "host_env",
    "sandbox_env",
)

SandboxKind = Literal["bubblewrap", "none"]

#: The sandboxes a ``Bash`` command can run in (``claude_options.sandbox``).
SANDBOXES: Final[tuple[SandboxKind, ...]] = ("bubblewrap", "none")
#: The sandbox when a step does not choose one. No sandbox, no Bash, unless a step opts out.
DEFAULT_SANDBOX: Final[SandboxKind] = "bubblewrap"

#: Why a step that offers ``Bash`` cannot run without ``bwrap``, and the two ways out.
NO_BWRAP: Final = (
    "Bash runs inside bubblewrap, and `bwrap` is not on PATH: install it "
    "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap; Linux only), "
    "or opt out for this step with `claude_options: {sandbox: none}` "
    "(Bash then runs unconfined, with a warning on every run)"
)

#: System folders bound read-only (or recreated as the same symlinks, on a merged /usr).
_SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The ``/etc`` entries a command sees, read-only, when they exist: what programs need to
#: start (the loader, users and groups, alternatives, locales, time zone) and, with the
#: network allowed, to resolve names and check certificates. Secrets (``shadow``,
#: ``ssl/private``, ``ssh``, ``sudoers``...) are never among them.
_ETC_ENTRIES: Final = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "locale.conf",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "networks",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki/tls/certs",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
)
#: The search path inside the sandbox (only the read-only system is there).
_SANDBOX_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxWarning(UserWarning):
    """A step runs ``Bash`` without a sandbox (``sandbox: none``): its commands reach the whole machine."""


def find_bwrap() -> str | None:
    """The ``bwrap`` executable on ``PATH``, or ``None``."""
    return shutil.which("bwrap")


def sandbox_env() -> dict[str, str]:
    """The whole environment of ``bwrap`` (and so of the sandbox's pid 1): nothing of ours."""
    return {"PATH": _SANDBOX_PATH, "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def host_env() -> dict[str, str]:
    """The environment of an unsandboxed command (``sandbox: none``): ours, minus ``ANTHROPIC_*``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # a merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for entry in _ETC_ENTRIES:
        path = f"/etc/{entry}"
        args += ["--ro-bind-try", path, path]
    return args


def bwrap_argv(
    bwrap: str, workspace: Path, cwd: Path, command: Sequence[str], *, network: bool = False
) -> list[str]:
    """The ``bwrap`` command line that runs *command* in *cwd*, confined as the module says.

    Args:
        bwrap: The ``bwrap`` executable.
        workspace: The resolved workspace, bound read-write at its own path.
        cwd: Where the command starts (inside *workspace*).
        command: The command and its arguments (paths as seen inside: the system's).
        network: Share the network namespace (default: only loopback).
    """
    env = {"PATH": _SANDBOX_PATH, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--cap-drop", "ALL",
        "--clearenv",
    ]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += _system_binds()
    args += [
        "--tmpfs", "/tmp",
        "--dev", "/dev",
        "--proc", "/proc",
        # bwrap covers /proc/sys only when it may write the folder; uid 0 without capabilities
        # may not, yet may write the files in it (sysctls check the uid): cover it read-only
        "--ro-bind", "/proc/sys", "/proc/sys",
        "--bind", str(workspace), str(workspace),
        "--chdir", str(cwd),
        "--",
        *command,
    ]
    return args
