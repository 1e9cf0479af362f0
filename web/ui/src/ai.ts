/** The AI panel: start review / tests / debug / generate jobs, follow them (job events on the
 * collaboration socket, with polling as the fallback), show findings as diagnostics and
 * proposed changes as diffs with an Apply button. */

import { api, ApiError, projectUrl } from "./api";
import type { JobEvent } from "./collab";
import { ask, clear, h, toast } from "./dom";
import { diffView } from "./panels";

export interface Finding {
  path: string;
  line_start: number;
  line_end: number;
  severity: string;
  category: string;
  message: string;
  suggestion?: string | null;
}

interface Change {
  path: string;
  base_version: number;
  content: string;
  diff: string;
}

interface Job {
  job_id: string;
  kind: string;
  status: string;
  result?: {
    findings?: Finding[];
    changes?: Change[];
    explanation?: string;
    dropped?: unknown[];
    kept?: number;
    tests?: { name: string; verdict: string }[];
  };
  error?: { code: string; message: string };
  progress?: { stage?: string; detail?: string };
  applied_at?: string | null;
}

export interface AIHost {
  projectId: string;
  canEdit: boolean;
  activePath(): string | null;
  showFindings(findings: Finding[]): void;
  open(path: string, line?: number): void;
}

const LABELS: Record<string, string> = { review: "Review", tests: "Tests", debug: "Debug", generate: "Generate" };

export class AIPanel {
  readonly el: HTMLElement;
  private readonly jobsEl: HTMLElement;
  private readonly cards = new Map<string, { el: HTMLElement; job: Job | null; timer?: number }>();

  constructor(private readonly host: AIHost) {
    this.jobsEl = h("ol", { class: "jobs", "aria-label": "AI jobs", "aria-live": "polite" });
    const button = (label: string, run: () => void): HTMLElement =>
      h("button", { class: "ghost small", disabled: !host.canEdit, onclick: run }, label);
    this.el = h(
      "section",
      { class: "ai-panel", "aria-label": "AI assistant", "data-testid": "ai-panel" },
      h(
        "div",
        { class: "ai-actions" },
        button("Review file", () => void this.review(true)),
        button("Review project", () => void this.review(false)),
        button("Write tests", () => void this.tests()),
        button("Debug…", () => void this.debug()),
        button("Generate…", () => void this.generate()),
      ),
      host.canEdit ? null : h("p", { class: "muted pad" }, "Viewers can follow jobs but not start them."),
      this.jobsEl,
    );
  }

  private async start(kind: string, route: string, body: Record<string, unknown>): Promise<void> {
    try {
      const { job_id } = await api.post<{ job_id: string }>(projectUrl(this.host.projectId, `/ai/${route}`), body);
      this.track({ job_id, kind, status: "queued" });
    } catch (e) {
      if (e instanceof ApiError && e.code === "budget_exceeded") toast("The AI budget is spent for this project or user.", "error");
      else toast((e as Error).message, "error");
    }
  }

  private async review(fileOnly: boolean): Promise<void> {
    const path = this.host.activePath();
    if (fileOnly && !path) return toast("Open a file to review it", "error");
    await this.start("review", "reviews", fileOnly && path ? { paths: [path] } : {});
  }

  private async tests(): Promise<void> {
    const path = this.host.activePath();
    if (!path) return toast("Open the module to write tests for", "error");
    await this.start("tests", "tests", { path });
  }

  private async debug(): Promise<void> {
    const values = await ask("Debug", [
      { name: "command", label: "Command to run in the container (or leave empty)", placeholder: "python app.py" },
      { name: "error", label: "…or paste the error", placeholder: "Traceback (most recent call last): …" },
    ], "Debug");
    if (!values) return;
    const body: Record<string, unknown> = {};
    if (values.command.trim()) body.command = values.command.trim().split(/\s+/);
    else if (values.error.trim()) body.error = values.error.trim();
    else return toast("Give a command or an error", "error");
    const path = this.host.activePath();
    if (path) body.paths = [path];
    await this.start("debug", "debug", body);
  }

  private async generate(): Promise<void> {
    const values = await ask("Generate code", [{ name: "prompt", label: "What should change?", placeholder: "add a --verbose flag" }], "Generate");
    if (!values?.prompt.trim()) return;
    const path = this.host.activePath();
    await this.start("generate", "generate", { prompt: values.prompt.trim(), ...(path ? { paths: [path] } : {}) });
  }

  /** A `job` event from the collaboration socket (any member's job). */
  onEvent(event: JobEvent): void {
    this.track(event);
  }

