// The "API" tab: ready-to-copy code for the current inputs, in four flavours, pointed at this server.

import { h, clear, copyText } from "./dom.js";

const KEY_ENV = "STILLREEL_KEY";
const KEYWORDS = /\b(import|from|def|for|in|if|print|const|await|async|return|true|false|True|False|None|null|export|curl)\b/;

/** A JSON value as a Python literal (True/False/None, 4-space indent). */
export function pyLiteral(value, indent = 0) {
  const pad = " ".repeat(indent + 4);
  const end = " ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => typeof v !== "object" || v === null) || value.every(isPoint)) {
      const flat = `[${value.map((v) => pyLiteral(v, indent + 4)).join(", ")}]`;
      if (flat.length + indent < 96) return flat;
    }
    return `[\n${value.map((v) => pad + pyLiteral(v, indent + 4)).join(",\n")},\n${end}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  if (isPoint(value)) return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`).join(", ")}}`;
  return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${pyLiteral(v, indent + 4)}`).join(",\n")},\n${end}}`;
}

/** A JSON value as a JavaScript literal (bare keys where possible). */
export function jsLiteral(value, indent = 0) {
  const pad = " ".repeat(indent + 2);
  const end = " ".repeat(indent);
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  const key = (k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every(isPoint)) {
      const flat = `[${value.map((v) => jsLiteral(v)).join(", ")}]`;
      if (flat.length + indent < 96) return flat;
    }
    return `[\n${value.map((v) => pad + jsLiteral(v, indent + 2)).join(",\n")},\n${end}]`;
  }
  if (isPoint(value)) return `{ x: ${value.x}, y: ${value.y} }`;
  return `{\n${Object.entries(value).map(([k, v]) => `${pad}${key(k)}: ${jsLiteral(v, indent + 2)}`).join(",\n")},\n${end}}`;
}

function isPoint(v) {
  return v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).join() === "x,y";
}

const shellQuote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The four snippets for `endpointId` with `input`, against `base` (e.g. http://127.0.0.1:8000). */
export function snippets({ base, endpointId, input, auth }) {
  const app = endpointId.split("/").slice(0, 2).join("/");
  const keyArg = auth ? `, key=os.environ["${KEY_ENV}"]` : "";
  const py = pyLiteral(input, 4);
  const falClient = `${auth ? "import os\n" : ""}import fal_client
from stillreel.compat import use_stillreel

use_stillreel("${base}"${keyArg})

def on_queue_update(update):
    if isinstance(update, fal_client.InProgress):
        for log in update.logs:
            print(log["message"])

result = fal_client.subscribe(
    "${endpointId}",
    arguments=${py},
    with_logs=True,
    on_queue_update=on_queue_update,
)
print(result["video"]["url"])
`;
  const stillreelClient = `${auth ? "import os\n" : ""}from stillreel.client import Client

client = Client("${base}"${keyArg})

def on_update(status):
    print(status.state, status.progress or "", *(log.message for log in status.logs))

result = client.run(
    "${endpointId}",
    ${py},
    on_update=on_update,
)
print(result.video.url)
result.video.download("video.mp4")
`;
  const js = `import { fal } from "@fal-ai/client";

fal.config({
${auth ? `  credentials: process.env.${KEY_ENV},\n` : ""}  proxyUrl: { url: "${base}/api/fal/proxy", when: "always" },
});

const result = await fal.subscribe("${endpointId}", {
  input: ${jsLiteral(input, 2)},
  logs: true,
  onQueueUpdate: (update) => {
    if (update.status === "IN_PROGRESS") update.logs.forEach((log) => console.log(log.message));
  },
});
console.log(result.data.video.url);
`;
  const authHeader = auth ? ` \\\n  -H "Authorization: Key $${KEY_ENV}"` : "";
  const curl = `# Submit to the queue
