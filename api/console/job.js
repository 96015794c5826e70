// One job: its current state, the recovery card and the history timeline.

import { api, idempotencyKey } from "./http.js";
import {
  h, replace, keepingFocus, statusPill, healthBadge, when, serverNow, workerText, ORPHAN_WORDS,
  pastBanner,
} from "./dom.js";
import { confirmAction } from "./dialogs.js";
import { recoveryCard, explain } from "./recovery.js";

export class JobPage {
  constructor(main, jobId, caller, asOf = "") {
    this.main = main;
    this.jobId = jobId;
    this.caller = caller;
    this.asOf = asOf; // a moment of the past shown read-only, or "" for now
    this.busy = false;
    this.message = null; // { kind: "done" | "error", text } from the last action
    this.heading = h("h1", { tabindex: "-1" }, jobId);
    this.state = h("section", { "aria-labelledby": "state-title" });
    this.card = h("div", {});
    this.timeline = h("section", { "aria-labelledby": "history-title" });
    const page = `#/jobs/${encodeURIComponent(jobId)}`;
    const list = asOf ? `#/?as_of=${encodeURIComponent(asOf)}` : "#/";
    replace(main,
      h("p", {}, h("a", { href: list }, "← All jobs")),
      this.heading, asOf ? pastBanner(asOf, page) : null, this.card, this.state, this.timeline);
  }

  focus() {
    this.heading.focus();
  }

  async refresh() {
    let job;
    let history;
    // Answers can arrive out of order: only the latest request's answer is drawn.
    const asked = (this.asked = (this.asked || 0) + 1);
    try {
      const past = this.asOf ? `?as_of=${encodeURIComponent(this.asOf)}` : "";
      [job, history] = await Promise.all([
        api("GET", `/v1/jobs/${encodeURIComponent(this.jobId)}${past}`),
        api("GET", `/v1/jobs/${encodeURIComponent(this.jobId)}/history`),
      ]);
    } catch (error) {
      if (error.status !== 404) throw error;
      replace(this.state, h("p", { class: "error" }, this.asOf
        ? `There was no job ${this.jobId} yet at ${new Date(this.asOf).toLocaleString()}.`
        : `There is no job ${this.jobId}.`));
      return;
    }
    if (asked !== this.asked) return;
    this.job = job;
    this.renderState(job);
    if (this.asOf) {
      const until = Date.parse(this.asOf);
      const events = history.events.filter((event) => Date.parse(event.recorded_at) <= until);
      this.renderTimeline({ ...history, events });
      return; // the past takes no action: no recovery card
    }
    const asOf = serverNow();
    if (!this.busy) keepingFocus(this.card, () => this.renderCard(job, asOf));
    this.renderTimeline(history);
  }