  private track(event: JobEvent): void {
    let card = this.cards.get(event.job_id);
    if (!card) {
      card = { el: h("li", { class: "job", "data-job-id": event.job_id, "data-status": event.status }), job: null };
      this.cards.set(event.job_id, card);
      this.jobsEl.prepend(card.el);
      this.renderCard(event.job_id, { ...event });
    }
    void this.fetch(event.job_id);
  }

  private async fetch(jobId: string): Promise<void> {
    const card = this.cards.get(jobId);
    if (!card) return;
    window.clearTimeout(card.timer);
    let job: Job;
    try {
      job = await api.get<Job>(projectUrl(this.host.projectId, `/ai/jobs/${jobId}`));
    } catch {
      card.timer = window.setTimeout(() => void this.fetch(jobId), 2000);
      return;
    }
    const wasDone = card.job !== null && ["succeeded", "failed"].includes(card.job.status);
    card.job = job;
    if (!wasDone) this.renderCard(jobId, job);
    if (job.status === "queued" || job.status === "running") {
      // Events say when it changes; polling covers a worker without a broker.
      card.timer = window.setTimeout(() => void this.fetch(jobId), 1500);
    } else if (!wasDone && job.status === "succeeded" && job.result?.findings) {
      this.host.showFindings(job.result.findings);
    }
  }

  private renderCard(jobId: string, job: Job): void {
    const card = this.cards.get(jobId);
    if (!card) return;
    const el = card.el;
    el.dataset.status = job.status;
    clear(el);
    const progress = job.progress?.detail || job.progress?.stage;
    el.append(
      h(
        "div",
        { class: "job-head" },
        h("strong", {}, LABELS[job.kind] ?? job.kind),
        h("span", { class: `badge status-${job.status}` }, job.status),
        job.status === "running" || job.status === "queued" ? h("span", { class: "spinner", "aria-hidden": "true" }) : null,
      ),
    );
    if (progress && (job.status === "running" || job.status === "queued")) {
      el.append(h("div", { class: "muted small" }, progress));
    }
    if (job.status === "failed" && job.error) {
      el.append(h("p", { class: "form-error" }, job.error.message));
    }
    const result = job.result;
    if (job.status !== "succeeded" || !result) return;
    if (result.explanation) el.append(h("p", { class: "explanation" }, result.explanation));
    if (result.findings) {
      if (result.findings.length === 0) el.append(h("p", { class: "muted" }, "No findings."));
      el.append(
        h(
          "ul",
          { class: "findings" },
          result.findings.map((f) =>
            h(
              "li",
              { class: `sev-${f.severity}` },
              h(
                "button",
                { class: "link", onclick: () => this.host.open(f.path, f.line_start), "aria-label": `${f.path} line ${f.line_start}: ${f.message}` },
                h("span", { class: "loc" }, `${f.path}:${f.line_start}`),
                " ",
                f.message,
              ),
            ),
          ),
        ),
      );
    }
    if (result.tests?.length) {
      el.append(h("ul", { class: "tests" }, result.tests.map((t) => h("li", {}, `${t.name}: ${t.verdict}`))));
    }
    const changes = result.changes ?? [];
    if (changes.length) {
      for (const change of changes) {
        el.append(
          h("details", { class: "change", open: changes.length <= 2 }, h("summary", {}, `${change.path}${change.base_version === 0 ? " (new)" : ""}`), diffView(change.diff)),
        );
      }
      const status = h("p", { class: "apply-status", role: "status" });
      const apply = h("button", { class: "primary small", disabled: !this.host.canEdit || Boolean(job.applied_at), "data-testid": "ai-apply" }, job.applied_at ? "Applied" : "Apply");
      apply.addEventListener("click", async () => {
        apply.disabled = true;
        try {
          const { files } = await api.post<{ files: { path: string; version: number }[] }>(
            projectUrl(this.host.projectId, `/ai/jobs/${jobId}/apply`),
          );
          apply.textContent = "Applied";
          status.textContent = `Applied: ${files.map((f) => `${f.path} v${f.version}`).join(", ")}`;
        } catch (e) {
          apply.disabled = false;
          if (e instanceof ApiError && e.code === "version_conflict") {
            status.textContent = "The file changed since the job read it: re-run the job.";
          } else if (e instanceof ApiError && e.code === "already_applied") {
            status.textContent = "Already applied.";
            apply.disabled = true;
          } else {
            status.textContent = (e as Error).message;
          }
          status.classList.add("form-error");
        }
      });
      el.append(h("div", { class: "actions" }, apply), status);
    }
  }
}
