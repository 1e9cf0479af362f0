/**
 * The collaboration socket (docs/protocol.md): one per project, many documents on it.
 *
 * Each document runs ot.js's client state machine: at most one op in flight, what is typed
 * meanwhile composed into one buffered op, remote ops (and remote cursors) transformed past
 * both. Every op carries this tab's `client_id` and a `seq`, so the op in flight when the
 * socket drops is resent with the same `seq` after the reconnect and never applied twice.
 * The socket reconnects by itself with backoff and re-joins each document with its revision;
 * the server answers with the ops missed meanwhile, one of which may be our own in-flight op
 * (that is its ack).
 */

import { api, projectUrl, wsUrl } from "./api";
import * as ot from "./ot";

export interface Participant {
  session_id: string;
  user_id: string;
  name: string;
  color: string;
  paths: string[];
}

export interface ChatMessage {
  message_id: string;
  user_id: string;
  name: string;
  text: string;
  created_at: string;
  color?: string;
}

export interface JobEvent {
  job_id: string;
  kind: string;
  status: string;
}

/** What a document needs from its editor. */
export interface DocView {
  /** Apply a remote op to the editor's text (it must not come back as a local edit). */
  applyRemote(op: ot.Op): void;
  /** Replace the whole text (first join, or a resync). */
  reset(content: string): void;
  text(): string;
  setRole(role: string): void;
  /** A remote caret/selection, in positions of the editor's current text. */
  setCursor(sessionId: string, name: string, color: string, head: number, anchor: number): void;
  removeCursor(sessionId: string): void;
  /** The position of every remote cursor, to be moved by a remote op we apply. */
}

interface Envelope {
  id?: string;
  type: string;
  payload: Record<string, unknown>;
  user_id?: string | null;
  session_id?: string | null;
  ref?: string | null;
}

export type ConnectionState = "connecting" | "online" | "offline" | "no_access";

const TAB_ID = `tab-${crypto.randomUUID()}`;
const ACCESS_REVOKED = 4003;

export class Doc {
  revision = -1;
  joined = false;
  role = "viewer";
  inflight: { op: ot.Op; seq: number } | null = null;
  private inflightSent = false;
  buffer: ot.Op | null = null;
  private seq = 0;
  private cursor: { head: number; anchor: number } | null = null;
  private cursorDirty = false;
  private retryTimer: number | undefined;
  onJoined: (() => void) | null = null;
  /** The document cannot be opened (a binary file, gone, a bad path...). */
  onFailure: ((code: string, message: string) => void) | null = null;

  constructor(
    readonly conn: Connection,
    readonly path: string,
    readonly view: DocView,
  ) {}

  get synchronized(): boolean {
    return this.inflight === null && this.buffer === null;
  }

  /** The user changed the text: `op` takes the old text to the new one. */
  localEdit(op: ot.Op): void {
    if (ot.isNoop(op)) return;
    if (this.inflight === null) {
      this.inflight = { op, seq: ++this.seq };
      this.inflightSent = false;
      this.flush();
    } else {
      this.buffer = this.buffer === null ? op : ot.compose(this.buffer, op);
    }
  }

  localSelection(head: number, anchor: number): void {
    this.cursor = { head, anchor };
    this.cursorDirty = true;
    this.sendCursor();
  }

  /** Send the in-flight op if it has not gone out on this socket yet. */
  flush(): void {
    if (this.inflight === null || this.inflightSent || !this.joined || !this.conn.isOpen) return;
    this.inflightSent = true;
    this.conn.send(
      "op",
      {
        path: this.path,
        revision: this.revision,
        op: this.inflight.op,
        seq: this.inflight.seq,
        client_id: TAB_ID,
      },
      this,
    );
  }

  private sendCursor(): void {
    // Our cursor is in our text; the server needs it at a revision it knows, which is only
    // the case when nothing of ours is pending (ot.js sends it then too).
    if (!this.cursorDirty || !this.synchronized || !this.joined || !this.conn.isOpen || !this.cursor) {
      return;
    }
    this.cursorDirty = false;
    const { head, anchor } = this.cursor;
    this.conn.send("cursor", {
      path: this.path,
      revision: this.revision,
      position: head,
      selection_end: anchor === head ? null : anchor,
    });
  }

  join(): void {
    if (!this.conn.isOpen) return;
    this.joined = false;
    this.inflightSent = false;
    const payload: Record<string, unknown> = { path: this.path };
    if (this.revision >= 0) payload.revision = this.revision;
    this.conn.send("join", payload, this);
  }

  leave(): void {
    window.clearTimeout(this.retryTimer);
    if (this.conn.isOpen) this.conn.send("leave", { path: this.path });
  }

  onMessage(message: Envelope): void {
    try {
      this.handle(message);
    } catch (error) {
      // A bug here must not wedge the document: start it over from the server's text.
      console.error("collab: message failed, resyncing", this.path, error);
      this.inflight = null;
      this.buffer = null;
      this.revision = -1;
      this.join();
    }
  }

