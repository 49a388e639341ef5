// The service's API as the page uses it: URLs relative to the page (so a route prefix just
// works), the API key (kept in sessionStorage, sent on every call), error messages in words, and
// server-sent events read from a fetch stream (EventSource cannot POST).

const KEY_STORAGE = "speechgraph.apiKey";

/** A URL of the service, relative to the page: "../v1/models" from /prefix/ui/ is /prefix/v1/models. */
export function apiUrl(path) {
  return new URL(`../${path}`, location.href);
}

/** The WebSocket URL of a service path: ws: or wss: after the page's own protocol. */
export function socketUrl(path) {
  const url = apiUrl(path);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url;
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage refused (privacy settings): the page works without a key only
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* nothing to keep it in */
  }
}

/** An API error: the service's message, its code and HTTP status. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = "", param = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/** The API's error shape ({"error": {"message", "code", "param"}}) as an ApiError. */
export function errorFromBody(body, status = 0) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string") {
    return new ApiError(error.message, { status, code: error.code || "", param: error.param ?? null });
  }
  return null;
}

/** The error a 4xx/5xx answer carries, in words, whatever its body. */
export async function responseError(response) {
  const text = await response.text().catch(() => "");
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON: a proxy's page, say */
  }
  const fromBody = errorFromBody(body, response.status);
  if (fromBody) return fromBody;
  const detail = body && typeof body.detail === "string" ? body.detail : text.trim().slice(0, 300);
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  return new ApiError(detail ? `${status}: ${detail}` : status, { status: response.status });
}

/** fetch() on a service path with the API key; a 4xx/5xx answer throws its ApiError. */
export async function apiFetch(path, init = {}) {
  const headers = new Headers(init.headers || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  let response;
  try {
    response = await fetch(apiUrl(path), { ...init, headers });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`The service could not be reached (${err.message}).`);
  }
  if (!response.ok) throw await responseError(response);
  return response;
}

export async function apiJson(path, init = {}) {
  const response = await apiFetch(path, init);
  return response.json();
}

/**
 * The server-sent events of a response body, as {event, data} with data parsed from JSON.
 * Events are separated by a blank line; "event:" names one, "data:" lines carry its body.
 */
export async function* serverSentEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      // One line ending, \n, whatever the server sent (a lone \r at the end may precede a \n).
      buffer = (buffer + value).replace(/\r\n/g, "\n").replace(/\r(?!$)/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
    }
    const last = parseEvent(buffer.replace(/\r$/, "\n"));
    if (last) yield last;
  } finally {
    reader.releaseLock();
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  try {
    return { event, data: JSON.parse(text) };
  } catch {
    return { event, data: text };
  }
}
