// Building the page from data without ever parsing data as HTML.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// The element with this id, checked to be of the expected kind.
/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {{ new (): T }} kind
 * @returns {T}
 */
export function byId(id, kind) {
  const element = document.getElementById(id);
  if (!(element instanceof kind)) throw new Error(`#${id} is not a ${kind.name}`);
  return element;
}

export function replace(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter((child) => child !== null && child !== false));
}

// Re-renders `container` without losing the keyboard focus: a live update must not
// throw an operator who is tabbing through the page back to its top.
export function keepingFocus(container, render) {
  const focused = document.activeElement;
  const inside = focused && focused !== container && container.contains(focused);
  const key = inside ? focusKey(focused) : null;
  render();
  if (!key) return;
  const again = [...container.querySelectorAll(focused.tagName)].find((el) => focusKey(el) === key);
  if (again) again.focus();
}

function focusKey(element) {
  return `${element.tagName}|${element.getAttribute("href") || ""}|${element.textContent}`;
}

const STATUS_WORDS = {
  pending: "Pending",
  queued: "Queued",
  running: "Running",
  paused: "Paused",
  completed: "Completed",
  failed: "Failed",
  cancelled: "Cancelled",
};

export const STATUSES = Object.keys(STATUS_WORDS);

// A status in colour and in words: the colour is never the only sign.
export function statusPill(status) {
  return h("span", { class: `pill status-${status}` }, STATUS_WORDS[status] || status);
}

export const ORPHAN_WORDS = {
  lease_expired: "its lease expired (no heartbeat in time)",
  unresponsive: "no heartbeat within its lease, although its process is alive",
  process_gone: "its process is gone",
  pid_reused: "its process id now belongs to another process",
  host_rebooted: "its host rebooted",
};

// The process that runs (or ran) an attempt, the same words everywhere: "w1 on gpu-7 (pid 42)".
export function workerText(worker) {
  const host = worker.host ? ` on ${worker.host}` : "";
  const pid = worker.pid ? ` (pid ${worker.pid})` : "";
  return `${worker.worker_id}${host}${pid}`;
}

export function healthBadge(job) {
  if (job.health === "orphaned") {
    const why = job.health_reason ? ORPHAN_WORDS[job.health_reason] : "";
    return h("span", { class: "badge badge-orphaned", title: why ? `Orphaned: ${why}` : null },
      "Orphaned");
  }
  if (job.health === "stale_pending") {
    return h("span", { class: "badge badge-stale" }, "Stale pending");
  }
  return h("span", { class: "muted" }, "OK");
}

// Ages are measured on the database clock: the offset of the browser's clock
// from it is learnt from every answer that says what time the server read at.
let clockOffsetMs = 0;

export function noteServerTime(iso) {
  clockOffsetMs = Date.parse(iso) - Date.now();
}

export function serverNow() {
  return new Date(Date.now() + clockOffsetMs).toISOString();
}

export function seconds(from, to) {
  return Math.max(0, (Date.parse(to) - Date.parse(from)) / 1000);
}

export function duration(totalSeconds) {
  const s = Math.round(totalSeconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

export function when(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

/** A `datetime-local` value (the browser's time zone) as an RFC 3339 moment in UTC. */
export function utcMoment(local) {
  if (!local) return "";
  const moment = new Date(local);
  return Number.isNaN(moment.getTime()) ? "" : moment.toISOString();
}

/** An RFC 3339 moment as a `datetime-local` value in the browser's time zone. */
export function localInput(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  if (Number.isNaN(moment.getTime())) return "";
  const local = new Date(moment.getTime() - moment.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 19);
}

// The banner over a view of the past: what it shows, that it cannot be changed, the way back.
export function pastBanner(asOf, backHref) {
  return h("div", { class: "past-banner", role: "note", "data-testid": "past-banner" },
    "Viewing the past: as the ledger was at ", when(asOf),
    ". Read-only: nothing can be changed here. ",
    h("a", { href: backHref }, "Back to now"));
}

// The two buttons of keyset pages: back to the page before (`cursors` holds where each
// page visited began), on to `nextCursor`; `show` draws the page the cursors now name.
export function keysetPager(pager, cursors, nextCursor, show, [backLabel, onLabel]) {
  keepingFocus(pager, () => replace(pager,
    h("button", {
      type: "button",
      disabled: cursors.length === 1,
      onclick: () => {
        cursors.pop();
        show();
      },
    }, backLabel),
    h("button", {
      type: "button",
      disabled: !nextCursor,
      onclick: () => {
        cursors.push(nextCursor);
        show();
      },
    }, onLabel)));
}
