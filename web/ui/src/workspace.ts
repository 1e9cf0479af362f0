/** The workspace of one project: file tree, editor tabs, search, side panels, terminal. */

import { AIPanel, type Finding } from "./ai";
import { api, ApiError, fileUrl, projectUrl } from "./api";
import { Connection, type ConnectionState, type Doc } from "./collab";
import { clear, h, initials, toast } from "./dom";
import { CodeEditor } from "./editor";
import { ChatPanel, ContainerPanel, HistoryPanel } from "./panels";
import { membersDialog, type Project, topBar, userMenu } from "./projects";
import type { TerminalHandle } from "./terminal";
import { FileTree } from "./tree";

interface Tab {
  path: string;
  pane: HTMLElement;
  tabEl: HTMLElement;
  editor: CodeEditor | null;
  doc: Doc | null;
  ready: Promise<void>;
}

interface SearchHit {
  path: string;
  line: number;
  column: number;
  preview: string;
}

const STATUS_TEXT: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  online: "Live",
  offline: "Offline: reconnecting. Your edits are kept and sent when the connection is back.",
  no_access: "You no longer have access to this project: the editor is read-only.",
};

export class Workspace {
  readonly el: HTMLElement;
  private readonly conn: Connection;
  private readonly tabs = new Map<string, Tab>();
  private active: string | null = null;
  private readonly tree: FileTree;
  private readonly tabBar: HTMLElement;
  private readonly editorArea: HTMLElement;
  private readonly status: HTMLElement;
  private readonly presence: HTMLElement;
  private readonly cursorPos: HTMLElement;
  private readonly roleEl: HTMLElement;
  private readonly side: Record<string, HTMLElement> = {};
  private readonly sideTabs: Record<string, HTMLElement> = {};
  private readonly history: HistoryPanel;
  private readonly container: ContainerPanel;
  private readonly ai: AIPanel;
  private readonly chat: ChatPanel;
  private readonly findings = new Map<string, Finding[]>();
  private readonly left: HTMLElement;
  private readonly searchPane: HTMLElement;
  private readonly bottom: HTMLElement;
  private terminal: TerminalHandle | null = null;
  private readonly terminalEl: HTMLElement;
  private readonly treeTimer: number;
  private readonly keyHandler: (e: KeyboardEvent) => void;
  private readonly canEdit: boolean;