  private handle(message: Envelope): void {
    const p = message.payload;
    switch (message.type) {
      case "joined":
        this.onJoinedMessage(p);
        break;
      case "ack":
        if (this.inflight !== null && p.seq === this.inflight.seq) this.acked(Number(p.revision));
        break;
      case "op":
        this.remote(p.op as ot.Op, Number(p.revision));
        break;
      case "cursor":
        this.remoteCursor(message, p);
        break;
      case "error":
        this.onError(p);
        break;
      default:
        break;
    }
  }

  private onJoinedMessage(p: Record<string, unknown>): void {
    this.role = String(p.role ?? "viewer");
    const ops = p.ops as { revision: number; op: ot.Op; client_id?: string; seq?: number }[] | undefined;
    if (this.revision >= 0 && ops !== undefined) {
      // A re-join: replay what we missed; our own in-flight op among them is its ack.
      for (const missed of ops) {
        if (missed.revision <= this.revision) continue;
        const ours = this.inflight !== null && missed.client_id === TAB_ID && missed.seq === this.inflight.seq;
        if (ours) this.acked(missed.revision, false);
        else this.remote(missed.op, missed.revision);
      }
      this.revision = Number(p.revision);
      if (this.synchronized && this.view.text() !== String(p.content ?? "")) {
        // Cannot happen if both sides follow the protocol; if it does, the server wins.
        console.error("collab: text diverged after re-join; taking the server's", this.path);
        this.view.reset(String(p.content ?? ""));
      }
    } else {
      // First join, or a resync: the server's text wins.
      this.inflight = null;
      this.buffer = null;
      this.revision = Number(p.revision);
      this.view.reset(String(p.content ?? ""));
    }
    this.joined = true;
    this.view.setRole(this.role);
    this.conn.participantsOf(this.path, (p.participants as Participant[]) ?? []);
    this.flush();
    this.cursorDirty = true;
    this.sendCursor();
    this.onJoined?.();
  }

  private acked(revision: number, sendNext = true): void {
    this.revision = revision;
    this.inflight = null;
    if (this.buffer !== null) {
      this.inflight = { op: this.buffer, seq: ++this.seq };
      this.inflightSent = false;
      this.buffer = null;
    }
    if (sendNext) {
      this.flush();
      this.sendCursor();
    }
  }

  private remote(op: ot.Op, revision: number): void {
    let incoming = op;
    if (this.inflight !== null) {
      const [mine, theirs] = ot.transform(this.inflight.op, incoming);
      this.inflight = { op: mine, seq: this.inflight.seq };
      incoming = theirs;
    }
    if (this.buffer !== null) {
      [this.buffer, incoming] = ot.transform(this.buffer, incoming);
    }
    this.revision = revision;
    this.view.applyRemote(incoming);
  }

  private remoteCursor(message: Envelope, p: Record<string, unknown>): void {
    const sessionId = String(message.session_id ?? "");
    if (!sessionId || sessionId === this.conn.sessionId) return;
    let head = Number(p.position);
    let anchor = p.selection_end === null || p.selection_end === undefined ? head : Number(p.selection_end);
    for (const pending of [this.inflight?.op, this.buffer]) {
      if (pending) {
        head = ot.transformPosition(head, pending);
        anchor = ot.transformPosition(anchor, pending);
      }
    }
    const length = this.view.text().length;
    if (head > length || anchor > length) return;
    this.view.setCursor(sessionId, String(p.name ?? ""), String(p.color ?? "#888"), head, anchor);
  }

  private onError(p: Record<string, unknown>): void {
    const code = String(p.code);
    if (code === "rate_limited" || code === "busy") {
      // Resend the same op (same seq) a little later: always safe.
      const wait = Number(p.retry_after_ms ?? 200);
      window.clearTimeout(this.retryTimer);
      this.retryTimer = window.setTimeout(() => {
        this.inflightSent = false;
        this.flush();
      }, wait);
    } else if (code === "resync") {
      this.revision = -1;
      this.join();
    } else if (code === "forbidden") {
      // Our role no longer allows editing: take the server's text and go read-only.
      this.revision = -1;
      this.join();
    } else if (["invalid_op", "length_mismatch", "surrogate_split", "invalid_revision", "stale_seq"].includes(code)) {
      console.error("collab: op refused, resyncing", p);
      this.revision = -1;
      this.join();
    } else if (code === "not_joined") {
      this.join();
    } else if (!this.joined) {
      this.onFailure?.(code, String(p.message ?? code));
    }
  }
}

export class Connection {
  private ws: WebSocket | null = null;
  private attempts = 0;
  private reconnectTimer: number | undefined;
  private closedByUs = false;
  private refs = new Map<string, Doc>();
  private nextRef = 1;
  readonly docs = new Map<string, Doc>();
  readonly participants = new Map<string, Participant>();
  sessionId: string | null = null;
  state: ConnectionState = "connecting";

  onState: (state: ConnectionState) => void = () => {};
  onPresence: () => void = () => {};
  onChat: (message: ChatMessage) => void = () => {};
  onJob: (event: JobEvent) => void = () => {};
  /** Our role in the project changed while connected (or access is gone: "none"). */
  onRole: (role: string) => void = () => {};

