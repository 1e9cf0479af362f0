"""A tick's presence changes as blocks of envelopes: every change once, none to itself."""

from __future__ import annotations

import json

from collab.cursors import BLOCK_CHARS, _blocks


def _texts(count: int) -> dict[str, str]:
    return {
        f"s{i}": json.dumps({"type": "presence", "payload": {"i": i, "pad": "x" * 300}})
        for i in range(count)
    }


def test_a_crowd_splits_into_blocks_that_fit_a_frame() -> None:
    texts = _texts(200)  # about 64 KiB of envelopes: several blocks
    blocks = _blocks(texts)
    assert len(blocks) > 1
    assert all(len(b.joined) <= BLOCK_CHARS + 400 for b in blocks)
    assert len({b.slot for b in blocks}) == len(blocks)
    decoded = [m for b in blocks for m in json.loads("[" + b.joined + "]")]
    assert [m["payload"]["i"] for m in decoded] == list(range(200))


def test_a_participant_never_gets_its_own_change() -> None:
    texts = _texts(200)
    blocks = _blocks(texts)
    for me in ("s0", "s57", "s199"):
        got = [
            m["payload"]["i"]
            for b in blocks
            if (text := b.without(me))
            for m in json.loads("[" + text + "]")
        ]
        assert got == [i for i in range(200) if f"s{i}" != me]
    # A block of one change is nothing for its author.
    (alone,) = _blocks(_texts(1))
    assert alone.without("s0") == ""
    assert alone.without("someone else") == alone.joined
