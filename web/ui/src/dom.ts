/** A few helpers for building the DOM by hand: the page has no framework. */

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h("button", {class: "x", onclick: f}, "text")`: attributes, `on*` listeners, children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key === "value" && "value" in el) {
      (el as HTMLInputElement).value = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.firstChild.remove();
}

let toastTimer: number | undefined;

/** A short message at the bottom of the screen (read out by screen readers). */
export function toast(text: string, kind: "info" | "error" = "info"): void {
  let el = document.getElementById("toast");
  if (!el) {
    el = h("div", { id: "toast", role: "status", "aria-live": "polite" });
    document.body.append(el);
  }
  el.textContent = text;
  el.className = `toast show ${kind}`;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => el?.classList.remove("show"), kind === "error" ? 5000 : 1800);
}

export interface Field {
  name: string;
  label: string;
  value?: string;
  type?: string;
  options?: string[];
  placeholder?: string;
}

/** A modal form; resolves with the values, or null when cancelled. */
export function ask(
  title: string,
  fields: Field[],
  submitLabel = "OK",
): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>();
    const rows = fields.map((field) => {
      const id = `ask-${field.name}`;
      let input: HTMLInputElement | HTMLSelectElement;
      if (field.options) {
        input = h(
          "select",
          { id, name: field.name },
          field.options.map((o) => h("option", { value: o, selected: o === field.value }, o)),
        );
      } else {
        input = h("input", {
          id,
          name: field.name,
          type: field.type ?? "text",
          value: field.value ?? "",
          placeholder: field.placeholder ?? "",
          autocomplete: "off",
        });
      }
      inputs.set(field.name, input);
      return h("label", { for: id }, h("span", {}, field.label), input);
    });
    const dialog = h(
      "dialog",
      { class: "modal", "aria-label": title },
      h(
        "form",
        { method: "dialog" },
        h("h2", {}, title),
        rows,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", value: "cancel", class: "ghost", onclick: () => done(null) }, "Cancel"),
          h("button", { type: "submit", value: "ok", class: "primary" }, submitLabel),
        ),
      ),
    );
    const done = (values: Record<string, string> | null): void => {
      dialog.close();
      dialog.remove();
      resolve(values);
    };
    dialog.querySelector("form")?.addEventListener("submit", (event) => {
      event.preventDefault();
      const values: Record<string, string> = {};
      for (const [name, input] of inputs) values[name] = input.value;
      done(values);
    });
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(null);
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = inputs.values().next().value;
    if (first instanceof HTMLInputElement) first.select();
  });
}

/** A yes/no question in a modal. */
export async function confirmAction(title: string, label = "Delete"): Promise<boolean> {
  return (await ask(title, [], label)) !== null;
}

export function timeAgo(iso: string): string {
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** The server's colour for a user (collab/presence.py colour_for), for people not online. */
const PALETTE = [
  "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
  "#469990", "#800000", "#808000", "#000075",
];
export async function colourFor(userId: string): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(userId)),
  );
  const n = ((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0;
  return PALETTE[n % PALETTE.length];
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? "?").slice(0, 2);
  return letters.toUpperCase();
}
