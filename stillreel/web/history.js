// This key's recent requests (GET /api/requests), newest first; a click reopens one.

import { api, getConfig, getKey } from "./api.js";
import { h, clear, formatSeconds, timeAgo } from "./dom.js";

export function shortName(endpointId) {
  return endpointId.replace(/^fal-ai\/kling-video\//, "").replace(/\/image-to-video$/, "");
}

function promptOf(input) {
  if (!input) return "";
  if (input.prompt) return input.prompt;
  if (Array.isArray(input.multi_prompt)) return input.multi_prompt.map((s) => s.prompt).join(" · ");
  return "";
}

function stateOf(item) {
  if (item.status !== "COMPLETED") return item.status === "IN_QUEUE" ? "queued" : "running";
  if (item.error_type === "request_cancelled") return "cancelled";
  return item.error || item.error_type ? "failed" : "done";
}

const STATE_TEXT = { queued: "In queue", running: "Running", cancelled: "Cancelled", failed: "Failed", done: "Done" };

export class History {
  /** @param {{onOpen: (item) => void, currentEndpoint?: string}} o */
  constructor({ onOpen, currentEndpoint = null, limit = 20 }) {
    this.onOpen = onOpen;
    this.currentEndpoint = currentEndpoint;
    this.limit = limit;
    this.list = h("ol.history-list");
    this.note = h("p.muted.small");
    this.element = h("section.history", { "aria-label": "Recent requests" },
      h("div.row.between", h("h2.h3", "Recent requests"),
        h("button.ghost.small", { type: "button", onclick: () => this.load() }, "Refresh")),
      this.note, this.list);
  }

  async load() {
    clear(this.note);
    if (getConfig().auth && !getKey()) {
      clear(this.list);
      this.note.append("Your requests show here once you enter your API key.");
      return;
    }
    try {
      const { data } = await api(`/api/requests?limit=${this.limit}`);
      this.render(Array.isArray(data) ? data : data.items || []);
    } catch (error) {
      this.note.textContent = `Could not load the history: ${error.message}`;
    }
  }

  render(items) {
    clear(this.list);
    if (!items.length) this.note.textContent = "Nothing yet: your requests appear here.";
    for (const item of items) {
      const state = stateOf(item);
      const prompt = promptOf(item.input);
      const other = this.currentEndpoint && item.endpoint_id !== this.currentEndpoint;
      const body = [
        h("span.dot", { dataset: { state }, title: STATE_TEXT[state] }),
        h("span.history-main",
          h("span.history-prompt", prompt || h("em.muted", "no prompt")),
          h("span.history-sub.muted.small",
            [other || !this.currentEndpoint ? shortName(item.endpoint_id) : null, timeAgo(item.created_at),
              state === "done" && item.inference_time != null ? formatSeconds(item.inference_time) : STATE_TEXT[state]]
              .filter(Boolean).join(" · "))),
      ];
      const link = other || !this.currentEndpoint
        ? h("a.history-item", { href: `/models/${item.endpoint_id}?request=${encodeURIComponent(item.request_id)}` }, body)
        : h("button.history-item", { type: "button", onclick: () => this.onOpen(item) }, body);
      link.dataset.requestId = item.request_id;
      this.list.append(h("li", link));
    }
  }
}
