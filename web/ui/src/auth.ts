/** Sign in (with the MFA step when the account has it) and sign up. */

import { api, ApiError } from "./api";
import { h } from "./dom";

function shell(title: string, ...content: Node[]): HTMLElement {
  return h(
    "main",
    { class: "auth" },
    h(
      "section",
      { class: "auth-card", "aria-labelledby": "auth-title" },
      h("div", { class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), "Vaporform"),
      h("h1", { id: "auth-title" }, title),
      ...content,
    ),
  );
}

function errorLine(): HTMLParagraphElement {
  return h("p", { class: "form-error", role: "alert", "data-testid": "auth-error" });
}

function describe(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.code === "invalid_credentials") return "The email or password is wrong.";
    if (error.code === "email_taken") return "An account with this email already exists.";
    if (error.status === 429) return "Too many attempts. Wait a minute and try again.";
    if (error.code === "validation_error" || error.status === 400) {
      return `Check the fields: ${error.message}`;
    }
    return error.message;
  }
  return "The server cannot be reached. Try again in a moment.";
}

export function loginScreen(onSignedIn: () => void, goRegister: () => void): HTMLElement {
  const email = h("input", {
    id: "login-email", type: "email", name: "email", autocomplete: "username", required: true,
    "data-testid": "login-email",
  });
  const password = h("input", {
    id: "login-password", type: "password", name: "password", autocomplete: "current-password",
    required: true, "data-testid": "login-password",
  });
  const error = errorLine();
  const submit = h("button", { type: "submit", class: "primary wide", "data-testid": "login-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "stack", "aria-label": "Sign in" },
    h("label", { for: "login-email" }, "Email", email),
    h("label", { for: "login-password" }, "Password", password),
    error,
    submit,
  );
  const screen = shell(
    "Sign in",
    form,
    h(
      "p",
      { class: "muted" },
      "New here? ",
      h("a", { href: "/register", "data-testid": "register-link", onclick: (e: Event) => (e.preventDefault(), goRegister()) }, "Create an account"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      const result = await api.login(email.value.trim(), password.value);
      if ("mfaChallenge" in result) {
        screen.replaceWith(mfaScreen(result.mfaChallenge, onSignedIn));
      } else {
        onSignedIn();
      }
    } catch (e) {
      error.textContent = describe(e);
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => email.focus());
  return screen;
}

function mfaScreen(challenge: string, onSignedIn: () => void): HTMLElement {
  const code = h("input", {
    id: "mfa-code", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    pattern: "[0-9A-Za-z-]{6,20}", required: true, "data-testid": "mfa-code",
  });
  const error = errorLine();
  const submit = h("button", { type: "submit", class: "primary wide", "data-testid": "mfa-submit" }, "Verify");
  const form = h(
    "form",
    { class: "stack", "aria-label": "Two-factor code" },
    h("p", { class: "muted" }, "Enter the 6-digit code from your authenticator app, or a recovery code."),
    h("label", { for: "mfa-code" }, "Code", code),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      await api.loginMfa(challenge, code.value.trim());
      onSignedIn();
    } catch (e) {
      error.textContent = e instanceof ApiError && e.status === 401 ? "That code is not valid." : describe(e);
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => code.focus());
  return shell("Two-factor authentication", form);
}

export function registerScreen(onSignedIn: () => void, goLogin: () => void): HTMLElement {
  const name = h("input", { id: "register-name", name: "name", autocomplete: "name", required: true, "data-testid": "register-name" });
  const email = h("input", {
    id: "login-email", type: "email", name: "email", autocomplete: "username", required: true,
    "data-testid": "login-email",
  });
  const password = h("input", {
    id: "login-password", type: "password", name: "password", autocomplete: "new-password",
    minlength: 8, required: true, "data-testid": "login-password",
  });
  const error = errorLine();
  const submit = h("button", { type: "submit", class: "primary wide", "data-testid": "login-submit" }, "Create account");
  const form = h(
    "form",
    { class: "stack", "aria-label": "Create an account" },
    h("label", { for: "register-name" }, "Name", name),
    h("label", { for: "login-email" }, "Email", email),
    h("label", { for: "login-password" }, "Password (8 characters or more)", password),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      await api.register(email.value.trim(), password.value, name.value.trim());
      onSignedIn();
    } catch (e) {
      error.textContent = describe(e);
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(() => name.focus());
  return shell(
    "Create an account",
    form,
    h("p", { class: "muted" }, "Have an account? ", h("a", { href: "/login", onclick: (e: Event) => (e.preventDefault(), goLogin()) }, "Sign in")),
  );
}
