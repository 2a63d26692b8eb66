// Reads from the engine's API with the read token as a bearer. The token comes from a `?token=` once (then it is
// dropped from the address bar, so it is not bookmarked or shared) or from the token form; it lives in
// sessionStorage, so it ends with the tab.

const TOKEN_KEY = "nudge.token";

export class Unauthorized extends Error {}

export class NotFound extends Error {}

export class ApiError extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Keep a `?token=` from the address and take it out of the address bar. */
export function captureTokenFromAddress() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given === null) return;
  setToken(given.trim());
  url.searchParams.delete("token");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
}

function detail(body, fallback) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg ?? JSON.stringify(d)).join("; ");
  return fallback;
}

/** The JSON at `api/<path>`; raises Unauthorized on 401/403, NotFound on 404, ApiError on any other failure. */
export async function getJSON(path) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  // Relative, so the dashboard works wherever the app is mounted.
  const response = await fetch(`api/${path}`, { headers, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401 || response.status === 403) throw new Unauthorized(detail(body, response.statusText));
  if (response.status === 404) throw new NotFound(detail(body, response.statusText));
  if (!response.ok) throw new ApiError(`${response.status} ${detail(body, response.statusText)}`);
  return body;
}
