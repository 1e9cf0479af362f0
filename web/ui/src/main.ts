/** Entry point: restores the session from the refresh cookie, then routes.
 *   /                                  projects (or sign in)
 *   /login, /register
 *   /projects/{id}                     the workspace
 *   /projects/{id}/files/{path}        the workspace with that file open
 */

import "@xterm/xterm/css/xterm.css";
import "./styles.css";

import { api, ApiError, projectUrl } from "./api";
import { loginScreen, registerScreen } from "./auth";
import { h } from "./dom";
import { type Project, projectsScreen } from "./projects";
import { Workspace } from "./workspace";

const root = document.getElementById("app") as HTMLElement;
let workspace: Workspace | null = null;
let afterLogin = "/";

function show(el: HTMLElement): void {
  root.replaceChildren(el);
}

function navigate(url: string, replace = false): void {
  if (location.pathname === url) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  if (!replace) void route();
}

async function logout(): Promise<void> {
  workspace?.destroy();
  workspace = null;
  await api.logout().catch(() => {});
  afterLogin = "/";
  navigate("/login");
}

function signedIn(): void {
  const next = afterLogin === "/login" || afterLogin === "/register" ? "/" : afterLogin;
  afterLogin = "/";
  history.replaceState(null, "", next);
  void route();
}

async function route(): Promise<void> {
  const path = decodeURI(location.pathname);
  const match = /^\/projects\/([^/]+)(?:\/files\/(.+))?\/?$/.exec(location.pathname);
  if (!api.signedIn) {
    workspace?.destroy();
    workspace = null;
    if (path === "/register") return show(registerScreen(signedIn, () => navigate("/login")));
    if (path !== "/login") afterLogin = location.pathname;
    if (path !== "/login") history.replaceState(null, "", "/login");
    document.title = "Sign in · Vaporform";
    return show(loginScreen(signedIn, () => navigate("/register")));
  }
  if (path === "/login" || path === "/register") return navigate("/", true), void route();
  if (match) {
    const projectId = decodeURIComponent(match[1]);
    const file = match[2] ? match[2].split("/").map(decodeURIComponent).join("/") : null;
    if (workspace?.project.id !== projectId) {
      workspace?.destroy();
      workspace = null;
      let project: Project;
      try {
        project = await api.get<Project>(projectUrl(projectId));
      } catch (e) {
        const missing = e instanceof ApiError && (e.status === 404 || e.status === 400);
        return show(
          h(
            "main",
            { class: "auth" },
            h("section", { class: "auth-card" }, h("h1", {}, missing ? "Project not found" : "Cannot open the project"), h("p", { class: "muted" }, missing ? "It does not exist, or you are not a member." : (e as Error).message), h("a", { href: "/", "data-nav": "/" }, "All projects")),
          ),
        );
      }
      workspace = new Workspace(project, navigate, () => void logout());
      show(workspace.el);
    }
    if (file) void workspace.open(file);
    return;
  }
  workspace?.destroy();
  workspace = null;
  document.title = "Projects · Vaporform";
  show(projectsScreen((id) => navigate(`/projects/${id}`), () => void logout()));
}

// Links marked data-nav move inside the page instead of reloading it.
document.addEventListener("click", (event) => {
  const link = (event.target as HTMLElement).closest<HTMLAnchorElement>("a[data-nav]");
  if (link && !event.ctrlKey && !event.metaKey && event.button === 0) {
    event.preventDefault();
    navigate(link.dataset.nav ?? "/");
  }
});
window.addEventListener("popstate", () => void route());

api.onSignedOut = () => {
  afterLogin = location.pathname;
  void route();
};

async function boot(): Promise<void> {
  await api.refresh();
  await route();
}

void boot();
