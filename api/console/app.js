// The operator console: routes between the jobs list and a job's page, keeps
// the health banner current, and refreshes what is shown as events arrive.

import { api, onTokenNeeded, setToken, token } from "./http.js";
import { followFeed } from "./feed.js";
import { h, replace, noteServerTime } from "./dom.js";
import { askForToken } from "./dialogs.js";
import { renderBanner, renderBannerError } from "./banner.js";
import { JobsList } from "./list.js";
import { JobPage } from "./job.js";
import { AuditPage } from "./audit.js";

const POLL_MS = 10_000; // leases lapse and processes die without an event
const SETTLE_MS = 200; // events in a burst cause one refresh

const main = document.getElementById("main");
const banner = document.getElementById("banner");
let caller = null;
let view = null;
let refreshTimer = null;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const match = path.match(/^\/jobs\/(.+)$/);
  const params = new URLSearchParams(query);
  if (match) view = new JobPage(main, decodeURIComponent(match[1]), caller, params.get("as_of") || "");
  else if (path === "/audit") view = new AuditPage(main, params);
  else view = new JobsList(main, params);
  markSection(path === "/audit" ? "audit" : "jobs");
  refreshView().then(() => {
    if (!(view instanceof JobsList)) view.focus();
  });
}

// The header's link to the section shown is marked as the current page.
function markSection(section) {
  for (const link of document.querySelectorAll("nav.sections a")) {
    if (link.getAttribute("data-section") === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function refreshView() {
  const shown = view;
  try {
    await shown.refresh();
  } catch (error) {
    if (shown !== view) return;
    replace(main, h("h1", {}, "Cannot show this page"), h("p", { class: "error", role: "alert" },
      error.message));
  }
}

async function refreshBanner() {
  try {
    const health = await api("GET", "/v1/health");
    noteServerTime(health.checked_at);
    renderBanner(banner, health);
  } catch (error) {
    renderBannerError(banner, error);
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refreshBanner();
    refreshView();
  }, SETTLE_MS);
}

function showCaller() {
  const who = document.getElementById("who");
  const signOut = document.getElementById("sign-out");
  who.textContent = caller.role
    ? `Signed in as ${caller.name} (${caller.role})`
    : "Local access (this server needs no token)";
  signOut.hidden = !token();
  signOut.onclick = () => {
    setToken(null);
    location.reload();
  };
}

async function start() {
  onTokenNeeded(askForToken);
  try {
    caller = await api("GET", "/v1/me");
    if (!caller.signed_in && (await askForToken(null))) caller = await api("GET", "/v1/me");
  } catch (error) {
    caller = { signed_in: false, error };
  }
  if (!caller.signed_in) {
    replace(main, h("h1", {}, "Sign in needed"),
      h("p", {}, caller.error ? caller.error.message : "This server needs a token."),
      h("button", { type: "button", class: "primary", onclick: () => location.reload() }, "Sign in"));
    replace(banner, "");
    return;
  }
  showCaller();
  refreshBanner();
  route();
  window.addEventListener("hashchange", route);
  followFeed({
    onEvent: (event) => {
      if (view.asOf) refreshBanner(); // the past does not change
      else if (view instanceof JobPage && event.job_id !== view.jobId) refreshBanner();
      else if (view instanceof AuditPage) refreshBanner(); // a page of history stays put
      else refreshSoon();
    },
    onConnect: refreshSoon,
    onDown: () => {},
  });
  setInterval(() => {
    if (document.visibilityState === "visible") refreshSoon();
  }, POLL_MS);
}

start();
