"""The OT type on large documents: each call should cost time linear in the op's length.

    python bench/ot_bench.py [--scales 1,2,4,8] [--repeat 5]

At scale 1 the document is 100k code points (120k UTF-16 units, astral characters included)
and the op 20k replacements spread over all of it, the workload of
tests/collab/test_ot.py::test_large_documents: `apply`, `invert`, `transform` against the
inverse, `compose` of a 100k-character insert with 50k small deletes, `transform_position`.
Prints the best of `--repeat` runs of each call per scale, and its time per 1000 op components;
that last figure stays flat across scales when the cost is linear.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collab import ot
from collab.ot import Op


def workload(scale: int) -> dict[str, tuple[int, Callable[[], object]]]:
    """Each measured call by name, with the number of op components it walks."""
    units = 20_000 * scale
    doc = "ab😀中 " * units  # 5 code points, 6 UTF-16 units each
    op: Op = []
    for _ in range(units):
        op += [4, -1, "x", 1]  # replace every "中" by "x"
    result = ot.apply(doc, op)
    inverse = ot.invert(op, doc)
    pieces = 50_000 * scale
    big: Op = ["é😀" * pieces]
    cutter: Op = []
    for _ in range(pieces):
        cutter += [1, -2]
    position = ot.utf16_len(doc)
    return {
        "apply": (len(op), lambda: ot.apply(doc, op)),
        "invert": (len(op), lambda: ot.invert(op, doc)),
        "transform": (len(op) + len(inverse), lambda: ot.transform(op, inverse)),
        "compose": (len(big) + len(cutter), lambda: ot.compose(big, cutter)),
        "transform_position": (len(op), lambda: ot.transform_position(position, op)),
        "apply inverse": (len(inverse), lambda: ot.apply(result, inverse)),
    }


def best_of(repeat: int, call: Callable[[], object]) -> float:
    found = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        found = min(found, time.perf_counter() - started)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,4,8")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'call':<20} {'scale':>5} {'components':>11} {'best ms':>9} {'ms/1k comp':>11}")
    for scale in (int(s) for s in args.scales.split(",")):
        total = 0.0
        for name, (components, call) in workload(scale).items():
            seconds = best_of(args.repeat, call)
            total += seconds
            print(
                f"{name:<20} {scale:>5} {components:>11} {seconds * 1000:>9.1f} "
                f"{seconds * 1e6 / components:>11.3f}",
                flush=True,
            )
        print(f"{'all of the above':<20} {scale:>5} {'':>11} {total * 1000:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