REQUEST_ID=$(curl -s -X POST "${base}/queue/${endpointId}"${authHeader} \\
  -H "Content-Type: application/json" \\
  -d ${shellQuote(JSON.stringify(input, null, 2))} \\
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["request_id"])')

# Follow the status (server-sent events) until COMPLETED
curl -sN "${base}/queue/${app}/requests/$REQUEST_ID/status/stream?logs=1"${authHeader}

# Fetch the result: {"video": {"url": …}}
curl -s "${base}/queue/${app}/requests/$REQUEST_ID"${authHeader}
`;
  return [
    { id: "python-fal", label: "Python · fal-client", code: falClient, install: "pip install fal-client stillreel" },
    { id: "python-stillreel", label: "Python · stillreel", code: stillreelClient, install: "pip install stillreel" },
    { id: "javascript", label: "JavaScript", code: js, install: "npm install @fal-ai/client" },
    { id: "curl", label: "curl", code: curl, install: null },
  ];
}

function highlight(code) {
  const out = [];
  const pattern = /(#[^\n]*|\/\/[^\n]*)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|\b([A-Za-z_]+)\b/g;
  let last = 0;
  for (const m of code.matchAll(pattern)) {
    if (m[3] && !KEYWORDS.test(m[3])) continue;
    out.push(code.slice(last, m.index));
    out.push(h(m[1] ? "span.tok-comment" : m[2] ? "span.tok-string" : "span.tok-keyword", m[0]));
    last = m.index + m[0].length;
  }
  out.push(code.slice(last));
  return out;
}

export class CodePanel {
  constructor({ endpointId, getInput, auth, getKey }) {
    this.endpointId = endpointId;
    this.getInput = getInput;
    this.auth = auth;
    this.getKey = getKey;
    this.lang = localStorage.getItem("stillreel.codeLang") || "python-fal";
    this.tabs = h("div.segmented.code-tabs", { role: "tablist" });
    this.install = h("p.code-install.muted.small");
    this.code = h("code.snippet");
    this.pre = h("pre.code", this.code);
    this.copyButton = h("button.ghost.small.copy", { type: "button", onclick: () => this.copy() }, "Copy");
    this.keyLine = h("pre.code.key-line");
    this.showKey = h("input", { type: "checkbox", onchange: () => this.render() });
    this.element = h("section.code-panel", { "aria-label": "API code" },
      h("p.muted", "The same request from your own code. Uploaded images are already on this server, so the URLs work as they are."),
      this.tabs,
      auth ? h("div.key-hint", h("p.small", "Set your key first (never commit it):"), this.keyLine,
        h("label.small.muted.toggle-row", this.showKey, "Show my key in the line above")) : null,
      this.install,
      h("div.code-wrap", this.copyButton, this.pre));
    this.render();
  }

  render() {
    const all = snippets({ base: location.origin, endpointId: this.endpointId, input: this.getInput(), auth: this.auth });
    const current = all.find((s) => s.id === this.lang) || all[0];
    clear(this.tabs);
    for (const s of all) {
      this.tabs.append(h("button.seg", { type: "button", role: "tab", "aria-selected": String(s.id === current.id), "aria-pressed": String(s.id === current.id), dataset: { lang: s.id },
        onclick: () => { this.lang = s.id; localStorage.setItem("stillreel.codeLang", s.id); this.render(); } }, s.label));
    }
    clear(this.install);
    if (current.install) this.install.append("Install: ", h("code", current.install));
    clear(this.code);
    this.code.append(...highlight(current.code));
    this.code.dataset.lang = current.id;
    this.current = current.code;
    const key = this.showKey.checked && this.getKey() ? this.getKey() : "KEY_ID:SECRET";
    this.keyLine.textContent = `export ${KEY_ENV}="${key}"`;
  }

  async copy() {
    const ok = await copyText(this.current);
    this.copyButton.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => { this.copyButton.textContent = "Copy"; }, 1500);
  }
}