  constructor(
    readonly project: Project,
    private readonly navigate: (url: string, replace?: boolean) => void,
    onLogout: () => void,
  ) {
    this.canEdit = project.role !== "viewer";
    this.conn = new Connection(project.id);
    this.tree = new FileTree({
      projectId: project.id,
      projectName: project.name,
      canEdit: this.canEdit,
      open: (path) => void this.open(path),
      activePath: () => this.active,
      moved: (from, to) => this.moved(from, to),
    });
    this.history = new HistoryPanel(project.id, this.canEdit);
    this.container = new ContainerPanel(project.id, this.canEdit);
    this.ai = new AIPanel({
      projectId: project.id,
      canEdit: this.canEdit,
      activePath: () => this.active,
      showFindings: (found) => this.showFindings(found),
      open: (path, line) => void this.open(path, line),
    });
    this.chat = new ChatPanel(this.conn, project.id);

    this.status = h("div", { class: "connection", "data-testid": "connection-status", "data-state": "connecting", role: "status", "aria-live": "polite" }, STATUS_TEXT.connecting);
    this.presence = h("div", { class: "presence", "data-testid": "presence", "aria-label": "People in this project" });
    this.tabBar = h("div", { class: "tabs", role: "tablist", "aria-label": "Open files" });
    this.editorArea = h("div", { class: "editor-area" }, this.welcome());
    this.cursorPos = h("span", { class: "muted" });
    this.roleEl = h("span", { class: `role role-${project.role}` }, project.role);
    this.searchPane = this.buildSearch();
    this.left = h("aside", { class: "left", "aria-label": "Explorer and search" }, this.tree.el);
    this.terminalEl = h("div", { class: "terminal", "data-testid": "terminal", "aria-label": "Terminal" });
    this.bottom = h(
      "section",
      { class: "bottom", hidden: true, "aria-label": "Terminal panel" },
      h(
        "div",
        { class: "pane-head" },
        h("span", {}, "Terminal"),
        h("span", { class: "tools" },
          h("button", { class: "icon", title: "Restart the shell", "aria-label": "Restart the shell", onclick: () => void this.startTerminal(true) }, "↻"),
          h("button", { class: "icon", title: "Close the terminal (Ctrl+`)", "aria-label": "Close the terminal", onclick: () => this.toggleTerminal(false) }, "×"),
        ),
      ),
      this.terminalEl,
    );

    const sideNames: [string, string, HTMLElement][] = [
      ["chat", "Chat", this.chat.el],
      ["ai", "AI", this.ai.el],
      ["history", "History", this.history.el],
      ["container", "Container", this.container.el],
    ];
    const sideBar = h("div", { class: "side-tabs", role: "tablist", "aria-label": "Panels" });
    const sideBody = h("div", { class: "side-body" });
    for (const [key, label, el] of sideNames) {
      const button = h("button", { role: "tab", id: `side-tab-${key}`, "aria-controls": `side-${key}`, "aria-selected": "false", onclick: () => this.showSide(key) }, label);
      const wrapper = h("div", { id: `side-${key}`, role: "tabpanel", "aria-labelledby": `side-tab-${key}`, class: "side-panel", hidden: true }, el);
      this.side[key] = wrapper;
      this.sideTabs[key] = button;
      sideBar.append(button);
      sideBody.append(wrapper);
    }

    this.el = h(
      "div",
      { class: "workspace" },
      topBar(
        h("span", { class: "project-title" }, project.name),
        this.roleEl,
        h("button", { class: "ghost small", onclick: () => void membersDialog(project), "aria-label": "Members" }, "Members"),
        this.presence,
        userMenu(onLogout),
      ),
      h(
        "div",
        { class: "main" },
        h(
          "nav",
          { class: "activity", "aria-label": "Views" },
          h("button", { class: "icon big", title: "Files", "aria-label": "Files", onclick: () => this.showLeft("files") }, "☰"),
          h("button", { class: "icon big", title: "Search (Ctrl+Shift+F)", "aria-label": "Search in files", onclick: () => this.showLeft("search") }, "⌕"),
          h("button", { class: "icon big", title: "Terminal (Ctrl+`)", "aria-label": "Toggle the terminal", onclick: () => this.toggleTerminal() }, ">_"),
        ),
        this.left,
        h("section", { class: "center", "aria-label": "Editor" }, this.tabBar, this.editorArea, this.bottom),
        h("aside", { class: "right", "aria-label": "Panels" }, sideBar, sideBody),
      ),
      h(
        "footer",
        { class: "statusbar" },
        this.status,
        this.cursorPos,
        h("span", { class: "spacer" }),
        h("span", { class: "muted" }, "Ctrl+P open · Ctrl+Shift+F search · Ctrl+S save"),
      ),
    );

    this.conn.onState = (state) => this.setConnection(state);
    this.conn.onPresence = () => this.renderPresence();
    this.conn.onChat = (m) => void this.chat.add(m);
    this.conn.onJob = (e) => this.ai.onEvent(e);
    this.conn.onRole = (role) => {
      this.roleEl.textContent = role === "none" ? "no access" : role;
      this.roleEl.className = `role role-${role}`;
      if (role !== "none") toast(`Your role in this project is now ${role}`);
    };
    void this.conn.connect();
    window.addEventListener("online", this.onOnline);

    this.keyHandler = (e) => this.onKey(e);
    window.addEventListener("keydown", this.keyHandler);
    void this.tree.refresh().catch((e: Error) => toast(e.message, "error"));
    // Files made by others (or by programs in the container) show up within 15 s, and when
    // the window gets the focus back.
    this.treeTimer = window.setInterval(() => {
      if (document.visibilityState === "visible") void this.tree.refresh().catch(() => {});
    }, 15_000);
    window.addEventListener("focus", this.onFocus);
    this.showSide("chat");
    void this.container.refresh();
  }

