"""``python -m bench``: run the benchmarks (see ``bench/__init__.py`` and bench/README.md)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
