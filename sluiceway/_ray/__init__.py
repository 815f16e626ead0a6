"""The Ray bridge: ``claude_batch`` with ``executor: ray`` (docs/scale_out.md).

Ray is an extra (``pip install 'sluiceway[ray]'``) and is imported only when a
step runs on it. Its modules:

- ``_jobs``: the plain values shipped to the actors (settings, jobs, tasks) and
  the task outcomes that come back beside the events.
- ``_actor``: ``BatchActor``, one long-lived trio run per actor streaming its
  tasks with the engine, its events yielded in batches by one streaming
  generator per job.
- ``_cluster``: importing Ray, the install hint, the cluster a step joins or
  starts, the actors' runtime environment (the API key travels only there).
- ``_driver``: ``run_ray_batch``: shards, pumps, relays, re-dispatch when an
  actor dies.

Besides ``sluiceway.aio`` this is the one place that may bridge to another
event loop; it needs none: Ray's blocking calls run in trio worker threads.
"""

from collections.abc import Sequence
from typing import Any

from ._cluster import RAY_INSTALL_HINT as RAY_INSTALL_HINT
from ._cluster import RayUnavailableError as RayUnavailableError
from ._cluster import ray_unavailable as ray_unavailable

__all__ = ("RAY_INSTALL_HINT", "RayUnavailableError", "ray_unavailable", "run_ray_batch")


async def run_ray_batch(state: Any, step: Any, consumers: Sequence[Any], prompts: Sequence[tuple[Any, Any]]) -> Any:
    """``claude_batch`` with ``executor: ray`` (see ``_driver.run_ray_batch``); loads the driver on use."""
    from ._driver import run_ray_batch as run

    return await run(state, step, consumers, prompts)
