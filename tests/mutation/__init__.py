"""The mutation profile: mutmut over ``engine/``, ``providers/`` and ``handlers/``.

A long profile, never part of the default suite. Run it from the repository root::

    python -m tests.mutation run                  # every module in map.toml, resumable
    python -m tests.mutation run engine/_tee.py   # one module
    python -m tests.mutation retest               # re-run the survivors after adding tests
    python -m tests.mutation report               # the table for tests/MUTATION.md

Why a staged copy: mutmut 3 imports the mutated code from ``mutants/src`` and names each
mutant after its file's path, so it needs the package laid out as its import path. This
repository maps top-level folders to subpackages (``engine/`` is ``sluiceway.engine``), so
each module is staged under ``.mutation/<module>/src/sluiceway/`` with a copy of the tests
and a ``pyproject.toml`` that tells mutmut which file to mutate and which tests judge it
(``map.toml``). mutmut's own cache lives in each stage, so a rerun resumes where it stopped.
"""
