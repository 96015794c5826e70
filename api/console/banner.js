// The health banner: healthy, or what is wrong, from GET /v1/health.

import { h, replace, duration } from "./dom.js";

export function renderBanner(banner, health) {
  banner.className = `banner ${health.healthy ? "banner-ok" : "banner-bad"}`;
  const orphans = health.orphaned_jobs.length;
  const stale = health.stale_pending_jobs.length;
  const headline = health.healthy
    ? h("strong", {}, "Healthy")
    : h("strong", {}, "Needs attention: ",
      orphans ? `${orphans} orphaned ${orphans === 1 ? "run" : "runs"}` : null,
      orphans && stale ? ", " : null,
      stale ? `${stale} stale pending ${stale === 1 ? "job" : "jobs"}` : null);
  const oldest = health.oldest_queued_age_s;
  replace(banner,
    headline,
    h("span", {}, `Queue depth ${health.queue_depth}`),
    h("span", {}, `Oldest queued ${oldest === null ? "—" : duration(oldest)}`),
    h("span", {}, `Running ${health.total_running_alive} alive of ${health.total_running}`),
    jobLinks("Orphaned:", health.orphaned_jobs.map((orphan) => orphan.job_id)),
    jobLinks("Stale pending:", health.stale_pending_jobs.map((job) => job.job_id)),
  );
}

const SHOWN = 5;

function jobLinks(label, jobIds) {
  if (!jobIds.length) return null;
  const links = jobIds.slice(0, SHOWN).map((id) => h("a", { href: `#/jobs/${encodeURIComponent(id)}` }, id));
  const more = jobIds.length > SHOWN ? ` and ${jobIds.length - SHOWN} more` : "";
  return h("span", { class: "banner-jobs" }, label, " ", links.flatMap((link, i) => (i ? [", ", link] : [link])), more);
}

export function renderBannerError(banner, error) {
  banner.className = "banner banner-bad";
  replace(banner, h("strong", {}, "Health unknown: "), error.message);
}
