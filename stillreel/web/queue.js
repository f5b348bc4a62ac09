// Running a request through the queue API (fal-protocol §5): submit, follow the SSE status stream
// (queue position, progress, logs), cancel, fetch the result. Plus the panel that shows all that.

import { api, authHeaders, ApiError } from "./api.js";
import { h, clear, formatSeconds } from "./dom.js";
import { showResult } from "./result.js";

/** fal's "owner/alias": status, result and cancel live under it. */
export const appOf = (endpointId) => endpointId.split("/").slice(0, 2).join("/");

/** Same-origin URLs for a request (the server also answers them under the full endpoint path). */
export function requestUrls(endpointId, requestId) {
  const base = `/queue/${appOf(endpointId)}/requests/${encodeURIComponent(requestId)}`;
  return { result: base, status: `${base}/status`, stream: `${base}/status/stream?logs=1`, cancel: `${base}/cancel` };
}

export async function submit(endpointId, input) {
  const { data } = await api(`/queue/${endpointId}`, { method: "POST", json: input });
  return data;
}

export async function cancel(endpointId, requestId) {
  try {
    const { data } = await api(requestUrls(endpointId, requestId).cancel, { method: "PUT" });
    return data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 400) return error.body; // ALREADY_COMPLETED
    throw error;
  }
}

export async function fetchResult(endpointId, requestId) {
  const { data } = await api(requestUrls(endpointId, requestId).result);
  return data;
}

/** Parse an SSE byte stream into the JSON of each `data:` event. */
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

/**
 * Follow a request until COMPLETED, calling onUpdate(status) for every change. Reads the SSE
 * stream (fetch, not EventSource: EventSource cannot send the Authorization header); if the stream
 * breaks off, it asks for the status and reconnects, and falls back to polling if streaming fails.
 */
export async function follow(endpointId, requestId, { onUpdate, signal }) {
  const urls = requestUrls(endpointId, requestId);
  let streamFailures = 0;
  while (!signal?.aborted) {
    if (streamFailures < 3) {
      try {
        const response = await fetch(urls.stream, { signal, headers: { Accept: "text/event-stream", ...authHeaders() } });
        if (response.ok && (response.headers.get("content-type") || "").includes("text/event-stream")) {
          for await (const status of sseEvents(response.body)) {
            onUpdate(status);
            if (status.status === "COMPLETED") return status;
          }
        } else if (response.status === 404 || response.status === 401) {
          throw new ApiError(response.status, await response.json().catch(() => null));
        } else {
          streamFailures++;
        }
      } catch (error) {
        if (signal?.aborted || error instanceof ApiError) throw error;
        streamFailures++;
      }
    }
    // The stream ended early or is not available: ask once, then go on (stream or poll).
    const { data } = await api(`${urls.status}?logs=1`, { signal });
    onUpdate(data);
    if (data.status === "COMPLETED") return data;
    if (streamFailures >= 3) await new Promise((r) => setTimeout(r, 700));
  }
  throw new DOMException("aborted", "AbortError");
}

