// The playground's entry point: routes on the path (/ → endpoint list, /models/{id} → endpoint
// page) and wires the form, the run panel, the history and the API tab together.

import { api, loadConfig, getConfig, getKey, installKeyDialog } from "./api.js";
import { h, clear, copyText } from "./dom.js";
import { EndpointForm } from "./form.js";
import { RunPanel } from "./queue.js";
import { History, shortName } from "./history.js";
import { CodePanel } from "./code.js";
import { catalogue } from "./catalogue.js";

const main = document.getElementById("main");

async function start() {
  try {
    await loadConfig();
  } catch (error) {
    return fatal(`Could not reach the server: ${error.message}`);
  }
  const config = getConfig();
  document.getElementById("server-version").textContent = config.version ? `v${config.version}` : "";
  installKeyDialog(() => window.dispatchEvent(new Event("stillreel:key")));
  const path = decodeURIComponent(location.pathname);
  try {
    if (path.startsWith("/models/")) await endpointPage(path.slice("/models/".length).replace(/\/+$/, ""));
    else await listPage();
  } catch (error) {
    fatal(error.message || String(error));
  }
}

function fatal(message) {
  clear(main).append(h("div.panel.fatal", h("h1", "Something went wrong"), h("p", message), h("p", h("a", { href: "/" }, "Back to the endpoints"))));
}

async function loadEndpoints() {
  const { data } = await api("/api/endpoints");
  return Array.isArray(data) ? data : data.endpoints || [];
}

// What each endpoint's schema offers (by field), and whether this server's engine honours it.
const FEATURES = [
  ["end frame", ["tail_image_url", "end_image_url"], "end_frame"],
  ["motion brush", ["dynamic_masks", "static_mask_url"], "motion_brush"],
  ["camera presets", ["camera_control"], "camera"],
  ["multi-shot", ["multi_prompt"], "multi_shot"],
  ["elements", ["elements"], "elements"],
  ["reference images", ["image_urls", "input_image_urls"], "reference_images"],
  ["voices", ["voice_ids"], "voices"],
  ["audio", ["generate_audio"], "audio"],
  ["negative prompt", ["negative_prompt"], "negative_prompt"],
  ["aspect ratio", ["aspect_ratio"], "aspect_ratio"],
];

function featureTags(fields, capabilities) {
  return FEATURES.filter(([, names]) => names.some((n) => fields.includes(n))).map(([label, , cap]) => {
    const honoured = capabilities?.[cap] !== false;
    return h("li", { class: honoured ? "" : "off", title: honoured ? "" : "this server's engine does not honour it" }, label);
  });
}

/** fal's price for comparison ("fal: $0.045 per second"); stillreel itself bills nothing. */
function priceText(price) {
  const text = price?.text || "";
  return text.startsWith("$") ? `fal: ${text}` : text;
}

// --- / --------------------------------------------------------------------------------------

async function listPage() {
  const endpoints = await loadEndpoints();
  const engines = getConfig().engines || {};
  const names = [...new Set(Object.values(engines).map((e) => e.name).filter(Boolean))];
  const kinds = [...new Set(endpoints.map((e) => e.category))];
  const history = new History({ onOpen: () => {} });
  const card = (e) => h("a.card", { href: `/models/${e.id}`, dataset: { endpoint: e.id } },
    h("div.card-top", h("span.badge", e.category || "image-to-video")),
    h("h4.card-title", e.title || e.id),
    h("code.card-id", e.id),
    h("p.card-text", e.description || ""),
    h("ul.tags", featureTags(e.fields || [], e.capabilities)),
    h("div.card-foot", h("span.price", { class: e.price?.published ? "" : "unpublished" }, priceText(e.price)), h("span.card-go", "Open →")));
  const words = (e) => FEATURES.filter(([, fields]) => fields.some((n) => (e.fields || []).includes(n))).map(([label]) => label);
  const list = catalogue(endpoints, card, words);
  clear(main).append(
    h("section.hero",
      h("h1", "Playground"),
      h("p.lead", `Try the ${endpoints.length} Kling video endpoints this server runs (${kinds.join(", ")})`,
        names.length ? `, engine: ${names.join(", ")}. ` : ". ",
        "Same API as fal.ai: point fal-client, @fal-ai/client or curl here.")),
    list.element,
    history.element);
  window.addEventListener("stillreel:key", () => history.load());
  history.load();
}

// --- /models/{id} ---------------------------------------------------------------------------

