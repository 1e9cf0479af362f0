/** The file tree: folders built from the flat file list, with create, rename/move (drag or
 * dialog), delete, upload and archive download. */

import { api, fileUrl, projectUrl } from "./api";
import { ask, clear, confirmAction, h, toast } from "./dom";

export interface FileEntry {
  path: string;
  size: number;
  language: string | null;
  version: number;
  updated_at: string;
}

interface Folder {
  name: string;
  path: string;
  folders: Map<string, Folder>;
  files: FileEntry[];
}

export interface TreeHost {
  projectId: string;
  projectName: string;
  canEdit: boolean;
  open(path: string): void;
  activePath(): string | null;
  /** Paths were moved (from -> to) or deleted (to = null): fix the open tabs. */
  moved(from: string, to: string | null): void;
}

function build(files: FileEntry[]): Folder {
  const root: Folder = { name: "", path: "", folders: new Map(), files: [] };
  for (const file of files) {
    const parts = file.path.split("/");
    let folder = root;
    for (const part of parts.slice(0, -1)) {
      let next = folder.folders.get(part);
      if (!next) {
        next = { name: part, path: folder.path ? `${folder.path}/${part}` : part, folders: new Map(), files: [] };
        folder.folders.set(part, next);
      }
      folder = next;
    }
    folder.files.push(file);
  }
  return root;
}

