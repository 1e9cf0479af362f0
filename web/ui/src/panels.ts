/** The side panels of the workspace: chat, history (diff + restore) and the container. */

import { api, ApiError, projectUrl } from "./api";
import type { ChatMessage, Connection } from "./collab";
import { ask, clear, colourFor, confirmAction, h, initials, timeAgo, toast } from "./dom";

/** A unified diff as coloured lines. */
export function diffView(diff: string): HTMLElement {
  const pre = h("pre", { class: "diff", "aria-label": "Diff" });
  if (!diff.trim()) {
    pre.append(h("span", { class: "muted" }, "No differences."));
    return pre;
  }
  for (const line of diff.split("\n")) {
    let kind = "ctx";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    pre.append(h("span", { class: `dl ${kind}` }, line || " "), "\n");
  }
  return pre;
}

export class ChatPanel {
  readonly el: HTMLElement;
  private readonly log: HTMLElement;
  private readonly seen = new Set<string>();

  constructor(private readonly conn: Connection, projectId: string) {
    this.log = h("ol", { class: "chat-log", "aria-live": "polite", "aria-label": "Chat messages" });
    const input = h("textarea", {
      class: "chat-input", rows: 2, placeholder: "Message everyone in this project (Enter to send)",
      "aria-label": "Chat message", "data-testid": "chat-input", maxlength: 4000,
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        if (this.conn.chat(text)) input.value = "";
        else toast("Offline: the message will be sendable when the connection is back", "error");
      }
    });
    this.el = h("section", { class: "chat", "aria-label": "Chat" }, this.log, input);
    void api
      .get<{ items: ChatMessage[] }>(projectUrl(projectId, "/chat?limit=50"))
      .then(async ({ items }) => {
        for (const m of items.reverse()) await this.add(m, false);
        this.log.scrollTop = this.log.scrollHeight;
      })
      .catch(() => {});
  }

  async add(message: ChatMessage, scroll = true): Promise<void> {
    if (this.seen.has(message.message_id)) return;
    this.seen.add(message.message_id);
    const colour = message.color ?? (await colourFor(message.user_id));
    const mine = message.user_id === api.user?.id;
    const item = h(
      "li",
      { class: mine ? "mine" : "", "data-message-id": message.message_id },
      h("span", { class: "avatar tiny", style: `background:${colour}`, "aria-hidden": "true" }, initials(message.name)),
      h(
        "div",
        {},
        h("div", { class: "meta" }, h("strong", {}, message.name), " ", h("time", { datetime: message.created_at }, timeAgo(message.created_at))),
        h("div", { class: "text" }, message.text),
      ),
    );
    // History arrives newest first and is reversed; live messages go at the end.
    this.log.append(item);
    if (scroll) this.log.scrollTop = this.log.scrollHeight;
  }
}

interface Version {
  version: number;
  author_id: string | null;
  author?: string;
  message: string;
  size: number;
  created_at: string;
}

export class HistoryPanel {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private path: string | null = null;

  constructor(
    private readonly projectId: string,
    private readonly canEdit: boolean,
  ) {
    this.body = h("div", { class: "history-body" });
    this.el = h("section", { class: "history", "aria-label": "History" }, this.body);
  }

  async show(path: string | null): Promise<void> {
    this.path = path;
    clear(this.body);
    if (!path) {
      this.body.append(h("p", { class: "muted pad" }, "Open a file to see its history."));
      return;
    }
    let items: Version[];
    try {
      ({ items } = await api.get<{ items: Version[] }>(projectUrl(this.projectId, `/history?path=${encodeURIComponent(path)}`)));
    } catch (e) {
      this.body.append(h("p", { class: "muted pad" }, (e as Error).message));
      return;
    }
    if (this.path !== path) return;
    const latest = items[0]?.version ?? 0;
    clear(this.body);
    this.body.append(
      h("div", { class: "pane-head" }, h("span", { title: path }, `History of ${path.split("/").pop()}`), h("button", { class: "icon", "aria-label": "Refresh history", title: "Refresh", onclick: () => void this.show(path) }, "↻")),
    );
    const list = h("ol", { class: "versions", "aria-label": "Versions" });
    for (const v of items) {
      list.append(
        h(
          "li",
          { "data-version": v.version },
          h("div", {}, h("strong", {}, `v${v.version}`), " ", h("span", { class: `author author-${v.author ?? "user"}` }, v.author ?? ""), " ", h("time", { datetime: v.created_at, title: v.created_at }, timeAgo(v.created_at))),
          h("div", { class: "muted small" }, v.message || `${v.size} bytes`),
          h(
            "div",
            { class: "row-actions" },
            v.version !== latest && h("button", { class: "ghost small", "aria-label": `Diff of version ${v.version} with the latest`, onclick: () => void this.diff(path, v.version, latest) }, "Diff"),
            v.version !== latest && this.canEdit && h("button", { class: "ghost small", "aria-label": `Restore version ${v.version}`, onclick: () => void this.restore(path, v.version) }, "Restore"),
          ),
        ),
      );
    }
    this.body.append(list);
  }

