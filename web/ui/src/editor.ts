/** CodeMirror 6 set up for one file, bound to a collaborative document (collab.ts). */

import { indentWithTab } from "@codemirror/commands";
import { type Diagnostic, lintGutter, setDiagnostics } from "@codemirror/lint";
import {
  Annotation,
  type ChangeSet,
  type ChangeSpec,
  Compartment,
  EditorState,
  type Extension,
  StateEffect,
  StateField,
  Transaction,
} from "@codemirror/state";
import { oneDark } from "@codemirror/theme-one-dark";
import { Decoration, type DecorationSet, EditorView, keymap, WidgetType } from "@codemirror/view";
import { basicSetup } from "codemirror";

import type { DocView } from "./collab";
import { Builder, type Op } from "./ot";

const remote = Annotation.define<boolean>();

interface RemoteCursor {
  name: string;
  color: string;
  head: number;
  anchor: number;
}

const setCursor = StateEffect.define<{ id: string; cursor: RemoteCursor }>();
const dropCursor = StateEffect.define<string>();

class CaretWidget extends WidgetType {
  constructor(
    readonly name: string,
    readonly color: string,
  ) {
    super();
  }
  eq(other: CaretWidget): boolean {
    return other.name === this.name && other.color === this.color;
  }
  toDOM(): HTMLElement {
    const caret = document.createElement("span");
    caret.className = "cm-remote-caret";
    caret.style.borderLeftColor = this.color;
    caret.setAttribute("aria-hidden", "true");
    const label = document.createElement("span");
    label.className = "cm-remote-name";
    label.style.backgroundColor = this.color;
    label.textContent = this.name;
    caret.append(label);
    return caret;
  }
  ignoreEvent(): boolean {
    return true;
  }
}

/** Other people's carets and selections, kept in this editor's coordinates. */
const cursorsField = StateField.define<Map<string, RemoteCursor>>({
  create: () => new Map(),
  update(cursors, tr) {
    let next = cursors;
    if (tr.docChanged) {
      next = new Map();
      for (const [id, c] of cursors) {
        next.set(id, { ...c, head: tr.changes.mapPos(c.head, 1), anchor: tr.changes.mapPos(c.anchor, 1) });
      }
    }
    for (const effect of tr.effects) {
      if (effect.is(setCursor)) {
        if (next === cursors) next = new Map(cursors);
        next.set(effect.value.id, effect.value.cursor);
      } else if (effect.is(dropCursor)) {
        if (next === cursors) next = new Map(cursors);
        next.delete(effect.value);
      }
    }
    return next;
  },
  provide: (field) =>
    EditorView.decorations.from(field, (cursors): DecorationSet => {
      const ranges = [];
      for (const c of cursors.values()) {
        const from = Math.min(c.head, c.anchor);
        const to = Math.max(c.head, c.anchor);
        if (from < to) {
          ranges.push(
            Decoration.mark({
              class: "cm-remote-selection",
              attributes: { style: `background-color: ${c.color}38` },
            }).range(from, to),
          );
        }
        ranges.push(Decoration.widget({ widget: new CaretWidget(c.name, c.color), side: 1 }).range(c.head));
      }
      return Decoration.set(ranges, true);
    }),
});

export function changesToOp(changes: ChangeSet, oldLength: number): Op {
  const builder = new Builder();
  let pos = 0;
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    builder.retain(fromA - pos);
    builder.delete(toA - fromA);
    builder.insert(inserted.toString());
    pos = toA;
  });
  builder.retain(oldLength - pos);
  return builder.ops;
}

export function opToChanges(op: Op): ChangeSpec[] {
  const changes: { from: number; to: number; insert: string }[] = [];
  let pos = 0;
  const add = (from: number, to: number, insert: string): void => {
    const last = changes[changes.length - 1];
    if (last && last.to === from) {
      last.to = to;
      last.insert += insert;
    } else {
      changes.push({ from, to, insert });
    }
  };
  for (const c of op) {
    if (typeof c === "string") add(pos, pos, c);
    else if (c > 0) pos += c;
    else {
      add(pos, pos - c, "");
      pos -= c;
    }
  }
  return changes;
}

async function languageFor(path: string): Promise<Extension> {
  const name = path.toLowerCase().split("/").pop() ?? "";
  const ext = name.includes(".") ? name.slice(name.lastIndexOf(".") + 1) : name;
  switch (ext) {
    case "py":
    case "pyi":
      return (await import("@codemirror/lang-python")).python();
    case "js":
    case "mjs":
    case "cjs":
    case "jsx":
      return (await import("@codemirror/lang-javascript")).javascript({ jsx: true });
    case "ts":
    case "mts":
    case "cts":
    case "tsx":
      return (await import("@codemirror/lang-javascript")).javascript({ typescript: true, jsx: ext === "tsx" });
    case "json":
      return (await import("@codemirror/lang-json")).json();
    case "md":
    case "markdown":
      return (await import("@codemirror/lang-markdown")).markdown();
    case "html":
    case "htm":
      return (await import("@codemirror/lang-html")).html();
    case "css":
      return (await import("@codemirror/lang-css")).css();
    case "sh":
    case "bash":
    case "zsh":
    case "bashrc":
    case "profile": {
      const [{ StreamLanguage }, { shell }] = await Promise.all([
        import("@codemirror/language"),
        import("@codemirror/legacy-modes/mode/shell"),
      ]);
      return StreamLanguage.define(shell);
    }
    default:
      return [];
  }
}