  private readonly onOnline = (): void => this.conn.reconnectNow();
  private readonly onFocus = (): void => void this.tree.refresh().catch(() => {});

  destroy(): void {
    window.removeEventListener("keydown", this.keyHandler);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("focus", this.onFocus);
    window.clearInterval(this.treeTimer);
    this.container.stopPolling();
    this.terminal?.dispose();
    this.conn.shutdown();
    for (const tab of this.tabs.values()) tab.editor?.destroy();
  }

  private welcome(): HTMLElement {
    return h(
      "div",
      { class: "welcome" },
      h("h2", {}, this.project.name),
      h("p", { class: "muted" }, "Open a file from the tree, or press Ctrl+P."),
      this.canEdit ? h("button", { class: "primary", onclick: () => void this.tree.createFile() }, "New file") : null,
    );
  }

  private setConnection(state: ConnectionState): void {
    this.status.dataset.state = state;
    this.status.textContent = STATUS_TEXT[state];
    if (state === "no_access") {
      this.roleEl.textContent = "no access";
    }
  }

  private renderPresence(): void {
    clear(this.presence);
    const people = new Map<string, { name: string; color: string; paths: Set<string> }>();
    for (const p of this.conn.participants.values()) {
      const found = people.get(p.user_id) ?? { name: p.name, color: p.color, paths: new Set<string>() };
      for (const path of p.paths) found.paths.add(path);
      people.set(p.user_id, found);
    }
    for (const [userId, person] of people) {
      const me = userId === api.user?.id;
      const where = person.paths.size ? ` · ${[...person.paths].join(", ")}` : "";
      this.presence.append(
        h(
          "span",
          { class: `avatar${me ? " me" : ""}`, style: `background:${person.color}`, title: `${person.name}${me ? " (you)" : ""}${where}`, "aria-label": `${person.name}${me ? " (you)" : ""}`, "data-user-id": userId },
          initials(person.name),
        ),
      );
    }
  }

  private showSide(key: string): void {
    for (const [name, panel] of Object.entries(this.side)) {
      panel.hidden = name !== key;
      this.sideTabs[name].setAttribute("aria-selected", String(name === key));
    }
    if (key === "history") void this.history.show(this.active);
    if (key === "container") void this.container.refresh();
  }

  private showLeft(which: "files" | "search"): void {
    clear(this.left);
    this.left.append(which === "files" ? this.tree.el : this.searchPane);
    if (which === "search") this.searchPane.querySelector("input")?.focus();
  }

  // -- tabs and editors ------------------------------------------------------------------

  async open(path: string, line?: number, column?: number): Promise<void> {
    let tab = this.tabs.get(path);
    if (!tab) tab = this.createTab(path);
    this.activate(path);
    if (line !== undefined) {
      await tab.ready;
      tab.editor?.goTo(line, column);
    }
  }

