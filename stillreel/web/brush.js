// The motion-brush editor: paint a static area and up to six moving areas over the input image, and
// draw where each moving area goes. Exports what Kling's v1 endpoints take:
//   static_mask_url            a PNG at the input image's pixel size, white = keep still
//   dynamic_masks[i].mask_url  the same for each moving area
//   dynamic_masks[i].trajectories  [{x, y}] in input-image pixels, origin BOTTOM-left, 2..77 points

import { uploadBlob } from "./api.js";
import { h, clear } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#ff5d73", "#ffb020", "#36d399", "#3abff8", "#c084fc", "#f472b6"];
const STATIC_COLOR = "#8e9bb0";
export const MAX_POINTS = 77;

/** Resample a drawn path (top-left pixels) evenly along its length to 2..77 points. */
export function resamplePath(points, spacing) {
  if (points.length < 2) return points.slice();
  const cumulative = [0];
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    cumulative.push(cumulative[i - 1] + Math.hypot(x1 - x0, y1 - y0));
  }
  const length = cumulative[cumulative.length - 1];
  if (length === 0) return [points[0], points[points.length - 1]];
  const n = Math.min(MAX_POINTS, Math.max(2, Math.round(length / spacing) + 1));
  const out = [];
  let j = 0;
  for (let k = 0; k < n; k++) {
    const target = (length * k) / (n - 1);
    while (j < cumulative.length - 2 && cumulative[j + 1] < target) j++;
    const span = cumulative[j + 1] - cumulative[j] || 1;
    const t = Math.min(1, Math.max(0, (target - cumulative[j]) / span));
    out.push([points[j][0] + t * (points[j + 1][0] - points[j][0]), points[j][1] + t * (points[j + 1][1] - points[j][1])]);
  }
  return out;
}

/** Top-left image pixels → Kling's trajectory points (integers, origin bottom-left). */
export function toKling(points, width, height) {
  const clamp = (v, hi) => Math.min(hi, Math.max(0, Math.round(v)));
  return points.map(([x, y]) => ({ x: clamp(x, width), y: clamp(height - y, height) }));
}

export class MotionBrush {
  constructor({ maxMasks = 6, capable = true, onChange = () => {} }) {
    this.maxMasks = maxMasks;
    this.onChange = onChange;
    this.size = null; // {width, height} of the input image
    this.layers = [];
    this.active = 0;
    this.tool = "paint";
    this.brushPx = 28; // on screen
    this.stroke = null;

    this.image = h("img.brush-image", { alt: "", draggable: false });
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.classList.add("brush-paths");
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.innerHTML = `<defs>${COLORS.map((c, i) => `<marker id="arrow-${i}" viewBox="0 0 10 10" refX="6" refY="5" markerWidth="5" markerHeight="5" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="${c}"/></marker>`).join("")}</defs>`;
    this.cursor = h("div.brush-cursor", { hidden: true });
    this.canvases = h("div.brush-canvases");
    this.stage = h("div.brush-stage", { hidden: true }, this.image, this.canvases, this.svg, this.cursor);
    this.empty = h("p.brush-empty.muted", "Choose an image above first; you paint over it here.");
    this.chips = h("div.brush-chips", { role: "tablist", "aria-label": "Brush layers" });
    this.toolButtons = Object.fromEntries(["paint", "erase", "path"].map((t) => [t,
      h("button.seg", { type: "button", dataset: { tool: t }, "aria-pressed": String(t === this.tool), onclick: () => this.setTool(t) },
        { paint: "Paint", erase: "Erase", path: "Path" }[t])]));
    this.sizeInput = h("input.slider.brush-size", { type: "range", min: 4, max: 120, value: this.brushPx, "aria-label": "Brush size",
      oninput: () => { this.brushPx = Number(this.sizeInput.value); } });
    this.status = h("ul.brush-status");
    this.hint = h("p.brush-hint.muted.small");
    this.element = h("div.brush",
      capable ? null : h("p.notice", "This server's engine does not honour the motion brush; a request using it is refused."),
      this.empty,
      h("div.brush-toolbar", this.chips,
        h("div.row.brush-tools", h("div.segmented", Object.values(this.toolButtons)),
          h("label.brush-size-label", h("span.small.muted", "Size"), this.sizeInput),
          h("button.ghost.small", { type: "button", onclick: () => this.clearLayer() }, "Clear layer"))),
      this.stage, this.hint, this.status);

    for (const type of ["pointerdown", "pointermove", "pointerup", "pointercancel", "pointerleave"]) {
      this.svg.addEventListener(type, (e) => this.onPointer(e));
    }
    this.addLayer("static");
    this.addLayer("dynamic");
    this.select(1);
  }

