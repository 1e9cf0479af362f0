"""The test runner that runs inside a project's container (standard library only).

Sent with each run, never imported by the worker. It is started as
`python3 -B -c BOOTSTRAP <base64 JSON>`: the bootstrap writes the staged files to the job's
scratch folder (tmpfs) and calls `main(spec)`. For every `test_*` function of every test file
it runs the function `runs` times in a row, each under a per-test alarm, and records which
lines of the module under test the function executed (sys.settrace, no coverage package in
the image). It prints one JSON report between markers.

-B: no __pycache__ is written into /workspace, which the file system would import.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
import types
from typing import Any

MARK = "@@VAPORFORM-RUN@@"


def executable_lines(path: str) -> set[int]:
    with open(path, encoding="utf-8") as fh:
        code = compile(fh.read(), path, "exec")
    found: set[int] = set()
    stack: list[types.CodeType] = [code]
    while stack:
        current = stack.pop()
        # Line 0 is the module prologue (RESUME), not a line of the file.
        found.update(line for _, _, line in current.co_lines() if line)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return found


class Tracer:
    def __init__(self, target: str) -> None:
        self.target = target
        self.lines: set[int] = set()

    def __call__(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != self.target:
            return None  # no line events for other files: keeps tracing cheap
        return self._local

    def _local(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.lines.add(frame.f_lineno)
        return self._local


class TestTimeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise TestTimeout("the test ran past its time limit")


def _load(path: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(spec: dict[str, Any]) -> None:
    target = os.path.realpath(spec["target"])
    runs = int(spec["runs"])
    limit = max(1, round(float(spec["test_timeout_s"])))
    sys.path.insert(0, spec["workspace"])
    report: dict[str, Any] = {
        "executable": sorted(executable_lines(target)),
        "tests": [],
        "collect_errors": {},
    }
    signal.signal(signal.SIGALRM, _alarm)
    import_tracer = Tracer(target)
    sys.settrace(import_tracer)
    modules: list[tuple[str, types.ModuleType]] = []
    for index, path in enumerate(spec["test_files"]):
        try:
            modules.append((path, _load(path, f"vaporform_candidate_{index}")))
        except BaseException as exc:  # a syntax error or a failing import: not built
            report["collect_errors"][path] = "".join(
                traceback.format_exception_only(type(exc), exc)
            ).strip()[-2000:]
    sys.settrace(None)
    report["import_lines"] = sorted(import_tracer.lines)
    for path, module in modules:
        for name, function in list(vars(module).items()):
            if not name.startswith("test") or not callable(function):
                continue
            tracer = Tracer(target)
            passed, error = 0, None
            for _ in range(runs):
                signal.alarm(limit)
                sys.settrace(tracer)
                try:
                    function()
                    passed += 1
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        error = f"{type(exc).__name__} raised"
                    else:
                        error = "".join(traceback.format_exception(exc, limit=-4))[-2000:]
                    break  # in a row: one failure decides
                finally:
                    sys.settrace(None)
                    signal.alarm(0)
            report["tests"].append(
                {
                    "file": path,
                    "name": name,
                    "passed_runs": passed,
                    "runs": runs,
                    "error": error,
                    "lines": sorted(tracer.lines),
                }
            )
    print(MARK + json.dumps(report) + MARK)


BOOTSTRAP = """
import base64, json, os, sys
spec = json.loads(base64.b64decode(sys.argv[1]))
os.makedirs(spec["scratch"], exist_ok=True)
for name, content in spec["files"].items():
    with open(os.path.join(spec["scratch"], name), "w", encoding="utf-8") as fh:
        fh.write(content)
sys.argv = [os.path.join(spec["scratch"], "vf_runner.py")]
namespace = {"__name__": "vf_runner"}
with open(sys.argv[0], encoding="utf-8") as fh:
    exec(compile(fh.read(), sys.argv[0], "exec"), namespace)
namespace["main"](spec)
"""
