/**
 * The REST client. The access token lives only in this module's memory; the refresh token is
 * an httpOnly cookie the page never sees (POST /api/v1/auth/session/refresh rotates it).
 * Nothing is written to localStorage or sessionStorage.
 */

export interface User {
  id: string;
  email: string;
  name: string;
  role: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Marks requests that the cookie routes accept: a cross-site form cannot set it. */
const CSRF_HEADER = { "X-Requested-With": "vaporform" };
/** Asks login/register/MFA to put the refresh token in the httpOnly cookie, not the body. */
const COOKIE_HEADER = { "X-Vaporform-Session": "cookie" };

/** Routes whose 401 means "wrong credentials", not "the access token expired". */
const SIGN_IN = /^\/api\/v1\/auth\/(login|register|refresh|mfa\/login|session\/)/;

interface Session {
  user: User;
  access_token: string;
  expires_in: number;
}

export type LoginResult = { user: User } | { mfaChallenge: string };

class Api {
  private token: string | null = null;
  user: User | null = null;
  private refreshing: Promise<boolean> | null = null;
  private refreshTimer: number | undefined;
  /** Called when the session is gone for good (refresh refused): show the sign-in screen. */
  onSignedOut: () => void = () => {};

  get signedIn(): boolean {
    return this.token !== null;
  }

  private adopt(session: Session): void {
    this.token = session.access_token;
    this.user = session.user;
    window.clearTimeout(this.refreshTimer);
    // Refresh a minute before the access token expires, so sockets can always get tickets.
    const inMs = Math.max(10, session.expires_in - 60) * 1000;
    this.refreshTimer = window.setTimeout(() => void this.refresh(), inMs);
  }

  private forget(): void {
    this.token = null;
    this.user = null;
    window.clearTimeout(this.refreshTimer);
  }

  /** Use the refresh cookie, if any, for a new access token. */
  refresh(): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      try {
        const response = await fetch("/api/v1/auth/session/refresh", {
          method: "POST",
          credentials: "same-origin",
          headers: CSRF_HEADER,
        });
        if (response.ok) {
          this.adopt((await response.json()) as Session);
          return true;
        }
        if (response.status === 401) {
          const wasSignedIn = this.token !== null;
          this.forget();
          if (wasSignedIn) this.onSignedOut();
        }
        return false;
      } catch {
        return false; // the API is unreachable: keep the token we have and try again later
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    options: { raw?: boolean; headers?: Record<string, string>; retry?: boolean } = {},
  ): Promise<T> {
    const headers: Record<string, string> = { ...CSRF_HEADER, ...(options.headers ?? {}) };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload: BodyInit | undefined;
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    if (response.status === 401 && options.retry !== false && this.token && !SIGN_IN.test(path)) {
      if (await this.refresh()) return this.request(method, path, body, { ...options, retry: false });
    }
    if (!response.ok) throw await errorOf(response);
    if (options.raw) return response as unknown as T;
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }
  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", path, body ?? {});
  }
  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PUT", path, body);
  }
  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>("PATCH", path, body);
  }
  del(path: string): Promise<void> {
    return this.request<void>("DELETE", path);
  }

  private async startSession(path: string, body: unknown): Promise<Session> {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { ...CSRF_HEADER, ...COOKIE_HEADER, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await errorOf(response);
    const session = (await response.json()) as Session;
    this.adopt(session);
    return session;
  }

  async login(email: string, password: string): Promise<LoginResult> {
    try {
      return { user: (await this.startSession("/api/v1/auth/login", { email, password })).user };
    } catch (error) {
      if (error instanceof ApiError && error.code === "mfa_required") {
        const challenge = String(error.details.challenge ?? "");
        return { mfaChallenge: challenge };
      }
      throw error;
    }
  }

  async loginMfa(challenge: string, code: string): Promise<User> {
    return (await this.startSession("/api/v1/auth/mfa/login", { challenge, code })).user;
  }

  async register(email: string, password: string, name: string): Promise<User> {
    return (await this.startSession("/api/v1/auth/register", { email, password, name })).user;
  }

  async logout(): Promise<void> {
    const headers: Record<string, string> = { ...CSRF_HEADER };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    try {
      await fetch("/api/v1/auth/session/logout", { method: "POST", headers, credentials: "same-origin" });
    } finally {
      this.forget();
    }
  }

  /** A single-use ticket for opening a WebSocket (never a JWT in a URL). */
  async wsTicket(): Promise<string> {
    const found = await this.post<{ ticket: string }>("/api/v1/auth/ws-ticket");
    return found.ticket;
  }
}

async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as {
      error?: { code?: string; message?: string; details?: Record<string, unknown> };
    };
    const error = body.error ?? {};
    return new ApiError(
      response.status,
      error.code ?? `http_${response.status}`,
      error.message ?? response.statusText,
      error.details ?? {},
    );
  } catch {
    return new ApiError(response.status, `http_${response.status}`, response.statusText);
  }
}

export const api = new Api();

/** `/api/v1/projects/{pid}` + rest, with each path segment of a file path escaped. */
export function projectUrl(pid: string, rest = ""): string {
  return `/api/v1/projects/${encodeURIComponent(pid)}${rest}`;
}

export function fileUrl(pid: string, path: string): string {
  return projectUrl(pid, `/files/${path.split("/").map(encodeURIComponent).join("/")}`);
}

export function wsUrl(path: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