  // --- layers -------------------------------------------------------------------------------

  addLayer(kind) {
    const index = this.layers.filter((l) => l.kind === "dynamic").length;
    if (kind === "dynamic" && index >= this.maxMasks) return;
    const color = kind === "static" ? STATIC_COLOR : COLORS[index];
    const canvas = h("canvas.brush-layer");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("stroke", color);
    line.setAttribute("fill", "none");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    if (kind === "dynamic") line.setAttribute("marker-end", `url(#arrow-${index})`);
    this.svg.append(line);
    this.canvases.append(canvas);
    const layer = { kind, color, canvas, line, path: [], painted: false, version: 0, uploaded: null };
    this.layers.push(layer);
    if (this.size) this.sizeLayer(layer);
    this.render();
    return layer;
  }

  removeLayer(i) {
    const layer = this.layers[i];
    if (!layer || layer.kind === "static") return;
    layer.canvas.remove();
    layer.line.remove();
    this.layers.splice(i, 1);
    // Keep colours in order so "area 2" is always the second colour.
    this.layers.filter((l) => l.kind === "dynamic").forEach((l, k) => {
      l.color = COLORS[k];
      l.line.setAttribute("stroke", l.color);
      l.line.setAttribute("marker-end", `url(#arrow-${k})`);
      this.recolor(l);
    });
    this.select(Math.min(i, this.layers.length - 1));
    this.changed();
  }

  select(i) {
    this.active = i;
    if (this.layers[i].kind === "static" && this.tool === "path") this.setTool("paint");
    this.render();
  }

  setTool(tool) {
    if (tool === "path" && this.layers[this.active].kind === "static") return;
    this.tool = tool;
    for (const [t, b] of Object.entries(this.toolButtons)) b.setAttribute("aria-pressed", String(t === tool));
    this.stage.dataset.tool = tool;
    this.render();
  }

  clearLayer() {
    const layer = this.layers[this.active];
    if (this.size) layer.canvas.getContext("2d").clearRect(0, 0, this.size.width, this.size.height);
    layer.path = [];
    layer.painted = false;
    this.touch(layer);
  }

  label(layer) {
    return layer.kind === "static" ? "Static area" : `Moving area ${this.layers.filter((l) => l.kind === "dynamic").indexOf(layer) + 1}`;
  }

  // --- the image ------------------------------------------------------------------------------

  /** Called by the form when the start image changes; masks survive only if the size is the same. */
  setImage(info) {
    this.empty.hidden = Boolean(info);
    this.stage.hidden = !info;
    if (!info) return;
    this.image.src = info.src;
    const same = this.size && this.size.width === info.width && this.size.height === info.height;
    this.size = { width: info.width, height: info.height };
    this.stage.style.aspectRatio = `${info.width} / ${info.height}`;
    this.svg.setAttribute("viewBox", `0 0 ${info.width} ${info.height}`);
    if (!same) for (const layer of this.layers) this.sizeLayer(layer);
    this.render();
  }

  sizeLayer(layer) {
    layer.canvas.width = this.size.width;
    layer.canvas.height = this.size.height;
    layer.path = [];
    layer.painted = false;
    this.touch(layer, false);
  }

  // --- drawing --------------------------------------------------------------------------------

