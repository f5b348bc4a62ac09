// The input form, built from the endpoint's JSON schema (the one its OpenAPI document serves).
//
// prompts → text areas, enums → selects, numeric ranges → sliders, booleans → toggles,
// *_url images → ImageField, dynamic_masks + static_mask_url → the motion brush,
// multi_prompt → the shots editor, elements → the elements editor, *_image_urls / image_urls →
// image lists, voice_ids → the voices editor (list sizes from /api/endpoints' `limits`). Defaults are filled in, required fields marked, and the
// server's 422 `detail[].loc` puts each message next to its field.

import { h } from "./dom.js";
import { ImageField } from "./imagefield.js";
import { MotionBrush } from "./brush.js";
import { ShotsEditor } from "./shots.js";
import { ImageList } from "./imagelist.js";
import { ElementsEditor } from "./elements.js";
import { VoicesEditor } from "./voices.js";

const BRUSH_FIELDS = ["static_mask_url", "dynamic_masks"];
const WORDS = { url: "", urls: "URLs", cfg: "CFG", id: "ID", ids: "IDs" };

/** Follow $ref / single allOf / anyOf-with-null down to a plain schema. */
export function deref(schema, components, depth = 0) {
  if (!schema || depth > 20) return schema || {};
  if (schema.$ref) {
    const { $ref, ...rest } = schema;
    return { ...deref(components[$ref.split("/").pop()], components, depth + 1), ...rest };
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) {
    const { allOf, ...rest } = schema;
    return { ...deref(allOf[0], components, depth + 1), ...rest };
  }
  if (Array.isArray(schema.anyOf)) {
    const options = schema.anyOf.filter((s) => s.type !== "null");
    if (options.length === 1) {
      const { anyOf, ...rest } = schema;
      return { ...deref(options[0], components, depth + 1), ...rest, nullable: true };
    }
  }
  return schema;
}

/** The endpoint's input schema in an OpenAPI document, as stillreel and fal publish it. */
export function inputSchema(doc, endpointId) {
  const components = doc?.components?.schemas || {};
  const post = doc?.paths?.[`/${endpointId}`]?.post;
  const ref = post?.requestBody?.content?.["application/json"]?.schema;
  let schema = ref ? deref(ref, components) : null;
  if (!schema?.properties) {
    const name = Object.keys(components).find((n) => n.endsWith("Input"));
    schema = name ? deref(components[name], components) : { properties: {} };
  }
  return { schema, components };
}

