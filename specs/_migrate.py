"""Rewrite a spec's legacy forms into the canonical form, keeping comments.

We use ruamel.yaml's round-trip mode, not PyYAML: PyYAML drops comments (and
key order, quoting and layout) on load, so a rewrite with it would delete the
user's notes. ruamel keeps them attached to the keys they annotate, and the
normalization in ``_legacy`` moves a comment along with the key it rewrites.
"""

from __future__ import annotations

import io
import os
import shutil
import warnings
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarfloat import ScalarFloat

from ._legacy import SluicewayDeprecationWarning, normalize
from ._load import loads_located
from ._yaml import read_spec_bytes

__all__ = ("backup_path", "migrate", "migrate_file")


class _Representer(RoundTripRepresenter):
    """Round-trip representer that never changes a float's value.

    ruamel re-formats floats from their parsed width and precision, which can
    change the last digit (``5.484763860801946e+16`` -> ``...945e+16``); then we
    write ``repr(float)`` instead. A subclass, so ruamel's global table is untouched.
    """

    def represent_exact_float(self, data: Any) -> Any:
        node = self.represent_scalar_float(data)
        try:
            same = float(node.value.replace("_", "")) == float(data)
        except ValueError:  # .inf, .nan
            same = True
        if not same:
            node.value = repr(float(data))
        return node


_Representer.add_representer(ScalarFloat, _Representer.represent_exact_float)


def _round_trip_yaml() -> YAML:
    rt = YAML(typ="rt")
    rt.Representer = _Representer
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap the user's long lines
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def migrate(text: str, *, source: str = "<string>", base_dir: str | None = None) -> str:
    """Return *text* with every legacy form rewritten to the canonical one.

    The spec is validated first; comments, key order and quoting are kept.

    Raises:
        SpecError: the spec is invalid (legacy forms alone are not errors).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SluicewayDeprecationWarning)
        loads_located(text, source=source, base_dir=base_dir)
    rt = _round_trip_yaml()
    data: Any = rt.load(text)
    pipeline = data["workflow"] if "workflow" in data else data

    def ignore(*_: Any) -> None:
        pass

    normalize(pipeline, warn=ignore, error=ignore, move=ignore)  # conflicts were errors above
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def backup_path(source: str) -> str:
    """The first free name of ``SOURCE.bak``, ``SOURCE.bak.1``, ``SOURCE.bak.2``...

    An earlier backup is never overwritten: after two migrations, ``.bak`` still
    holds the file as the user wrote it.
    """
    candidate, n = source + ".bak", 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{source}.bak.{n}"
    return candidate


def migrate_file(path: str | os.PathLike[str], *, write: bool = False) -> str:
    """Migrate the spec in *path*; with *write*, rewrite it in place, backing it up first.

    The backup goes to the first free name that ``backup_path`` gives, so an
    earlier backup is never overwritten. A file that is already canonical is
    left alone: nothing is written and no backup is made.

    Returns:
        The migrated text.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        text = read_spec_bytes(f.read(), source)
    new = migrate(text, source=source, base_dir=os.path.dirname(os.path.abspath(source)))
    if write and new != text:
        shutil.copy2(source, backup_path(source))
        tmp = source + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, source)
    return new
