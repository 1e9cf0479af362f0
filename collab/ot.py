"""Operational Transform for plain text, wire-compatible with ot.js ``TextOperation``.

Grammar of an operation (the JSON that ot.js ``TextOperation#toJSON`` produces)::

    op        := "[" [ component *( "," component ) ] "]"
    component := retain / insert / delete
    retain    := positive integer    ; keep the next n code units
    insert    := non-empty string    ; insert the string at the current position
    delete    := negative integer    ; remove the next -n code units

An operation walks over the *whole* document: its base length (sum of retains and of
``-delete``) must equal the document length, and its target length (sum of retains and of
insert lengths) is the length of the result.  Trailing retains are therefore kept.

All lengths and positions count UTF-16 code units, like JavaScript's ``String#length``:
``"😀"`` has length 2, ``"中"`` has length 1.  Boundaries (the end of a retain or delete,
hence every position where an insert happens) must not fall between the two halves of a
surrogate pair, and insert strings must not contain lone surrogates; such operations are
rejected with ``OTError(code="surrogate_split")``.

Canonical form (what ot.js's builder methods, and hence ``TextOperation.fromJSON``, produce):
adjacent components of the same kind are merged, and an insert adjacent to a delete is put
*before* it (``[-2, "x"]`` becomes ``["x", -2]``), so a delete is never directly followed by
an insert.  Every function here accepts any valid operation and returns canonical ones,
identical to the ``ops`` of the corresponding ot.js result.

Everything is pure and linear in the size of its inputs; nothing limits sizes (callers do).
Internally inserts and documents are handled as UTF-16-LE bytes, sliced two bytes per unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias, cast

__all__ = [
    "Component",
    "OTError",
    "Op",
    "apply",
    "base_length",
    "check",
    "compose",
    "index_to_utf16",
    "invert",
    "is_noop",
    "normalize",
    "target_length",
    "transform",
    "transform_past",
    "transform_position",
    "transform_selection",
    "utf16_len",
    "utf16_to_index",
]

Component: TypeAlias = int | str
Op: TypeAlias = list[Component]

INVALID_OP: Final = "invalid_op"
LENGTH_MISMATCH: Final = "length_mismatch"
SURROGATE_SPLIT: Final = "surrogate_split"
INVALID_DOCUMENT: Final = "invalid_document"
INVALID_POSITION: Final = "invalid_position"

_ENC: Final = "utf-16-le"


class OTError(ValueError):
    """An operation, document or position is invalid for the requested computation.

    ``code`` is stable and meant for programs: ``invalid_op`` (malformed operation),
    ``length_mismatch`` (lengths of operations/document do not fit together),
    ``surrogate_split`` (a boundary inside a surrogate pair, or a lone surrogate in an
    insert), ``invalid_document`` (the document is not a str or holds lone surrogates),
    ``invalid_position`` (a position that is not an int within the document).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.args[0]}"


# Internal form of a canonical operation: retain = positive int, delete = negative int,
# insert = memoryview over the UTF-16-LE bytes of the inserted text (2 bytes per unit).
_Comp: TypeAlias = int | memoryview
# An insert's piece while building: bytes where inserts may be cut, text where they never are.
_Chunk: TypeAlias = memoryview | str


