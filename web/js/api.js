// The HTTP API (API.md), same origin. Errors come back as RFC 9457 problems.

export class ApiError extends Error {
  constructor(status, problem, path) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.path = path;
  }
}

async function parse(response) {
  const type = response.headers.get("content-type") || "";
  if (response.status === 204) return null;
  if (type.includes("json")) return response.json();
  return response.text();
}

/** A fresh Idempotency-Key (a UUID). */
export function newKey() {
  return globalThis.crypto?.randomUUID?.() ?? `k-${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// Answers after which a request is repeated: the network failed (0), or a part of the service is
// down for now (502, 503, 504; 503 says when in Retry-After). A POST is repeated with the same
// Idempotency-Key, so a booking made before the answer was lost is answered, not made twice.
const RETRY_STATUSES = [0, 502, 503, 504];
export const retrySchedule = { tries: 4, firstDelayMs: 1000, maxDelayMs: 8000 };

function delayBefore(attempt, response) {
  const retryAfter = Number(response?.headers?.get("retry-after"));
  const backoff = Math.min(retrySchedule.maxDelayMs, retrySchedule.firstDelayMs * 2 ** (attempt - 1));
  return Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retrySchedule.maxDelayMs, retryAfter * 1000) : backoff;
}

/**
 * Call the API. Returns {status, body, headers}; throws ApiError for 4xx/5xx unless `accept`
 * lists the status, and for a network failure (status 0). Every POST carries an Idempotency-Key
 * (the caller's, or a fresh one) and is repeated with that same key while the network fails or
 * the service answers 502/503/504, up to `retrySchedule.tries` times.
 */
export async function api(path, { method = "GET", body, token, headers = {}, accept = [], form, signal } = {}) {
  if (method === "POST" && !Object.keys(headers).some((k) => k.toLowerCase() === "idempotency-key")) {
    headers = { ...headers, "Idempotency-Key": newKey() };
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await callOnce(path, { method, body, token, headers, accept, form, signal });
    } catch (exc) {
      const again = exc instanceof ApiError && RETRY_STATUSES.includes(exc.status) && attempt < retrySchedule.tries;
      if (!again || signal?.aborted) throw exc;
      await new Promise((resolve) => setTimeout(resolve, delayBefore(attempt, exc.response)));
    }
  }
}

async function callOnce(path, { method, body, token, headers, accept, form, signal }) {
  const init = { method, headers: { Accept: "application/json, application/problem+json", ...headers }, signal };
  // Problems come in the page's language (the <html lang> the app sets), not the browser's.
  const pageLanguage = globalThis.document?.documentElement?.lang;
  if (pageLanguage && !Object.keys(headers).some((k) => k.toLowerCase() === "accept-language")) {
    init.headers["Accept-Language"] = pageLanguage;
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (form) {
    init.body = new URLSearchParams(form);
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, { title: "offline", detail: String(exc) }, path);
  }
  const payload = await parse(response).catch(() => null);
  if (!response.ok && !accept.includes(response.status)) {
    const problem = payload && typeof payload === "object" ? payload : { detail: String(payload || response.statusText) };
    const error = new ApiError(response.status, problem, path);
    error.response = response;
    throw error;
  }
  return { status: response.status, body: payload, headers: response.headers };
}

/**
 * Read a Server-Sent Events stream with fetch (EventSource cannot send an Authorization header).
 * Calls onEvent(name, data) per event and onState(true/false) when connected/disconnected;
 * reconnects after a pause until `signal` aborts.
 */
export async function streamEvents(path, { token, signal, onEvent, onState }) {
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${token}` },
        signal,
        cache: "no-store",
      });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      onState?.(true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") name = val;
            else if (field === "data") data.push(val);
          }
          if (data.length || name !== "message") onEvent(name, data.join("\n"));
        }
      }
    } catch (exc) {
      if (signal.aborted) return;
    }
    onState?.(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// --- staff / ops session --------------------------------------------------------------------

const AUTH_KEY = "loket.auth";

export function session() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(AUTH_KEY) || "null");
    if (saved && saved.expires_at > Date.now()) return saved;
  } catch {
    /* ignore */
  }
  return null;
}

export async function signIn(username, password) {
  const { body } = await api("/api/v1/auth/token", { method: "POST", form: { username, password } });
  const saved = {
    username,
    token: body.access_token,
    roles: body.roles || [],
    locations: body.locations || [],
    expires_at: Date.now() + (body.expires_in || 3600) * 1000,
  };
  sessionStorage.setItem(AUTH_KEY, JSON.stringify(saved));
  return saved;
}

export function signOut() {
  sessionStorage.removeItem(AUTH_KEY);
}

// --- catalogue, cached for the page's life --------------------------------------------------

let products;
let locations;

export async function getProducts() {
  products ??= api("/api/v1/products").then((r) => r.body);
  return products.catch((exc) => {
    products = undefined;
    throw exc;
  });
}

export async function getLocations() {
  locations ??= api("/api/v1/locations").then((r) => r.body);
  return locations.catch((exc) => {
    locations = undefined;
    throw exc;
  });
}
