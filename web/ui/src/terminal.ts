/** xterm.js over the terminal WebSocket (protocol in web/terminal.py): binary frames carry
 * keystrokes and output, text frames carry JSON controls (resize, ping, exit). */

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";

import { api, projectUrl, wsUrl } from "./api";

export interface TerminalHandle {
  dispose(): void;
  fit(): void;
}

export async function openTerminal(
  parent: HTMLElement,
  projectId: string,
  onEnd: (reason: string) => void,
): Promise<TerminalHandle> {
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  const term = new Terminal({
    fontFamily: 'ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace',
    fontSize: 13,
    cursorBlink: true,
    scrollback: 5000,
    theme: dark
      ? { background: "#1e2127", foreground: "#d7dae0", cursor: "#d7dae0" }
      : { background: "#fbfbfc", foreground: "#1f2328", cursor: "#1f2328", selectionBackground: "#b6d4fe" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(parent);
  fit.fit();

  const ticket = await api.wsTicket();
  const ws = new WebSocket(wsUrl(`${projectUrl(projectId, "/terminal")}?ticket=${encodeURIComponent(ticket)}`));
  ws.binaryType = "arraybuffer";
  const encoder = new TextEncoder();
  let opened = false;
  let ended = false;
  const sendSize = (): void => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  };
  ws.onopen = () => {
    opened = true;
    sendSize();
    term.focus();
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") {
      const control = JSON.parse(event.data) as { type: string; exit_code?: number; message?: string };
      if (control.type === "exit") {
        ended = true;
        term.write(`\r\n\x1b[2m[the shell ended with code ${control.exit_code ?? "?"}]\x1b[0m\r\n`);
        onEnd("exited");
      } else if (control.type === "error") {
        term.write(`\r\n\x1b[31m${control.message ?? "error"}\x1b[0m\r\n`);
      }
    } else {
      term.write(new Uint8Array(event.data as ArrayBuffer));
    }
  };
  ws.onclose = () => {
    if (ended) return;
    onEnd(opened ? "closed" : "refused");
  };
  const input = term.onData((data) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data));
  });
  const resized = term.onResize(() => sendSize());
  const observer = new ResizeObserver(() => {
    if (parent.offsetParent !== null) fit.fit();
  });
  observer.observe(parent);
  const ping = window.setInterval(() => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
  }, 30_000);
  return {
    fit: () => fit.fit(),
    dispose: () => {
      window.clearInterval(ping);
      observer.disconnect();
      input.dispose();
      resized.dispose();
      ws.close(1000);
      term.dispose();
    },
  };
}
