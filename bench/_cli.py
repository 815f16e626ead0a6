"""``python -m bench``: the command line, and the order the sections run in."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import trio

from . import _aio, _backpressure, _concurrency, _hop, _throughput, _web
from ._children import BENCH, Server
from ._report import machine, write_results
from ._settings import FULL, QUICK, ConcurrencySettings, Sizes, from_child_json

SECTIONS = ("throughput", "concurrency", "backpressure", "hop", "aio", "web")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="sluiceway benchmarks (issue 6)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, numbers mean nothing")
    parser.add_argument("--out", default=str(BENCH / "results.json"), help="where to write the results JSON")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only these sections (repeatable); default: all"
    )
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)  # a child's settings
    return parser


def run_as_child(text: str) -> dict[str, Any]:
    """The figures of the child run *text* (its settings, as JSON) describes."""
    settings = from_child_json(text)
    if isinstance(settings, ConcurrencySettings):
        from ._concurrency_child import child_concurrency

        return child_concurrency(settings)
    return _backpressure.child_backpressure(settings)


def run_sections(sizes: Sizes, only: set[str], results: dict[str, Any]) -> None:
    """Run the sections in *only* into *results*, the fake server up while they need it."""
    backpressure = None
    if "backpressure" in only:  # virtual time, own processes: runs alongside throughput's warm-up
        backpressure = _backpressure.start(sizes)
        print("4. memory under backpressure (in two child processes) ...", flush=True)
    with Server() as server:
        if backpressure is not None:
            results["backpressure"] = _backpressure.finish(backpressure)
        if "throughput" in only:
            print("1-2. throughput and time to first token ...", flush=True)
            results["throughput"] = trio.run(_throughput.measure, server.url, sizes)
        if "concurrency" in only:
            print(f"3. {sizes.streams} concurrent streams for {sizes.seconds} s ...", flush=True)
            results["concurrency"] = _concurrency.measure(server, sizes)
    if "hop" in only:
        print("5. hop cost ...", flush=True)
        results["hop"] = _hop.measure(sizes)
    if "aio" in only:
        print("6. the asyncio bridge (sluiceway.aio) ...", flush=True)
        results["aio"] = _aio.aio_rows(_aio.QUICK if sizes is QUICK else _aio.FULL)
    if "web" in only:
        print("7. the web view with a stalled SSE client ...", flush=True)
        results["web"] = _web.web_row(deltas=500, repeats=1) if sizes is QUICK else _web.web_row()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; print the table; write results.json. Returns the exit status."""
    args = _parser().parse_args(argv)
    if args.child:
        print(json.dumps(run_as_child(args.child)))
        return 0

    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": machine(),
        "sizes": sizes.as_dict(),
    }
    print(f"sluiceway bench ({'quick' if args.quick else 'full'}) on {results['machine']['cpu']}, "
          f"{results['machine']['cores']} cores", flush=True)
    run_sections(sizes, set(args.only or SECTIONS), results)
    results["total_s"] = time.perf_counter() - began
    text = write_results(results, args.out)
    print()
    print(text)
    print(f"\n{results['command']}: {results['total_s']:.0f} s; results in {args.out}")
    return 0