  toImage(event) {
    const rect = this.svg.getBoundingClientRect();
    const scale = this.size.width / rect.width;
    return { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale, scale, rect };
  }

  onPointer(event) {
    if (!this.size) return;
    const p = this.toImage(event);
    if (event.type === "pointermove" || event.type === "pointerdown") this.moveCursor(event, p);
    if (event.type === "pointerleave") this.cursor.hidden = true;
    const layer = this.layers[this.active];
    if (event.type === "pointerdown") {
      event.preventDefault();
      this.svg.setPointerCapture?.(event.pointerId);
      this.stroke = { last: p, points: [[p.x, p.y]] };
      if (this.tool === "path") layer.path = [];
      this.draw(layer, p, p);
    } else if (event.type === "pointermove" && this.stroke) {
      this.draw(layer, this.stroke.last, p);
      this.stroke.last = p;
      this.stroke.points.push([p.x, p.y]);
    } else if ((event.type === "pointerup" || event.type === "pointercancel") && this.stroke) {
      if (this.tool === "path") {
        const points = this.stroke.points;
        const spacing = Math.max(4, Math.hypot(this.size.width, this.size.height) / 150);
        layer.path = points.length >= 2 ? resamplePath(points, spacing) : [];
      }
      this.stroke = null;
      this.touch(layer);
    }
  }