  private createTab(path: string): Tab {
    const pane = h("div", { class: "editor-pane", hidden: true, "data-path": path });
    const close = h("button", { class: "icon tab-close", "aria-label": `Close ${path}`, title: "Close" }, "×");
    const tabEl = h("div", { class: "tab", role: "tab", "aria-selected": "false", title: path, tabindex: 0 }, h("span", {}, path.split("/").pop() ?? path), close);
    let resolveReady: () => void = () => {};
    const tab: Tab = { path, pane, tabEl, editor: null, doc: null, ready: new Promise((r) => (resolveReady = r)) };
    tabEl.addEventListener("click", (e) => {
      if ((e.target as HTMLElement).closest(".tab-close")) this.closeTab(path);
      else this.activate(path);
    });
    tabEl.addEventListener("auxclick", (e) => e.button === 1 && this.closeTab(path));
    if (this.editorArea.querySelector(".welcome")) clear(this.editorArea);
    this.tabBar.append(tabEl);
    this.editorArea.append(pane);
    this.tabs.set(path, tab);

    const editor = new CodeEditor(pane, path, {
      onLocalEdit: (op) => tab.doc?.localEdit(op),
      onSelection: (head, anchor) => {
        tab.doc?.localSelection(head, anchor);
        this.showCursor(tab);
      },
      onSave: () => this.saved(),
    });
    tab.editor = editor;
    const doc = this.conn.open(path, editor);
    tab.doc = doc;
    doc.onJoined = () => {
      const found = this.findings.get(path);
      if (found) editor.setFindings(found);
      pane.dataset.role = doc.role;
      resolveReady();
    };
    doc.onFailure = (code, message) => {
      clear(pane);
      editor.destroy();
      tab.editor = null;
      pane.append(this.cannotOpen(path, code, message));
      resolveReady();
    };
    return tab;
  }

  private cannotOpen(path: string, code: string, message: string): HTMLElement {
    if (code === "not_text") {
      const download = h("button", { class: "ghost", onclick: () => void this.downloadFile(path) }, "Download");
      return h("div", { class: "welcome" }, h("h2", {}, path), h("p", { class: "muted" }, "A binary file: it cannot be edited here."), download);
    }
    return h("div", { class: "welcome" }, h("h2", {}, path), h("p", { class: "form-error" }, message));
  }

