"""One rule for every dotted path a spec names, and ``validate`` running every check ``run``
would: through the real CLI, from a folder holding the spec and its modules, no PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SLUICEWAY = str(Path(sys.executable).parent / "sluiceway")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["NO_COLOR"] = "1"
    return subprocess.run([SLUICEWAY, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


CALLBACK_SAMPLE = {
    # docs/handlers.md's callback sample, as written
    "pipeline.yaml": """\
        name: sample
        steps:
          - name: ask
            type: claude
            prompt: hi
            mock: {response: "one two three"}
            stream_handler: callback
            stream_handler_opts:
              module: my_app.streaming
              function: process_event
        """,
    "my_app/__init__.py": "",
    "my_app/streaming.py": """\
        def process_event(event):            # or: async def process_event(event): ...
            if type(event).__name__ == "Delta":
                print(event.content, end="", flush=True)
        """,
}


def test_the_docs_callback_sample_runs_from_its_folder(tmp_path: Path) -> None:
    write(tmp_path, CALLBACK_SAMPLE)
    done = cli("run", "pipeline.yaml", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("one two three")


def test_a_handler_class_beside_the_spec_found_from_another_folder(tmp_path: Path) -> None:
    write(
        tmp_path / "proj",
        {
            "pipeline.yaml": """\
                name: counted
                steps:
                  - name: ask
                    type: claude
                    prompt: hi
                    mock: {response: "a b c"}
                    stream_handler: myhandlers.Counter
            """,
            "myhandlers.py": """\
                import json

                class Counter:
                    def __init__(self):
                        self.n = 0

                    async def handle(self, event):
                        self.n += type(event).__name__ == "Delta"

                    async def aclose(self):
                        print(json.dumps({"deltas": self.n}))
            """,
        },
    )
    done = cli("run", "proj/pipeline.yaml", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["deltas"] >= 1


def test_an_llm_provider_beside_the_spec(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pipeline.yaml": """\
                name: own_provider
                steps:
                  - name: ask
                    type: llm
                    provider: myprov.Provider
                    prompt: hi
            """,
            "myprov.py": """\
                from sluiceway.providers import MockProvider

                class Provider(MockProvider):
                    pass
            """,
        },
    )
    done = cli("run", "pipeline.yaml", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_missing_module_names_the_places_searched(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pipeline.yaml": """\
                name: missing
                workspace_dir: ws
                steps:
                  - name: ask
                    type: claude
                    prompt: hi
                    stream_handler: nowhere.Handler
            """,
        },
    )
    (tmp_path / "ws").mkdir()
    done = cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        f"pipeline.yaml:7:21: steps[0].stream_handler: no module named 'nowhere' "
        f"(looked in the Python path, {tmp_path}, {tmp_path / 'ws'}) (for 'nowhere.Handler')"
    ) in done.stderr


VALIDATE_THEN_RUN = {
    "pipeline.yaml": """\
        name: four
        steps:
          - name: a
            type: claude
            prompt: hi
            stream_handler: simple
            stream_handler_opts: {show_timestamps: "no"}
          - name: b
            type: claude
            prompt: hi
            stream_handler: custom.Plain
            stream_handler_opts: {colour: red}
          - name: c
            type: claude
            prompt: hi
            stream_handler: callback
            stream_handler_opts: {module: custom, function: on_evnt}
          - name: d
            type: python
            callable: "nosuch:fn"
          - name: e
            type: claude
            prompt: hi
            mock: {patern: slow}
        """,
    "custom.py": """\
        class Plain:
            def __init__(self, width=80):
                self.width = width

            async def handle(self, event):
                pass

            async def aclose(self):
                pass

        def on_event(event):
            pass
        """,
}


def test_validate_fails_what_run_would_fail_all_at_once_with_lines(tmp_path: Path) -> None:
    write(tmp_path, VALIDATE_THEN_RUN)
    done = cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("pipeline.yaml:")]
    assert [ln.split(": ", 2)[:2] for ln in lines] == [
        ["pipeline.yaml:7:44", "steps[0].stream_handler_opts.show_timestamps"],
        ["pipeline.yaml:12:27", "steps[1].stream_handler_opts.colour"],
        ["pipeline.yaml:17:53", "steps[2].stream_handler_opts.function"],
        ["pipeline.yaml:20:15", "steps[3].callable"],
        ["pipeline.yaml:24:12", "steps[4].mock.patern"],
    ]
    assert "expected true or false, got 'no'" in lines[0]
    assert "handler 'custom.Plain' does not take option 'colour'; its constructor takes width" in lines[1]
    assert "module 'custom' has no attribute 'on_evnt'; did you mean `on_event`?" in lines[2]
    assert "no module named 'nosuch'" in lines[3]
    assert "did you mean `pattern`?" in lines[4]
    run = cli("run", "pipeline.yaml", "--output-dir", "out", cwd=tmp_path)
    assert run.returncode == 2
    assert [ln for ln in run.stderr.splitlines() if ln.startswith("pipeline.yaml:")] == lines
    assert not (tmp_path / "out").exists()


def test_flags_that_name_nothing_are_usage_errors_with_did_you_mean(tmp_path: Path) -> None:
    write(tmp_path, {"v.yaml": 'name: x\nvariables: {topic: a}\nsteps:\n  - {name: a, type: claude, prompt: "{{vars.topic}}"}\n'})
    cases = [
        (("--set", "topc=x"), "sluiceway run: --set topc: the spec has no variable 'topc'; did you mean `topic`? "
         "(variables are declared under `variables:`)"),
        (("--handler", "consol"), "sluiceway run: --handler: unknown stream handler 'consol'; expected one of "
         "simple, console, debug, file, buffer, callback or a dotted path to a Handler class; did you mean `console`?"),
        (("--workspace", "nope"), "sluiceway run: --workspace nope: no such folder"),
    ]
    for flags, message in cases:
        done = cli("run", "v.yaml", "--output-dir", "out", *flags, cwd=tmp_path)
        assert (done.returncode, done.stderr.strip()) == (2, message)
    assert not (tmp_path / "nope").exists() and not (tmp_path / "out").exists()


def test_the_migration_guide_yaml_runs_as_written(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "research.yaml": """\
                steps:
                  - id: research_summary
                    type: llm
                    provider: claude
                    prompt: >
                      Summarize the latest findings on autonomous research pipelines.
                    stream: true
                    stream_handler: Pipeline.Streaming.ConsoleHandler
            """
        },
    )
    done = cli("run", "research.yaml", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "research: ok" in done.stderr
