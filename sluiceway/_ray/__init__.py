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

The driver side (``run_ray_batch``: shards, pumps, relays, re-dispatch when an
actor dies) is the step type's module, ``sluiceway._execution._step_batch_ray``:
it uses the executor's parts, and this package imports nothing of the executor,
so the two never import each other.

Besides ``sluiceway.aio`` this is the one place that may bridge to another
event loop; it needs none: Ray's blocking calls run in trio worker threads.
"""

from ._cluster import RAY_INSTALL_HINT as RAY_INSTALL_HINT
from ._cluster import RayUnavailableError as RayUnavailableError
from ._cluster import ray_unavailable as ray_unavailable

__all__ = ("RAY_INSTALL_HINT", "RayUnavailableError", "ray_unavailable")
