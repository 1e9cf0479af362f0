/**
 * Two-factor settings (a modal opened from the user menu): the status, enrolment (QR code and
 * secret, then a code to confirm), the ten recovery codes shown once, new recovery codes, and
 * turning MFA off with a code. Routes: `docs/auth.md`, MFA.
 */

import { api, ApiError } from "./api";
import { clear, h, toast } from "./dom";

interface MfaStatus {
  enabled: boolean;
  pending: boolean;
  recovery_codes_remaining: number;
  required: boolean;
}

interface Enrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

const MFA = "/api/v1/auth/mfa";

function problem(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.code === "invalid_mfa_code") return "That code is not valid.";
    if (error.status === 429) return "Too many attempts. Wait a minute and try again.";
    if (error.code === "mfa_already_enabled") return "Two-factor authentication is already on.";
    if (error.code === "mfa_not_enrolling") return "The setup expired: start it again.";
    if (error.code === "mfa_not_enabled") return "Two-factor authentication is already off.";
    return error.message;
  }
  return "The server cannot be reached. Try again in a moment.";
}

/** `data:` URL of an SVG document (the page's CSP allows `img-src data:`; no inline markup). */
function svgDataUrl(svg: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(svg)) binary += String.fromCharCode(byte);
  return `data:image/svg+xml;base64,${btoa(binary)}`;
}

function codeInput(label: string): { row: HTMLLabelElement; input: HTMLInputElement } {
  const input = h("input", {
    id: "mfa-settings-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    pattern: "[0-9A-Za-z -]{6,24}", required: true, "data-testid": "mfa-code",
  });
  return { row: h("label", { for: "mfa-settings-code" }, label, input), input };
}

async function copyText(text: string, fallback: HTMLElement): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API (or no permission): select the text and ask the browser to copy it.
    const range = document.createRange();
    range.selectNodeContents(fallback);
    const selection = window.getSelection();
    selection?.removeAllRanges();
    selection?.addRange(range);
    return document.execCommand("copy");
  }
}

export function mfaSettings(): void {
  const body = h("div", { class: "mfa-body" });
  const dialog = h(
    "dialog",
    { class: "modal mfa", "aria-label": "Two-factor authentication", "data-testid": "mfa-settings" },
    h("h2", {}, "Two-factor authentication"),
    body,
    h("div", { class: "actions" }, h("button", { class: "ghost", "data-testid": "mfa-close", onclick: () => dialog.close() }, "Close")),
  );
  dialog.addEventListener("close", () => dialog.remove());

  /** A form with a code field and one submit button; `act` gets the code. */
  function codeForm(label: string, submitLabel: string, testid: string, act: (code: string) => Promise<void>, danger = false): HTMLFormElement {
    const { row, input } = codeInput(label);
    const error = h("p", { class: "form-error", role: "alert", "data-testid": "mfa-error" });
    const submit = h("button", { type: "submit", class: danger ? "ghost danger" : "primary", "data-testid": testid }, submitLabel);
    const form = h("form", { class: "stack", "aria-label": submitLabel }, row, error, h("div", { class: "actions" }, submit));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      error.textContent = "";
      try {
        await act(input.value.trim());
      } catch (e) {
        error.textContent = problem(e);
        input.select();
      } finally {
        submit.disabled = false;
      }
    });
    queueMicrotask(() => input.focus());
    return form;
  }

  function statusLine(status: MfaStatus): HTMLElement {
    const text = status.enabled
      ? `On. ${status.recovery_codes_remaining} of 10 recovery codes left.`
      : "Off: signing in needs only your password.";
    return h(
      "p",
      { "data-testid": "mfa-status", "data-enabled": String(status.enabled) },
      h("strong", {}, "Status: "),
      text,
    );
  }

  async function render(): Promise<void> {
    let status: MfaStatus;
    try {
      status = await api.get<MfaStatus>(MFA);
    } catch (e) {
      clear(body);
      body.append(h("p", { class: "form-error", role: "alert" }, problem(e)));
      return;
    }
    clear(body);
    body.append(statusLine(status));
    if (status.required && !status.enabled) {
      body.append(h("p", { class: "warn-note" }, "Your account requires two-factor authentication: set it up to use Vaporform."));
    }
    if (!status.enabled) {
      body.append(
        h("p", { class: "muted" }, "Each sign-in will also ask for a 6-digit code from an authenticator app on your phone."),
        h("div", { class: "actions" }, h("button", { class: "primary", "data-testid": "mfa-enrol", onclick: () => void enrol() }, "Set up")),
      );
      return;
    }
    body.append(
      h("h3", {}, "Turn off"),
      codeForm("Code from your app, or a recovery code", "Turn off", "mfa-disable", async (code) => {
        await api.post<MfaStatus>(`${MFA}/disable`, { code });
        toast("Two-factor authentication is off");
        await render();
      }, true),
      h("h3", {}, "Recovery codes"),
      h("button", { class: "ghost small", "data-testid": "mfa-new-codes", onclick: () => newCodes() }, "New recovery codes…"),
    );
  }

  async function enrol(): Promise<void> {
    let found: Enrolment;
    try {
      found = await api.post<Enrolment>(`${MFA}/enrol`);
    } catch (e) {
      toast(problem(e), "error");
      return;
    }
    clear(body);
    body.append(
      h("p", {}, "1. Scan this QR code with your authenticator app:"),
      h("img", { class: "mfa-qr", src: svgDataUrl(found.qr_svg), alt: "QR code of the two-factor secret", width: 200, height: 200, "data-testid": "mfa-qr" }),
      h("p", {}, "or type this key into it: ", h("code", { class: "mfa-secret", "data-testid": "mfa-secret" }, found.secret)),
      h("p", {}, "2. Enter the code the app shows:"),
      codeForm("6-digit code", "Turn on", "mfa-confirm", async (code) => {
        const { recovery_codes } = await api.post<{ recovery_codes: string[] }>(`${MFA}/confirm`, { code });
        showCodes(recovery_codes, "Two-factor authentication is on.");
      }),
    );
  }

  function newCodes(): void {
    clear(body);
    body.append(
      h("p", {}, "New recovery codes replace the old ones, which stop working."),
      codeForm("Code from your app, or a recovery code", "Make new codes", "mfa-regenerate", async (code) => {
        const { recovery_codes } = await api.post<{ recovery_codes: string[] }>(`${MFA}/recovery-codes`, { code });
        showCodes(recovery_codes, "New recovery codes.");
      }),
      h("div", { class: "actions" }, h("button", { class: "ghost", onclick: () => void render() }, "Back")),
    );
  }

  /** The codes, this once: the server keeps only their hashes. */
  function showCodes(codes: string[], heading: string): void {
    clear(body);
    const list = h("ol", { class: "recovery-codes", "data-testid": "mfa-recovery-codes", "aria-label": "Recovery codes" }, codes.map((c) => h("li", {}, c)));
    const copy = h("button", {
      class: "ghost", "data-testid": "mfa-copy",
      onclick: async () => {
        const ok = await copyText(codes.join("\n"), list);
        toast(ok ? "Recovery codes copied" : "Select the codes and copy them", ok ? "info" : "error");
      },
    }, "Copy");
    body.append(
      h("p", {}, h("strong", {}, heading)),
      h("p", {}, "Keep these recovery codes somewhere safe. Each signs you in once if you lose your phone. They are shown only now."),
      list,
      h("div", { class: "actions" }, copy, h("button", { class: "primary", "data-testid": "mfa-done", onclick: () => void render() }, "I saved them")),
    );
  }

  document.body.append(dialog);
  dialog.showModal();
  void render();
}
