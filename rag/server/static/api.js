// The HTTP API as the page uses it: the key from session storage in the Authorization header (never in a URL),
// errors turned into one ApiError carrying the server's status and message.
import { t } from "./i18n.js";

const KEY = "rag.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY);
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  /** status 0: the server could not be reached. */
  constructor(status, kind, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.kind = kind;
    this.retryAfter = retryAfter;
  }

  /** A sentence for the person, in the interface language. */
  explain(limits = {}) {
    if (this.status === 0) return t("error.network");
    if (this.status === 401) return t("error.signin");
    if (this.status === 403) return t("error.forbidden", { message: this.message });
    if (this.status === 413) return t("error.too_large", { mb: limits.max_upload_mb ?? "?" });
    if (this.status === 415) return t("error.unsupported");
    if (this.status === 429) return t("error.busy", { s: this.retryAfter ?? 10 });
    if (this.status === 503 && this.kind === "not_ready") return t("error.loading");
    return t("error.other", { message: this.message });
  }
}

export function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** fetch() that throws ApiError for an unreachable server or any non-2xx answer. */
export async function call(path, { method = "GET", json, body, signal } = {}) {
  const init = { method, headers: headers(json ? { "Content-Type": "application/json" } : {}), signal };
  if (json !== undefined) init.body = JSON.stringify(json);
  if (body !== undefined) init.body = body;
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", error.message);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function callJson(path, options) {
  return (await call(path, options)).json();
}

/** The ApiError of a failed response: its `{"error": {...}}` body, or its status line. */
export async function errorOf(response) {
  let detail = {};
  try {
    detail = (await response.json()).error || {};
  } catch {
    detail = {};
  }
  return new ApiError(response.status, detail.type || "http_error", detail.message || response.statusText,
                      response.headers.get("Retry-After"));
}

/** Server-Sent Events of a POST response, as {event, data} objects, in order. */
export async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const parsed = parseEvent(block);
        if (parsed) yield parsed;
      }
    }
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", error.message);
  } finally {
    reader.releaseLock();
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

/** Upload one file with its labels; `onProgress(fraction)` while the bytes go out. Resolves to the JSON reply. */
export function upload(file, labels, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("files", file, file.name);
    for (const label of labels) form.append("labels", label);
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/documents");
    for (const [name, value] of Object.entries(headers())) request.setRequestHeader(name, value);
    request.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    request.onerror = () => reject(new ApiError(0, "network", "network error"));
    request.onload = () => {
      let body = {};
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = {};
      }
      if (request.status >= 200 && request.status < 300) return resolve(body);
      const detail = body.error || {};
      reject(new ApiError(request.status, detail.type || "http_error", detail.message || request.statusText,
                          request.getResponseHeader("Retry-After")));
    };
    request.send(form);
  });
}

/** Fetch a file with the key and hand it to the browser as a download named `name`. */
export async function download(path, name) {
  const blob = await (await call(path)).blob();
  saveBlob(blob, name);
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
