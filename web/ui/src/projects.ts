/** The project list: create, open, rename, delete, and members with their roles. */

import { api, ApiError, projectUrl } from "./api";
import { ask, clear, confirmAction, h, timeAgo, toast } from "./dom";
import { mfaSettings } from "./mfa";

export interface Project {
  id: string;
  name: string;
  description: string;
  role: string;
  owner_id: string;
  created_at: string;
  updated_at: string;
}

interface Member {
  user_id: string;
  email: string;
  name: string;
  role: string;
}

export function topBar(...right: Node[]): HTMLElement {
  return h(
    "header",
    { class: "topbar" },
    h("a", { href: "/", class: "brand", "data-nav": "/", "aria-label": "Vaporform, all projects" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), "Vaporform"),
    h("div", { class: "spacer" }),
    ...right,
  );
}

export function userMenu(onLogout: () => void): HTMLElement {
  return h(
    "div",
    { class: "user-menu" },
    h("span", { class: "muted", title: api.user?.email ?? "" }, api.user?.name ?? ""),
    h("button", { class: "ghost small", onclick: () => mfaSettings(), "data-testid": "mfa-settings-open", title: "Two-factor authentication" }, "Security"),
    h("button", { class: "ghost small", onclick: onLogout, "aria-label": "Sign out" }, "Sign out"),
  );
}

export function projectsScreen(open: (id: string) => void, onLogout: () => void): HTMLElement {
  const list = h("ul", { class: "project-list", "data-testid": "project-list", "aria-label": "Projects" });
  const create = h("button", { class: "primary", "data-testid": "new-project" }, "New project");
  const screen = h(
    "div",
    { class: "page" },
    topBar(userMenu(onLogout)),
    h(
      "main",
      { class: "projects" },
      h("div", { class: "projects-head" }, h("h1", {}, "Projects"), create),
      list,
    ),
  );

  async function load(): Promise<void> {
    const { items } = await api.get<{ items: Project[] }>("/api/v1/projects?limit=200");
    clear(list);
    if (items.length === 0) {
      list.append(h("li", { class: "empty" }, "No projects yet. Create one to start editing."));
    }
    for (const project of items) list.append(row(project));
  }

  function row(project: Project): HTMLElement {
    const owner = project.role === "owner";
    const canEdit = owner || project.role === "editor";
    return h(
      "li",
      { class: "project-row", "data-project-id": project.id },
      h(
        "a",
        { href: `/projects/${project.id}`, class: "project-name", onclick: (e: Event) => (e.preventDefault(), open(project.id)) },
        project.name,
      ),
      h("span", { class: `role role-${project.role}` }, project.role),
      h("span", { class: "muted" }, project.description),
      h("span", { class: "muted small" }, `updated ${timeAgo(project.updated_at)}`),
      h(
        "span",
        { class: "row-actions" },
        canEdit && h("button", { class: "ghost small", "aria-label": `Rename ${project.name}`, onclick: () => void rename(project) }, "Rename"),
        h("button", { class: "ghost small", "aria-label": `Members of ${project.name}`, onclick: () => void membersDialog(project) }, "Members"),
        owner && h("button", { class: "ghost small danger", "aria-label": `Delete ${project.name}`, onclick: () => void remove(project) }, "Delete"),
      ),
    );
  }

  async function rename(project: Project): Promise<void> {
    const values = await ask("Rename project", [
      { name: "name", label: "Name", value: project.name },
      { name: "description", label: "Description", value: project.description },
    ], "Save");
    if (!values) return;
    try {
      await api.patch(projectUrl(project.id), { name: values.name, description: values.description });
      await load();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  async function remove(project: Project): Promise<void> {
    if (!(await confirmAction(`Delete “${project.name}” and all its files?`))) return;
    try {
      await api.del(projectUrl(project.id));
      await load();
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  create.addEventListener("click", async () => {
    const values = await ask("New project", [{ name: "name", label: "Name", placeholder: "my-app" }], "Create");
    if (!values || !values.name.trim()) return;
    try {
      const project = await api.post<Project>("/api/v1/projects", { name: values.name.trim() });
      open(project.id);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  });

  void load().catch((e: Error) => {
    // With MFA required and not set up, nothing but the MFA routes answers: open its settings.
    if (e instanceof ApiError && e.code === "mfa_enrolment_required") mfaSettings();
    else toast(e.message, "error");
  });
  return screen;
}

/** Members of a project: the owner adds people by email, changes roles and removes them. */
export async function membersDialog(project: { id: string; name: string; role: string }): Promise<void> {
  const owner = project.role === "owner";
  const body = h("div", { class: "members" });
  const dialog = h(
    "dialog",
    { class: "modal", "aria-label": `Members of ${project.name}` },
    h("h2", {}, `Members of ${project.name}`),
    body,
    h("div", { class: "actions" }, h("button", { class: "primary", onclick: () => (dialog.close(), dialog.remove()) }, "Done")),
  );
  dialog.addEventListener("close", () => dialog.remove());

  async function render(): Promise<void> {
    const { items } = await api.get<{ items: Member[] }>(projectUrl(project.id, "/members"));
    clear(body);
    const table = h("ul", { class: "member-list", "aria-label": "Members" });
    for (const member of items) {
      const select = h(
        "select",
        { "aria-label": `Role of ${member.name}`, disabled: !owner },
        ["owner", "editor", "viewer"].map((r) => h("option", { value: r, selected: r === member.role }, r)),
      );
      select.addEventListener("change", async () => {
        try {
          await api.patch(projectUrl(project.id, `/members/${member.user_id}`), { role: select.value });
          toast(`${member.name} is now ${select.value}`);
        } catch (e) {
          toast((e as Error).message, "error");
          await render();
        }
      });
      table.append(
        h(
          "li",
          {},
          h("span", {}, member.name, " ", h("span", { class: "muted small" }, member.email)),
          select,
          owner &&
            h(
              "button",
              {
                class: "ghost small danger",
                "aria-label": `Remove ${member.name}`,
                onclick: async () => {
                  try {
                    await api.del(projectUrl(project.id, `/members/${member.user_id}`));
                    await render();
                  } catch (e) {
                    toast((e as Error).message, "error");
                  }
                },
              },
              "Remove",
            ),
        ),
      );
    }
    body.append(table);
    if (owner) {
      const email = h("input", { type: "email", placeholder: "email@example.com", "aria-label": "Email of the person to add", required: true });
      const role = h("select", { "aria-label": "Role" }, ["editor", "viewer", "owner"].map((r) => h("option", { value: r }, r)));
      const form = h("form", { class: "inline-form", "aria-label": "Add a member" }, email, role, h("button", { type: "submit", class: "primary small" }, "Add"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          await api.post(projectUrl(project.id, "/members"), { email: email.value.trim(), role: role.value });
          await render();
        } catch (e) {
          toast(e instanceof ApiError && e.status === 404 ? "No account has that email." : (e as Error).message, "error");
        }
      });
      body.append(form);
    }
  }

  document.body.append(dialog);
  dialog.showModal();
  await render().catch((e: Error) => toast(e.message, "error"));
}
