"""One writer per document across API nodes: a document's ops are committed by its owner node.

Any node may commit any document, and PostgreSQL decides (collab/submit.py). But two nodes
committing one document race for every revision: the loser reads what it missed and tries
again under the document's lock. With two API processes serving the same files, 30-47% of all
commits went that way and two processes were three times slower than one
(bench/collab_results.md). So a node sends an op of a document it does not own to the owner
over the broker, and the owner commits it with its own ops, in its groups.

The owner of a path is the smallest node id among the nodes with a participant who has the
path open (the room's roster, collab/presence.py), less the nodes that did not answer. Nodes
whose rosters agree pick the same owner; while they disagree two nodes commit the document,
which is only slower. An op takes at most one hop: what arrives over the broker is committed
where it arrives.

Nothing waits on the owner for long: a node that has no answer within `FORWARD_TIMEOUT_S`
commits the op itself (its `(client_key, seq)` makes a second commit of the same op a duplicate,
acknowledged with the revision of the first) and sends that node nothing more in the room
until it hears from it again.

Messages on a node's channel ``collab:node:<id>`` (collab.channels.node_channel), JSON:

``submit`` ``{id, from, project, path, revision, op, client_key, seq, user_id, trace}`` (trace:
the op's span as ``[trace id, span id, flags]``, or null);
``outcome`` ``{id, revision, op, duplicate}``, ``{id, error: {code, message, details}}`` or
``{id, absent: true}`` (the document is not open there: the sender commits it itself).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from opentelemetry.trace import SpanContext, TraceFlags

from collab.broker import Subscription
from collab.channels import node_channel
from collab.errors import CollabError
from collab.submission import Outcome, Submission
from vaporform import metrics

if TYPE_CHECKING:
    from collab.hub import Hub
    from collab.room import OpenDocument, Room

log = logging.getLogger("vaporform.collab")

FORWARD_TIMEOUT_S = 3.0

_COMMITTED = metrics.COLLAB_FORWARDED.labels("committed")
_REFUSED = metrics.COLLAB_FORWARDED.labels("refused")
_ABSENT = metrics.COLLAB_FORWARDED.labels("absent")
_UNANSWERED = metrics.COLLAB_FORWARDED.labels("unanswered")


class Forwarder:
    """A node's side of forwarding: what it sends to owners, and what it commits for others."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.hub.broker.subscribe(
            node_channel(self.hub.node_id), self._on_message
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        for future in self._pending.values():
            future.cancel()

    async def submit(self, room: Room, opened: OpenDocument, sub: Submission) -> Outcome:
        """Commit `sub` on the document's owner, or here when that is this node (or silent)."""
        hub = self.hub
        owner = room.owner(opened.doc.path)
        if owner == hub.node_id or self._subscription is None:
            return await opened.committer.submit(sub)
        ident = f"{hub.node_id}:{next(self._ids)}"
        answer = self._pending[ident] = asyncio.get_running_loop().create_future()
        message = {
            "kind": "submit",
            "id": ident,
            "from": hub.node_id,
            "project": str(room.project_id),
            "path": opened.doc.path,
            "revision": sub.revision,
            "op": sub.op,
            "client_key": sub.client_key,
            "seq": sub.seq,
            "user_id": None if sub.user_id is None else str(sub.user_id),
            "trace": _wire_trace(sub.span_context),
        }
        try:
            await hub.broker.publish(node_channel(owner), orjson.dumps(message))
            reply = await asyncio.wait_for(answer, FORWARD_TIMEOUT_S)
        except Exception:
            # TimeoutError, or the broker failed: commit here; the owner, if it did commit
            # the op meanwhile, makes this a duplicate.
            _UNANSWERED.inc()
            log.warning("no answer from the document's owner; committing here", exc_info=True)
            room.unreachable(owner)
            return await opened.committer.submit(sub)
        finally:
            self._pending.pop(ident, None)
        if reply.get("absent"):
            _ABSENT.inc()
            return await opened.committer.submit(sub)
        error = reply.get("error")
        if error is not None:
            _REFUSED.inc()
            raise CollabError(str(error["code"]), str(error["message"]), error.get("details", {}))
        _COMMITTED.inc()
        outcome = Outcome(int(reply["revision"]), reply["op"], bool(reply.get("duplicate")))
        if not outcome.duplicate:
            # Its ack goes out when the op itself reaches this node's copy of the document
            # (the room's listener claims it), so that it is never sent as someone else's op.
            await opened.doc.reach(outcome.revision, hub.pool)
        return outcome

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            if message.get("kind") == "submit":
                self.hub.spawn(self._serve(message))
            elif message.get("kind") == "outcome":
                answer = self._pending.get(str(message["id"]))
                if answer is not None and not answer.done():
                    answer.set_result(message)
        except Exception:
            log.exception("bad forwarding message")

    async def _serve(self, message: dict[str, Any]) -> None:
        hub = self.hub
        reply: dict[str, Any] = {"kind": "outcome", "id": message["id"]}
        room = hub.rooms.get(UUID(str(message["project"])))
        opened = None if room is None else room.documents.get(str(message["path"]))
        if opened is None:
            reply["absent"] = True
        else:
            user = message.get("user_id")
            sub = Submission(
                int(message["revision"]),
                message["op"],
                str(message["client_key"]),
                int(message["seq"]),
                None if user is None else UUID(str(user)),
                span_context=_read_trace(message.get("trace")),
            )
            try:
                outcome = await opened.committer.submit(sub)
                reply.update(revision=outcome.revision, op=outcome.op, duplicate=outcome.duplicate)
            except CollabError as exc:
                reply["error"] = {"code": exc.code, "message": exc.message, "details": exc.details}
            except Exception:
                log.exception("a forwarded op failed", extra={"path": message["path"]})
                reply["error"] = {
                    "code": "internal_error",
                    "message": "the op was not committed",
                    "details": {},
                }
        await hub.broker.publish(node_channel(str(message["from"])), orjson.dumps(reply))


# The op's span travels with it, so that the owner's commit span is its child, as on one node.
def _wire_trace(context: SpanContext | None) -> list[Any] | None:
    if context is None:
        return None
    return [f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags)]


def _read_trace(raw: Any) -> SpanContext | None:
    if not isinstance(raw, list) or len(raw) != 3:
        return None
    try:
        context = SpanContext(
            int(raw[0], 16), int(raw[1], 16), is_remote=True, trace_flags=TraceFlags(int(raw[2]))
        )
    except (TypeError, ValueError):
        return None
    return context if context.is_valid else None