  constructor(readonly projectId: string) {}

  get isOpen(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  open(path: string, view: DocView): Doc {
    let doc = this.docs.get(path);
    if (!doc) {
      doc = new Doc(this, path, view);
      this.docs.set(path, doc);
      doc.join();
    }
    return doc;
  }

  close(path: string): void {
    const doc = this.docs.get(path);
    if (doc) {
      doc.leave();
      this.docs.delete(path);
    }
  }

  send(type: string, payload: Record<string, unknown>, doc?: Doc): void {
    if (!this.isOpen || !this.ws) return;
    const id = `c${this.nextRef++}`;
    if (doc) this.refs.set(id, doc);
    this.ws.send(JSON.stringify({ id, type, payload }));
  }

  chat(text: string): boolean {
    if (!this.isOpen) return false;
    this.send("chat", { text });
    return true;
  }

  private setState(state: ConnectionState): void {
    if (this.state !== state) {
      this.state = state;
      this.onState(state);
    }
  }

  async connect(): Promise<void> {
    window.clearTimeout(this.reconnectTimer);
    this.closedByUs = false;
    this.setState(this.state === "online" ? "connecting" : this.state);
    let ticket: string;
    try {
      ticket = await api.wsTicket();
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.closedByUs) return;
    const url = wsUrl(`${projectUrl(this.projectId, "/collab")}?ticket=${encodeURIComponent(ticket)}&batch=1`);
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempts = 0;
      this.setState("online");
      // Who is here is told afresh by the joins and presence events of this connection.
      this.participants.clear();
      this.onPresence();
      for (const doc of this.docs.values()) doc.join();
    };
    ws.onmessage = (event) => {
      const decoded = JSON.parse(String(event.data)) as Envelope | Envelope[];
      for (const message of Array.isArray(decoded) ? decoded : [decoded]) this.dispatch(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.refs.clear();
      for (const doc of this.docs.values()) doc.joined = false;
      if (this.closedByUs) return;
      this.setState("offline");
      // 4003: the server revoked this socket's access (removed from the project, token
      // revoked...): find out which before trying again.
      if (!opened || event.code === ACCESS_REVOKED) void this.checkAccess();
      else this.scheduleReconnect();
    };
  }

  /** A refused upgrade looks like any network error: ask REST whether we still may enter. */
  private async checkAccess(): Promise<void> {
    try {
      await api.get(projectUrl(this.projectId));
    } catch (error) {
      const status = (error as { status?: number }).status;
      if (status === 404 || status === 401) {
        this.setState("no_access");
        for (const doc of this.docs.values()) doc.view.setRole("viewer");
        this.onRole("none");
        return;
      }
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closedByUs) return;
    this.setState("offline");
    const base = Math.min(5000, 150 * 2 ** this.attempts);
    this.attempts += 1;
    window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = window.setTimeout(() => void this.connect(), base * (0.6 + Math.random() * 0.8));
  }

  /** Reconnect now (the user asked, or the network came back). */
  reconnectNow(): void {
    if (this.isOpen || this.closedByUs) return;
    this.attempts = 0;
    void this.connect();
  }

  shutdown(): void {
    this.closedByUs = true;
    window.clearTimeout(this.reconnectTimer);
    this.ws?.close(1000);
    this.ws = null;
  }

  participantsOf(path: string, list: Participant[]): void {
    for (const participant of list) this.participants.set(participant.session_id, participant);
    void path;
    this.onPresence();
  }

  private dispatch(message: Envelope): void {
    if (message.ref && (message.type === "joined" || message.type === "pong")) {
      this.sessionId = message.session_id ?? this.sessionId;
    }
    const p = message.payload ?? {};
    switch (message.type) {
      case "presence": {
        const who = p.participant as Participant;
        if (p.event === "gone") {
          this.participants.delete(who.session_id);
          for (const doc of this.docs.values()) doc.view.removeCursor(who.session_id);
        } else {
          this.participants.set(who.session_id, who);
          for (const doc of this.docs.values()) {
            if (!who.paths.includes(doc.path)) doc.view.removeCursor(who.session_id);
          }
        }
        this.onPresence();
        return;
      }
      case "chat":
        this.onChat(p as unknown as ChatMessage);
        return;
      case "job":
        this.onJob(p as unknown as JobEvent);
        return;
      case "access": {
        // Our role changed while connected: edit or stop editing from now on.
        const role = String(p.role);
        for (const doc of this.docs.values()) {
          doc.role = role;
          doc.view.setRole(role);
        }
        this.onRole(role);
        return;
      }
      case "pong":
      case "left":
        return;
      default:
        break;
    }
    const byRef = message.ref ? this.refs.get(message.ref) : undefined;
    if (message.ref) this.refs.delete(message.ref);
    const path = typeof p.path === "string" ? p.path : byRef?.path;
    const doc = path !== undefined ? this.docs.get(path) : byRef;
    if (doc) doc.onMessage(message);
    else if (message.type === "error") console.warn("collab error", p);
  }
}
