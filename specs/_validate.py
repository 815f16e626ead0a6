"""Checks across fields: step names, references between steps, templates,
handler names and prompt files. Runs on the normalized plain data (defensively:
type errors are reported by ``_check``), so every issue keeps its line.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from typing import Any, Final

from .._errors import SpecIssue
from ._check import did_you_mean
from ._templates import BATCH_ONLY_ROOTS, TEMPLATE_ROOTS, find_refs
from ._yaml import Locator, Path

__all__ = ("BUILTIN_HANDLER_NAMES", "check_handler_ref", "validate_data")

#: The built-in stream handlers (sluiceway._registry maps them to classes).
BUILTIN_HANDLER_NAMES: Final = ("simple", "console", "debug", "file", "buffer", "callback")
#: The built-in providers of the ``llm`` step.
BUILTIN_PROVIDER_NAMES: Final = ("claude", "anthropic", "mock", "replay")

_DOTTED_RE: Final = re.compile(
    r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)(\.[A-Za-z_]\w*)*$"
)
#: The built-in tools a step may offer (``allowed_tools``, ``disallowed_tools``).
BUILTIN_TOOL_NAMES: Final = ("Read", "Write", "Edit", "Glob", "Grep", "LS", "Bash")
#: Longest pipeline, step or task name: names become file names and summary lines.
MAX_NAME_LENGTH: Final = 100
_CONDITION_STEP_RE: Final = re.compile(r"\bsteps\.([A-Za-z_][\w\-]*)")


def is_dotted(ref: str) -> bool:
    """Whether *ref* has the form of a dotted path (``package.module:name`` or ``module.name``)."""
    return _DOTTED_RE.match(ref) is not None


def check_handler_ref(ref: str) -> str | None:
    """The problem with a handler reference, or ``None`` when it is valid."""
    if ref in BUILTIN_HANDLER_NAMES or ("." in ref or ":" in ref) and _DOTTED_RE.match(ref):
        return None
    return (
        f"unknown stream handler {ref!r}; expected one of {', '.join(BUILTIN_HANDLER_NAMES)} "
        f"or a dotted path to a Handler class{did_you_mean(ref, BUILTIN_HANDLER_NAMES)}"
    )


def name_problem(name: str) -> str | None:
    """The problem with a pipeline, step or task name, or ``None`` when it is fine."""
    if not name.strip():
        return "expected a name, got an empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"a name is at most {MAX_NAME_LENGTH} characters, got {len(name)}"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return f"a name cannot contain a newline or another control character, got {name!r}"
    return None


class _Validator:
    def __init__(self, locator: Locator, base_dirs: list[str] | None) -> None:
        self.locator = locator
        self.base_dirs = base_dirs
        self.issues: list[SpecIssue] = []
        self.defaults_options: Any = None
        self.variables: list[str] = []
        """The names under ``variables:``, the only ones ``{{vars.NAME}}`` may use."""

    def add(self, path: Path, message: str) -> None:
        self.issues.append(self.locator.issue(path, message))

    # ---------------------------------------------------------------- templates

    def templates(self, text: Any, path: Path, earlier: list[str], *, batch: bool = False) -> None:
        if not isinstance(text, str):
            return
        for ref in find_refs(text):
            raw = "{{" + ".".join(ref) + "}}"
            root = ref[0]
            if root not in TEMPLATE_ROOTS or (root in BATCH_ONLY_ROOTS and not batch):
                allowed = sorted(TEMPLATE_ROOTS if batch else TEMPLATE_ROOTS - BATCH_ONLY_ROOTS)
                extra = " (only inside claude_batch prompts)" if root in BATCH_ONLY_ROOTS else ""
                self.add(
                    path,
                    f"unknown template root {root!r} in {raw}{extra}; expected one of "
                    f"{', '.join(allowed)}{did_you_mean(root, allowed)}",
                )
            elif root in ("steps", "vars") and len(ref) < 2:
                self.add(path, f"{raw} needs a name: {{{{{root}.NAME}}}}")
            elif root == "steps":
                self.step_ref(ref[1], path, earlier, f"template {raw}")
            elif root == "vars" and ref[1] not in self.variables:
                self.add(
                    path,
                    f"{raw} refers to unknown variable {ref[1]!r}{did_you_mean(ref[1], self.variables)}"
                    " (declare it under `variables:`; `--set` can then override it)",
                )

    def output_file(self, value: Any, path: Path) -> None:
        """``output_to_file`` may not leave the output folder with ``..``.

        Checked on the part before the first template (all of a static path):
        no rendered value can undo a leading ``..``. The run checks the
        rendered path again, symbolic links included, before the step runs.
        """
        if not isinstance(value, str) or posixpath.isabs(value) or os.path.isabs(value):
            return
        static = value
        if find_refs(value):
            static = value[: value.index("{{")].rpartition("/")[0]
            if not static:
                return
        lexical = posixpath.normpath(static.replace("\\", "/"))
        if lexical == ".." or lexical.startswith("../"):
            self.add(
                path,
                f"output_to_file {value!r} leaves the output folder; give a path inside it "
                "(relative to the output folder, without `..`)",
            )

    def step_ref(self, name: str, path: Path, earlier: list[str], what: str) -> None:
        head = re.split(r"[.\[]", name, maxsplit=1)[0]
        if name in earlier or head in earlier:
            return
        if name in self.all_names or head in self.all_names:
            self.add(
                path,
                f"{what} refers to step {name!r}, which runs at or after this one; only earlier steps have output",
            )
        else:
            self.add(path, f"{what} refers to unknown step {name!r}{did_you_mean(name, earlier)}")

    def prompt(self, prompt: Any, path: Path, earlier: list[str], *, batch: bool = False) -> None:
        if isinstance(prompt, str):
            self.templates(prompt, path, earlier, batch=batch)
            return
        if not isinstance(prompt, list):
            return
        for index, part in enumerate(prompt):
            if not isinstance(part, dict):
                continue
            where = (*path, index)
            kind = part.get("type")
            if kind == "static":
                self.templates(part.get("content"), (*where, "content"), earlier, batch=batch)
            elif kind == "file" and isinstance(part.get("path"), str):
                self.templates(part["path"], (*where, "path"), earlier, batch=batch)
                self.prompt_file(part["path"], (*where, "path"))
            elif kind == "previous_response" and isinstance(part.get("step"), str):
                self.step_ref(part["step"], (*where, "step"), earlier, "previous_response")

    def prompt_file(self, file: str, path: Path) -> None:
        if self.base_dirs is None or "{{" in file:
            return
        candidates = (
            [file] if os.path.isabs(file) else [os.path.join(d, file) for d in self.base_dirs]
        )
        if not any(os.path.isfile(c) for c in candidates):
            where = " or ".join(repr(d) for d in self.base_dirs)
            self.add(path, f"prompt file {file!r} not found (looked relative to {where})")

    # ---------------------------------------------------------------- handlers

    def handler_refs(self, owner: dict[str, Any], path: Path) -> None:
        value = owner.get("stream_handler")
        if isinstance(value, str):
            problem = check_handler_ref(value)
            if problem:
                self.add((*path, "stream_handler"), problem)
        elif isinstance(value, list):
            if not value:
                self.add(
                    (*path, "stream_handler"), "expected at least one handler, got an empty list"
                )
            for index, ref in enumerate(value):
                problem = check_handler_ref(ref) if isinstance(ref, str) else None
                if problem:
                    self.add((*path, "stream_handler", index), problem)

    # ---------------------------------------------------------------- steps

    def name(self, owner: dict[str, Any], key: str, path: Path) -> None:
        value = owner.get(key)
        if isinstance(value, str) and (problem := name_problem(value)):
            self.add((*path, key), problem)

    def tool_names(self, owner: Any, path: Path, *inherited: Any) -> None:
        """Every name in *owner*'s ``claude_options.allowed_tools`` / ``disallowed_tools`` is known.

        Known: the built-in tools, the function tools of ``claude_options.tools``
        (a dotted path's last part), and ``mcp__<server>`` or ``mcp__<server>__<tool>``
        for a server of ``claude_options.mcp_servers``; *inherited* options (the defaults',
        a parallel task's step's) count too.
        """
        options = owner.get("claude_options") if isinstance(owner, dict) else None
        if not isinstance(options, dict):
            return
        functions: list[str] = []
        servers: list[str] = []
        for source in (options, *(o for o in inherited if isinstance(o, dict))):
            refs = source.get("tools")
            if isinstance(refs, list):
                functions += [r.replace(":", ".").rpartition(".")[2] for r in refs if isinstance(r, str)]
            declared = source.get("mcp_servers")
            if isinstance(declared, dict):
                servers += [str(k) for k in declared]
        known = (*BUILTIN_TOOL_NAMES, *functions)
        for key in ("allowed_tools", "disallowed_tools"):
            names = options.get(key)
            if not isinstance(names, list):
                continue
            for index, name in enumerate(names):
                if not isinstance(name, str) or name in known:
                    continue
                if name.startswith("mcp__"):
                    server = name[5:].partition("__")[0]
                    if server in servers:
                        continue
                    problem = (
                        f"unknown tool {name!r}: no MCP server {server!r} in claude_options.mcp_servers"
                        f"{did_you_mean(server, servers)}"
                    )
                else:
                    problem = (
                        f"unknown tool {name!r}; expected one of {', '.join(known)}, "
                        f"or mcp__<server>__<tool> for a declared MCP server{did_you_mean(name, known)}"
                    )
                self.add((*path, "claude_options", key, index), problem)

    def validate(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        self.name(data, "name", ())
        if isinstance(data.get("variables"), dict):
            self.variables = [str(k) for k in data["variables"]]
        self.tool_names(data.get("defaults"), ("defaults",))
        defaults = data.get("defaults")
        self.defaults_options = defaults.get("claude_options") if isinstance(defaults, dict) else None
        if isinstance(data.get("defaults"), dict):
            self.handler_refs(data["defaults"], ("defaults",))
        steps = data.get("steps")
        if not isinstance(steps, list):
            return
        self.all_names = {
            s["name"] for s in steps if isinstance(s, dict) and isinstance(s.get("name"), str)
        }
        earlier: list[str] = []
        first_at: dict[str, int] = {}
        for index, step in enumerate(steps):
            if not isinstance(step, dict):
                continue
            path: Path = ("steps", index)
            self.name(step, "name", path)
            self.tool_names(step, path, self.defaults_options)
            for task_index, task in enumerate(step.get("parallel_tasks") or ()):
                self.tool_names(
                    task, (*path, "parallel_tasks", task_index), step.get("claude_options"), self.defaults_options
                )
            name = step.get("name")
            if isinstance(name, str):
                if name in first_at:
                    line, _ = self.locator.position(("steps", first_at[name], "name"))
                    self.add(
                        (*path, "name"),
                        f"duplicate step name {name!r} (first used by steps[{first_at[name]}] at line {line})",
                    )
                else:
                    first_at[name] = index
            self.step(step, path, earlier)
            if isinstance(name, str):
                earlier.append(name)

    def step(self, step: dict[str, Any], path: Path, earlier: list[str]) -> None:
        kind = step.get("type")
        batch = kind == "claude_batch"
        self.required_work(step, kind, path)
        self.prompt(step.get("prompt"), (*path, "prompt"), earlier, batch=batch)
        self.handler_refs(step, path)
        self.templates(step.get("output_to_file"), (*path, "output_to_file"), earlier)
        self.output_file(step.get("output_to_file"), (*path, "output_to_file"))
        condition = step.get("condition")
        if isinstance(condition, str):
            for name in _CONDITION_STEP_RE.findall(condition):
                self.step_ref(name, (*path, "condition"), earlier, "condition")
        options = step.get("claude_options")
        if isinstance(options, dict):
            for key in ("system_prompt", "append_system_prompt"):
                self.templates(options.get(key), (*path, "claude_options", key), earlier)
        opts = step.get("stream_handler_opts")
        if isinstance(opts, dict):
            for key, value in opts.items():
                self.templates(value, (*path, "stream_handler_opts", str(key)), earlier)
        for list_key, prompt_key in (("tasks", "prompt"), ("parallel_tasks", "prompt")):
            items = step.get(list_key)
            if isinstance(items, list):
                for index, item in enumerate(items):
                    if isinstance(item, dict):
                        self.prompt(
                            item.get(prompt_key),
                            (*path, list_key, index, prompt_key),
                            earlier,
                            batch=batch,
                        )
        tasks = step.get("parallel_tasks")
        if isinstance(tasks, list):
            seen: set[str] = set()
            for index, task in enumerate(tasks):
                task_id = task.get("id") if isinstance(task, dict) else None
                if isinstance(task, dict):
                    self.name(task, "id", (*path, "parallel_tasks", index))
                if isinstance(task_id, str):
                    if task_id in seen:
                        self.add(
                            (*path, "parallel_tasks", index, "id"),
                            f"duplicate parallel task id {task_id!r}",
                        )
                    seen.add(task_id)
        if step.get("type") == "python":
            ref = step.get("callable")
            if isinstance(ref, str) and not _DOTTED_RE.match(ref):
                self.add(
                    (*path, "callable"),
                    f"expected a dotted path like 'package.module:function', got {ref!r}",
                )
            stream = step.get("input_stream")
            if isinstance(stream, str) and stream not in earlier:
                where = "a later step" if stream in self.all_names else "an unknown step"
                self.add(
                    (*path, "input_stream"),
                    f"input_stream must name an earlier step, got {where} {stream!r}"
                    f"{did_you_mean(stream, earlier)}",
                )
        if step.get("type") == "llm":
            provider = step.get("provider")
            if (
                isinstance(provider, str)
                and provider not in BUILTIN_PROVIDER_NAMES
                and not _DOTTED_RE.match(provider)
            ):
                self.add(
                    (*path, "provider"),
                    f"unknown provider {provider!r}; expected one of {', '.join(BUILTIN_PROVIDER_NAMES)} "
                    f"or a dotted path{did_you_mean(provider, BUILTIN_PROVIDER_NAMES)}",
                )

    def required_work(self, step: dict[str, Any], kind: Any, path: Path) -> None:
        """A model step must say what to ask: a prompt, batch tasks or items, parallel tasks."""
        if isinstance(kind, str) and kind in _NEEDS_PROMPT and step.get("prompt") in (None, "", []):
            article = "an" if kind == "llm" else "a"
            self.add(
                (*path, "prompt"),
                f"{article} {kind} step needs a prompt (a string or a list of parts)",
            )
        elif kind == "claude_batch" and not step.get("tasks"):
            if not step.get("items"):
                self.add(
                    (*path, "tasks"),
                    "a claude_batch step needs `tasks`, or `items` with a `prompt`",
                )
            elif step.get("prompt") in (None, "", []):
                self.add(
                    (*path, "prompt"), "a claude_batch step with `items` needs a prompt template"
                )
        elif kind == "parallel_claude" and not step.get("parallel_tasks"):
            self.add(
                (*path, "parallel_tasks"), "a parallel_claude step needs at least one parallel task"
            )


#: Step types that call the model with the step's own prompt.
_NEEDS_PROMPT = frozenset(
    {"claude", "claude_smart", "claude_session", "claude_extract", "claude_robust", "llm"}
)


def validate_data(data: Any, locator: Locator, base_dirs: list[str] | None) -> list[SpecIssue]:
    """Cross-field issues of a normalized pipeline mapping.

    Args:
        base_dirs: Folders prompt files resolve against; ``None`` skips the file check.
    """
    validator = _Validator(locator, base_dirs)
    validator.validate(data)
    return validator.issues
