"""The CLI's validate, migrate and schema commands (``run`` belongs to the engine)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from sluiceway._cli import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = (
    "name: ok\nsteps:\n  - name: a\n    type: claude\n    stream_handler: simple\n    prompt: hi\n"
)
BAD = (
    "name: bad\nsteps:\n  - name: a\n    type: claude\n    stream_buffer_size: -5\n    prompt: hi\n"
    "  - name: a\n    type: claude\n    prompt: hi\n"
)
LEGACY = "name: old\nsteps:\n  - name: a  # keep me\n    type: claude\n    async_stream: true\n    prompt: hi\n"


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _file(tmp_path, "good.yaml", GOOD)
    assert main(["validate", str(good)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{good}: ok\n"
    assert err == ""


def test_validate_reports_every_issue_as_lines_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _file(tmp_path, "good.yaml", GOOD)
    bad = _file(tmp_path, "bad.yaml", BAD)
    assert main(["validate", str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == f"{good}: ok\n"
    assert err.splitlines() == [
        f"{bad}:5:25: steps[0].stream_buffer_size: expected a positive integer, got -5",
        f"{bad}:7:11: steps[1].name: duplicate step name 'a' (first used by steps[0] at line 3)",
    ]


def test_validate_prints_deprecations_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _file(tmp_path, "old.yaml", LEGACY)
    assert main(["validate", str(old)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{old}: ok\n"
    assert err.splitlines() == [
        f"warning: {old}:5:5: steps[0].async_stream is deprecated; use steps[0].stream (`sluiceway migrate` rewrites it)"
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"name: [unclosed\n", ":2:1: YAML syntax error"),
        (b"", ":1:1: file is empty"),
        (b"\xff\xfe", ":1:1: file is not UTF-8"),
    ],
)
def test_validate_bad_files_never_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, fragment: str
) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}{fragment}" + err.split(fragment, 1)[1]
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["run", "x.yaml", "--mode", "bogus"])
    assert info.value.code == 2
    capsys.readouterr()


def test_migrate_prints_canonical_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _file(tmp_path, "old.yaml", LEGACY)
    assert main(["migrate", str(old)]) == 0
    out, err = capsys.readouterr()
    assert (
        out
        == "name: old\nsteps:\n  - name: a  # keep me\n    type: claude\n    stream: true\n    prompt: hi\n"
    )
    assert old.read_text() == LEGACY
    assert not (tmp_path / "old.yaml.bak").exists()


def test_migrate_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _file(tmp_path, "old.yaml", LEGACY)
    assert main(["migrate", str(old), "--write"]) == 0
    assert (tmp_path / "old.yaml.bak").read_text() == LEGACY
    assert (
        old.read_text()
        == "name: old\nsteps:\n  - name: a  # keep me\n    type: claude\n    stream: true\n    prompt: hi\n"
    )
    assert "rewritten" in capsys.readouterr().err
    assert main(["validate", str(old)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_migrate_invalid_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _file(tmp_path, "bad.yaml", BAD)
    assert main(["migrate", str(bad), "--write"]) == 2
    assert bad.read_text() == BAD
    assert "steps[0].stream_buffer_size" in capsys.readouterr().err


def test_schema_is_valid_2020_12_and_accepts_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "examples").glob("*.yaml")) + sorted(
        (ROOT / "tests/data/seeds").glob("*.yaml")
    ):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, [e.message for e in errors])
    bad = yaml.safe_load(BAD)
    assert any("-5" in e.message for e in validator.iter_errors(bad))
    assert list(validator.iter_errors({"name": "x", "steps": [{"name": "a", "type": "claud"}]}))
    assert list(validator.iter_errors({"name": "x", "steps": []}))


def test_schema_is_generated_from_the_classes(capsys: pytest.CaptureFixture[str]) -> None:
    import attrs
    from sluiceway.specs import STEP_TYPES, ClaudeOptions

    main(["schema"])
    schema = json.loads(capsys.readouterr().out)
    defs = schema["$defs"]
    for cls in STEP_TYPES.values():
        props = defs[cls.__name__]["properties"]
        assert {f.name for f in attrs.fields(cls)} <= set(props)
    options = defs["ClaudeOptions"]["properties"]
    assert {f.name for f in attrs.fields(ClaudeOptions)} <= set(options)
    assert options["max_turns"]["description"] == "Tool-use loop limit: model calls per step."
    assert options["async_streaming"]["deprecated"] is True


def test_run_without_engine_or_with_it_never_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _file(tmp_path, "bad.yaml", BAD)
    code = main(["run", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_run_prints_deprecations_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _file(
        tmp_path,
        "old.yaml",
        "name: old\nsteps:\n  - name: a\n    type: claude\n    prompt: hi\n    async_stream: true\n"
        "    mock: {response: done, pattern: fast}\n",
    )
    code = main(["run", str(old), "--output-dir", str(tmp_path / "out"), "--no-stream"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.splitlines()[0] == (
        f"warning: {old}:6:5: steps[0].async_stream is deprecated; use steps[0].stream "
        "(`sluiceway migrate` rewrites it)"
    )


def test_migrate_write_twice_keeps_the_original(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _file(tmp_path, "old.yaml", LEGACY)
    assert main(["migrate", str(old), "--write"]) == 0
    migrated = old.read_text()
    assert main(["migrate", str(old), "--write"]) == 0
    err = capsys.readouterr().err
    assert f"{old}: already in the canonical form; nothing written" in err
    assert (tmp_path / "old.yaml.bak").read_text() == LEGACY
    assert not (tmp_path / "old.yaml.bak.1").exists()
    assert old.read_text() == migrated


def test_migrate_write_never_overwrites_an_earlier_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _file(tmp_path, "old.yaml", LEGACY)
    (tmp_path / "old.yaml.bak").write_text("precious\n")
    assert main(["migrate", str(old), "--write"]) == 0
    assert (tmp_path / "old.yaml.bak").read_text() == "precious\n"
    assert (tmp_path / "old.yaml.bak.1").read_text() == LEGACY
    assert f"original kept as {old}.bak.1" in capsys.readouterr().err
