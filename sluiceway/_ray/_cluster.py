"""Ray itself, imported lazily: the install hint, the cluster a step runs on, and the actors' options."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from .._errors import SluicewayError

__all__ = (
    "CLUSTER_CLOSE_TIMEOUT",
    "RAY_INSTALL_HINT",
    "RAY_NAMESPACE",
    "RayUnavailableError",
    "actor_runtime_env",
    "import_ray",
    "open_cluster",
    "ray_unavailable",
)

#: What to run to get Ray, in every error that says it is missing.
RAY_INSTALL_HINT: Final = "pip install 'sluiceway[ray]'"
#: The Ray namespace of the actors a run makes (tests find them by name there).
RAY_NAMESPACE: Final = "sluiceway"
#: Seconds allowed for stopping a local cluster (or leaving a joined one) at a step's end.
CLUSTER_CLOSE_TIMEOUT: Final = 30.0
#: The environment variables that reach the actors in live mode (through the runtime
#: environment only: never in an event, a log line or an actor's arguments).
_LIVE_ENV: Final = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")
#: Ray's loggers whose warnings at start-up say nothing a run's user can act on.
_QUIET_LOGGERS: Final = ("ray._private.worker", "ray._private.authentication.authentication_token_setup")


class RayUnavailableError(SluicewayError):
    """``executor: ray`` without Ray installed (``pip install 'sluiceway[ray]'``)."""


def ray_unavailable() -> str | None:
    """Why ``executor: ray`` cannot run here (Ray is not installed), or ``None`` when it can.

    Looks for the package without importing it (importing Ray takes seconds).
    """
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"executor: ray needs Ray, which is not installed: {RAY_INSTALL_HINT}"
    return None


def import_ray() -> Any:
    """The ``ray`` module. Raises ``RayUnavailableError`` (with the install hint) without it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"executor: ray needs Ray ({exc}): {RAY_INSTALL_HINT}") from exc
    return ray


def actor_runtime_env(runtime_env: Mapping[str, Any], *, live: bool) -> dict[str, Any]:
    """The actors' runtime environment: *runtime_env* as given, and in live mode the API's
    key and base URL from this process's environment added to its ``env_vars``."""
    env = dict(runtime_env)
    if live:
        env_vars = dict(env.get("env_vars") or {})
        for name in _LIVE_ENV:
            value = os.environ.get(name)
            if value and name not in env_vars:
                env_vars[name] = value
        if env_vars:
            env["env_vars"] = env_vars
    return env


@asynccontextmanager
async def open_cluster(ray: Any, address: str | None) -> AsyncIterator[None]:
    """Be connected to a Ray cluster for the block.

    Already connected (``ray.init`` was called in this process): that cluster,
    left as it is. Else *address* ``None`` starts a local cluster (``ray.init``
    without its dashboard) that is stopped when the block ends; ``auto`` or an
    address joins that cluster, and leaving disconnects from it without
    stopping it. Starting (seconds) runs in a worker thread; cancelled while
    it starts, it waits for the start to end and then stops the cluster (a
    start cut short would leave Ray's agents running). Stopping runs shielded,
    bounded by ``CLUSTER_CLOSE_TIMEOUT``.
    """
    if ray.is_initialized():
        yield
        return

    def init() -> None:
        # ray.init warns that it sets no SIGTERM handler off the main thread (ours stays, as
        # wanted), and that its cluster uses token authentication (the default): not the user's news
        quiet = [logging.getLogger(name) for name in _QUIET_LOGGERS]
        levels = [logger.level for logger in quiet]
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            ray.init(
                address=address or "local",
                include_dashboard=False if address is None else None,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
        finally:
            for logger, level in zip(quiet, levels, strict=True):
                logger.setLevel(level)

    try:
        try:
            # not abandoned when cancelled: a start cut short leaves processes behind, so a
            # cancellation waits for the start to end, then stops what it started (below)
            await trio.to_thread.run_sync(init)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SluicewayError(f"executor: ray: cannot connect to the Ray cluster at {address}: {exc}") from exc
        yield
    finally:
        if ray.is_initialized():
            with trio.move_on_after(CLUSTER_CLOSE_TIMEOUT, shield=True):
                await trio.to_thread.run_sync(ray.shutdown, abandon_on_cancel=True)