function isText(bytes: Uint8Array): boolean {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return !bytes.includes(0);
  } catch {
    return false;
  }
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export class FileTree {
  files: FileEntry[] = [];
  readonly el: HTMLElement;
  private readonly list: HTMLElement;
  private readonly collapsed = new Set<string>();
  private selectedFolder = "";
  private readonly upload: HTMLInputElement;

  constructor(private readonly host: TreeHost) {
    this.upload = h("input", { type: "file", multiple: true, hidden: true, "aria-hidden": "true" });
    this.upload.addEventListener("change", () => void this.uploadFiles(Array.from(this.upload.files ?? [])));
    const tool = (label: string, text: string, run: () => void, editOnly = true): HTMLElement | null =>
      editOnly && !host.canEdit ? null : h("button", { class: "icon", title: label, "aria-label": label, onclick: run }, text);
    this.list = h("ul", { class: "tree", role: "tree", "aria-label": "Files", "data-testid": "file-tree" });
    this.el = h(
      "section",
      { class: "files", "aria-label": "Explorer" },
      h(
        "div",
        { class: "pane-head" },
        h("span", {}, "Files"),
        h(
          "span",
          { class: "tools" },
          tool("New file", "+", () => void this.createFile()),
          tool("Upload files", "⇪", () => this.upload.click()),
          tool("Download the project as .tar.gz", "⇩", () => void this.download(), false),
          tool("Refresh", "↻", () => void this.refresh(), false),
        ),
      ),
      this.list,
      this.upload,
    );
    // Dropping files from the desktop uploads them; dropping a row onto the root moves it there.
    this.list.addEventListener("dragover", (e) => e.preventDefault());
    this.list.addEventListener("drop", (e) => {
      if (e.target === this.list) void this.onDrop(e, "");
    });
  }

  async refresh(): Promise<void> {
    const { items } = await api.get<{ items: FileEntry[] }>(projectUrl(this.host.projectId, "/files"));
    const before = JSON.stringify(this.files.map((f) => f.path));
    this.files = items;
    if (JSON.stringify(items.map((f) => f.path)) !== before) this.render();
    else this.markActive();
  }

  markActive(): void {
    const active = this.host.activePath();
    for (const row of Array.from(this.list.querySelectorAll<HTMLElement>("[data-path]"))) {
      const on = row.dataset.path === active;
      row.classList.toggle("active", on);
      row.setAttribute("aria-selected", String(on));
    }
  }

  render(): void {
    clear(this.list);
    const root = build(this.files);
    if (this.files.length === 0) {
      this.list.append(h("li", { class: "empty" }, this.host.canEdit ? "No files yet: create or upload one." : "No files."));
    }
    this.renderFolder(root, this.list, 0);
    this.markActive();
  }

  private renderFolder(folder: Folder, into: HTMLElement, depth: number): void {
    const folders = [...folder.folders.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const sub of folders) {
      const open = !this.collapsed.has(sub.path);
      const row = h(
        "div",
        {
          class: "row folder",
          style: `padding-left: ${8 + depth * 12}px`,
          draggable: this.host.canEdit ? "true" : "false",
          "data-folder": sub.path,
        },
        h("span", { class: "twisty", "aria-hidden": "true" }, open ? "▾" : "▸"),
        h("span", { class: "name" }, sub.name),
        this.actions(sub.path, true),
      );
      const item = h("li", { role: "treeitem", "aria-expanded": String(open), "aria-label": sub.name }, row);
      row.addEventListener("click", (e) => {
        if ((e.target as HTMLElement).closest("button")) return;
        this.selectedFolder = sub.path;
        if (open) this.collapsed.add(sub.path);
        else this.collapsed.delete(sub.path);
        this.render();
      });
      this.dragAndDrop(row, sub.path, sub.path);
      into.append(item);
      if (open) {
        const group = h("ul", { role: "group" });
        item.append(group);
        this.renderFolder(sub, group, depth + 1);
      }
    }
    for (const file of [...folder.files].sort((a, b) => a.path.localeCompare(b.path))) {
      const name = file.path.split("/").pop() ?? file.path;
      const row = h(
        "div",
        {
          class: "row file",
          style: `padding-left: ${20 + depth * 12}px`,
          draggable: this.host.canEdit ? "true" : "false",
          "data-path": file.path,
          title: `${file.path} · v${file.version} · ${file.size} bytes`,
        },
        h("span", { class: `dot lang-${file.language ?? "none"}`, "aria-hidden": "true" }),
        h("span", { class: "name" }, name),
        this.actions(file.path, false),
      );
      row.addEventListener("click", (e) => {
        if ((e.target as HTMLElement).closest("button")) return;
        this.selectedFolder = folder.path;
        this.host.open(file.path);
      });
      this.dragAndDrop(row, file.path, folder.path);
      into.append(h("li", { role: "treeitem", "aria-label": name }, row));
    }
  }

  private actions(path: string, folder: boolean): HTMLElement | null {
    if (!this.host.canEdit) return null;
    const label = path.split("/").pop();
    return h(
      "span",
      { class: "row-tools" },
      h("button", { class: "icon", title: "Rename or move", "aria-label": `Rename or move ${label}`, onclick: () => void this.rename(path, folder) }, "✎"),
      h("button", { class: "icon", title: "Delete", "aria-label": `Delete ${label}`, onclick: () => void this.remove(path, folder) }, "×"),
    );
  }

  private dragAndDrop(row: HTMLElement, path: string, dropFolder: string): void {
    row.addEventListener("dragstart", (e) => {
      e.dataTransfer?.setData("application/x-vaporform-path", path);
    });
    row.addEventListener("dragover", (e) => {
      e.preventDefault();
      row.classList.add("drop");
    });
    row.addEventListener("dragleave", () => row.classList.remove("drop"));
    row.addEventListener("drop", (e) => {
      e.stopPropagation();
      row.classList.remove("drop");
      void this.onDrop(e, dropFolder);
    });
  }

  private async onDrop(e: DragEvent, folder: string): Promise<void> {
    e.preventDefault();
    if (!this.host.canEdit) return;
    const from = e.dataTransfer?.getData("application/x-vaporform-path");
    if (from) {
      const name = from.split("/").pop() ?? from;
      const to = folder ? `${folder}/${name}` : name;
      if (to !== from && !to.startsWith(`${from}/`)) await this.move(from, to);
      return;
    }
    const dropped = Array.from(e.dataTransfer?.files ?? []);
    if (dropped.length) {
      this.selectedFolder = folder;
      await this.uploadFiles(dropped);
    }
  }

  async createFile(): Promise<void> {
    const prefix = this.selectedFolder ? `${this.selectedFolder}/` : "";
    const values = await ask("New file", [{ name: "path", label: "Path (folders are made as needed)", value: prefix, placeholder: "src/app.py" }], "Create");
    const path = values?.path.trim().replace(/^\/+/, "");
    if (!path) return;
    try {
      await api.put(fileUrl(this.host.projectId, path), { content: "", base_version: 0 });
      await this.refresh();
      this.host.open(path);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  private async rename(path: string, folder: boolean): Promise<void> {
    const values = await ask(folder ? "Rename or move folder" : "Rename or move file", [{ name: "to", label: "New path", value: path }], "Move");
    const to = values?.to.trim().replace(/^\/+/, "");
    if (!to || to === path) return;
    await this.move(path, to);
  }

  async move(from: string, to: string): Promise<void> {
    try {
      await api.post(projectUrl(this.host.projectId, "/fs/move"), { from, to });
      this.host.moved(from, to);
      await this.refresh();
      toast(`Moved to ${to}`);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  private async remove(path: string, folder: boolean): Promise<void> {
    const targets = folder ? this.files.filter((f) => f.path.startsWith(`${path}/`)).map((f) => f.path) : [path];
    const what = folder ? `the folder ${path} (${targets.length} files)` : path;
    if (!(await confirmAction(`Delete ${what}? Its history stays and it can be restored.`))) return;
    try {
      for (const target of targets) await api.del(fileUrl(this.host.projectId, target));
      this.host.moved(path, null);
      await this.refresh();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  private async uploadFiles(files: File[]): Promise<void> {
    const prefix = this.selectedFolder ? `${this.selectedFolder}/` : "";
    let done = 0;
    for (const file of files) {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const body = isText(bytes)
        ? { content: new TextDecoder().decode(bytes) }
        : { content: base64(bytes), encoding: "base64" };
      try {
        await api.put(fileUrl(this.host.projectId, prefix + file.name), { ...body, message: "upload" });
        done += 1;
      } catch (e) {
        toast(`${file.name}: ${(e as Error).message}`, "error");
      }
    }
    this.upload.value = "";
    if (done) toast(`Uploaded ${done} file${done === 1 ? "" : "s"}`);
    await this.refresh();
  }

  private async download(): Promise<void> {
    try {
      const response = await api.request<Response>("GET", projectUrl(this.host.projectId, "/archive"), undefined, { raw: true });
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: `${this.host.projectName || "project"}.tar.gz` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }
}
