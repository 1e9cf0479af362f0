"""Tests for collab.ot: golden cases (ot.js outputs), hypothesis properties, rejections."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collab import ot
from collab.ot import Op, OTError

GOLDEN: list[dict[str, Any]] = json.loads(
    Path(__file__).with_name("ot_golden.json").read_text(encoding="utf-8")
)["cases"]

PROPS = settings(
    derandomize=True,
    database=None,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# "😀" and "𝄞" are astral (two UTF-16 units each); "中" and "é" are one unit.
ALPHABET = ["a", "b", " ", "\n", "é", "中", "😀", "𝄞"]
docs = st.text(alphabet=st.sampled_from(ALPHABET), max_size=16)
insert_texts = st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=4)
steps = st.lists(
    st.tuples(st.sampled_from(("retain", "delete", "insert")), st.integers(1, 5), insert_texts),
    max_size=8,
)


@st.composite
def ops_for(draw: st.DrawFn, doc: str) -> Op:
    """A random (often non-canonical) valid op on ``doc`` that never splits a surrogate pair."""
    op: Op = []
    i = 0  # code point index into doc
    for kind, n, text in draw(steps):
        if kind == "insert":
            op.append(text)
            continue
        n = min(n, len(doc) - i)
        if n == 0:
            continue
        units = ot.utf16_len(doc[i : i + n])
        i += n
        op.append(units if kind == "retain" else -units)
    if i < len(doc):
        op.append(ot.utf16_len(doc[i:]))
    return op


@st.composite
def doc_and_op(draw: st.DrawFn) -> tuple[str, Op]:
    doc = draw(docs)
    return doc, draw(ops_for(doc))


@st.composite
def doc_and_two_ops(draw: st.DrawFn) -> tuple[str, Op, Op]:
    doc = draw(docs)
    return doc, draw(ops_for(doc)), draw(ops_for(doc))


@st.composite
def doc_and_boundary(draw: st.DrawFn, doc: str) -> int:
    """A UTF-16 offset into ``doc`` that is not inside a surrogate pair."""
    return ot.utf16_len(doc[: draw(st.integers(0, len(doc)))])


def is_canonical(op: Op) -> bool:
    return ot.normalize(op) == op


def insert_position(op: Op) -> int:
    """Target position of the only insert of ``op`` (whose other components are retains)."""
    inserts = [i for i, c in enumerate(op) if isinstance(c, str)]
    assert len(inserts) == 1
    before = op[: inserts[0]]
    assert all(isinstance(c, int) and c > 0 for c in before)
    return sum(c for c in before if isinstance(c, int))


def insert_at(position: int, text: str, length: int) -> Op:
    return ot.normalize([position, text, length - position])


# ------------------------------------------------------------------------ golden


def run_golden(case: dict[str, Any]) -> object:
    fn = case["fn"]
    if fn == "apply":
        return ot.apply(case["doc"], case["op"])
    if fn == "normalize":
        return ot.normalize(case["op"])
    if fn == "is_noop":
        return ot.is_noop(case["op"])
    if fn == "compose":
        return ot.compose(case["a"], case["b"])
    if fn == "transform":
        return list(ot.transform(case["a"], case["b"]))
    if fn == "invert":
        return ot.invert(case["op"], case["doc"])
    if fn == "transform_position":
        return ot.transform_position(case["position"], case["op"], is_own=case.get("is_own", False))
    if fn == "transform_selection":
        return list(ot.transform_selection(case["anchor"], case["head"], case["op"]))
    raise AssertionError(f"unknown golden fn {fn!r}")


def test_golden_file_is_substantial() -> None:
    assert len(GOLDEN) >= 30
    assert len({c["name"] for c in GOLDEN}) == len(GOLDEN)
    assert {c["fn"] for c in GOLDEN} >= {
        "apply",
        "compose",
        "transform",
        "invert",
        "transform_position",
    }


@pytest.mark.parametrize("case", GOLDEN, ids=[c["name"] for c in GOLDEN])
def test_golden(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(OTError) as info:
            run_golden(case)
        assert info.value.code == case["error"]
        return
    result = run_golden(case)
    assert result == case["expected"]
    # Operation outputs are in ot.js canonical form.
    if case["fn"] in ("compose", "invert", "normalize"):
        assert isinstance(result, list)
        assert is_canonical(result)
    if case["fn"] == "transform":
        assert isinstance(result, list)
        assert all(is_canonical(op) for op in result)


# -------------------------------------------------------------------- properties


def walk_utf16(doc: str, op: Op) -> str:
    """Apply ``op`` the slow, obvious way: over the UTF-16 code units of ``doc``."""
    units, out, at = doc.encode("utf-16-le"), b"", 0
    for c in op:
        if isinstance(c, str):
            out += c.encode("utf-16-le")
        elif c > 0:
            out, at = out + units[2 * at : 2 * (at + c)], at + c
        else:
            at -= c
    return out.decode("utf-16-le")


@PROPS
@given(st.data(), st.booleans())
def test_apply_matches_a_walk_over_code_units(data: st.DataObject, ascii_only: bool) -> None:
    # Both of apply's paths: text slicing for an ASCII document, code units otherwise.
    alphabet = [a for a in ALPHABET if a.isascii()] if ascii_only else ALPHABET
    doc = data.draw(st.text(alphabet=st.sampled_from(alphabet), max_size=16))
    op = data.draw(ops_for(doc))
    assert ot.apply(doc, op) == walk_utf16(doc, op)


@PROPS
@given(doc_and_two_ops())
def test_transform_converges(case: tuple[str, Op, Op]) -> None:
    doc, a, b = case
    a2, b2 = ot.transform(a, b)
    assert ot.apply(ot.apply(doc, a), b2) == ot.apply(ot.apply(doc, b), a2)
    assert is_canonical(a2)
    assert is_canonical(b2)
    assert ot.base_length(a2) == ot.target_length(b)
    assert ot.base_length(b2) == ot.target_length(a)


@PROPS
@given(st.data())
def test_transform_past_is_transform_in_turn(data: st.DataObject) -> None:
    # The server's path: an op carried past the ops committed since its base, which follow
    # one another (each applies to what the one before it left).
    doc, a = data.draw(doc_and_op())
    others: list[Op] = []
    at = doc
    for _ in range(data.draw(st.integers(0, 4))):
        b = data.draw(ops_for(at))
        others.append(b)
        at = ot.apply(at, b)
    expected = a
    for b in others:
        expected = ot.transform(expected, b)[0]
    assert ot.transform_past(a, others) == expected


@PROPS
@given(doc_and_op())
def test_transform_against_noop(case: tuple[str, Op]) -> None:
    doc, a = case
    length = ot.utf16_len(doc)
    noop: Op = [length] if length else []
    a2, noop2 = ot.transform(a, noop)
    assert a2 == ot.normalize(a)
    assert ot.is_noop(noop2)
    assert ot.transform(noop, a) == (noop2, a2)


@PROPS
@given(st.data())
def test_compose_matches_sequential_apply(data: st.DataObject) -> None:
    doc, a = data.draw(doc_and_op())
    mid = ot.apply(doc, a)
    b = data.draw(ops_for(mid))
    ab = ot.compose(a, b)
    assert ot.apply(doc, ab) == ot.apply(mid, b)
    assert is_canonical(ab)
    assert ot.base_length(ab) == ot.base_length(a)
    assert ot.target_length(ab) == ot.target_length(b)
    # Associativity (canonical forms of ops with the same effect are equal).
    c = data.draw(ops_for(ot.apply(mid, b)))
    assert ot.compose(ab, c) == ot.compose(a, ot.compose(b, c))


@PROPS
@given(doc_and_op())
def test_invert_undoes(case: tuple[str, Op]) -> None:
    doc, a = case
    after = ot.apply(doc, a)
    inverse = ot.invert(a, doc)
    assert ot.apply(after, inverse) == doc
    assert is_canonical(inverse)
    assert ot.invert(inverse, after) == ot.normalize(a)
    assert ot.apply(doc, ot.compose(a, inverse)) == doc


@PROPS
@given(doc_and_op())
def test_normalize_idempotent_and_equivalent(case: tuple[str, Op]) -> None:
    doc, a = case
    n = ot.normalize(a)
    assert ot.normalize(n) == n
    assert ot.apply(doc, n) == ot.apply(doc, a)
    assert ot.base_length(n) == ot.base_length(a) == ot.utf16_len(doc)
    assert ot.target_length(n) == ot.target_length(a) == ot.utf16_len(ot.apply(doc, a))
    # Canonical: no zero parts, no adjacent components of one kind, no delete before insert.
    for x, y in itertools.pairwise(n):
        assert type(x) is not type(y) or (isinstance(x, int) and isinstance(y, int) and x * y < 0)
        assert not (isinstance(x, int) and x < 0 and isinstance(y, str))
    assert ot.is_noop(a) == (len(n) <= 1 and all(isinstance(c, int) and c > 0 for c in n))


@PROPS
@given(st.data())
def test_position_of_priority_insert(data: st.DataObject) -> None:
    """a inserts at p; the insert of transform(a, b)[0] lands at the is_own position."""
    doc, b = data.draw(doc_and_op())
    p = data.draw(doc_and_boundary(doc))
    a = insert_at(p, "§", ot.utf16_len(doc))
    a2, _ = ot.transform(a, b)
    assert insert_position(a2) == ot.transform_position(p, b, is_own=True)


@PROPS
@given(st.data())
def test_position_of_non_priority_insert(data: st.DataObject) -> None:
    """b inserts at p; the insert of transform(a, b)[1] lands at the ot.js position."""
    doc, a = data.draw(doc_and_op())
    p = data.draw(doc_and_boundary(doc))
    b = insert_at(p, "§", ot.utf16_len(doc))
    _, b2 = ot.transform(a, b)
    assert insert_position(b2) == ot.transform_position(p, a)


@PROPS
@given(st.data())
def test_positions_in_retained_text_follow_their_text(data: st.DataObject) -> None:
    doc, op = data.draw(doc_and_op())
    pos = new = 0
    for c in ot.normalize(op):
        if isinstance(c, str):
            new += ot.utf16_len(c)
        elif c < 0:
            pos -= c
        else:
            for k in range(c):
                # A cursor just before a retained unit stays just before it (ot.js pushes it
                # past an insert at the same spot); strictly inside a retain, is_own agrees.
                assert ot.transform_position(pos + k, op) == new + k
                if k:
                    assert ot.transform_position(pos + k, op, is_own=True) == new + k
            pos += c
            new += c
    length = ot.utf16_len(doc)
    assert ot.transform_position(length, op) == ot.target_length(op)


@PROPS
@given(st.data())
def test_transform_selection(data: st.DataObject) -> None:
    # Note: transform_position(p, compose(a, b)) may differ from moving p by a then b: e.g.
    # p=0, a=[1, "a"], b=[-1, 1]: compose is ["a", -1] (insert at 0 pushes p), stepwise 0.
    doc, a = data.draw(doc_and_op())
    p = data.draw(doc_and_boundary(doc))
    q = data.draw(doc_and_boundary(doc))
    anchor, head = ot.transform_selection(p, q, a)
    assert (anchor, head) == (ot.transform_position(p, a), ot.transform_position(q, a))
    assert 0 <= anchor <= ot.target_length(a)


@PROPS
@given(docs)
def test_utf16_conversions(doc: str) -> None:
    assert ot.utf16_len(doc) == len(doc.encode("utf-16-le")) // 2
    for i in range(len(doc) + 1):
        offset = ot.index_to_utf16(doc, i)
        assert ot.utf16_to_index(doc, offset) == i
        if i < len(doc) and ord(doc[i]) > 0xFFFF:
            with pytest.raises(OTError) as info:
                ot.utf16_to_index(doc, offset + 1)
            assert info.value.code == "surrogate_split"


# -------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("op", "code"),
    [
        ("abc", "invalid_op"),
        (None, "invalid_op"),
        ((1, 2), "invalid_op"),
        ({"ops": [1]}, "invalid_op"),
        ([True], "invalid_op"),
        ([1, False], "invalid_op"),
        ([0], "invalid_op"),
        ([2, 0, 1], "invalid_op"),
        ([""], "invalid_op"),
        (["a", ""], "invalid_op"),
        ([1.0], "invalid_op"),
        ([1.5], "invalid_op"),
        ([[1]], "invalid_op"),
        ([["a"]], "invalid_op"),
        ([None], "invalid_op"),
        ([{"insert": "x"}], "invalid_op"),
        (["\ud83d"], "surrogate_split"),
        (["x\ude00"], "surrogate_split"),
        (["\ude00\ud83d"], "surrogate_split"),
        ([1, "a\ud83d", 1], "surrogate_split"),
    ],
)
def test_check_rejects(op: Any, code: str) -> None:
    with pytest.raises(OTError) as info:
        ot.check(op)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "call",
    [
        lambda op: ot.apply("a", op),
        lambda op: ot.invert(op, "a"),
        lambda op: ot.compose(op, [1]),
        lambda op: ot.compose([1], op),
        lambda op: ot.transform(op, [1]),
        lambda op: ot.transform([1], op),
        lambda op: ot.transform_past(op, [[1]]),
        lambda op: ot.transform_past([1], [op]),
        lambda op: ot.transform_position(0, op),
        ot.base_length,
        ot.target_length,
        ot.is_noop,
    ],
)
@pytest.mark.parametrize("op", [[1, 0], [True], [1.0], "1", [[1]]])
def test_every_function_validates(call: Callable[[Any], object], op: Any) -> None:
    with pytest.raises(OTError) as info:
        call(op)
    assert info.value.code == "invalid_op"


def test_normalize_tolerates_only_empty_components() -> None:
    assert ot.normalize([0, "", 1, 0, 1]) == [2]
    assert ot.normalize([0]) == []
    for bad in ([True], [1.0], [None], "x"):
        with pytest.raises(OTError) as info:
            ot.normalize(bad)  # type: ignore[arg-type]
        assert info.value.code == "invalid_op"


@pytest.mark.parametrize(
    ("doc", "op", "code"),
    [
        ("ab", [3], "length_mismatch"),
        ("ab", [1], "length_mismatch"),
        ("😀", [1], "length_mismatch"),
        ("ab", ["x"], "length_mismatch"),
        ("😀", [1, -1], "surrogate_split"),
        ("😀", [-1, 1], "surrogate_split"),
        ("a😀b", [2, "x", 2], "surrogate_split"),
        ("a😀b", [1, -2, "\ud83d", 1], "surrogate_split"),
        ("😀😀", [3, -1], "surrogate_split"),
        ("a\ud83d", [2], "invalid_document"),
    ],
)
def test_apply_and_invert_reject(doc: str, op: Op, code: str) -> None:
    with pytest.raises(OTError) as info:
        ot.apply(doc, op)
    assert info.value.code == code
    with pytest.raises(OTError) as info:
        ot.invert(op, doc)
    assert info.value.code == code


def test_merged_components_do_not_split() -> None:
    # Boundaries are those of the canonical form: [1, 1] is [2].
    assert ot.apply("😀", [1, 1]) == "😀"
    assert ot.apply("😀", [-1, -1]) == ""


def test_compose_and_transform_reject() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: ot.compose([2], [3]), "length_mismatch"),
        (lambda: ot.compose(["ab"], [1]), "length_mismatch"),
        (lambda: ot.compose(["😀"], [1, "x", 1]), "surrogate_split"),
        (lambda: ot.compose(["a😀"], [2, -1]), "surrogate_split"),
        (lambda: ot.compose(["a😀"], [-2, 1]), "surrogate_split"),
        (lambda: ot.transform([1], [2]), "length_mismatch"),
        (lambda: ot.transform(["x"], [1]), "length_mismatch"),
        (lambda: ot.transform_past([1], [[2]]), "length_mismatch"),
        (lambda: ot.transform_past([2], [[2], [1]]), "length_mismatch"),
    ]
    for call, code in cases:
        with pytest.raises(OTError) as info:
            call()
        assert info.value.code == code


@pytest.mark.parametrize("position", [-1, 4, True, 1.0, None])
def test_transform_position_rejects(position: Any) -> None:
    with pytest.raises(OTError) as info:
        ot.transform_position(position, [3])
    assert info.value.code == "invalid_position"


def test_conversion_helpers_reject() -> None:
    calls: list[Callable[[], object]] = [
        lambda: ot.utf16_to_index("ab", 3),
        lambda: ot.utf16_to_index("ab", -1),
        lambda: ot.index_to_utf16("ab", 3),
        lambda: ot.index_to_utf16("ab", True),
    ]
    for call in calls:
        with pytest.raises(OTError) as info:
            call()
        assert info.value.code == "invalid_position"


# ------------------------------------------------------------------------ scale


def test_large_documents() -> None:
    # How long this takes (it must stay linear) is measured by bench/ot_bench.py.
    unit = "ab😀中 "  # 5 code points, 6 UTF-16 units
    doc = unit * 20_000  # 100k code points
    assert ot.utf16_len(doc) == 120_000
    op: Op = []
    for _ in range(20_000):
        op += [4, -1, "x", 1]  # replace every "中" by "x"
    result = ot.apply(doc, op)
    assert result == "ab😀x " * 20_000
    inverse = ot.invert(op, doc)
    assert ot.apply(result, inverse) == doc
    a2, b2 = ot.transform(op, inverse)  # same base length; convergence still holds
    assert ot.apply(result, b2) == ot.apply(ot.apply(doc, inverse), a2)
    # A large insert cut by many small components of the second op.
    big: Op = ["é😀" * 50_000]
    cutter: Op = []
    for _ in range(50_000):
        cutter += [1, -2]
    assert ot.compose(big, cutter) == ["é" * 50_000]
    assert ot.transform_position(120_000, op) == ot.target_length(op)
