"""One WebSocket connection: messages in, calls on the room and its documents, messages out.

The WebSocket handler (web/blueprints/collab.py) is a pump: it feeds every frame to
``Session.handle`` and writes the frames ``Session.outbox`` yields (collab/fanout.py: what is
due within one tick leaves as one frame). Frames are handled one at a time, so a client's
messages take effect in the order it sent them. The outbox is bounded: a client that cannot
keep up is disconnected (``OVERFLOW_CLOSE_CODE``) and re-joins.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Hashable
from typing import Any
from uuid import UUID

from opentelemetry.trace import Status, StatusCode

from collab import instruments, protocol
from collab.document import LiveDocument
from collab.document import resync as resync_error
from collab.errors import CollabError
from collab.fanout import Outbox
from collab.presence import Participant, colour_for
from collab.protocol import ClientType, ServerType
from collab.room import OpenDocument, Room, op_payload
from collab.settings import CollabSettings
from collab.submission import Submission, op_span
from store import chat as chats
from store.collab import OpRow

log = logging.getLogger("vaporform.collab")

OVERFLOW_CLOSE_CODE = 4008
CHAT_RATE = 2.0
CHAT_BURST = 10


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when allowed, else the seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Session:
    def __init__(
        self,
        room: Room,
        *,
        user_id: UUID,
        name: str,
        role: str,
        settings: CollabSettings,
        batching: bool = True,
    ) -> None:
        self.room = room
        # The client takes frames holding a JSON array of envelopes (the default; `?batch=0`
        # asks for one envelope per frame).
        self.batching = batching
        self.user_id = user_id
        self.role = role
        self.settings = settings
        self.session_id = uuid.uuid4().hex
        self.participant = Participant(
            session_id=self.session_id,
            user_id=str(user_id),
            name=name,
            colour=colour_for(str(user_id)),
            node=room.hub.node_id,
        )
        self.outbox = Outbox(
            room.hub.fanout,
            batching=batching,
            limit=settings.send_queue,
            on_overflow=self._overflowed,
        )
        # Set by the WebSocket pump: disconnect now (with `close_code`), even if the writer
        # is stuck.
        self.on_kick: Callable[[], None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.documents: dict[str, OpenDocument] = {}
        self._awaiting: dict[tuple[str, str, int], str | None] = {}
        self._ops = TokenBucket(settings.op_rate, settings.op_burst)
        self._chat = TokenBucket(CHAT_RATE, CHAT_BURST)
        self._loop = asyncio.get_running_loop()  # for each op's future: see Committer.__init__

    @property
    def can_edit(self) -> bool:
        return self.role in ("editor", "owner")

    def change_role(self, role: str) -> None:
        """The user's role changed while connected: ops are judged by the new one from now on
        (one already being committed still commits); the client hears it as `access`."""
        if role == self.role:
            return
        could_edit, previous = self.can_edit, self.role
        self.role = role
        if could_edit != self.can_edit:
            for opened in self.documents.values():
                opened.doc.editors += 1 if self.can_edit else -1
        self._send(ServerType.ACCESS, {"role": role, "previous_role": previous})

    # -- outgoing ------------------------------------------------------------------------

    def offer(self, text: str, slot: Hashable | None = None) -> None:
        """Queue a serialised envelope; one with a `slot` replaces the one pending in it."""
        self.outbox.offer(text, slot)

    @property
    def overflowed(self) -> bool:
        return self.outbox.closed and self.close_code == OVERFLOW_CLOSE_CODE

    def _overflowed(self) -> None:
        instruments.SEND_QUEUE_OVERFLOW.inc()
        log.warning("send queue full; disconnecting", extra={"session_id": self.session_id})
        self.kick(OVERFLOW_CLOSE_CODE, "too slow: re-join to resync")

    def kick(self, code: int, reason: str) -> None:
        """Disconnect this client with a close code."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            if self.on_kick is not None:
                self.on_kick()

    def _send(self, kind: ServerType, payload: dict[str, Any], ref: str | None = None) -> None:
        instruments.sent(kind)
        self.offer(
            protocol.envelope(
                kind, payload, user_id=str(self.user_id), session_id=self.session_id, ref=ref
            )
        )

    def _error(self, error: CollabError, ref: str | None) -> None:
        payload = {"code": error.code, "message": error.message, "ref": ref, **error.details}
        instruments.error_sent(error.code)
        self._send(ServerType.ERROR, payload, ref)

    def claim_ack(self, path: str, row: OpRow) -> str | None:
        key = (path, row.client_key, row.seq)
        if key not in self._awaiting:
            return None
        ref = self._awaiting.pop(key)
        return self._ack_text(path, row.revision, row.seq, ref, duplicate=False)

    def resync(self, path: str, why: str) -> None:
        # Acks of ops in flight cannot come any more: a re-join tells the client where it is.
        self._forget_awaiting(path)
        self._error(resync_error(path, why), None)

    def _forget_awaiting(self, path: str) -> None:
        for key in [k for k in self._awaiting if k[0] == path]:
            del self._awaiting[key]

    def _ack_text(
        self, path: str, revision: int, seq: int, ref: str | None, *, duplicate: bool
    ) -> str:
        payload: dict[str, Any] = {"path": path, "revision": revision, "seq": seq}
        if duplicate:
            payload["duplicate"] = True
        return protocol.envelope(
            ServerType.ACK, payload, user_id=str(self.user_id), session_id=self.session_id, ref=ref
        )

    # -- incoming ------------------------------------------------------------------------

    async def start(self) -> None:
        self.room.peers[self.session_id] = self
        await self.room.announce(self)

    async def handle(self, raw: str | bytes) -> None:
        began = time.perf_counter()
        ref: str | None = None
        kind = instruments.INVALID
        try:
            message = protocol.parse_envelope(raw, self.settings.max_message_bytes)
            ref = message.id
            kind = message.type.value
            await self._dispatch(message)
        except CollabError as exc:
            self._error(exc, ref if ref is not None else exc.details.pop("ref", None))
        except Exception:
            log.exception("collab message failed", extra={"session_id": self.session_id})
            self._error(CollabError("internal_error", "the message could not be handled"), ref)
        instruments.HANDLED[kind].observe(time.perf_counter() - began)

    async def _dispatch(self, message: protocol.Envelope) -> None:
        payload, ref = message.payload, message.id
        match message.type:
            case ClientType.OP:
                await self._op(protocol.submit_op(payload, self.settings.max_op_units), ref)
            case ClientType.CURSOR:
                await self._cursor(protocol.cursor(payload))
            case ClientType.JOIN:
                await self._join(protocol.join(payload), payload.get("revision"), ref)
            case ClientType.LEAVE:
                await self._leave(protocol.leave(payload).path, ref)
            case ClientType.CHAT:
                await self._chat_message(protocol.chat(payload, self.settings.max_chat_chars), ref)
            case ClientType.PING:
                self._send(ServerType.PONG, {}, ref)

    def _open(self, path: str) -> OpenDocument:
        found = self.documents.get(path)
        if found is None:
            raise CollabError("not_joined", f"join {path} first", {"path": path})
        return found

    async def _join(self, join: protocol.Join, since: object, ref: str | None) -> None:
        path = join.path
        if path not in self.documents and len(self.documents) >= self.settings.max_joined:
            raise CollabError(
                "too_many_documents", f"at most {self.settings.max_joined} documents per connection"
            )
        if since is not None and (isinstance(since, bool) or not isinstance(since, int)):
            raise protocol.invalid("revision must be an integer", field="revision")
        was_open = path in self.room.documents
        opened = await self.room.open_document(path)
        if was_open:
            # Open here already, it may lag what another node just committed (the broker
            # brings that soon): a client that got its ack there sees its op here too.
            await opened.doc.catch_up(self.room.hub.pool)
        fetched = await self._reach_back(opened.doc, since) if since is not None else []
        # From here to offer() nothing awaits: the joined text and the ops sent after it
        # line up exactly.
        if path not in self.documents:
            opened = self.documents[path] = self.room.attach(opened, self)
            if self.can_edit:
                opened.doc.editors += 1
            self.participant.paths = sorted(self.documents)
        doc = self.documents[path].doc
        payload: dict[str, Any] = {
            "path": path,
            "revision": doc.revision,
            "content": doc.text,
            "role": self.role,
        }
        if since is not None:
            missed = _missed_since(doc, since, fetched)
            if missed is None:
                raise CollabError(
                    "resync", f"revision {since} is not available; join without it", {"path": path}
                )
            payload["ops"] = [
                {k: v for k, v in op_payload(path, r).items() if k != "path"} for r in missed
            ]
        payload["participants"] = self.room.participants(path)
        self._send(ServerType.JOINED, payload, ref)
        await self.room.announce(self)

    async def _reach_back(self, doc: LiveDocument, since: int) -> list[OpRow]:
        """What a re-join at `since` needs that memory may not hold, fetched before the join's
        no-await section. A client may be ahead of this node (it heard of ops through
        another node): catch up first. It may be behind what memory keeps (this node
        restarted, or trimmed its history): read the ops from PostgreSQL, which has every
        one back to the last snapshot. A `resync` stays for what is older still."""
        if since > doc.revision:
            await doc.catch_up(self.room.hub.pool)
        if not 0 <= since <= doc.revision or doc.cached_after(since) is not None:
            return []
        return await doc.ops_after(self.room.hub.pool, since)

    async def _leave(self, path: str, ref: str | None) -> None:
        if path in self.documents:
            await self._detach(path)
            self.participant.paths = sorted(self.documents)
            await self.room.announce(self)
        self._send(ServerType.LEFT, {"path": path}, ref)

    async def _detach(self, path: str) -> None:
        opened = self.documents.pop(path)
        self._forget_awaiting(path)
        if self.can_edit:
            opened.doc.editors -= 1
        await self.room.detach(path, self, editor=self.can_edit)

    async def _op(self, op: protocol.SubmitOp, ref: str | None) -> None:
        opened = self._open(op.path)
        if not self.can_edit:
            raise CollabError(
                "forbidden",
                "viewers cannot edit",
                {"path": op.path, "seq": op.seq, "role": self.role},
            )
        wait = self._ops.take()
        if wait:
            raise CollabError(
                "rate_limited",
                "too many ops; resubmit this one later",
                {"path": op.path, "seq": op.seq, "retry_after_ms": int(wait * 1000) + 1},
            )
        client_key = f"{self.user_id}/{op.client_id or self.session_id}"
        key = (op.path, client_key, op.seq)
        self._awaiting[key] = ref
        span = op_span(self.room.hub.tracer, self.room.project_id, op.revision, op.seq)
        context = span.get_span_context()
        try:
            outcome = await self.room.hub.forwarder.submit(
                self.room,
                opened,
                Submission(
                    op.revision,
                    op.op,
                    client_key,
                    op.seq,
                    self.user_id,
                    self._loop.create_future(),
                    span_context=context if context.is_valid else None,
                ),
            )
            span.set_attribute("vaporform.collab.revision", outcome.revision)
        except BaseException as exc:
            if isinstance(exc, CollabError):
                self._awaiting.pop(key, None)
                exc.details.setdefault("seq", op.seq)
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            span.end()
        if key in self._awaiting:
            # A resubmit of an op committed earlier: no new revision, so no listener acked it.
            del self._awaiting[key]
            instruments.sent(ServerType.ACK)
            self.offer(self._ack_text(op.path, outcome.revision, op.seq, ref, duplicate=True))

    async def _cursor(self, cursor: protocol.Cursor) -> None:
        self._open(cursor.path)
        await self.room.cursor(
            self, cursor.path, cursor.revision, cursor.position, cursor.selection_end
        )

    async def _chat_message(self, chat: protocol.Chat, ref: str | None) -> None:
        wait = self._chat.take()
        if wait:
            raise CollabError(
                "rate_limited", "too many chat messages", {"retry_after_ms": int(wait * 1000) + 1}
            )
        async with self.room.hub.pool.acquire() as conn:
            saved = await chats.add_chat(
                conn, self.room.project_id, self.user_id, self.participant.name, chat.text
            )
        text = protocol.envelope(
            ServerType.CHAT,
            {**saved.public(), "color": self.participant.colour},
            user_id=str(self.user_id),
            session_id=self.session_id,
            ref=None,
        )
        self.room.broadcast(text, kind=ServerType.CHAT)
        await self.room.publish({"kind": "chat", "text": text})

    async def close(self) -> None:
        """The connection ended: leave every document and tell the others."""
        for path in list(self.documents):
            try:
                await self._detach(path)
            except Exception:
                log.exception("leaving a document failed", extra={"path": path})
        self.participant.paths = []
        self.room.peers.pop(self.session_id, None)
        # Its queue goes now, not when the collector gets to the session's cycles (rarely:
        # web/gc_pauses.py); the depth gauge counted 1,000,000 messages of closed sockets.
        self.outbox.close()
        await self.room.gone(self)


def _missed_since(doc: LiveDocument, since: int, fetched: list[OpRow]) -> list[OpRow] | None:
    """The ops after `since` up to the document's current revision: from memory, or the
    fetched ones followed by what memory holds after them; None when neither reaches."""
    if not 0 <= since <= doc.revision:
        return None
    cached = doc.cached_after(since)
    if cached is not None or not fetched:
        return cached
    after = doc.cached_after(fetched[-1].revision)
    return None if after is None else [*fetched, *after]
