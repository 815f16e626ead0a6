"""YAML -> spec classes (``load``, ``loads``); ``_dump`` goes back.

Loading is: decode (size, UTF-8) -> compose YAML nodes (keeping marks) ->
unwrap ``workflow:`` -> normalize legacy forms (one-line deprecation warnings)
-> type check and cross-field checks (every issue at once) -> cattrs structure
with our own converter.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from cattrs.strategies import configure_tagged_union

from .._errors import SpecError, SpecIssue
from . import _model
from ._check import check_data, describe_value
from ._legacy import SluicewayDeprecationWarning, normalize
from ._validate import validate_data
from ._yaml import Locator, Path, parse_yaml, read_spec_bytes

__all__ = ("converter", "load", "load_located", "loads", "loads_located")


#: The unions as cattrs' ``structure`` takes them (typed for classes; it handles unions too).
_PROMPT: Any = _model.Prompt
_HANDLER_REF: Any = _model.HandlerRef


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def structure_str_or_tuple(item_tp: Any) -> Any:
        def hook(value: Any, _: Any) -> Any:
            if isinstance(value, str):
                return value
            return tuple(conv.structure(v, item_tp) for v in value)

        return hook

    conv.register_structure_hook(_model.Prompt, structure_str_or_tuple(_model.PromptPart))
    conv.register_structure_hook(
        _model.Prompt | None, lambda v, _: None if v is None else conv.structure(v, _PROMPT)
    )
    conv.register_structure_hook(_model.HandlerRef, structure_str_or_tuple(str))
    conv.register_structure_hook(
        _model.HandlerRef | None,
        lambda v, _: None if v is None else conv.structure(v, _HANDLER_REF),
    )
    # checked before structuring (``check_data``): an integer or ``none``
    conv.register_structure_hook(_model.Bound | None, lambda v, _: v)
    configure_tagged_union(_model.PromptPart, conv, tag_name="type", tag_generator=_tag)
    configure_tagged_union(_model.Step, conv, tag_name="type", tag_generator=_tag)
    return conv


def _tag(cls: type) -> str:
    tag = attrs.fields_dict(cls)["type"].default
    assert isinstance(tag, str)  # every step and prompt part class has a literal default type
    return tag


#: Our own converter (never cattrs' global one): rejects unknown keys, tagged unions on ``type``.
converter = _make_converter()


# --------------------------------------------------------------------------- loading


def _issue_warnings(locator: Locator) -> tuple[list[str], Any]:
    messages: list[str] = []

    def warn(path: Path, message: str) -> None:
        line, column = locator.position(path, key=True)
        where = locator.file + (f":{line}:{column}" if line is not None else "")
        messages.append(f"{where}: {message}")

    return messages, warn


def _base_dirs(source: str, data: Any, base_dir: str | None) -> list[str] | None:
    if base_dir is None:
        if source.startswith("<") or not os.path.isfile(source):
            return None
        base_dir = os.path.dirname(os.path.abspath(source))
    dirs = [base_dir]
    workspace = data.get("workspace_dir") if isinstance(data, dict) else None
    if isinstance(workspace, str):
        dirs.append(os.path.normpath(os.path.join(base_dir, workspace)))
    return dirs


def default_name(source: str) -> str:
    """The name of a pipeline that has no ``name``: its file's stem, else ``pipeline``."""
    if source.startswith("<"):
        return "pipeline"
    return os.path.splitext(os.path.basename(source))[0] or "pipeline"


#: A further check on the normalized plain data, reported with the spec's own issues.
ExtraCheck = Callable[[dict[str, Any], Locator], list[SpecIssue]]


def loads_located(
    text: str, *, source: str = "<string>", base_dir: str | None = None, extra_check: ExtraCheck | None = None
) -> tuple[_model.Pipeline, Locator]:
    """Like ``loads``, also returning the Locator (field path -> line/column).

    Args:
        extra_check: Called with the normalized data; its issues are reported together
            with the spec's own (the facade checks handler, callback and callable
            references this way, so every problem arrives at once).
    """
    data, locator = parse_yaml(text, source)
    if isinstance(data, dict) and "workflow" in data:
        if set(data) != {"workflow"}:
            extra = sorted(k for k in data if k != "workflow")
            raise SpecError(
                [
                    locator.issue(
                        (str(extra[0]),),
                        "unknown key next to `workflow:`; put everything inside it",
                        key=True,
                    )
                ]
            )
        data = data["workflow"]
        locator.rebase(("workflow",))
    if not isinstance(data, dict):
        raise SpecError(
            [
                locator.issue(
                    (), f"expected a mapping with `steps` (and optionally `name`), got {describe_value(data)}"
                )
            ]
        )
    if "name" not in data:  # a pipeline is named after its file unless it says otherwise
        data["name"] = default_name(source)
    issues: list[SpecIssue] = []
    messages, warn = _issue_warnings(locator)
    normalize(
        data,
        warn=warn,
        error=lambda path, message: issues.append(locator.issue(path, message, key=True)),
        move=locator.move,
    )
    for message in messages:
        warnings.warn(message, SluicewayDeprecationWarning, stacklevel=3)
    issues += check_data(data, locator)
    issues += validate_data(data, locator, _base_dirs(source, data, base_dir))
    if extra_check is not None:
        issues += extra_check(data, locator)
    if issues:
        issues.sort(key=lambda i: (i.line or 0, i.column or 0))
        raise SpecError(_dedupe(issues))
    try:
        spec = converter.structure(data, _model.Pipeline)
    except (
        Exception
    ) as exc:  # a gap between _check and the model: still a SpecError, never a traceback
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise SpecError([locator.issue((), f"invalid spec: {detail}")]) from exc
    object.__setattr__(spec, "source", source)  # eq=False metadata on a frozen class
    return spec, locator


def _dedupe(issues: list[SpecIssue]) -> list[SpecIssue]:
    out: list[SpecIssue] = []
    for issue in issues:
        if issue not in out:
            out.append(issue)
    return out


def loads(text: str, *, source: str = "<string>", base_dir: str | None = None) -> _model.Pipeline:
    """Load a pipeline spec from YAML text.

    Args:
        text: The YAML.
        source: The file name used in messages (and set as ``Pipeline.source``).
        base_dir: Folder that ``file`` prompt parts resolve against; when ``None``
            and *source* is not an existing file, prompt files are not checked.

    Raises:
        SpecError: with every issue found (file, line, column, field path).

    Warns:
        SluicewayDeprecationWarning: one line per legacy form, naming its replacement.
    """
    return loads_located(text, source=source, base_dir=base_dir)[0]


def load_located(
    path: str | os.PathLike[str], *, extra_check: ExtraCheck | None = None
) -> tuple[_model.Pipeline, Locator]:
    """Like ``load``, also returning the Locator."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read(read_limit := 5 * 1024 * 1024 + 1)
    except OSError as exc:
        raise SpecError(
            [SpecIssue(source, None, None, "", f"cannot read file: {exc.strerror or exc}")]
        ) from None
    if len(data) == read_limit:
        data += b"\0"  # read_spec_bytes reports the limit; no need to read the rest
    text = read_spec_bytes(data, source)
    return loads_located(
        text, source=source, base_dir=os.path.dirname(os.path.abspath(source)), extra_check=extra_check
    )


def load(path: str | os.PathLike[str]) -> _model.Pipeline:
    """Load a pipeline spec from a YAML file (see ``loads``); prompt files resolve
    against the file's folder or its ``workspace_dir``."""
    return load_located(path)[0]