  renderState(job) {
    const now = [
      ["Status", statusPill(job.status)],
      ["Health", [healthBadge(job), job.health_reason ? ` ${ORPHAN_WORDS[job.health_reason]}` : ""]],
      ["Attempt", String(job.attempt)],
      ["Priority", String(job.priority)],
      ["Queue position", queuePosition(job)],
      ["Worker", job.worker ? workerText(job.worker) : "—"],
      ["Last heartbeat", when(job.last_heartbeat_at)],
      ["Failure reason", job.failure_reason || "—"],
      ["Checkpoint", job.checkpoint
        ? `${job.checkpoint.path}${job.checkpoint.step === null ? "" : ` (step ${job.checkpoint.step})`}`
        : "—"],
      ["In this status since", when(job.status_changed_at)],
      ["Created", when(job.created_at)],
      ["Version", String(job.version)],
    ];
    // Queue positions, leases and health are not in the log: a view of the past has none.
    const notInThePast = new Set(["Health", "Queue position", "Last heartbeat"]);
    const rows = this.asOf ? now.filter(([name]) => !notInThePast.has(name)) : now;
    replace(this.state,
      h("h2", { id: "state-title" }, this.asOf ? "State then" : "Current state"),
      h("dl", { class: "facts" }, rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
      h("details", {}, h("summary", {}, "Spec"),
        h("pre", {}, JSON.stringify(job.spec ?? {}, null, 2))));
  }

  renderCard(job, asOf) {
    const card = recoveryCard(job, asOf);
    if (!card) {
      replace(this.card);
      return;
    }
    const mayAct = this.caller.can_operate;
    const buttons = mayAct
      ? card.actions.map((action) => h("button", {
        type: "button",
        class: action.reasonRequired || action.command !== "force-start" ? "danger" : "primary",
        "data-command": action.command,
        onclick: () => this.act(action),
      }, action.label))
      : [];
    replace(this.card, h("section", {
      class: `card card-${card.tone}`,
      "aria-labelledby": "card-title",
      "data-testid": "recovery-card",
    },
    h("h2", { id: "card-title" }, card.title),
    card.lines.map((line) => h("p", {}, line)),
    mayAct
      ? h("div", { class: "actions" }, buttons)
      : h("p", { class: "muted" }, `Your role (${this.caller.role}) is read-only: no actions.`),
    this.message
      ? h("p", {
        class: this.message.kind === "error" ? "error" : "done",
        role: this.message.kind === "error" ? "alert" : "status",
      }, this.message.text)
      : null));
  }

  async act(action) {
    const reason = await confirmAction({
      title: `${action.label}: ${this.jobId}`,
      text: action.confirm,
      confirmLabel: action.label,
      reasonRequired: action.reasonRequired,
    });
    if (reason === null) return;
    this.busy = true;
    this.message = null;
    // The card may have been drawn again while the dialog was open: mark its current button.
    for (const other of this.card.querySelectorAll("button")) other.disabled = true;
    const button = this.card.querySelector(`button[data-command="${action.command}"]`);
    if (button) {
      button.textContent = action.busy;
      button.setAttribute("aria-busy", "true");
    }
    try {
      const answer = await api("POST", `/v1/jobs/${encodeURIComponent(this.jobId)}/${action.command}`, {
        reason: reason || null,
        expected_version: this.job.version,
        idempotencyKey: idempotencyKey(),
      });
      const position = answer.queue_position ?? answer.job?.queue_position ?? null;
      const status = answer.status ?? answer.job?.status;
      this.message = {
        kind: "done",
        text: `${action.label}: done. The job is ${status}` +
          (position ? `, at position ${position} in the queue.` : "."),
      };
    } catch (error) {
      this.message = { kind: "error", text: explain(error) };
    } finally {
      this.busy = false;
    }
    await this.refresh();
  }

  renderTimeline(history) {
    const entries = [...history.events].reverse().map((event) => h("li", {
      class: "event",
      "data-type": event.type,
    },
    h("div", { class: "event-head" },
      when(event.recorded_at),
      h("span", { class: "transition" },
        event.from_status === null ? "registered as " : null,
        event.from_status !== null && event.from_status !== event.to_status
          ? [statusPill(event.from_status), " → "] : null,
        statusPill(event.to_status)),
      h("span", { class: "muted" }, event.type.replaceAll("_", " "))),
    h("div", { class: "event-body" },
      h("span", {}, "by ", h("strong", {}, event.actor)),
      h("span", {}, `attempt ${event.attempt}`),
      event.reason ? h("q", { class: "reason" }, event.reason) : null)));
    replace(this.timeline,
      h("h2", { id: "history-title" }, `History (${history.events.length} events, newest first)`),
      h("ol", { class: "timeline", reversed: true }, entries));
  }
}


/** Where a queued job stands: exact at the front of the queue, "more than N" behind it. */
function queuePosition(job) {
  if (job.queue_position !== null) return String(job.queue_position);
  if (job.queued_behind_more_than) return `behind more than ${job.queued_behind_more_than.toLocaleString()}`;
  return "—";
}
