"""Every third-party package the package imports is declared in pyproject.toml (a dependency,
or an extra for an optional feature), so an install never leans on what happens to be there."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from test_layers import MODULES, ROOT

#: Modules a feature imports only when it is used, with the extra that provides them.
EXTRA_ONLY = {
    "hypothesis": "testing",  # the testing kit's strategies and check_handler
    "pytest": "testing",  # the testing kit's pytest plugin
    "mcp": "mcp",
    "opentelemetry": "otel",
    "hypercorn": "web",
    "starlette": "web",
    "sse_starlette": "web",
    "ray": "ray",  # executor: ray (sluiceway._ray)
}


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}

    extras = {name: names(reqs) for name, reqs in config["optional-dependencies"].items()}
    return names(config["dependencies"]), extras


def _imported_top_levels() -> set[str]:
    ours = {"sluiceway"}
    found = set()
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in ours and m not in sys.stdlib_module_names and m != "__future__"}


def test_every_imported_package_is_declared() -> None:
    core, extras = _declared()
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_imported_top_levels()):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if module in EXTRA_ONLY:
            if not dists & extras[EXTRA_ONLY[module]]:
                missing.append(f"{module} (extra {EXTRA_ONLY[module]!r})")
        elif not dists & core:
            missing.append(module)
    assert missing == []