  private async downloadFile(path: string): Promise<void> {
    const found = await api.get<{ content: string; encoding: string }>(fileUrl(this.project.id, path));
    const bytes = found.encoding === "base64" ? Uint8Array.from(atob(found.content), (c) => c.charCodeAt(0)) : new TextEncoder().encode(found.content);
    const url = URL.createObjectURL(new Blob([bytes]));
    const link = h("a", { href: url, download: path.split("/").pop() ?? "file" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  private activate(path: string): void {
    this.active = path;
    for (const tab of this.tabs.values()) {
      const on = tab.path === path;
      tab.pane.hidden = !on;
      tab.tabEl.classList.toggle("active", on);
      tab.tabEl.setAttribute("aria-selected", String(on));
      // Exactly one element carries the hook: the visible editor.
      if (on) tab.pane.setAttribute("data-testid", "editor");
      else tab.pane.removeAttribute("data-testid");
    }
    const tab = this.tabs.get(path);
    if (tab?.editor) {
      tab.editor.view.requestMeasure();
      tab.editor.view.focus();
      this.showCursor(tab);
    }
    this.tree.markActive();
    this.navigate(`/projects/${this.project.id}/files/${path.split("/").map(encodeURIComponent).join("/")}`, true);
    document.title = `${path.split("/").pop()} · ${this.project.name} · Vaporform`;
    if (!this.side.history.hidden) void this.history.show(path);
  }

  private closeTab(path: string): void {
    const tab = this.tabs.get(path);
    if (!tab) return;
    this.conn.close(path);
    tab.editor?.destroy();
    tab.pane.remove();
    tab.tabEl.remove();
    this.tabs.delete(path);
    if (this.active === path) {
      const next = [...this.tabs.keys()].pop();
      if (next) this.activate(next);
      else {
        this.active = null;
        this.editorArea.append(this.welcome());
        this.navigate(`/projects/${this.project.id}`, true);
      }
    }
  }

  private moved(from: string, to: string | null): void {
    for (const path of [...this.tabs.keys()]) {
      if (path === from || path.startsWith(`${from}/`)) {
        const wasActive = this.active === path;
        this.closeTab(path);
        if (to !== null) {
          const target = to + path.slice(from.length);
          if (wasActive) void this.open(target);
        }
      }
    }
  }

  private showCursor(tab: Tab): void {
    if (!tab.editor || tab.path !== this.active) return;
    const state = tab.editor.view.state;
    const head = state.selection.main.head;
    const line = state.doc.lineAt(head);
    this.cursorPos.textContent = `${tab.path} · Ln ${line.number}, Col ${head - line.from + 1}`;
  }

  private showFindings(found: Finding[]): void {
    const byPath = new Map<string, Finding[]>();
    for (const f of found) byPath.set(f.path, [...(byPath.get(f.path) ?? []), f]);
    for (const [path, list] of byPath) {
      this.findings.set(path, list);
      this.tabs.get(path)?.editor?.setFindings(list);
    }
  }

  private saved(): void {
    const tab = this.active ? this.tabs.get(this.active) : undefined;
    const pending = tab?.doc && !tab.doc.synchronized;
    toast(pending ? "Saving… (every change becomes a version by itself)" : "Saved: every change is kept as a version automatically");
  }

  // -- search and quick open ---------------------------------------------------------------

  private buildSearch(): HTMLElement {
    const query = h("input", { type: "search", placeholder: "Search in files", "aria-label": "Search text", "data-testid": "search-input" });
    const regex = h("input", { type: "checkbox", id: "search-regex", "aria-label": "Regular expression" });
    const glob = h("input", { type: "text", placeholder: "files, e.g. src/**/*.py", "aria-label": "Only files matching" });
    const results = h("ol", { class: "search-results", "aria-label": "Search results", "data-testid": "search-results" });
    const form = h(
      "form",
      { class: "search-form", role: "search" },
      query,
      h("div", { class: "search-options" }, h("label", { for: "search-regex", class: "check" }, regex, ".* regex"), glob),
    );
    let seq = 0;
    const run = async (): Promise<void> => {
      const q = query.value;
      const mine = ++seq;
      clear(results);
      if (!q) return;
      const params = new URLSearchParams({ q, regex: String(regex.checked) });
      if (glob.value.trim()) params.set("glob", glob.value.trim());
      try {
        const { items } = await api.get<{ items: SearchHit[] }>(projectUrl(this.project.id, `/search?${params}`));
        if (mine !== seq) return;
        if (!items.length) results.append(h("li", { class: "muted pad" }, "No results."));
        let last = "";
        for (const hit of items) {
          if (hit.path !== last) {
            results.append(h("li", { class: "hit-file" }, hit.path));
            last = hit.path;
          }
          results.append(
            h(
              "li",
              {},
              h(
                "button",
                { class: "hit", onclick: () => void this.open(hit.path, hit.line, hit.column), "aria-label": `${hit.path} line ${hit.line}` },
                h("span", { class: "ln" }, String(hit.line)),
                h("span", { class: "preview" }, hit.preview),
              ),
            ),
          );
        }
      } catch (e) {
        if (mine === seq) results.append(h("li", { class: "form-error pad" }, e instanceof ApiError ? e.message : String(e)));
      }
    };
    let timer: number | undefined;
    const later = (): void => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void run(), 250);
    };
    form.addEventListener("submit", (e) => (e.preventDefault(), void run()));
    query.addEventListener("input", later);
    regex.addEventListener("change", later);
    glob.addEventListener("input", later);
    return h("section", { class: "search", "aria-label": "Search" }, h("div", { class: "pane-head" }, h("span", {}, "Search")), form, results);
  }

  private quickOpen(): void {
    const input = h("input", { type: "text", placeholder: "Go to file…", "aria-label": "File name", "data-testid": "quick-open-input" });
    const list = h("ul", { class: "quick-list", role: "listbox", "aria-label": "Matching files" });
    const dialog = h("dialog", { class: "modal quick", "aria-label": "Quick open" }, input, list);
    let matches: string[] = [];
    let selected = 0;
    const score = (path: string, q: string): number => {
      // Subsequence match; consecutive and file-name hits score higher.
      let s = 0;
      let at = -1;
      const lower = path.toLowerCase();
      for (const ch of q.toLowerCase()) {
        const next = lower.indexOf(ch, at + 1);
        if (next < 0) return -1;
        s += next === at + 1 ? 3 : 1;
        at = next;
      }
      return s + (lower.split("/").pop()?.includes(q.toLowerCase()) ? 10 : 0) - path.length / 100;
    };
    const render = (): void => {
      const q = input.value.trim();
      matches = this.tree.files
        .map((f) => [f.path, q ? score(f.path, q) : 0] as const)
        .filter(([, s]) => s >= 0)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 50)
        .map(([p]) => p);
      selected = Math.min(selected, Math.max(matches.length - 1, 0));
      clear(list);
      matches.forEach((path, i) =>
        list.append(h("li", { role: "option", "aria-selected": String(i === selected), class: i === selected ? "selected" : "", onclick: () => choose(path) }, path)),
      );
    };
    const choose = (path: string | undefined): void => {
      dialog.close();
      if (path) void this.open(path);
    };
    input.addEventListener("input", () => ((selected = 0), render()));
    input.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") (selected = Math.min(selected + 1, matches.length - 1)), render(), e.preventDefault();
      else if (e.key === "ArrowUp") (selected = Math.max(selected - 1, 0)), render(), e.preventDefault();
      else if (e.key === "Enter") e.preventDefault(), choose(matches[selected]);
    });
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    render();
    dialog.showModal();
    input.focus();
  }

  private onKey(e: KeyboardEvent): void {
    const mod = e.ctrlKey || e.metaKey;
    if (!mod) return;
    const key = e.key.toLowerCase();
    if (key === "p" && !e.shiftKey) {
      e.preventDefault();
      this.quickOpen();
    } else if (key === "f" && e.shiftKey) {
      e.preventDefault();
      this.showLeft("search");
    } else if (key === "s") {
      e.preventDefault();
      this.saved();
    } else if (key === "`") {
      e.preventDefault();
      this.toggleTerminal();
    }
  }

  // -- terminal ----------------------------------------------------------------------------

  private toggleTerminal(show = this.bottom.hidden): void {
    this.bottom.hidden = !show;
    if (show) {
      if (!this.terminal) void this.startTerminal(false);
      else this.terminal.fit();
    }
  }

  private async startTerminal(restart: boolean): Promise<void> {
    if (restart) {
      this.terminal?.dispose();
      this.terminal = null;
    }
    clear(this.terminalEl);
    if (!this.canEdit) {
      this.terminalEl.append(h("p", { class: "muted pad" }, "Viewers cannot open a terminal."));
      return;
    }
    const status = this.container.status?.status;
    if (status !== "running") {
      const start = h("button", { class: "primary small", onclick: async () => {
        start.disabled = true;
        start.textContent = "Starting…";
        await this.container.start();
        if (this.container.status?.status === "running") void this.startTerminal(true);
        else start.textContent = "Start failed: see the Container panel";
      } }, "Start the container");
      this.terminalEl.append(h("div", { class: "pad" }, h("p", { class: "muted" }, "The project's container is not running."), start));
      return;
    }
    const { openTerminal } = await import("./terminal");
    try {
      this.terminal = await openTerminal(this.terminalEl, this.project.id, (reason) => {
        if (reason === "refused") {
          this.terminal?.dispose();
          this.terminal = null;
          clear(this.terminalEl);
          const retry = h("button", { class: "ghost small", onclick: () => void this.container.refresh().then(() => this.startTerminal(true)) }, "Retry");
          this.terminalEl.append(h("div", { class: "pad" }, h("p", { class: "form-error" }, "The terminal could not be opened (is the container running?)."), retry));
        }
      });
    } catch (e) {
      this.terminalEl.append(h("p", { class: "form-error pad" }, (e as Error).message));
    }
  }
}
