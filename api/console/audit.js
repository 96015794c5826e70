// The audit page: events across jobs filtered by actor, type, job, status reached and
// time, newest page first in time order, exportable as JSON Lines or CSV, beside the
// latest digest of the log's hash chain.

import { api, authHeaders, ApiError } from "./http.js";
import {
  h, replace, keepingFocus, statusPill, when, STATUSES, utcMoment, localInput, keysetPager,
} from "./dom.js";

const PAGE_SIZE = 50;

export const EVENT_TYPES = [
  "job_registered",
  "job_submitted",
  "job_started",
  "job_paused",
  "job_resumed",
  "checkpoint_saved",
  "job_completed",
  "job_failed",
  "job_cancelled",
  "job_force_started",
  "job_marked_failed",
  "job_requeued",
];

// The filters the page keeps in its address, by their query parameter.
const FILTERS = ["actor", "type", "job_id_prefix", "status", "since", "until"];

const EXPORTS = [
  { label: "Export JSON Lines", accept: "application/x-ndjson", extension: "jsonl" },
  { label: "Export CSV", accept: "text/csv", extension: "csv" },
];

export class AuditPage {
  constructor(main, params) {
    this.main = main;
    this.filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
    this.cursors = [""]; // where each page visited began; "" is the first page
    this.build();
  }

  focus() {
    this.heading.focus();
  }