class _Builder:
    """Port of ot.js's ``retain``/``insert``/``delete`` builder methods (canonical form).

    Inserts are kept as lists of chunks so that appending is O(1) amortized: UTF-16-LE bytes
    where inserts may be cut (compose, invert), text where they never are (transform).
    """

    __slots__ = ("_ops",)

    def __init__(self) -> None:
        self._ops: list[int | list[_Chunk]] = []

    def retain(self, n: int) -> None:
        if n == 0:
            return
        ops = self._ops
        if ops:
            last = ops[-1]
            if isinstance(last, int) and last > 0:
                ops[-1] = last + n
                return
        ops.append(n)

    def delete(self, n: int) -> None:
        """Delete ``n`` (> 0) code units."""
        if n == 0:
            return
        ops = self._ops
        if ops:
            last = ops[-1]
            if isinstance(last, int) and last < 0:
                ops[-1] = last - n
                return
        ops.append(-n)

    def insert(self, chunk: _Chunk) -> None:
        """Insert ``chunk``; one builder takes chunks of one type only."""
        if len(chunk) == 0:
            return
        ops = self._ops
        if ops:
            last = ops[-1]
            if isinstance(last, list):
                last.append(chunk)
                return
            if last < 0:
                # ot.js: an insert right after a delete goes before that delete.
                if len(ops) >= 2:
                    prev = ops[-2]
                    if isinstance(prev, list):
                        prev.append(chunk)
                        return
                ops.insert(len(ops) - 1, [chunk])
                return
        ops.append([chunk])

    def internal(self) -> list[_Comp]:
        """The bytes form (of a builder fed bytes)."""
        return [
            c
            if isinstance(c, int)
            else cast(memoryview, c[0])
            if len(c) == 1
            else memoryview(_joined(c))
            for c in self._ops
        ]

    def result(self) -> Op:
        return [
            c
            if isinstance(c, int)
            else _joined(c).decode(_ENC)
            if isinstance(c[0], memoryview)
            else "".join(cast(list[str], c))
            for c in self._ops
        ]


def _joined(chunks: list[_Chunk]) -> bytes:
    """The bytes of a builder's insert that was fed bytes."""
    return b"".join(cast(list[memoryview], chunks))


def _encode_insert(s: str, index: int) -> memoryview:
    try:
        return memoryview(s.encode(_ENC))
    except UnicodeEncodeError:
        raise OTError(
            SURROGATE_SPLIT, f"insert at component {index} contains a lone surrogate"
        ) from None


def _encode_doc(doc: object) -> memoryview:
    if not isinstance(doc, str):
        raise OTError(INVALID_DOCUMENT, f"document must be a str, not {type(doc).__name__}")
    try:
        return memoryview(doc.encode(_ENC))
    except UnicodeEncodeError:
        raise OTError(INVALID_DOCUMENT, "document contains a lone surrogate") from None


def _parse(op: object, *, lenient: bool = False) -> list[_Comp]:
    """Validate ``op`` and return its canonical internal form.

    With ``lenient``, zero integers and empty strings are dropped instead of rejected
    (as ot.js's builder methods do); every other defect is still rejected.
    """
    if not isinstance(op, list):
        raise OTError(INVALID_OP, f"operation must be a list, not {type(op).__name__}")
    builder = _Builder()
    for i, c in enumerate(op):
        if isinstance(c, bool) or not isinstance(c, int | str):
            raise OTError(
                INVALID_OP, f"component {i} must be an int or a str, not {type(c).__name__}"
            )
        if isinstance(c, str):
            if not c:
                if lenient:
                    continue
                raise OTError(INVALID_OP, f"component {i} is an empty insert")
            builder.insert(_encode_insert(c, i))
        elif c > 0:
            builder.retain(c)
        elif c < 0:
            builder.delete(-c)
        elif not lenient:
            raise OTError(INVALID_OP, f"component {i} is zero")
    return builder.internal()


def _units(insert: str) -> int:
    """UTF-16 length of an insert already checked for lone surrogates."""
    return len(insert) if insert.isascii() else len(insert.encode(_ENC)) // 2


