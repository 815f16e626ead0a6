"""``python -m bench._ray``: one big ``claude_batch``, in-process against ``executor: ray`` (2 actors).

Each run is a child process (``--child``) against the bench's fake server
(``bench/_server.py``, its own process): a batch of ``tasks`` tasks, each a
stamped stream of ``deltas`` deltas paced at 20/s, ``parallel`` streaming at once
in all (locally ``max_parallel``; on Ray ``parallel / actors`` per actor). One
lag recorder (``bench/_lag.py``) is the step's handler in the driver: receipt
minus the server's send stamp, per delta. The Ray child starts its local cluster
(``ray.init`` without the dashboard) before the batch, so the batch's figures do
not include the cluster's start, which is reported on its own.

CPU and memory are summed over the child's process tree: the driver and, on
Ray, every process of the cluster (GCS, raylet, the actors' workers...), sampled
every ``_SAMPLE`` seconds from /proc (a process's CPU after its last sample is
missed: at most one interval of each actor, at the end). The fake server's CPU
is reported apart. Prints the rows; writes ``bench/results_ray.json``.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._children import BENCH, PY, ROOT, Server
from ._lag import LagRecorder
from ._measure import ms_percentiles
from ._report import machine

#: Seconds between two samples of the process tree.
_SAMPLE = 0.1
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> dict[int, tuple[float, int]]:
    """``pid -> (CPU seconds, RSS bytes)`` of *root* and its descendants (from /proc)."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[float, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        stats[pid] = ((int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE)
    ours = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return {pid: stats[pid] for pid in ours if pid in stats}


class TreeMonitor:
    """Samples this process's tree: the CPU each process used since ``start``, and the RSS peaks."""

    def __init__(self) -> None:
        self.base = _tree(os.getpid())
        self.cpu: dict[int, float] = {}
        self.rss_peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        for pid, (cpu, rss) in _tree(os.getpid()).items():
            self.cpu[pid] = cpu - self.base.get(pid, (0.0, 0))[0]
            self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), rss)

    def _loop(self) -> None:
        while not self._stop.wait(_SAMPLE):
            self.sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()


class CountingRecorder(LagRecorder):
    """The lag recorder, also counting every event and its first and last receipt."""

    def __init__(self, lags: array.array[float]) -> None:
        super().__init__(lags)
        self.events = 0
        self.first_at: float | None = None
        self.last_at = 0.0

    def _handle_events(self, events: Any) -> None:
        now = time.monotonic()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.events += len(events)
        super()._handle_events(events)


def child(settings: dict[str, Any]) -> dict[str, Any]:
    """One run of the batch; its figures."""
    import sluiceway

    executor = settings["executor"]
    tasks, deltas, parallel, actors = settings["tasks"], settings["deltas"], settings["parallel"], settings["actors"]
    os.environ["ANTHROPIC_BASE_URL"] = settings["url"]
    os.environ["ANTHROPIC_API_KEY"] = "sk-bench"
    figures: dict[str, Any] = {"executor": executor}
    ray = None
    if executor == "ray":
        import ray

        began = time.monotonic()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        figures["cluster_start_s"] = time.monotonic() - began
        figures["cluster_rss_mb"] = sum(rss for _, rss in _tree(os.getpid()).values()) / 2**20
    config: dict[str, Any] = {"max_parallel": parallel}
    if executor == "ray":
        config = {"executor": "ray", "actors": actors, "max_parallel": parallel // actors}
    model = f"fake:text?deltas={deltas}&delay_ms=50&stamp=1"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "batch.yaml"
        spec.write_text(json.dumps({
            "name": "bench_batch",
            "steps": [{
                "name": "batch", "type": "claude_batch", "claude_options": {"model": model, "max_tokens": 64},
                "batch_config": config, "items": list(range(tasks)), "prompt": "task {{index}}",
            }],
        }))
        lags: array.array[float] = array.array("d")
        recorder = CountingRecorder(lags)
        sluiceway.tune_gc()
        monitor = TreeMonitor()
        monitor.start()
        began = time.monotonic()
        result = sluiceway.run_sync(spec, mode="live", on_event=recorder, output_dir=tmp)
        wall = time.monotonic() - began
        monitor.stop()
    if ray is not None:
        ray.shutdown()
    if result.status != "ok":
        raise SystemExit(f"the batch failed: {result.error}")
    span = recorder.last_at - (recorder.first_receipt or recorder.last_at)  # from the first delta on
    cpu = sum(monitor.cpu.values())
    figures.update(
        tasks=tasks, deltas_per_task=deltas, parallel=parallel, actors=actors if executor == "ray" else None,
        events=recorder.events, deltas=len(lags), expected_deltas=tasks * deltas, deltas_span_s=span,
        step_s=wall, events_per_s=recorder.events / span if span else None,
        cpu_s=cpu, cpu_per_1000_events_s=cpu / recorder.events * 1000,
        driver_cpu_s=monitor.cpu.get(os.getpid(), 0.0),
        processes=len(monitor.cpu),
        peak_rss_summed_mb=sum(monitor.rss_peak.values()) / 2**20,
        driver_peak_rss_mb=monitor.rss_peak.get(os.getpid(), 0) / 2**20,
        **ms_percentiles(sorted(lags), "_lag_ms"),
    )
    return figures


def run(tasks: int, deltas: int, parallel: int, actors: int) -> dict[str, Any]:
    """Both runs against one fake server; the figures of each, and the server's CPU during each."""
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    with Server() as server:
        for executor in ("local", "ray"):
            settings = {"executor": executor, "tasks": tasks, "deltas": deltas, "parallel": parallel,
                        "actors": actors, "url": server.url}
            print(f"{executor}: {tasks} tasks x {deltas} deltas at 20/s, {parallel} at once ...", flush=True)
            before = server.report()["cpu_s"]
            proc = subprocess.run([PY, "-m", "bench._ray", "--child", json.dumps(settings)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"the {executor} run failed:\n{proc.stderr[-3000:]}")
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["server_cpu_s"] = server.report()["cpu_s"] - before
            out[executor] = figures
    return out


def table(results: dict[str, Any]) -> str:
    """The rows for bench/README.md."""
    lines = ["| Batch | events/s | lag p50 / p99 | CPU per 1,000 events (processes) | peak RSS summed | all delivered |",
             "|---|---|---|---|---|---|"]
    for executor in ("local", "ray"):
        f = results[executor]
        name = "in-process" if executor == "local" else f"executor: ray, {f['actors']} actors"
        lines.append(
            f"| {name} | {f['events_per_s']:,.0f} | {f['p50_lag_ms']:.1f} / {f['p99_lag_ms']:.1f} ms "
            f"| {f['cpu_per_1000_events_s']:.3f} s ({f['processes']}) | {f['peak_rss_summed_mb']:,.0f} MB "
            f"| {'yes' if f['deltas'] == f['expected_deltas'] else 'no'} ({f['deltas']:,} deltas) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._ray", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--deltas", type=int, default=20, help="deltas per task (20/s)")
    parser.add_argument("--parallel", type=int, default=100, help="tasks streaming at once, in all")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--out", default=str(BENCH / "results_ray.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    results = run(args.tasks, args.deltas, args.parallel, args.actors)
    results["command"] = "python -m bench._ray " + " ".join(sys.argv[1:] if argv is None else argv)
    results["table"] = table(results)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
