// Calls to the JobLedger API: the bearer token (kept for this tab only) and
// problem+json errors turned into ApiError.

const TOKEN_KEY = "jobledger.token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** @type {(problem: { detail?: string } | null) => Promise<boolean>} */
let askForToken = async () => false;

// The page asks for a token when a call answers 401, then retries the call once.
export function onTokenNeeded(prompt) {
  askForToken = prompt;
}

export async function api(method, path, body) {
  for (let tries = 0; ; tries++) {
    const headers = { Accept: "application/json", ...authHeaders() };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = body.idempotencyKey;
      const { idempotencyKey, ...payload } = body;
      init.body = JSON.stringify(payload);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, { detail: "the server cannot be reached" });
    }
    if (response.ok) return response.json();
    const problem = await response.json().catch(() => ({ detail: response.statusText }));
    if (response.status === 401 && tries === 0 && (await askForToken(problem))) continue;
    throw new ApiError(response.status, problem);
  }
}

// A fresh key per operator action: a retried request is applied once.
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