def _parse_text(op: object) -> list[int | str]:
    """``_parse`` (strict) with inserts kept as text: the form of the functions that never
    cut an insert (apply, transform, lengths, positions). Most inserts are ASCII, and then
    they are neither encoded nor sliced as bytes."""
    if not isinstance(op, list):
        raise OTError(INVALID_OP, f"operation must be a list, not {type(op).__name__}")
    out: list[int | str] = []
    for i, c in enumerate(op):
        if isinstance(c, str):
            if not c:
                raise OTError(INVALID_OP, f"component {i} is an empty insert")
            if not c.isascii():
                _encode_insert(c, i)  # rejects a lone surrogate
            if out:
                last = out[-1]
                if isinstance(last, str):
                    out[-1] = last + c
                    continue
                if last < 0:
                    # ot.js: an insert right after a delete goes before that delete.
                    if len(out) >= 2 and isinstance(out[-2], str):
                        out[-2] = out[-2] + c
                    else:
                        out.insert(len(out) - 1, c)
                    continue
            out.append(c)
        elif isinstance(c, int) and not isinstance(c, bool):
            if c == 0:
                raise OTError(INVALID_OP, f"component {i} is zero")
            if out:
                last = out[-1]
                if isinstance(last, int) and (last > 0) == (c > 0):
                    out[-1] = last + c
                    continue
            out.append(c)
        else:
            raise OTError(
                INVALID_OP, f"component {i} must be an int or a str, not {type(c).__name__}"
            )
    return out


def _base_len(ops: Sequence[int | _Chunk]) -> int:
    return sum(abs(c) for c in ops if isinstance(c, int))


def _target_len(ops: Sequence[int | _Chunk]) -> int:
    """Inserts count their UTF-16 units, kept as text or as bytes."""
    n = 0
    for c in ops:
        if isinstance(c, int):
            if c > 0:
                n += c
        elif isinstance(c, str):
            n += _units(c)
        else:
            n += len(c) // 2
    return n


def _is_low_surrogate_at(data: memoryview, unit: int) -> bool:
    """Whether UTF-16 code unit ``unit`` of ``data`` (UTF-16-LE) is a low surrogate."""
    return 0xDC <= data[2 * unit + 1] <= 0xDF


def _check_cut(data: memoryview, unit: int, what: str) -> None:
    """Reject cutting ``data`` before code unit ``unit`` if that splits a surrogate pair."""
    if 0 < unit < len(data) // 2 and _is_low_surrogate_at(data, unit):
        raise OTError(SURROGATE_SPLIT, f"position {unit} splits a surrogate pair in the {what}")


def _doc_len_mismatch(doc_len: int, base: int) -> OTError:
    return OTError(
        LENGTH_MISMATCH,
        f"operation base length {base} != document length {doc_len} (UTF-16 units)",
    )


# --------------------------------------------------------------------------- public API


def utf16_len(s: str) -> int:
    """Length of ``s`` in UTF-16 code units (JavaScript ``s.length``)."""
    if s.isascii():
        return len(s)
    return len(s.encode(_ENC, "surrogatepass")) // 2


def index_to_utf16(s: str, index: int) -> int:
    """Convert a Python (code point) index into ``s`` to a UTF-16 offset."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= len(s):
        raise OTError(INVALID_POSITION, f"index {index!r} outside 0..{len(s)}")
    return utf16_len(s[:index])


def utf16_to_index(s: str, offset: int) -> int:
    """Convert a UTF-16 offset into ``s`` to a Python (code point) index.

    Raises ``OTError`` (``invalid_position``) when out of range and (``surrogate_split``)
    when the offset falls between the halves of a surrogate pair.
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise OTError(INVALID_POSITION, f"offset {offset!r} is not a non-negative int")
    # A prefix of `offset` code points holds at least `offset` code units (if s is long enough).
    prefix = _encode_doc(s[:offset])
    if len(prefix) < 2 * offset:
        raise OTError(INVALID_POSITION, f"offset {offset} beyond the end of the string")
    _check_cut(prefix, offset, "string")
    return len(prefix[: 2 * offset].tobytes().decode(_ENC))


def check(op: object) -> None:
    """Validate the structure of ``op``; raise ``OTError`` if it is not a valid operation.

    A valid operation is a ``list`` of non-bool ``int`` (non-zero) and non-empty ``str``
    components whose inserts contain no lone surrogates.  ``[]`` is valid (the no-op on
    the empty document).  Lengths are not checked against any document here.
    """
    _parse_text(op)