/** The right-hand panel: status, progress bar, logs, Cancel, then the result. */
export class RunPanel {
  constructor({ onError = () => {}, onStarted = () => {}, onFinished = () => {} } = {}) {
    this.onError = onError; // (detail) → show the server's validation messages next to the fields
    this.onStarted = onStarted; // (requestId) → the request exists on the server
    this.onFinished = onFinished;
    this.controller = null;
    this.current = null;
    this.statusLine = h("p.run-status", { "aria-live": "polite" });
    this.elapsed = h("span.muted.small.run-elapsed");
    this.bar = h("div.progress-bar");
    this.progress = h("div.progress", { role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": "Progress", hidden: true }, this.bar);
    this.cancelButton = h("button.danger.small", { type: "button", hidden: true, onclick: () => this.cancel() }, "Cancel");
    this.logs = h("pre.logs", { "aria-label": "Logs" });
    this.logsBox = h("details.logs-box", { open: true, hidden: true }, h("summary", "Logs"), this.logs);
    this.result = h("div.result-slot");
    this.placeholder = h("div.result-placeholder",
      h("div.placeholder-art", { "aria-hidden": "true" }, "▶"),
      h("p", "Your video appears here."), h("p.muted.small", "Fill in the form and press Run."));
    this.element = h("section.run-panel", { "aria-label": "Result" },
      h("div.row.between.run-head", h("div.run-head-text", this.statusLine, this.elapsed), this.cancelButton),
      this.progress, this.result, this.placeholder, this.logsBox);
    this.reset();
  }

  reset() {
    this.controller?.abort();
    this.controller = null;
    clearInterval(this.timer);
    this.seenLogs = new Set();
    clear(this.logs);
    clear(this.result);
    this.logsBox.hidden = true;
    this.progress.hidden = true;
    this.setProgress(0);
    this.cancelButton.hidden = true;
    this.cancelButton.disabled = false;
    this.cancelButton.textContent = "Cancel";
    this.statusLine.textContent = "";
    this.statusLine.className = "run-status";
    this.elapsed.textContent = "";
    this.placeholder.hidden = false;
    this.element.dataset.state = "idle";
  }

  setState(state, text) {
    this.element.dataset.state = state;
    this.statusLine.textContent = text;
  }

  setProgress(percent) {
    const p = Math.max(0, Math.min(100, Number(percent) || 0));
    this.bar.style.width = `${p}%`;
    this.progress.setAttribute("aria-valuenow", String(Math.round(p)));
    this.progress.dataset.value = String(p);
  }

  addLogs(logs) {
    for (const log of logs || []) {
      const key = `${log.timestamp}|${log.message}`;
      if (this.seenLogs.has(key)) continue;
      this.seenLogs.add(key);
      const time = log.timestamp ? new Date(log.timestamp).toLocaleTimeString([], { hour12: false }) : "";
      this.logs.append(h("span.log-line", { dataset: { level: (log.level || "INFO").toLowerCase() } }, h("span.log-time", time), " ", log.message, "\n"));
      this.logsBox.hidden = false;
    }
    this.logs.scrollTop = this.logs.scrollHeight;
  }

  startClock() {
    const started = Date.now();
    clearInterval(this.timer);
    this.timer = setInterval(() => { this.elapsed.textContent = formatSeconds((Date.now() - started) / 1000); }, 250);
  }

  /** Submit `input` and follow it to the end. */
  async run(endpointId, input) {
    this.reset();
    this.placeholder.hidden = true;
    this.setState("submitting", "Submitting…");
    let submitted;
    try {
      submitted = await submit(endpointId, input);
    } catch (error) {
      this.fail(error);
      return;
    }
    await this.track(endpointId, submitted.request_id, submitted);
  }

  /** Follow an existing request (new, or reopened from the history). */
  async track(endpointId, requestId, first = null) {
    if (!first) this.reset();
    this.placeholder.hidden = true;
    this.current = { endpointId, requestId };
    this.element.dataset.requestId = requestId;
    this.controller = new AbortController();
    this.cancelButton.hidden = false;
    this.startClock();
    this.onStarted(requestId);
    if (first) this.update(first);
    try {
      const done = await follow(endpointId, requestId, { onUpdate: (s) => this.update(s), signal: this.controller.signal });
      await this.finish(endpointId, requestId, done);
    } catch (error) {
      if (error.name !== "AbortError") this.fail(error);
    } finally {
      clearInterval(this.timer);
      if (this.element.dataset.state === "done") this.elapsed.textContent = ""; // the status says how long
      this.cancelButton.hidden = true;
    }
  }

  update(status) {
    if (status.status === "IN_QUEUE") {
      const n = status.queue_position ?? 0;
      this.setState("queued", n === 0 ? "In queue · next in line" : `In queue · ${n} ahead`);
    } else if (status.status === "IN_PROGRESS") {
      this.progress.hidden = false;
      const pct = status.progress;
      this.setState("running", typeof pct === "number" ? `Generating · ${Math.round(pct)}%` : "Generating…");
      if (typeof pct === "number") this.setProgress(pct);
      this.progress.classList.toggle("indeterminate", typeof pct !== "number");
    }
    this.addLogs(status.logs);
  }

  async finish(endpointId, requestId, done) {
    this.addLogs(done.logs);
    const seconds = done.metrics?.inference_time;
    if (done.error || done.error_type) {
      if (done.error_type === "request_cancelled") {
        this.setState("cancelled", "Cancelled");
        this.progress.hidden = true;
      } else {
        // The result endpoint answers with the error's status and fal's body (422 → detail list).
        try {
          await fetchResult(endpointId, requestId);
          this.setState("failed", done.error || "Failed");
        } catch (error) {
          this.fail(error, done.error);
        }
      }
      this.onFinished();
      return;
    }
    this.setProgress(100);
    this.setState("loading", "Fetching the result…");
    try {
      const output = await fetchResult(endpointId, requestId);
      this.show({ requestId, output, seconds });
    } catch (error) {
      this.fail(error);
    }
    this.onFinished();
  }

  /** Show a finished result: video, download link, request id, generation time. */
  show({ requestId, output, seconds }) {
    this.placeholder.hidden = true;
    this.progress.hidden = true;
    this.setState("done", seconds !== null && seconds !== undefined ? `Done in ${formatSeconds(seconds)}` : "Done");
    clear(this.result);
    this.result.append(showResult({ requestId, output, seconds }));
  }

  fail(error, fallback) {
    this.progress.hidden = true;
    const detail = error instanceof ApiError ? error.detail : null;
    const fieldErrors = Array.isArray(detail) ? detail : null;
    if (fieldErrors) this.onError(fieldErrors);
    const text = fieldErrors ? `The server refused the input: ${fieldErrors.map((d) => d.msg).join("; ")}` : fallback || error.message || String(error);
    this.setState("failed", text);
    this.statusLine.classList.add("error");
  }

  async cancel() {
    if (!this.current) return;
    this.cancelButton.disabled = true;
    this.cancelButton.textContent = "Cancelling…";
    try {
      await cancel(this.current.endpointId, this.current.requestId);
    } catch (error) {
      this.cancelButton.disabled = false;
      this.cancelButton.textContent = "Cancel";
      this.statusLine.textContent = `Could not cancel: ${error.message}`;
    }
  }
}