  build() {
    const field = (name, label, input) => h("div", { class: "field" },
      h("label", { for: `audit-${name}` }, label), input);
    const text = (name, placeholder) => h("input", {
      id: `audit-${name}`, name, type: "text", value: this.filters[name], placeholder,
      autocomplete: "off", spellcheck: "false",
    });
    const choice = (name, values, words) => h("select", { id: `audit-${name}`, name },
      h("option", { value: "" }, "any"),
      values.map((value) => h("option", { value, selected: value === this.filters[name] },
        words(value))));
    const moment = (name) => h("input", {
      id: `audit-${name}`, name, type: "datetime-local", step: "1",
      value: localInput(this.filters[name]),
    });
    this.form = h("form", { class: "audit-filters", onsubmit: (event) => {
      event.preventDefault();
      this.apply();
    } },
    field("actor", "Actor", text("actor", "a token's name, or health-monitor")),
    field("type", "Event type", choice("type", EVENT_TYPES, (type) => type.replaceAll("_", " "))),
    field("job_id_prefix", "Job id starts with", text("job_id_prefix", "e.g. sweep-42-")),
    field("status", "Status reached", choice("status", STATUSES, (status) => status)),
    field("since", "From (your time)", moment("since")),
    field("until", "Before (your time)", moment("until")),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Apply filters"),
      h("button", { type: "button", onclick: () => this.clear() }, "Clear")));
    this.exportButtons = EXPORTS.map((format) => h("button", {
      type: "button", "data-export": format.extension, onclick: () => this.export(format),
    }, format.label));
    this.exportMessage = h("p", { class: "muted", role: "status" });
    this.digest = h("section", { "aria-labelledby": "digest-title", class: "digest" });
    this.rows = h("tbody", {});
    this.pager = h("div", { class: "pager" });
    this.summary = h("p", { class: "muted", id: "audit-summary", "aria-live": "polite" });
    this.heading = h("h1", { tabindex: "-1" }, "Audit");
    replace(this.main,
      this.heading,
      h("p", { class: "muted" }, "Every event across jobs: who did what, when and why."),
      this.digest,
      h("section", { "aria-label": "Filters" }, this.form),
      h("div", { class: "actions exports" }, this.exportButtons),
      this.exportMessage,
      this.summary,
      h("div", { class: "table-wrap" },
        h("table", { class: "jobs audit" },
          h("caption", { class: "visually-hidden" }, "Events, oldest first"),
          h("thead", {}, h("tr", {},
            ["Recorded", "Job", "Event", "Status reached", "Actor", "Attempt", "Reason"].map(
              (name) => h("th", { scope: "col" }, name)))),
          this.rows)),
      this.pager);
  }

  query() {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      const value = this.filters[name];
      if (value) query.set(name, value);
    }
    return query;
  }

  remember() {
    const text = this.query().toString();
    history.replaceState(null, "", text ? `#/audit?${text}` : "#/audit");
  }

  apply() {
    const data = new FormData(this.form);
    for (const name of FILTERS) {
      const value = String(data.get(name) || "").trim();
      this.filters[name] = name === "since" || name === "until" ? utcMoment(value) : value;
    }
    this.cursors = [""];
    this.remember();
    this.refresh();
  }

  clear() {
    for (const name of FILTERS) this.filters[name] = "";
    this.cursors = [""];
    this.remember();
    this.build();
    this.refresh();
  }

  async refresh() {
    const query = this.query();
    query.set("limit", String(PAGE_SIZE));
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const asked = (this.asked = (this.asked || 0) + 1);
    const [page, digest] = await Promise.all([
      api("GET", `/v1/audit/events?${query}`),
      latestDigest(),
    ]);
    if (asked !== this.asked) return;
    this.renderDigest(digest);
    this.render(page);
  }

  render(page) {
    keepingFocus(this.rows, () => replace(this.rows, page.events.length
      ? page.events.map(row)
      : h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No events match."))));
    const first = (this.cursors.length - 1) * PAGE_SIZE;
    this.summary.textContent = page.events.length
      ? `Showing events ${first + 1}–${first + page.events.length}${page.next_cursor ? ", more after" : ""}, oldest first`
      : "";
    keysetPager(this.pager, this.cursors, page.next_cursor, () => this.refresh(),
      ["← Earlier", "Later →"]);
  }

  renderDigest(digest) {
    if (digest === null) {
      replace(this.digest, h("h2", { id: "digest-title" }, "Latest digest"),
        h("p", { class: "muted" }, "This server keeps no digest of the log."));
      return;
    }
    replace(this.digest,
      h("h2", { id: "digest-title" }, "Latest digest"),
      h("dl", { class: "facts" },
        h("dt", {}, "Taken"), h("dd", {}, when(digest.taken_at)),
        h("dt", {}, "Events"), h("dd", {}, Number(digest.events).toLocaleString()),
        h("dt", {}, "Cursor"), h("dd", {}, h("code", {}, String(digest.cursor))),
        h("dt", {}, "Chain head"), h("dd", {}, h("code", { class: "hash" }, String(digest.head)))),
      h("p", { class: "muted" },
        "Keep a copy away from the database: `jobledger audit verify --digest FILE` proves " +
        "nothing before its cursor was changed since."));
  }

  // An export is fetched with the caller's token and handed to the browser as a file.
  async export(format) {
    for (const button of this.exportButtons) button.disabled = true;
    this.exportMessage.textContent = `Exporting ${format.extension.toUpperCase()}…`;
    try {
      const response = await fetch(`/v1/audit/events?${this.query()}`, {
        headers: { Accept: format.accept, ...authHeaders() },
      });
      if (!response.ok) {
        const problem = await response.json().catch(() => ({ detail: response.statusText }));
        throw new ApiError(response.status, problem);
      }
      const file = await response.blob();
      const link = h("a", {
        href: URL.createObjectURL(file), download: `audit-events.${format.extension}`, hidden: true,
      });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      this.exportMessage.textContent = `Exported audit-events.${format.extension}.`;
    } catch (error) {
      this.exportMessage.textContent = `Export failed: ${error.message}`;
    } finally {
      for (const button of this.exportButtons) button.disabled = false;
    }
  }
}

/** The latest digest of the log's chain, or null where the server keeps none. */
async function latestDigest() {
  try {
    return await api("GET", "/v1/audit/digest");
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

function row(event) {
  return h("tr", { "data-position": event.position, "data-type": event.type },
    h("td", { "data-label": "Recorded" }, when(event.recorded_at)),
    h("th", { scope: "row", "data-label": "Job" },
      h("a", { href: `#/jobs/${encodeURIComponent(event.job_id)}` }, event.job_id)),
    h("td", { "data-label": "Event" }, event.type.replaceAll("_", " ")),
    h("td", { "data-label": "Status reached" }, event.status ? statusPill(event.status) : "—"),
    h("td", { "data-label": "Actor" }, event.actor),
    h("td", { "data-label": "Attempt" }, String(event.attempt)),
    h("td", { "data-label": "Reason" }, event.reason ? h("q", { class: "reason" }, event.reason) : "—"));
}