const dark = window.matchMedia("(prefers-color-scheme: dark)");
const themes = new Set<{ view: EditorView; theme: Compartment }>();
dark.addEventListener("change", () => {
  for (const { view, theme } of themes) view.dispatch({ effects: theme.reconfigure(dark.matches ? oneDark : []) });
});

export interface EditorHooks {
  onLocalEdit(op: Op): void;
  onSelection(head: number, anchor: number): void;
  onSave(): void;
}

/** One open file: a CodeMirror view that is also the collaborative document's view. */
export class CodeEditor implements DocView {
  readonly view: EditorView;
  private readonly readOnly = new Compartment();
  private readonly language = new Compartment();
  private readonly theme = new Compartment();
  private readonly entry: { view: EditorView; theme: Compartment };
  role = "viewer";

  constructor(
    parent: HTMLElement,
    readonly path: string,
    hooks: EditorHooks,
  ) {
    this.view = new EditorView({
      parent,
      state: EditorState.create({
        doc: "",
        extensions: [
          basicSetup,
          keymap.of([
            indentWithTab,
            { key: "Mod-s", preventDefault: true, run: () => (hooks.onSave(), true) },
          ]),
          // Positions must match the server's text unit for unit: no \r\n folding.
          EditorState.lineSeparator.of("\n"),
          this.readOnly.of(readOnlyExtension(true)),
          this.language.of([]),
          this.theme.of(dark.matches ? oneDark : []),
          cursorsField,
          lintGutter(),
          EditorView.contentAttributes.of({ "aria-label": `Editor for ${path}` }),
          EditorView.updateListener.of((update) => {
            for (const tr of update.transactions) {
              if (tr.docChanged && !tr.annotation(remote)) {
                hooks.onLocalEdit(changesToOp(tr.changes, tr.startState.doc.length));
              }
            }
            const local = update.transactions.some((tr) => !tr.annotation(remote));
            if (update.selectionSet && local) {
              const main = update.state.selection.main;
              hooks.onSelection(main.head, main.anchor);
            }
          }),
        ],
      }),
    });
    this.entry = { view: this.view, theme: this.theme };
    // For tests and benchmarks: the exact text (the DOM shows only the visible lines).
    (parent as HTMLElement & { vfText?: () => string }).vfText = () => this.text();
    themes.add(this.entry);
    void languageFor(path).then((lang) => {
      if (!this.destroyed) this.view.dispatch({ effects: this.language.reconfigure(lang) });
    });
  }

  private destroyed = false;

  destroy(): void {
    this.destroyed = true;
    themes.delete(this.entry);
    this.view.destroy();
  }

  text(): string {
    return this.view.state.doc.toString();
  }

  applyRemote(op: Op): void {
    this.view.dispatch({
      changes: opToChanges(op),
      // Someone else's edit is not ours to undo.
      annotations: [remote.of(true), Transaction.addToHistory.of(false)],
    });
  }

  reset(content: string): void {
    this.view.dispatch({
      changes: { from: 0, to: this.view.state.doc.length, insert: content },
      annotations: [remote.of(true), Transaction.addToHistory.of(false)],
    });
  }

  setRole(role: string): void {
    this.role = role;
    this.view.dispatch({ effects: this.readOnly.reconfigure(readOnlyExtension(role === "viewer")) });
  }

  setCursor(sessionId: string, name: string, color: string, head: number, anchor: number): void {
    this.view.dispatch({
      effects: setCursor.of({ id: sessionId, cursor: { name, color, head, anchor } }),
      annotations: remote.of(true),
    });
  }

  removeCursor(sessionId: string): void {
    if (this.view.state.field(cursorsField).has(sessionId)) {
      this.view.dispatch({ effects: dropCursor.of(sessionId), annotations: remote.of(true) });
    }
  }

  /** Review findings as diagnostics on the lines they name. */
  setFindings(findings: { line_start: number; line_end: number; severity: string; message: string; category?: string; suggestion?: string | null }[]): void {
    const doc = this.view.state.doc;
    const diagnostics: Diagnostic[] = [];
    for (const f of findings) {
      if (f.line_start < 1 || f.line_start > doc.lines) continue;
      const start = doc.line(f.line_start);
      const end = doc.line(Math.min(Math.max(f.line_end, f.line_start), doc.lines));
      diagnostics.push({
        from: start.from,
        to: Math.max(end.to, start.from),
        severity: f.severity === "error" ? "error" : f.severity === "warning" ? "warning" : "info",
        message: f.suggestion ? `${f.message}\nSuggestion: ${f.suggestion}` : f.message,
        source: f.category ? `AI review · ${f.category}` : "AI review",
      });
    }
    this.view.dispatch(setDiagnostics(this.view.state, diagnostics));
  }

  goTo(line: number, column = 1): void {
    const doc = this.view.state.doc;
    const target = doc.line(Math.min(Math.max(line, 1), doc.lines));
    const pos = Math.min(target.from + Math.max(column - 1, 0), target.to);
    this.view.dispatch({ selection: { anchor: pos }, effects: EditorView.scrollIntoView(pos, { y: "center" }) });
    this.view.focus();
  }
}

function readOnlyExtension(readOnly: boolean): Extension {
  return [EditorState.readOnly.of(readOnly), EditorView.editable.of(!readOnly)];
}
