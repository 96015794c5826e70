// The health banner: healthy, or what is wrong, from GET /v1/health.

import { h, replace, duration } from "./dom.js";

export function renderBanner(banner, health) {
  banner.className = `banner ${health.healthy ? "banner-ok" : "banner-bad"}`;
  const orphans = health.orphaned_count;
  const stale = health.stale_pending_count;
  const headline = health.healthy
    ? h("strong", {}, "Healthy")
    : h("strong", {}, "Needs attention: ",
      orphans ? `${many(orphans)} orphaned ${orphans === 1 ? "run" : "runs"}` : null,
      orphans && stale ? ", " : null,
      stale ? `${many(stale)} stale pending ${stale === 1 ? "job" : "jobs"}` : null);
  const about = health.counts_exact ? "" : "about ";
  const oldest = health.oldest_queued_age_s;
  replace(banner,
    headline,
    h("span", {}, `Queue depth ${about}${health.queue_depth.toLocaleString()}`),
    h("span", {}, `Oldest queued ${oldest === null ? "—" : duration(oldest)}`),
    h("span", {}, `Running ${about}${health.total_running_alive.toLocaleString()} alive of ${health.total_running.toLocaleString()}`),
    jobLinks("Orphaned:", health.orphaned_jobs.map((orphan) => orphan.job_id), orphans),
    jobLinks("Stale pending:", health.stale_pending_jobs.map((job) => job.job_id), stale),
  );
}

const SHOWN = 5;
const PROBLEMS_COUNTED = 1000; // the health view's EXACT_PROBLEM_COUNT

/** A count of problems: exact, or past the 1,000 the server counts to. */
function many(count) {
  return count > PROBLEMS_COUNTED ? `more than ${PROBLEMS_COUNTED.toLocaleString("en")}` : count.toLocaleString();
}

function jobLinks(label, jobIds, count) {
  if (!jobIds.length) return null;
  const links = jobIds.slice(0, SHOWN).map((id) => h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, id));
  const more = count > SHOWN ? ` and ${count > PROBLEMS_COUNTED ? many(count) : (count - SHOWN).toLocaleString()} more` : "";
  return h("span", { class: "banner-jobs" }, label, " ", links.flatMap((link, i) => (i ? [", ", link] : [link])), more);
}

export function renderBannerError(banner, error) {
  banner.className = "banner banner-bad";
  replace(banner, h("strong", {}, "Health unknown: "), error.message);
}
