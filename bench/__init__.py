"""sluiceway's benchmarks against the fake Messages API: ``python -m bench`` (issue 6).

Run from the repository root (the package is not installed). Everything runs in
one go, prints a table and writes ``bench/results.json``; ``--quick`` runs tiny
sizes (a smoke run: its figures mean nothing); ``--only`` picks sections.

One module per benchmark, in the order they run:

- ``_throughput``: 1. one stream, the SDK's two ways against sluiceway end to
  end and a raw floor;
- ``_ttft``: 2. time to first token and CPU per small call, on the same warm clients;
- ``_concurrency``: 3. the plan of many-stream runs and their medians; each run is
  a child process (``_concurrency_child``), whose lags ``_lag`` records and splits;
- ``_backpressure``: 4. peak memory under ``block`` and ``coalesce`` (a child each);
- ``_hop``: 5. one event from the tee to N handler actors, wired by the engine.

Around them: ``_settings`` (the sizes, and each child's settings, sent as one
JSON argument), ``_children`` (the fake server's process, ``_server.py``, and the
child processes), ``_measure`` (CPU, RSS, percentiles), ``_common`` (the request
and handlers several benchmarks use), ``_report`` (the table and results.json)
and ``_cli`` (the command line and the order of the sections).

The fake server always runs in its own process, so its CPU never counts against
the client. Variants alternate within each repetition; figures are medians over
the repetitions. bench/README.md has the method and the results.
"""