export function humanize(name) {
  const words = name.split("_").map((w) => (w in WORDS ? WORDS[w] : w)).filter(Boolean);
  const text = words.join(" ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function kindOf(name, s) {
  if (name === "multi_prompt") return "shots";
  if (s.type === "array" && name === "elements") return "elements";
  if (s.type === "array" && name === "voice_ids") return "voices";
  if (s.type === "array" && name.endsWith("_urls") && s.items?.type === "string") return "images";
  if (Array.isArray(s.enum)) return "enum";
  if (s.type === "boolean") return "boolean";
  if ((s.type === "number" || s.type === "integer") && s.minimum !== undefined && s.maximum !== undefined) return "range";
  if (s.type === "number" || s.type === "integer") return "number";
  if (s.type === "string" && name.endsWith("_url")) return "image";
  if (s.type === "string" && /prompt/.test(name)) return "text";
  if (s.type === "string") return "string";
  return "json";
}

export class EndpointForm {
  /**
   * @param {object} o
   * @param {object} o.doc          the endpoint's OpenAPI document
   * @param {string} o.endpointId
   * @param {object} o.capabilities what this server's engine honours (from /api/endpoints)
   * @param {() => void} o.onChange any input changed (the API tab re-renders its code)
   * @param {object} o.limits       list sizes fal enforces but does not publish in the schema
   */
  constructor({ doc, endpointId, capabilities = {}, limits = {}, onChange = () => {} }) {
    this.limits = limits;
    const { schema, components } = inputSchema(doc, endpointId);
    this.schema = schema;
    this.components = components;
    this.capabilities = capabilities;
    this.onChange = onChange;
    this.fields = new Map(); // name → {name, wrapper, error, value(), set(v)}
    this.brush = null;
    this.shots = null;
    const required = new Set(schema.required || []);
    const order = schema["x-fal-order-properties"] || Object.keys(schema.properties);
    const names = [...order, ...Object.keys(schema.properties).filter((n) => !order.includes(n))];

    const primary = h("div.fields");
    const extra = h("div.fields");
    this.general = h("div.form-error", { role: "alert", hidden: true });
    const hasBrush = BRUSH_FIELDS.every((n) => n in schema.properties);
    for (const name of names) {
      const s = deref(schema.properties[name], components);
      if (hasBrush && BRUSH_FIELDS.includes(name)) {
        if (!this.brush) primary.append(this.buildBrush());
        continue;
      }
      const field = this.buildField(name, s, required.has(name));
      this.fields.set(name, field);
      // Required fields, prompt, duration and shots up front; the rest under "Additional settings".
      const important = required.has(name) || ["prompt", "duration"].includes(name) ||
        ["shots", "elements", "images", "voices"].includes(field.kind);
      (important ? primary : extra).append(field.wrapper);
    }
    this.linkPromptAndShots();
    this.element = h("form.endpoint-form", { novalidate: true, autocomplete: "off", oninput: () => this.changed(), onchange: () => this.changed() },
      primary,
      extra.children.length ? h("details.section.more", h("summary", "Additional settings"), extra) : null,
      this.general);
  }

  buildField(name, s, required) {
    const kind = kindOf(name, s);
    const id = `field-${name}`;
    const error = h("p.field-error", { id: `${id}-error`, role: "alert" });
    // A list editor is a group of inputs: its label names the group instead of one control.
    const group = ["elements", "images", "voices"].includes(kind);
    const label = h(group ? "span.field-label" : "label.field-label", group ? { id: `${id}-label` } : { for: id },
      h("span", humanize(name)),
      required ? h("span.required", { title: "required" }, "*") : null,
      h("code.field-name", name));
    const help = s.description ? h("p.field-help", s.description) : null;
    const field = { name, kind, schema: s, error, required };
    let control;
    const dflt = s.default;

    if (kind === "enum") {
      const select = h("select", { id, name },
        s.nullable || (!required && dflt === undefined) ? h("option", { value: "" }, "— not set —") : null,
        s.enum.map((v) => h("option", { value: String(v) }, name.includes("duration") ? `${v} s` : String(v))));
      select.value = dflt === undefined || dflt === null ? "" : String(dflt);
      field.value = () => (select.value === "" ? undefined : s.enum.find((v) => String(v) === select.value));
      field.set = (v) => { select.value = v === undefined || v === null ? "" : String(v); };
      control = select;
    } else if (kind === "boolean") {
      const box = h("input.toggle", { id, name, type: "checkbox", role: "switch" });
      box.checked = Boolean(dflt);
      field.value = () => box.checked;
      field.set = (v) => { box.checked = Boolean(v); };
      control = h("div.toggle-row", box, h("span.muted.small", { "aria-hidden": "true" }, box.checked ? "on" : "off"));
      box.addEventListener("change", () => { control.lastChild.textContent = box.checked ? "on" : "off"; });
    } else if (kind === "range") {
      const step = s.type === "integer" ? 1 : (s.maximum - s.minimum) <= 2 ? 0.01 : (s.maximum - s.minimum) / 100;
      const start = dflt ?? s.minimum;
      const slider = h("input.slider", { id, type: "range", min: s.minimum, max: s.maximum, step, "aria-label": humanize(name) });
      const number = h("input.number", { name, type: "number", min: s.minimum, max: s.maximum, step: "any", "aria-label": `${humanize(name)} value` });
      slider.value = number.value = start;
      slider.addEventListener("input", () => { number.value = slider.value; });
      number.addEventListener("input", () => { slider.value = number.value; });
      // The number box is not clamped: an out-of-range value goes to the server, whose 422 says why.
      field.value = () => (number.value === "" ? undefined : s.type === "integer" ? parseInt(number.value, 10) : parseFloat(number.value));
      field.set = (v) => { number.value = slider.value = v ?? start; };
      control = h("div.range-row", slider, number, h("span.muted.small.range-bounds", `${s.minimum} – ${s.maximum}`));
    } else if (kind === "number") {
      const number = h("input.number", { id, name, type: "number", step: s.type === "integer" ? 1 : "any" });
      if (dflt !== undefined && dflt !== null) number.value = dflt;
      field.value = () => (number.value === "" ? undefined : Number(number.value));
      field.set = (v) => { number.value = v ?? ""; };
      control = number;
    } else if (kind === "image") {
      const image = new ImageField({ name, label: humanize(name), onChange: () => this.onChange(),
        onImage: name === this.startImageName() ? (info) => this.brush?.setImage(info) : null });
      image.urlInput.id = id;
      field.image = image;
      field.value = async () => (await image.value()) || undefined;
      field.set = (v) => image.setUrl(v || "");
      control = image.element;
    } else if (kind === "text" || kind === "string") {
      const multiline = kind === "text";
      const input = multiline
        ? h("textarea", { id, name, rows: name === "prompt" ? 4 : 2, spellcheck: true })
        : h("input", { id, name, type: "text" });
      if (typeof dflt === "string") input.value = dflt;
      if (s.examples?.[0] && multiline) input.placeholder = String(s.examples[0]);
      field.value = () => (input.value.trim() === "" ? undefined : input.value);
      field.set = (v) => { input.value = v ?? ""; };
      control = input;
    } else if (kind === "shots") {
      const itemSchema = deref(s.items, this.components);
      this.shots = new ShotsEditor({ itemSchema: { ...itemSchema, properties: Object.fromEntries(Object.entries(itemSchema.properties || {}).map(([k, v]) => [k, deref(v, this.components)])) },
        getDuration: () => this.durationSeconds(), setDuration: (v) => this.fields.get("duration")?.set(String(v)), onChange: () => this.onChange(),
        durationChoices: deref(this.schema.properties.duration, this.components)?.enum || [],
        capable: this.capabilities.multi_shot !== false, max: this.limits.multi_prompt?.max ?? Infinity });
      field.value = () => this.shots.value();
      field.set = (v) => this.shots.set(v);
      control = this.shots.element;
    } else if (kind === "elements") {
      const limit = this.limits.elements || {};
      const item = deref(s.items, this.components);
      const props = Object.fromEntries(Object.entries(item.properties || {}).map(([k, v]) => [k, deref(v, this.components)]));
      const editor = new ElementsEditor({ itemSchema: { ...item, properties: props }, max: limit.max, references: limit.reference_image_urls,
        humanize, onChange: () => this.onChange() });
      this.listEditor(field, editor);
      control = editor.element;
    } else if (kind === "images") {
      const limit = this.limits[name] || {};
      const editor = new ImageList({ name, itemLabel: name === "image_urls" ? "Reference image" : "Image",
        token: name === "image_urls" ? "@Image" : "", max: limit.max, start: required ? limit.min ?? 1 : 0, onChange: () => this.onChange() });
      this.listEditor(field, editor);
      field.showNested = (rest, msg) => Number.isInteger(rest[0]) && editor.showError(rest[0], msg);
      control = editor.element;
    } else if (kind === "voices") {
      const editor = new VoicesEditor({ max: this.limits.voice_ids?.max ?? 2, onChange: () => this.onChange() });
      this.listEditor(field, editor);
      control = editor.element;
    } else {
      const area = h("textarea.json", { id, name, rows: 3, spellcheck: false, placeholder: "JSON" });
      if (dflt !== undefined) area.value = JSON.stringify(dflt);
      field.value = () => {
        if (!area.value.trim()) return undefined;
        try { return JSON.parse(area.value); } catch { return area.value; }
      };
      field.set = (v) => { area.value = v === undefined ? "" : JSON.stringify(v); };
      control = area;
    }
    field.wrapper = h("div.field", { dataset: { field: name, kind } }, label, control, help, error);
    if (group) {
      control.setAttribute("role", "group");
      control.setAttribute("aria-labelledby", `${id}-label`);
      control.id = id;
    }
    return field;
  }

  /** A list editor as a form field: an empty list is left out of the input, as fal's clients do. */
  listEditor(field, editor) {
    field.editor = editor;
    field.value = async () => {
      const v = await editor.value();
      return v.length ? v : undefined;
    };
    field.preview = () => {
      const v = editor.preview();
      return v.length ? v : undefined;
    };
    field.set = (v) => editor.set(v);
    field.showNested = (rest, msg) => editor.showError(rest, msg);
    field.clearNested = () => editor.clearErrors();
  }

  changed() {
    this.shots?.check();
    this.onChange();
  }

  startImageName() {
    const props = this.schema.properties;
    return ["image_url", "start_image_url"].find((n) => n in props) || "";
  }

  buildBrush() {
    this.brush = new MotionBrush({ maxMasks: 6, capable: this.capabilities.motion_brush !== false, onChange: () => this.onChange() });
    const error = h("p.field-error", { role: "alert" });
    const wrapper = h("details.section.brush-section", { dataset: { field: "dynamic_masks" } },
      h("summary", "Motion brush ", h("span.muted.small", "static area · up to 6 moving areas with paths")),
      this.brush.element, error);
    for (const name of BRUSH_FIELDS) this.fields.set(name, { name, kind: "brush", wrapper, error, value: () => undefined, set: () => {} });
    return wrapper;
  }

  /** o3-style inputs take a prompt or multi_prompt, never both: multi-shot mode hides the prompt. */
  linkPromptAndShots() {
    const prompt = this.fields.get("prompt");
    if (!this.shots || !prompt) return;
    this.shots.onToggle = (on) => {
      prompt.wrapper.hidden = on;
    };
  }

  durationSeconds() {
    const field = this.fields.get("duration");
    const v = field ? field.value() : undefined;
    return v === undefined ? null : Number(v);
  }

  /** The input as JSON, without waiting for uploads (for the API tab). */
  preview() {
    const input = {};
    for (const [name, field] of this.fields) {
      if (field.kind === "brush") continue;
      if (field.kind === "image") {
        const url = field.image.currentValue();
        if (url) input[name] = url;
        else if (field.image.pending) input[name] = "<uploading…>";
        continue;
      }
      if (name === "prompt" && this.shots?.enabled) continue;
      const v = field.preview ? field.preview() : field.value();
      if (v !== undefined) input[name] = v;
    }
    if (this.brush) Object.assign(input, this.brush.preview());
    return input;
  }

  /** The input to submit: waits for image uploads, uploads the brush's mask PNGs. */
  async collect() {
    const input = {};
    for (const [name, field] of this.fields) {
      if (field.kind === "brush") continue;
      if (name === "prompt" && this.shots?.enabled) continue;
      const v = await field.value();
      if (v !== undefined) input[name] = v;
    }
    if (this.brush) Object.assign(input, await this.brush.export());
    return input;
  }

  /** Problems to fix before sending (the server validates everything else). */
  localErrors() {
    const problems = [];
    if (this.shots?.enabled) {
      const message = this.shots.problem();
      if (message) problems.push({ loc: ["body", "multi_prompt"], msg: message, type: "shot_durations" });
    }
    if (this.brush) problems.push(...this.brush.problems().map((msg) => ({ loc: ["body", "dynamic_masks"], msg, type: "motion_brush" })));
    return problems;
  }

  set(input) {
    for (const [name, value] of Object.entries(input || {})) {
      const field = this.fields.get(name);
      if (field && field.kind !== "brush") field.set(value);
    }
    if (this.shots) this.shots.set(input?.multi_prompt);
    this.onChange();
  }

  clearErrors() {
    for (const field of this.fields.values()) {
      field.error.textContent = "";
      field.wrapper.classList.remove("invalid");
      field.clearNested?.();
    }
    this.general.hidden = true;
    this.general.textContent = "";
  }

  /** Put each 422 `detail` item next to its field; the rest goes in a banner. Returns the count shown. */
  showErrors(detail) {
    this.clearErrors();
    const items = Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }];
    const loose = [];
    let first = null;
    for (const item of items) {
      const loc = (item.loc || []).filter((p) => p !== "body");
      const field = this.fields.get(String(loc[0]));
      if (!field) { loose.push(item.msg); continue; }
      // A list editor puts a message about one item (elements › 0 › reference_image_urls) on that item.
      if (loc.length > 1 && field.showNested?.(loc.slice(1), item.msg)) {
        field.wrapper.classList.add("invalid");
        first = first || field.wrapper;
        continue;
      }
      const where = loc.length > 1 ? `${loc.slice(1).join(" › ")}: ` : "";
      const text = `${where}${item.msg}`;
      field.error.textContent = field.error.textContent ? `${field.error.textContent} · ${text}` : text;
      field.wrapper.classList.add("invalid");
      if (field.wrapper.tagName === "DETAILS") field.wrapper.open = true;
      const more = field.wrapper.closest("details.more");
      if (more) more.open = true;
      first = first || field.wrapper;
    }
    if (loose.length) {
      this.general.hidden = false;
      this.general.textContent = loose.join(" · ");
    }
    (first || (loose.length ? this.general : null))?.scrollIntoView({ block: "center", behavior: "smooth" });
    return items.length;
  }
}
