// The jobs list: newest first, a status filter with counts, a search by job id,
// keyset pages. Built once; a refresh rewrites only the counts, rows and pager,
// so focus and what the operator is typing survive live updates.

import { api } from "./http.js";
import {
  h, replace, keepingFocus, statusPill, healthBadge, seconds, duration, noteServerTime, workerText,
  STATUSES, utcMoment, localInput, pastBanner, keysetPager,
} from "./dom.js";

const PAGE_SIZE = 50;
const SEARCH_PAUSE_MS = 250;

export class JobsList {
  constructor(main, params) {
    this.main = main;
    this.status = params.get("status") || "";
    this.search = params.get("q") || "";
    this.asOf = params.get("as_of") || ""; // a moment of the past shown read-only, or "" for now
    this.cursors = [""]; // where each page visited began; "" is the newest page
    this.countLabels = new Map();
    this.filterLinks = new Map();
    this.asked = 0; // reads of the list asked for so far
    this.wanted = ""; // the query of the latest
    this.drawn = 0; // the read whose answer is shown
  }

  // The list's page, drawn by the first refresh once its read is on its way.
  build() {
    const filters = ["", ...STATUSES].map((status) => {
      const count = h("span", { class: "count" }, "");
      const link = h("a", {
        href: this.href(status, this.search),
        class: `filter status-${status || "all"}`,
        onclick: (event) => {
          event.preventDefault();
          this.choose(status);
        },
      }, status ? status[0].toUpperCase() + status.slice(1) : "All", " ", count);
      this.countLabels.set(status, count);
      this.filterLinks.set(status, link);
      return h("li", {}, link);
    });
    this.searchInput = h("input", {
      id: "job-search",
      type: "search",
      value: this.search,
      placeholder: "part of a job id",
      autocomplete: "off",
      spellcheck: "false",
      oninput: () => this.searchSoon(),
    });
    this.rows = h("tbody", {});
    this.pager = h("div", { class: "pager" });
    this.summary = h("p", { class: "muted", id: "jobs-summary", "aria-live": "polite" });
    this.asOfInput = h("input", { id: "as-of", type: "datetime-local", step: "1",
      value: localInput(this.asOf) });
    replace(this.main,
      h("h1", { tabindex: "-1" }, this.asOf ? "Jobs in the past" : "Jobs"),
      this.asOf ? pastBanner(this.asOf, this.href(this.status, this.search, "")) : null,
      h("form", { class: "search as-of", onsubmit: (event) => {
        event.preventDefault();
        this.travel(utcMoment(this.asOfInput.value));
      } },
      h("label", { for: "as-of" }, "Show as of (your time)"), this.asOfInput,
      h("button", { type: "submit" }, "Show the past")),
      h("nav", { "aria-label": "Filter by status" }, h("ul", { class: "filters" }, filters)),
      h("form", { role: "search", class: "search", onsubmit: (event) => {
        event.preventDefault();
        this.applySearch();
      } },
      h("label", { for: "job-search" }, "Search job id"), this.searchInput,
      h("button", { type: "submit" }, "Search")),
      this.summary,
      h("div", { class: "table-wrap" },
        h("table", { class: "jobs" },
          h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
          h("thead", {}, h("tr", {},
            ["Job", "Status", "Attempt", "Worker", "In status for", "Health"].map(
              (name) => h("th", { scope: "col" }, name)))),
          this.rows)),
      this.pager);
  }

  href(status, search, asOf = this.asOf) {
    const query = new URLSearchParams();
    if (status) query.set("status", status);
    if (search) query.set("q", search);
    if (asOf) query.set("as_of", asOf);
    const text = query.toString();
    return text ? `#/?${text}` : "#/";
  }

  remember() {
    history.replaceState(null, "", this.href(this.status, this.search));
  }

  // The list as it was at `asOf` ("" for now): a new page, its address kept.
  travel(asOf) {
    location.hash = this.href(this.status, this.search, asOf);
  }

  choose(status) {
    this.status = status;
    this.cursors = [""];
    this.remember();
    this.refresh();
  }

  searchSoon() {
    clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => this.applySearch(), SEARCH_PAUSE_MS);
  }

  applySearch() {
    clearTimeout(this.searchTimer);
    const search = this.searchInput.value.trim();
    if (search === this.search) return;
    this.search = search;
    this.cursors = [""];
    this.remember();
    this.refresh();
  }

  async refresh() {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.status) query.set("status", this.status);
    if (this.search) query.set("q", this.search);
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    if (this.asOf) query.set("as_of", this.asOf);
    // Answers can arrive out of order: an answer is drawn unless the list now asks for
    // another page, or a later answer to the same one was drawn already. So a refresh
    // while the first answer is on its way does not hold back the first paint.
    const asked = ++this.asked;
    const wanted = (this.wanted = query.toString());
    const reading = api("GET", `/v1/jobs?${query}`);
    if (!this.rows) this.build(); // while the first page is read
    const page = await reading;
    if (wanted !== this.wanted || asked < this.drawn) return;
    this.drawn = asked;
    noteServerTime(page.as_of);
    this.render(page);
  }

  render(page) {
    for (const [status, label] of this.countLabels) {
      label.textContent = page.counts ? countText(page, status, Boolean(this.search)) : "";
      const link = this.filterLinks.get(status);
      link.href = this.href(status, this.search);
      if (status === this.status) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    keepingFocus(this.rows, () => replace(this.rows, page.jobs.length
      ? page.jobs.map((job) => row(job, page.as_of, this.asOf))
      : h("tr", {}, h("td", { colspan: "6", class: "empty" }, "No jobs match."))));
    const first = (this.cursors.length - 1) * PAGE_SIZE;
    const of = page.counts ? ` of ${countText(page, this.status, Boolean(this.search))}` : "";
    this.summary.textContent = page.jobs.length
      ? `Showing ${first + 1}–${first + page.jobs.length}${of}, newest first` +
        (this.asOf ? `, as they were at ${new Date(this.asOf).toLocaleString()}` : "")
      : "";
    keysetPager(this.pager, this.cursors, page.next_cursor, () => this.refresh(),
      ["← Newer", "Older →"]);
    if (!performance.getEntriesByName("jobs-list-painted").length) {
      requestAnimationFrame(() => performance.mark("jobs-list-painted"));
    }
  }
}

function row(job, asOf, past) {
  const page = `#/jobs/${encodeURIComponent(job.job_id)}`;
  return h("tr", { "data-job-id": job.job_id, "data-status": job.status },
    h("th", { scope: "row", "data-label": "Job" },
      h("a", { href: past ? `${page}?as_of=${encodeURIComponent(past)}` : page }, job.job_id)),
    h("td", { "data-label": "Status" }, statusPill(job.status)),
    h("td", { "data-label": "Attempt" }, String(job.attempt)),
    h("td", { "data-label": "Worker" }, job.worker ? workerText(job.worker) : "—"),
    h("td", { "data-label": "In status for" }, duration(seconds(job.status_changed_at, asOf))),
    h("td", { "data-label": "Health" }, past ? h("span", { class: "muted" }, "—") : healthBadge(job)));
}

/** A count as the page gives it: exact, about (an estimate), or "more than" (a search past
 * the matches the server counts to: "101+"). `status` "" is the total; `searched`: the page
 * is a search. */
function countText(page, status, searched) {
  const estimated = page.estimated || [];
  const inexact = status ? estimated.includes(status) : estimated.length > 0;
  const count = status ? page.counts[status] : page.total;
  if (!inexact) return count.toLocaleString();
  return searched ? `${count.toLocaleString()}+` : `about ${count.toLocaleString()}`;
}