def normalize(op: Op) -> Op:
    """Canonical form of ``op``, as ot.js ``TextOperation.fromJSON(op).toJSON()``.

    Merges adjacent components of the same kind, moves inserts before adjacent deletes and,
    unlike the other functions, tolerates (drops) ``0`` and ``""`` components.  Trailing
    retains are kept.  Idempotent; the result applies exactly like ``op``.
    """
    builder = _Builder()
    for c in _parse(op, lenient=True):
        if isinstance(c, int):
            if c > 0:
                builder.retain(c)
            else:
                builder.delete(-c)
        else:
            builder.insert(c)
    return builder.result()


def base_length(op: Op) -> int:
    """Length (UTF-16 units) of the documents ``op`` applies to."""
    return _base_len(_parse_text(op))


def target_length(op: Op) -> int:
    """Length (UTF-16 units) of the document that ``op`` produces."""
    return _target_len(_parse_text(op))


def is_noop(op: Op) -> bool:
    """Whether ``op`` leaves every document unchanged (ot.js ``isNoop``)."""
    ops = _parse_text(op)
    return not ops or (len(ops) == 1 and isinstance(ops[0], int) and ops[0] > 0)


def apply(doc: str, op: Op) -> str:
    """Apply ``op`` to ``doc``.

    Raises ``OTError``: ``length_mismatch`` if the base length differs from
    ``utf16_len(doc)``, ``surrogate_split`` if a boundary of ``op`` falls inside a
    surrogate pair of ``doc``, ``invalid_document`` for a document with lone surrogates.
    """
    if isinstance(doc, str) and doc.isascii():
        # Code units are characters and no boundary can split a pair: slice the text itself.
        text_ops = _parse_text(op)
        base = _base_len(text_ops)
        if base != len(doc):
            raise _doc_len_mismatch(len(doc), base)
        parts: list[str] = []
        at = 0
        for t in text_ops:
            if isinstance(t, str):
                parts.append(t)
            elif t > 0:
                parts.append(doc[at : at + t])
                at += t
            else:
                at -= t
        return "".join(parts)
    ops = _parse(op)
    data = _encode_doc(doc)
    n = len(data) // 2
    base = _base_len(ops)
    if base != n:
        raise _doc_len_mismatch(n, base)
    out: list[memoryview] = []
    pos = 0
    for c in ops:
        if isinstance(c, int):
            end = pos + abs(c)
            _check_cut(data, end, "document")
            if c > 0:
                out.append(data[2 * pos : 2 * end])
            pos = end
        else:
            out.append(c)
    return b"".join(out).decode(_ENC)


