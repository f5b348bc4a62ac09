// Talking to this stillreel server: config, the API key, JSON requests, uploads.

const KEY_STORAGE = "stillreel.apiKey";

/** A non-2xx answer. `detail` is fal's body: a string, or a list of {loc, msg, type} for 422. */
export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" && "detail" in body ? body.detail : body;
    super(typeof detail === "string" ? detail : Array.isArray(detail) ? detail.map((d) => d.msg).join("; ") : `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.detail = detail;
  }
}

let config = { auth: false, version: "", engines: {} };

export async function loadConfig() {
  const response = await fetch("/api/config", { headers: { Accept: "application/json" } });
  if (!response.ok) throw new ApiError(response.status, await readBody(response));
  config = await response.json();
  return config;
}

export const getConfig = () => config;
export const getKey = () => localStorage.getItem(KEY_STORAGE) || "";
export const setKey = (key) => (key ? localStorage.setItem(KEY_STORAGE, key) : localStorage.removeItem(KEY_STORAGE));

export function authHeaders() {
  const key = getKey();
  return config.auth && key ? { Authorization: `Key ${key}` } : {};
}

async function readBody(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

/**
 * fetch() with the key, JSON in and out. A 401 asks for a (new) key once and retries.
 * Returns {status, headers, data}; throws ApiError for non-2xx answers.
 */
export async function api(path, { method = "GET", json, body, headers = {}, signal, retryAuth = true } = {}) {
  // No key yet: try anyway (public routes work); a 401 asks for one.
  const init = { method, signal, headers: { Accept: "application/json", ...authHeaders(), ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  if (response.status === 401 && config.auth && retryAuth) {
    await askKey(getKey() ? "The server did not accept this key. Enter another one." : "");
    return api(path, { method, json, body, headers, signal, retryAuth: false });
  }
  const data = await readBody(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, headers: response.headers, data };
}

/**
 * Upload a Blob the way @fal-ai/client does (fal-protocol §9.2): initiate, then PUT the bytes to
 * the upload URL the server handed out. Returns the file's public URL.
 */
export async function uploadBlob(blob, fileName) {
  const contentType = blob.type || "application/octet-stream";
  const { data } = await api("/storage/upload/initiate?storage_type=fal-cdn-v3", {
    method: "POST",
    json: { content_type: contentType, file_name: fileName || `${Date.now()}.${contentType.split("/")[1] || "bin"}` },
  });
  const put = await fetch(data.upload_url, { method: "PUT", headers: { "Content-Type": contentType }, body: blob });
  if (!put.ok) throw new ApiError(put.status, await readBody(put));
  return data.file_url;
}

// --- the key dialog -------------------------------------------------------------------------

let pendingKey = null;

/** Ask for the key (resolves once a key that the server accepts is saved). */
export function askKey(message = "") {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").textContent = message;
  input.value = getKey();
  if (!dialog.open) dialog.showModal();
  input.focus();
  if (!pendingKey) {
    pendingKey = new Promise((resolve) => {
      dialog._resolve = () => {
        pendingKey = null;
        resolve();
      };
    });
  }
  return pendingKey;
}

export function installKeyDialog(onChange) {
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const error = document.getElementById("key-error");
  const button = document.getElementById("key-button");
  button.hidden = !config.auth;
  button.addEventListener("click", () => askKey().then(onChange));
  document.getElementById("key-forget").addEventListener("click", () => {
    setKey("");
    input.value = "";
    error.textContent = "Key forgotten.";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    // Check the key with a cheap authenticated call before keeping it.
    const response = await fetch("/api/requests?limit=1", { headers: { Authorization: `Key ${key}` } });
    if (response.status === 401 || response.status === 403) {
      error.textContent = "The server did not accept this key.";
      return;
    }
    setKey(key);
    dialog.close();
  });
  // However the dialog closes, whoever waits for a key goes on (a retry without one fails as a 401).
  dialog.addEventListener("close", () => dialog._resolve?.());
  dialog.addEventListener("cancel", (event) => {
    // Without a key nothing works; keep the dialog unless one is already stored.
    if (!getKey()) event.preventDefault();
  });
}
