"""The page's TextOperation (web/ui/src/ot.ts) agrees with collab/ot.py on thousands of seeded
random cases: apply, compose, transform and transform_position, op for op (canonical forms
included). Runs ot.ts in Node, bundled by the project's esbuild."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from collab import ot
from tests.ui.conftest import UI

ALPHABET = "ab\n😀中 x"


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def random_op(rng: random.Random, doc: str) -> ot.Op:
    """A random op on `doc`; cuts fall between code points, never inside a surrogate pair."""
    op: ot.Op = []
    i = 0
    while i < len(doc):
        step = rng.randint(1, max(1, len(doc) - i))
        chunk = ot.utf16_len(doc[i : i + step])
        kind = rng.random()
        if kind < 0.4:
            op.append(chunk)
        elif kind < 0.7:
            op.append(-chunk)
        else:
            op.append(random_text(rng, rng.randint(1, 4)))
            op.append(chunk)
        i += step
    if rng.random() < 0.5:
        op.append(random_text(rng, rng.randint(1, 3)))
    return ot.normalize(op)


def cases(count: int) -> list[dict[str, Any]]:
    rng = random.Random(20240613)
    found = []
    for _ in range(count):
        doc = random_text(rng, rng.randint(0, 12))
        a, b = random_op(rng, doc), random_op(rng, doc)
        after_a = ot.apply(doc, a)
        c = random_op(rng, after_a)
        position = ot.utf16_len(doc[: rng.randint(0, len(doc))])
        a2, b2 = ot.transform(a, b)
        found.append(
            {
                "doc": doc,
                "a": a,
                "b": b,
                "c": c,
                "position": position,
                "expect": {
                    "apply": after_a,
                    "compose": ot.compose(a, c),
                    "transform": [a2, b2],
                    "position": ot.transform_position(position, b),
                },
            }
        )
    return found


RUNNER = """
import { readFileSync } from "node:fs";
import * as ot from "./ot.mjs";
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = cases.map((c) => ({
  apply: ot.apply(c.doc, c.a),
  compose: ot.compose(c.a, c.c),
  transform: ot.transform(c.a, c.b),
  position: ot.transformPosition(c.position, c.b),
}));
process.stdout.write(JSON.stringify(out));
"""


def test_ot_ts_matches_the_server(tmp_path: Path) -> None:
    node = shutil.which("node")
    esbuild = UI / "node_modules" / ".bin" / "esbuild"
    if node is None or not esbuild.exists():
        pytest.fail("node and web/ui/node_modules are needed: npm ci --prefix web/ui")
    subprocess.run(
        [str(esbuild), str(UI / "src" / "ot.ts"), "--format=esm", f"--outfile={tmp_path}/ot.mjs"],
        check=True,
        capture_output=True,
    )
    (tmp_path / "run.mjs").write_text(RUNNER)
    found = cases(3000)
    (tmp_path / "cases.json").write_text(json.dumps(found))
    result = subprocess.run(
        [node, str(tmp_path / "run.mjs"), str(tmp_path / "cases.json")],
        check=True,
        capture_output=True,
        text=True,
    )
    answers = json.loads(result.stdout)
    for case, answer in zip(found, answers, strict=True):
        assert answer == case["expect"], case