async function endpointPage(endpointId) {
  const [endpoints, doc] = await Promise.all([
    loadEndpoints(),
    api(`/api/openapi/queue/openapi.json?endpoint_id=${encodeURIComponent(endpointId)}`).then((r) => r.data),
  ]);
  const endpoint = endpoints.find((e) => e.id === endpointId);
  if (!endpoint) throw new Error(`This server has no endpoint ${endpointId}.`);
  const engine = getConfig().engines?.[endpointId];
  const capabilities = endpoint.capabilities || engine?.capabilities || {};
  document.title = `${endpoint.title || endpointId} · stillreel`;

  let code = null;
  let codeTimer = null;
  const form = new EndpointForm({ doc, endpointId, capabilities, limits: endpoint.limits || {}, onChange: () => {
    clearTimeout(codeTimer);
    codeTimer = setTimeout(() => code?.render(), 150);
  } });
  code = new CodePanel({ endpointId, getInput: () => form.preview(), auth: getConfig().auth, getKey });

  const runButton = h("button.primary.run-button", { type: "submit", form: "endpoint-form" }, "Run");
  const resetButton = h("button.ghost", { type: "button", onclick: () => location.reload() }, "Reset");
  const panel = new RunPanel({ onError: (detail) => form.showErrors(detail), onFinished: () => history.load(),
    onStarted: (requestId) => { history_replace(requestId); history.load(); } });
  const reuse = h("button.ghost.small", { type: "button", hidden: true }, "Reuse these inputs");
  const history = new History({ currentEndpoint: endpointId, onOpen: (item) => open(item.request_id, item.input) });
  form.element.id = "endpoint-form";

  function open(requestId, input) {
    reuse.hidden = !input;
    reuse.onclick = () => { form.set(input); reuse.hidden = true; };
    panel.track(endpointId, requestId);
    if (matchMedia("(max-width: 900px)").matches) panel.element.scrollIntoView({ block: "start" });
  }

  form.element.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.clearErrors();
    const problems = form.localErrors();
    if (problems.length) {
      form.showErrors(problems);
      return;
    }
    runButton.disabled = true;
    runButton.textContent = "Uploading…";
    reuse.hidden = true;
    try {
      const input = await form.collect();
      runButton.textContent = "Running…";
      if (matchMedia("(max-width: 900px)").matches) panel.element.scrollIntoView({ behavior: "smooth", block: "start" });
      await panel.run(endpointId, input);
    } catch (error) {
      panel.fail(error);
    } finally {
      runButton.disabled = false;
      runButton.textContent = "Run";
    }
  });

  const tabs = ["playground", "api"];
  const tabButtons = tabs.map((t) => h("button.tab", { type: "button", role: "tab", dataset: { tab: t }, onclick: () => { location.hash = t === "api" ? "api" : ""; show(t); } },
    t === "api" ? "API" : "Playground"));
  const playground = h("div.layout", { dataset: { panel: "playground" } },
    h("section.panel.input-panel", { "aria-label": "Input" },
      h("div.panel-head", h("h2.h3", "Input"), h("span.muted.small", h("span.required", "*"), " required")),
      form.element,
      h("div.form-actions", resetButton, runButton)),
    h("div.output-column",
      h("section.panel.output-panel", h("div.panel-head", h("h2.h3", "Result"), reuse), panel.element),
      h("div.panel", history.element)));
  const apiTab = h("div.panel.api-panel", { dataset: { panel: "api" }, hidden: true }, code.element);
  const copyId = h("button.icon", { type: "button", title: "Copy the endpoint id", "aria-label": "Copy the endpoint id",
    onclick: async () => { await copyText(endpointId); copyId.textContent = "Copied"; setTimeout(() => { copyId.textContent = "Copy"; }, 1200); } }, "Copy");

  function show(tab) {
    for (const b of tabButtons) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    playground.hidden = tab !== "playground";
    apiTab.hidden = tab !== "api";
    if (tab === "api") code.render();
  }

  clear(main).append(
    h("section.page-head",
      h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("a", { href: "/" }, "Endpoints"), h("span", "/"), h("span", shortName(endpointId))),
      h("h1", endpoint.title || endpointId),
      h("div.head-meta",
        h("span.endpoint-id", h("code", endpointId), copyId),
        h("span.badge", endpoint.category || "image-to-video"),
        endpoint.price?.text ? h("span.price", { title: "What fal.ai charges; this server bills nothing" }, priceText(endpoint.price)) : null,
        engine?.name ? h("span.muted.small", `engine: ${engine.name}`) : null),
      endpoint.description ? h("p.lead", endpoint.description) : null,
      h("ul.tags", featureTags(Object.keys(form.schema.properties || {}), capabilities))),
    h("div.tabs", { role: "tablist" }, tabButtons),
    playground,
    apiTab);
  show(location.hash === "#api" ? "api" : "playground");
  window.addEventListener("hashchange", () => show(location.hash === "#api" ? "api" : "playground"));
  window.addEventListener("stillreel:key", () => { history.load(); code.render(); });
  history.load();
  const requested = new URLSearchParams(location.search).get("request");
  if (requested) open(requested, null);
}

function history_replace(requestId) {
  const url = new URL(location.href);
  url.searchParams.set("request", requestId);
  window.history.replaceState(null, "", url);
}

start();
