// The recovery card: what is wrong with a stuck or broken job and what an
// operator can do about it. Which card a job gets is decided here alone.

import { ORPHAN_WORDS, duration, seconds, workerText } from "./dom.js";

const FORCE_START = {
  command: "force-start",
  label: "Force start",
  busy: "Force starting…",
  reasonRequired: false,
};
const CANCEL = { command: "cancel", label: "Cancel job", busy: "Cancelling…", reasonRequired: false };

// { tone, title, lines, actions } for a job that needs an operator, else null.
export function recoveryCard(job, asOf) {
  const inStatus = duration(seconds(job.status_changed_at, asOf));
  if (job.health === "orphaned") {
    const worker = job.worker ? `worker ${workerText(job.worker)}` : "its worker";
    const heartbeat = job.last_heartbeat_at
      ? `Last heartbeat ${duration(seconds(job.last_heartbeat_at, asOf))} ago.`
      : "It never sent a heartbeat.";
    return {
      tone: "danger",
      title: "Orphaned run",
      lines: [
        `Attempt ${job.attempt} on ${worker} is dead: ${ORPHAN_WORDS[job.health_reason] || "it is not alive"}.`,
        heartbeat,
        "Mark it failed, or force start to close this attempt as failed and queue the job again.",
      ],
      actions: [
        { command: "mark-failed", label: "Mark failed", busy: "Marking failed…", reasonRequired: true,
          confirm: `Record attempt ${job.attempt} of ${job.job_id} as failed.` },
        { ...FORCE_START, label: "Force start (re-queue)",
          confirm: `Close attempt ${job.attempt} as failed and put ${job.job_id} back in the queue.` },
      ],
    };
  }
  if (job.status === "pending") {
    return {
      tone: job.health === "stale_pending" ? "warning" : "info",
      title: job.health === "stale_pending" ? "Stuck in pending" : "Pending",
      lines: [
        `Pending for ${inStatus}. A pending job is not in the queue: no worker will start it.`,
        "Force start puts it in the queue.",
      ],
      actions: [
        { ...FORCE_START, confirm: `Put ${job.job_id} in the queue, where a worker will claim it.` },
        { ...CANCEL, confirm: `Cancel ${job.job_id}.` },
      ],
    };
  }
  if (job.status === "queued") {
    return {
      tone: "info",
      title: job.queue_position !== null
        ? `Queued at position ${job.queue_position}`
        : `Queued behind more than ${(job.queued_behind_more_than ?? 0).toLocaleString()} jobs`,
      lines: [
        `Waiting ${inStatus} for a worker (priority ${job.priority}).`,
        "Force start on a queued job changes nothing and tells its place in the queue.",
      ],
      actions: [
        { ...FORCE_START, confirm: `Ask where ${job.job_id} stands in the queue.` },
        { ...CANCEL, confirm: `Take ${job.job_id} out of the queue and cancel it.` },
      ],
    };
  }
  if (job.status === "failed" || job.status === "cancelled") {
    const checkpoint = job.checkpoint
      ? `Re-queue resumes from checkpoint ${job.checkpoint.path}` +
        `${job.checkpoint.step === null ? "" : ` (step ${job.checkpoint.step})`}.`
      : "No checkpoint was saved: re-queue starts it from the beginning.";
    return {
      tone: "warning",
      title: job.status === "failed" ? "Failed" : "Cancelled",
      lines: [job.failure_reason ? `Reason: ${job.failure_reason}` : null, checkpoint].filter(Boolean),
      actions: [
        { command: "requeue", label: "Re-queue", busy: "Re-queueing…", reasonRequired: false,
          confirm: `Put ${job.job_id} back in the queue. ${checkpoint}` },
      ],
    };
  }
  return null;
}

// An API error in words an operator can act on.
export function explain(error) {
  const problem = error.problem || {};
  switch (error.status) {
    case 0:
      return "The server cannot be reached. Check the job before trying again.";
    case 401:
      return "Your token was not accepted. Sign in again.";
    case 403:
      return `Not allowed: your token's role is ${problem.role || "read-only"}; ` +
        `this needs ${(problem.required_roles || ["operator"]).join(" or ")}.`;
    case 404:
      return "There is no such job.";
    case 409:
      if (problem.current_status) {
        const allowed = (problem.allowed_commands || []).join(", ");
        return `Refused: the job is now ${problem.current_status}.` +
          (allowed ? ` From there it accepts: ${allowed}.` : "");
      }
      if (problem.expected_version !== undefined) {
        return "The job changed since this page showed it. The page is up to date now: check it and try again.";
      }
      return `Refused: ${problem.detail}`;
    case 422:
      return `The server refused the input: ${problem.detail}`;
    case 503:
      return "The ledger's database is unavailable; nothing was changed. Try again shortly.";
    default:
      return problem.detail || `The server answered ${error.status}.`;
  }
}