  private async diff(path: string, from: number, to: number): Promise<void> {
    try {
      const { diff } = await api.get<{ diff: string }>(
        projectUrl(this.projectId, `/diff?path=${encodeURIComponent(path)}&from=${from}&to=${to}`),
      );
      const dialog = h(
        "dialog",
        { class: "modal wide", "aria-label": `Diff of ${path}` },
        h("h2", {}, `${path}: v${from} → v${to}`),
        diffView(diff),
        h(
          "div",
          { class: "actions" },
          h("button", { class: "ghost", onclick: () => dialog.close() }, "Close"),
          this.canEdit && h("button", { class: "primary", onclick: () => (dialog.close(), void this.restore(path, from)) }, `Restore v${from}`),
        ),
      );
      dialog.addEventListener("close", () => dialog.remove());
      document.body.append(dialog);
      dialog.showModal();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  private async restore(path: string, version: number): Promise<void> {
    if (!(await confirmAction(`Restore ${path} to version ${version}? This makes a new version.`, "Restore"))) return;
    try {
      const result = await api.post<{ version: number }>(projectUrl(this.projectId, "/restore"), { path, version });
      toast(`Restored v${version} as v${result.version}`);
      await this.show(path);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }
}

interface ContainerStatus {
  status: string;
  container_id: string | null;
  image: string | null;
  ports: Record<string, number>;
  resources: { cpus?: number; memory_mb?: number; pids?: number } | null;
  started_at: string | null;
  idle_deadline: string | null;
  error?: string | null;
}

export class ContainerPanel {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private timer: number | undefined;
  status: ContainerStatus | null = null;
  onChange: (status: ContainerStatus) => void = () => {};

  /** Why the last "Open preview" failed; kept across re-renders until the next attempt. */
  private readonly previewError = h("p", { class: "form-error", role: "alert", "data-testid": "preview-error" });

  constructor(
    private readonly projectId: string,
    private readonly canEdit: boolean,
  ) {
    this.body = h("div", { class: "container-body pad" });
    this.el = h("section", { class: "container-panel", "aria-label": "Container" }, this.body);
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    try {
      this.status = await api.get<ContainerStatus>(projectUrl(this.projectId, "/container"));
    } catch (e) {
      this.status = { status: "unknown", container_id: null, image: null, ports: {}, resources: null, started_at: null, idle_deadline: null, error: (e as Error).message };
    }
    this.render();
    this.onChange(this.status);
    // Poll while something changes, or slowly while the panel is on screen.
    const moving = ["provisioning", "stopping"].includes(this.status.status);
    if (moving || this.el.offsetParent !== null) {
      this.timer = window.setTimeout(() => void this.refresh(), moving ? 1000 : 10_000);
    }
  }

  stopPolling(): void {
    window.clearTimeout(this.timer);
  }

  private render(): void {
    const s = this.status;
    if (!s) return;
    clear(this.body);
    const running = s.status === "running";
    const rows: [string, string][] = [
      ["Status", s.status],
      ["Image", s.image ?? "—"],
      ["Container", s.container_id ? s.container_id.slice(0, 12) : "—"],
      ["Resources", s.resources ? `${s.resources.cpus ?? "?"} CPU · ${s.resources.memory_mb ?? "?"} MB · ${s.resources.pids ?? "?"} pids` : "—"],
      ["Started", s.started_at ? timeAgo(s.started_at) : "—"],
      ["Idle stop", s.idle_deadline ? new Date(s.idle_deadline).toLocaleTimeString() : "—"],
    ];
    this.body.append(
      h("dl", { class: "facts", "data-testid": "container-status", "data-status": s.status }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    );
    if (s.error) this.body.append(h("p", { class: "form-error" }, s.error));
    const ports = Object.entries(s.ports ?? {});
    if (ports.length) {
      this.body.append(
        h("h3", {}, "Ports"),
        h(
          "ul",
          { class: "ports" },
          ports.map(([inside, outside]) =>
            h(
              "li",
              {},
              `${inside} → 127.0.0.1:${outside} `,
              running &&
                h(
                  "a",
                  {
                    href: "#",
                    class: "preview-link",
                    role: "button",
                    "data-testid": `open-preview-${inside}`,
                    "aria-label": `Open a preview of port ${inside} in a new tab`,
                    onclick: (e: Event) => (e.preventDefault(), void this.openPreview(Number(inside))),
                  },
                  "Open preview",
                ),
            ),
          ),
        ),
      );
    }
    this.body.append(this.previewError);
    if (!this.canEdit) return;
    const start = h("button", { class: "primary", disabled: running || s.status === "provisioning", onclick: () => void this.start() }, running ? "Running" : "Start");
    const stop = h("button", { class: "ghost", disabled: !running, onclick: () => void this.stop() }, "Stop");
    const options = h("button", { class: "ghost", onclick: () => void this.startWithOptions() }, "Start with options…");
    this.body.append(h("div", { class: "actions" }, start, stop, options));
  }

  /**
   * Asks for a one-time entry URL on the preview's own origin and opens it in a new tab, never
   * in this page: the preview is another site's content (`docs/containers.md`, Previews).
   * `noopener`, so the preview cannot reach back into the IDE through `window.opener`.
   */
  async openPreview(port: number): Promise<void> {
    this.previewError.textContent = "";
    try {
      const preview = await api.post<PreviewOut>(projectUrl(this.projectId, "/previews"), { port });
      window.open(preview.url, "_blank", "noopener");
    } catch (e) {
      this.previewError.textContent = previewProblem(e, port);
      if (e instanceof ApiError && e.code === "container_not_running") void this.refresh();
    }
  }

  async start(body: Record<string, unknown> = {}): Promise<void> {
    try {
      this.status = { ...(this.status as ContainerStatus), status: "provisioning" };
      this.render();
      await api.post(projectUrl(this.projectId, "/container"), body);
    } catch (e) {
      toast((e as Error).message, "error");
    }
    await this.refresh();
  }

  private async startWithOptions(): Promise<void> {
    let images: string[] = [];
    try {
      images = (await api.get<{ items: { name: string }[] }>("/api/v1/images")).items.map((i) => i.name);
    } catch {
      images = [];
    }
    const values = await ask("Start the container", [
      ...(images.length ? [{ name: "image", label: "Image", options: images, value: images[0] }] : []),
      { name: "network", label: "Network", options: ["none", "bridge"], value: "none" },
      { name: "ports", label: "Ports to publish (bridge only), e.g. 3000, 8000", value: "" },
      { name: "cpus", label: "CPUs", value: "" },
      { name: "memory_mb", label: "Memory (MB)", value: "" },
    ], "Start");
    if (!values) return;
    const body: Record<string, unknown> = { network: values.network };
    if (values.image) body.image = values.image;
    const ports = values.ports.split(/[\s,]+/).filter(Boolean).map(Number).filter((n) => n > 0);
    if (ports.length) body.ports = ports;
    const resources: Record<string, number> = {};
    if (values.cpus) resources.cpus = Number(values.cpus);
    if (values.memory_mb) resources.memory_mb = Number(values.memory_mb);
    if (Object.keys(resources).length) body.resources = resources;
    if (isRunning(this.status) && !(await confirmAction("Replace the running container?", "Replace"))) return;
    await this.start(body);
  }

  private async stop(): Promise<void> {
    try {
      await api.post(projectUrl(this.projectId, "/container/stop"));
    } catch (e) {
      toast((e as Error).message, "error");
    }
    await this.refresh();
  }
}

interface PreviewOut {
  preview_id: string;
  port: number;
  origin: string;
  url: string;
  expires_in: number;
}

function previewProblem(error: unknown, port: number): string {
  if (error instanceof ApiError) {
    if (error.code === "container_not_running") {
      return "The container is not running: start it, then open the preview again.";
    }
    if (error.code === "port_not_published") {
      return `The container does not publish port ${port}: start it again with this port under “Ports to publish” (network bridge).`;
    }
    if (error.status === 404) return "The project is gone, or you are no longer a member.";
    return `The preview could not be opened: ${error.message}`;
  }
  return "The server cannot be reached. Try again in a moment.";
}

function isRunning(status: ContainerStatus | null): boolean {
  return status?.status === "running";
}