def invert(op: Op, doc: str) -> Op:
    """The operation that undoes ``op`` when applied to ``apply(doc, op)`` (ot.js ``invert``).

    ``doc`` is the document ``op`` was applied to; it is validated as in ``apply``.
    """
    ops = _parse(op)
    data = _encode_doc(doc)
    n = len(data) // 2
    base = _base_len(ops)
    if base != n:
        raise _doc_len_mismatch(n, base)
    builder = _Builder()
    pos = 0
    for c in ops:
        if isinstance(c, int):
            end = pos + abs(c)
            _check_cut(data, end, "document")
            if c > 0:
                builder.retain(c)
            else:
                builder.insert(data[2 * pos : 2 * end])
            pos = end
        else:
            builder.delete(len(c) // 2)
    return builder.result()


def compose(a: Op, b: Op) -> Op:
    """One operation with the effect of ``a`` followed by ``b`` (ot.js ``compose``).

    Requires ``target_length(a) == base_length(b)`` (else ``length_mismatch``).  If ``b``
    cuts one of ``a``'s inserts inside a surrogate pair, raises ``surrogate_split``.
    """
    ops1 = _parse(a)
    ops2 = _parse(b)
    t1, b2 = _target_len(ops1), _base_len(ops2)
    if t1 != b2:
        raise OTError(LENGTH_MISMATCH, f"target length of a ({t1}) != base length of b ({b2})")
    out = _Builder()
    it1, it2 = iter(ops1), iter(ops2)
    op1: _Comp | None = next(it1, None)
    op2: _Comp | None = next(it2, None)
    while op1 is not None or op2 is not None:
        if isinstance(op1, int) and op1 < 0:
            out.delete(-op1)
            op1 = next(it1, None)
            continue
        if isinstance(op2, memoryview):
            out.insert(op2)
            op2 = next(it2, None)
            continue
        if op1 is None or op2 is None:  # pragma: no cover - excluded by the length check
            raise OTError(LENGTH_MISMATCH, "operations do not compose")
        if isinstance(op1, int):  # retain
            if op2 > 0:  # retain / retain
                if op1 > op2:
                    out.retain(op2)
                    op1 -= op2
                    op2 = next(it2, None)
                elif op1 == op2:
                    out.retain(op1)
                    op1, op2 = next(it1, None), next(it2, None)
                else:
                    out.retain(op1)
                    op2 -= op1
                    op1 = next(it1, None)
            elif op1 > -op2:  # retain / delete
                out.delete(-op2)
                op1 += op2
                op2 = next(it2, None)
            elif op1 == -op2:
                out.delete(op1)
                op1, op2 = next(it1, None), next(it2, None)
            else:
                out.delete(op1)
                op2 += op1
                op1 = next(it1, None)
        else:  # insert
            len1 = len(op1) // 2
            if op2 < 0:  # insert / delete
                if len1 > -op2:
                    _check_cut(op1, -op2, "insert of the first operation")
                    op1 = op1[-2 * op2 :]
                    op2 = next(it2, None)
                elif len1 == -op2:
                    op1, op2 = next(it1, None), next(it2, None)
                else:
                    op2 += len1
                    op1 = next(it1, None)
            elif len1 > op2:  # insert / retain
                _check_cut(op1, op2, "insert of the first operation")
                out.insert(op1[: 2 * op2])
                op1 = op1[2 * op2 :]
                op2 = next(it2, None)
            elif len1 == op2:
                out.insert(op1)
                op1, op2 = next(it1, None), next(it2, None)
            else:
                out.insert(op1)
                op2 -= len1
                op1 = next(it1, None)
    return out.result()


def transform(a: Op, b: Op) -> tuple[Op, Op]:
    """Transform concurrent ``a`` and ``b`` into ``(a', b')`` (ot.js ``transform``).

    ``apply(apply(d, a), b') == apply(apply(d, b), a')``.  When both insert at the same
    position, ``a``'s text ends up first.  Requires equal base lengths.
    """
    a_prime, b_prime = _Builder(), _Builder()
    _transform_into(_parse_text(a), _parse_text(b), a_prime, b_prime)
    return a_prime.result(), b_prime.result()


def transform_past(a: Op, others: Sequence[Op]) -> Op:
    """``a`` transformed past each of ``others`` in turn: what
    ``for b in others: a = transform(a, b)[0]`` leaves, for a fraction of its work.

    The server's hot path: an op is carried past every op committed since its base
    revision. ``a`` is parsed once and stays in internal form from one step to the next, and
    the other side (``b'``) is never built.
    """
    if not others:
        return a
    ops1 = _parse_text(a)
    for b in others:
        a_prime = _Builder()
        _transform_into(ops1, _parse_text(b), a_prime, None)
        ops1 = a_prime.result()  # canonical, so already what _parse_text would make of it
    return ops1


def _transform_into(
    ops1: list[int | str], ops2: list[int | str], a_prime: _Builder, b_prime: _Builder | None
) -> None:
    """ot.js ``transform`` of parsed ops into builders; without ``b_prime``, a' alone."""
    l1, l2 = _base_len(ops1), _base_len(ops2)
    if l1 != l2:
        raise OTError(LENGTH_MISMATCH, f"base lengths differ: {l1} != {l2}")
    it1, it2 = iter(ops1), iter(ops2)
    op1: int | str | None = next(it1, None)
    op2: int | str | None = next(it2, None)
    while op1 is not None or op2 is not None:
        if isinstance(op1, str):
            a_prime.insert(op1)
            if b_prime is not None:
                b_prime.retain(_units(op1))
            op1 = next(it1, None)
            continue
        if isinstance(op2, str):
            a_prime.retain(_units(op2))
            if b_prime is not None:
                b_prime.insert(op2)
            op2 = next(it2, None)
            continue
        if op1 is None or op2 is None:  # pragma: no cover - excluded by the length check
            raise OTError(LENGTH_MISMATCH, "operations do not transform")
        if op1 > 0 and op2 > 0:  # retain / retain
            if op1 > op2:
                minl = op2
                op1 -= op2
                op2 = next(it2, None)
            elif op1 == op2:
                minl = op2
                op1, op2 = next(it1, None), next(it2, None)
            else:
                minl = op1
                op2 -= op1
                op1 = next(it1, None)
            a_prime.retain(minl)
            if b_prime is not None:
                b_prime.retain(minl)
        elif op1 < 0 and op2 < 0:  # delete / delete
            if -op1 > -op2:
                op1 -= op2
                op2 = next(it2, None)
            elif op1 == op2:
                op1, op2 = next(it1, None), next(it2, None)
            else:
                op2 -= op1
                op1 = next(it1, None)
        elif op1 < 0:  # delete / retain
            if -op1 > op2:
                minl = op2
                op1 += op2
                op2 = next(it2, None)
            elif -op1 == op2:
                minl = op2
                op1, op2 = next(it1, None), next(it2, None)
            else:
                minl = -op1
                op2 += op1
                op1 = next(it1, None)
            a_prime.delete(minl)
        else:  # retain / delete
            if op1 > -op2:
                minl = -op2
                op1 += op2
                op2 = next(it2, None)
            elif op1 == -op2:
                minl = op1
                op1, op2 = next(it1, None), next(it2, None)
            else:
                minl = op1
                op2 += op1
                op1 = next(it1, None)
            if b_prime is not None:
                b_prime.delete(minl)


def transform_position(position: int, op: Op, *, is_own: bool = False) -> int:
    """Move a cursor ``position`` (UTF-16 offset in the base document) across ``op``.

    This is ot.js ``Selection.Range#transform``'s ``transformIndex`` applied to the
    canonical form of ``op``: inserts before the position shift it right, deleted text
    before it shifts it left, and a position inside a deleted range moves to the start
    of that range.

    Tie rule (an insert exactly at ``position``):

    * ``is_own=False`` (default, exactly ot.js): the position ends up *after* the
      inserted text.  Use this for other users' cursors, or for a user's cursor moved by
      that same user's own edit (typing at the caret leaves the caret after the text).
    * ``is_own=True``: the position stays *before* the inserted text.  Use this when the
      position belongs to the side that wins ties in ``transform``: a client's own
      position (e.g. the selection it sent with its own operation) moved across a
      *concurrent* operation, so that it stays next to that client's own concurrent
      insert.  Then for ``a`` inserting at ``p``, ``transform(a, op)[0]`` inserts at
      ``transform_position(p, op, is_own=True)``, while for ``b`` inserting at ``p``,
      ``transform(op, b)[1]`` inserts at ``transform_position(p, op)``.

    Raises ``OTError`` (``invalid_position``) unless ``0 <= position <= base_length(op)``.
    """
    ops = _parse_text(op)
    base = _base_len(ops)
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= base:
        raise OTError(INVALID_POSITION, f"position {position!r} outside 0..{base}")
    index = position  # units of the base document still to walk before the position
    new = position
    for c in ops:
        if isinstance(c, str):
            if is_own and index == 0:
                break
            new += _units(c)
        elif c > 0:
            index -= c
        else:
            new -= min(index, -c)
            index += c
        if index < 0:
            break
    return new


def transform_selection(anchor: int, head: int, op: Op, *, is_own: bool = False) -> tuple[int, int]:
    """Transform a selection range ``(anchor, head)`` across ``op``; see ``transform_position``."""
    new_anchor = transform_position(anchor, op, is_own=is_own)
    if head == anchor:
        return new_anchor, new_anchor
    return new_anchor, transform_position(head, op, is_own=is_own)
