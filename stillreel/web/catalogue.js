// The endpoint index: the Kling family grouped version → tier → kind, with a filter box.
//
// Grouping comes from the id itself (fal-ai/kling-video/<version>/<tier…>/<kind>), so a new id
// lands in the right place without a table here. The filter matches every typed word against the
// id, title, kind and feature tags ("o3 text" → the three O3 text-to-video ids) and is kept in ?q=
// so a filtered list can be linked.

import { h, clear } from "./dom.js";

const KINDS = ["image-to-video", "text-to-video", "reference-to-video", "elements"];

/** `fal-ai/kling-video/v3/turbo/standard/text-to-video` → {version: "v3", tier: "turbo/standard", kind}. */
export function parts(endpointId) {
  const [version, ...rest] = endpointId.split("/").slice(2);
  const kind = rest.pop() || "";
  return { version, tier: rest.join("/"), kind };
}

export function versionLabel(version) {
  if (!version.startsWith("v")) return `Kling ${version.toUpperCase()}`;
  const [number, extra] = version.slice(1).split("-");
  return `Kling ${number.includes(".") ? number : `${number}.0`}${extra ? ` ${extra[0].toUpperCase()}${extra.slice(1)}` : ""}`;
}

export function tierLabel(tier) {
  if (!tier) return "No tier";
  return tier.split("/").map((t) => (t === "4k" ? "4K" : t[0].toUpperCase() + t.slice(1))).join(" ");
}

/** Newest first: the numbered versions (v3 … v1), then the O series (o3, o1). */
function versionOrder(a, b) {
  const key = (v) => [v.startsWith("v") ? 0 : 1, -parseFloat(v.slice(1))];
  const [ka, kb] = [key(a), key(b)];
  return ka[0] - kb[0] || ka[1] - kb[1] || a.localeCompare(b);
}

/** version → tier → endpoints (tiers in the order the family declares them, kinds in KINDS order). */
export function group(endpoints) {
  const versions = new Map();
  for (const e of endpoints) {
    const { version, tier } = parts(e.id);
    if (!versions.has(version)) versions.set(version, new Map());
    const tiers = versions.get(version);
    if (!tiers.has(tier)) tiers.set(tier, []);
    tiers.get(tier).push(e);
  }
  for (const tiers of versions.values()) {
    for (const list of tiers.values()) list.sort((a, b) => KINDS.indexOf(parts(a.id).kind) - KINDS.indexOf(parts(b.id).kind));
  }
  return [...versions.keys()].sort(versionOrder).map((v) => [v, versions.get(v)]);
}

export function matches(haystack, query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const text = haystack.toLowerCase();
  return words.every((w) => text.includes(w));
}

/**
 * The grouped list with its filter.
 * @param {object[]} endpoints  /api/endpoints
 * @param {(e: object) => HTMLElement} card   one endpoint's card (an <a>)
 * @param {(e: object) => string[]} words     extra words to filter on (feature tags)
 */
export function catalogue(endpoints, card, words = () => []) {
  const input = h("input#endpoint-filter", { type: "search", placeholder: "Filter: o3 text, v2.6, brush…", autocomplete: "off",
    spellcheck: false, "aria-controls": "endpoint-groups", "aria-describedby": "filter-count", enterkeyhint: "search" });
  const count = h("p#filter-count.muted.small", { "aria-live": "polite" });
  const empty = h("p.muted.filter-empty", { hidden: true }, "No endpoint matches. ", h("button.linkish", { type: "button", onclick: () => apply("") }, "Show all"));
  const items = [];
  const blocks = []; // tiers, then versions: hidden whole when nothing in them matches
  const sections = group(endpoints).map(([version, tiers]) => {
    const headingId = `version-${version.replace(/\W/g, "-")}`;
    const tierBlocks = [...tiers].map(([tier, list]) => {
      const cards = list.map((e) => {
        const { kind } = parts(e.id);
        const li = h("li.entry", card(e));
        items.push({ li, text: [e.id, e.title, kind, kind.replace(/-/g, " "), versionLabel(version), tierLabel(tier), ...words(e)].join(" ") });
        return li;
      });
      const block = h("section.tier", { dataset: { tier: tier || "-" } },
        h("h3.tier-head", tierLabel(tier), h("span.muted.small", ` · ${list.length} ${list.length === 1 ? "endpoint" : "endpoints"}`)),
        h("ul.cards", cards));
      blocks.push(block);
      return block;
    });
    const section = h("section.version", { dataset: { version }, "aria-labelledby": headingId },
      h("h2.version-head", { id: headingId }, versionLabel(version), " ", h("code.muted.small", version)),
      tierBlocks);
    blocks.push(section);
    return section;
  });

  function apply(query) {
    input.value = query;
    let shown = 0;
    for (const item of items) {
      const hit = matches(item.text, query);
      item.li.hidden = !hit;
      shown += hit;
    }
    for (const block of blocks) block.hidden = !block.querySelector("li.entry:not([hidden])");
    count.textContent = query.trim() ? `${shown} of ${items.length} endpoints match` : `${items.length} endpoints`;
    empty.hidden = shown > 0;
    const url = new URL(location.href);
    if (query.trim()) url.searchParams.set("q", query.trim());
    else url.searchParams.delete("q");
    window.history.replaceState(null, "", url);
  }

  input.addEventListener("input", () => apply(input.value));
  input.addEventListener("keydown", (e) => { if (e.key === "Escape") apply(""); });
  // "/" jumps to the filter, as on many catalogues; not while typing elsewhere.
  window.addEventListener("keydown", (e) => {
    if (e.key === "/" && !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || "")) {
      e.preventDefault();
      input.focus();
    }
  });

  const element = h("div.catalogue",
    h("div.filter-bar", { role: "search" },
      h("label.filter-label", { for: "endpoint-filter" }, "Filter endpoints"),
      input, count),
    h("div#endpoint-groups", sections),
    empty);
  apply(new URLSearchParams(location.search).get("q") || "");
  return { element, apply };
}
