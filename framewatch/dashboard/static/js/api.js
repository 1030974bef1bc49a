// The REST API, with the key from sessionStorage as `Authorization: Bearer` (never in a URL).
// Every failure becomes an ApiError carrying the API's `{"error", "detail"}`.

const KEY_ITEM = "framewatch.apiKey";

export class ApiError extends Error {
  constructor(status, error, detail, body = null) {
    super(`${error}: ${detail}`);
    this.status = status;
    this.error = error;
    this.detail = detail;
    this.body = body;
  }
}

// Fired with `unauthorized` when the API answers 401 (revoked, expired or rotated-out key).
export const session = new EventTarget();

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

function urlFor(path, query) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      url.searchParams.append(name, String(item));
    }
  }
  return url.pathname + url.search;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = (body && body.error) || `http_${response.status}`;
  const detail = (body && body.detail) || response.statusText || "request failed";
  return new ApiError(response.status, error, String(detail), body);
}

/**
 * One API call. Options: `query` (object), `json` (body), `form` (FormData), `signal`,
 * `raw` (return the Response). Answers the parsed JSON (null for 204).
 */
export async function request(method, path, options = {}) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.json);
  } else if (options.form !== undefined) {
    body = options.form; // the browser sets the multipart boundary
  }
  let response;
  try {
    response = await fetch(urlFor(path, options.query), {
      method, headers, body, signal: options.signal, cache: "no-store",
      credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", "the server cannot be reached");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401) {
      session.dispatchEvent(new CustomEvent("unauthorized", { detail: error }));
    }
    throw error;
  }
  if (options.raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const api = {
  get: (path, query, options = {}) => request("GET", path, { ...options, query }),
  post: (path, json, options = {}) => request("POST", path, { ...options, json }),
  put: (path, json) => request("PUT", path, { json }),
  patch: (path, json) => request("PATCH", path, { json }),
  del: (path) => request("DELETE", path),
  upload: (path, form) => request("POST", path, { form }),
};

/** Fetches an image with the key and answers a `blob:` URL (revoke it with URL.revokeObjectURL). */
export async function imageUrl(path, query, signal) {
  const response = await request("GET", path, { query, signal, raw: true });
  const blob = await response.blob();
  return URL.createObjectURL(blob);
}

/** What a key may do, from the permissions POST /api/v1/auth/ws-token answers with. */
export function capabilitiesOf(permissions) {
  const has = (name) => permissions.includes(name);
  let role = "viewer";
  if (has("keys:admin")) role = "admin";
  else if (has("frames:write")) role = "operator";
  return {
    role,
    permissions,
    events: has("events:read"),
    stats: has("stats:read"),
    providersAdmin: has("providers:admin"),
    personsRead: has("persons:read"),
    personsAdmin: has("persons:admin"),
  };
}