  draw(layer, from, to) {
    if (this.tool === "path") {
      this.stroke.points.length && this.drawLine(layer, [...this.stroke.points, [to.x, to.y]]);
      return;
    }
    const ctx = layer.canvas.getContext("2d");
    ctx.save();
    ctx.globalCompositeOperation = this.tool === "erase" ? "destination-out" : "source-over";
    ctx.strokeStyle = ctx.fillStyle = layer.color;
    ctx.lineWidth = this.brushPx * to.scale;
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x + 0.01, to.y);
    ctx.stroke();
    ctx.restore();
    if (this.tool === "paint") layer.painted = true;
  }

  drawLine(layer, points) {
    layer.line.setAttribute("points", points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
  }

  moveCursor(event, p) {
    const size = this.tool === "path" ? 10 : this.brushPx;
    this.cursor.hidden = false;
    Object.assign(this.cursor.style, { width: `${size}px`, height: `${size}px`,
      left: `${event.clientX - p.rect.left - size / 2}px`, top: `${event.clientY - p.rect.top - size / 2}px` });
  }

  recolor(layer) {
    if (!this.size) return;
    const ctx = layer.canvas.getContext("2d");
    ctx.save();
    ctx.globalCompositeOperation = "source-in";
    ctx.fillStyle = layer.color;
    ctx.fillRect(0, 0, this.size.width, this.size.height);
    ctx.restore();
  }

  touch(layer, notify = true) {
    layer.version++;
    layer.uploaded = null;
    if (layer.painted && this.size) layer.painted = hasPaint(layer.canvas);
    this.drawLine(layer, layer.path);
    this.render();
    if (notify) this.changed();
  }

  changed() {
    this.onChange();
  }

  // --- UI state -------------------------------------------------------------------------------

  render() {
    clear(this.chips);
    this.layers.forEach((layer, i) => {
      const ready = layer.kind === "static" ? layer.painted : layer.painted && layer.path.length >= 2;
      this.chips.append(h("button.chip", { type: "button", role: "tab", "aria-selected": String(i === this.active),
        dataset: { layer: layer.kind === "static" ? "static" : String(i) }, style: { "--chip": layer.color }, onclick: () => this.select(i) },
        h("span.swatch"), layer.kind === "static" ? "Static" : `Area ${i}`, ready ? h("span.tick", { "aria-label": "ready" }, "✓") : null));
    });
    const dynamicCount = this.layers.length - 1;
    this.chips.append(h("button.chip.add", { type: "button", disabled: dynamicCount >= this.maxMasks,
      title: `Up to ${this.maxMasks} moving areas`, onclick: () => { this.addLayer("dynamic"); this.select(this.layers.length - 1); } }, "+ Moving area"));
    const layer = this.layers[this.active];
    this.toolButtons.path.disabled = layer.kind === "static";
    this.stage.dataset.tool = this.tool;
    this.canvases.querySelectorAll("canvas").forEach((c) => c.classList.toggle("dim", c !== layer.canvas));
    this.hint.textContent = layer.kind === "static"
      ? "Static area: paint what must stay perfectly still."
      : this.tool === "path"
        ? `${this.label(layer)}: drag from the area to where it should go (${MAX_POINTS} points at most).`
        : `${this.label(layer)}: paint what moves, then pick Path and drag where it goes.`;
    clear(this.status);
    for (const l of this.layers) {
      if (!l.painted && !l.path.length) continue;
      const parts = [l.painted ? "painted" : "not painted"];
      if (l.kind === "dynamic") parts.push(l.path.length ? `path of ${l.path.length} points` : "no path yet");
      this.status.append(h("li", { style: { "--chip": l.color } }, h("span.swatch"), `${this.label(l)}: ${parts.join(", ")}`));
    }
    if (dynamicCount > 1 && layer.kind === "dynamic") {
      this.status.append(h("li", h("button.ghost.small", { type: "button", onclick: () => this.removeLayer(this.active) }, `Remove ${this.label(layer)}`)));
    }
  }

  // --- export ---------------------------------------------------------------------------------

  used() {
    return this.layers.filter((l) => (l.kind === "static" ? l.painted : l.painted || l.path.length));
  }

  problems() {
    const out = [];
    for (const l of this.used()) {
      if (l.kind !== "dynamic") continue;
      if (!l.painted) out.push(`${this.label(l)} has a path but no painted area.`);
      else if (l.path.length < 2) out.push(`${this.label(l)} has no path: pick Path and drag where it should move.`);
    }
    return out;
  }

  /** Kling's trajectories for each usable moving area. */
  trajectories(layer) {
    return toKling(layer.path, this.size.width, this.size.height);
  }

  /** What the API tab shows before the masks are uploaded. */
  preview() {
    const out = {};
    const stat = this.layers[0];
    if (stat.painted) out.static_mask_url = stat.uploaded || "<static mask PNG, uploaded on Run>";
    const dynamic = this.used().filter((l) => l.kind === "dynamic" && l.painted && l.path.length >= 2);
    if (dynamic.length) {
      out.dynamic_masks = dynamic.map((l) => ({ mask_url: l.uploaded || `<${this.label(l).toLowerCase()} mask PNG, uploaded on Run>`, trajectories: this.trajectories(l) }));
    }
    return out;
  }

  /** Upload the mask PNGs (once per change) and return the fields to send. */
  async export() {
    const out = {};
    const upload = async (layer, name) => {
      if (!layer.uploaded) {
        const version = layer.version;
        const url = await uploadBlob(await maskPng(layer.canvas), name);
        if (layer.version === version) layer.uploaded = url;
        return url;
      }
      return layer.uploaded;
    };
    const stat = this.layers[0];
    if (stat.painted) out.static_mask_url = await upload(stat, "static_mask.png");
    const dynamic = this.used().filter((l) => l.kind === "dynamic" && l.painted && l.path.length >= 2);
    if (dynamic.length) {
      out.dynamic_masks = [];
      for (const [i, l] of dynamic.entries()) {
        out.dynamic_masks.push({ mask_url: await upload(l, `dynamic_mask_${i + 1}.png`), trajectories: this.trajectories(l) });
      }
    }
    return out;
  }
}

function hasPaint(canvas) {
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
  return false;
}

/** A layer as Kling's mask: same pixel size as the image, white where painted, black elsewhere. */
export function maskPng(canvas) {
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const ctx = out.getContext("2d");
  const src = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const img = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < src.data.length; i += 4) {
    const v = src.data[i + 3] >= 128 ? 255 : 0;
    img.data[i] = img.data[i + 1] = img.data[i + 2] = v;
    img.data[i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error("could not encode the mask"))), "image/png"));
}
