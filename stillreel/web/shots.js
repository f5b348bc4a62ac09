// The multi_prompt editor: a list of shots (prompt + duration each); their total must equal the
// clip's duration, which the editor checks as you type.

import { h, clear } from "./dom.js";

export class ShotsEditor {
  /**
   * @param {object} o
   * @param {object} o.itemSchema   the schema of one shot ({prompt, duration})
   * @param {() => number|null} o.getDuration   the clip's duration in seconds
   * @param {(s: number) => void} o.setDuration
   * @param {Array<string|number>} o.durationChoices  the clip durations the endpoint allows
   */
  constructor({ itemSchema, getDuration, setDuration, durationChoices = [], onChange = () => {}, capable = true, max = Infinity }) {
    this.max = max; // fal's storyboard: 1-6 shots
    this.durationChoices = durationChoices.map(Number);
    const duration = itemSchema?.properties?.duration || {};
    this.choices = (duration.enum || Array.from({ length: 15 }, (_, i) => String(i + 1))).map(String);
    this.defaultSeconds = String(duration.default ?? "5");
    this.getDuration = getDuration;
    this.setDuration = setDuration;
    this.onChange = onChange;
    this.onToggle = () => {};
    this.enabled = false;
    this.rows = [];

    this.toggle = h("input.toggle", { type: "checkbox", role: "switch", id: "shots-toggle", onchange: () => this.enable(this.toggle.checked) });
    this.list = h("ol.shots");
    this.total = h("p.shots-total", { "aria-live": "polite" });
    this.addButton = h("button.ghost.small", { type: "button", onclick: () => this.add() }, "+ Add shot");
    this.body = h("div.shots-body", { hidden: true }, this.list, h("div.row.between", this.addButton, this.total));
    this.element = h("div.shots-editor",
      h("label.toggle-row", { for: "shots-toggle" }, this.toggle, h("span", "Several shots, one prompt each"),
        capable ? null : h("span.muted.small", " (this server's engine renders one shot)")),
      this.body);
  }

  enable(on) {
    this.enabled = on;
    this.toggle.checked = on;
    this.body.hidden = !on;
    if (on && !this.rows.length) {
      this.add();
      this.add();
    }
    this.onToggle(on);
    this.check();
    this.onChange();
  }

  add(shot = {}) {
    if (this.rows.length >= this.max) return;
    const prompt = h("textarea", { rows: 2, placeholder: `Shot ${this.rows.length + 1}: what happens`, "aria-label": "Shot prompt", oninput: () => this.onChange() });
    prompt.value = shot.prompt || "";
    const seconds = h("select", { "aria-label": "Shot duration", onchange: () => { this.check(); this.onChange(); } },
      this.choices.map((v) => h("option", { value: v }, `${v} s`)));
    seconds.value = this.choices.includes(String(shot.duration)) ? String(shot.duration) : this.defaultSeconds;
    const row = { prompt, seconds };
    row.element = h("li.shot", h("div.shot-main", prompt),
      h("div.shot-side", seconds, h("button.icon", { type: "button", title: "Remove this shot", "aria-label": "Remove this shot", onclick: () => this.remove(row) }, "✕")));
    this.rows.push(row);
    this.addButton.disabled = this.rows.length >= this.max;
    this.list.append(row.element);
    this.check();
    this.onChange();
  }

  remove(row) {
    this.rows = this.rows.filter((r) => r !== row);
    this.addButton.disabled = this.rows.length >= this.max;
    row.element.remove();
    this.renumber();
    this.check();
    this.onChange();
  }

  renumber() {
    this.rows.forEach((r, i) => { r.prompt.placeholder = `Shot ${i + 1}: what happens`; });
  }

  totalSeconds() {
    return this.rows.reduce((sum, r) => sum + Number(r.seconds.value), 0);
  }

  /** Why the shots cannot be sent as they are, or "" when they can. */
  problem() {
    if (!this.enabled) return "";
    if (!this.rows.length) return "Add at least one shot, or switch multi-shot off.";
    const empty = this.rows.findIndex((r) => !r.prompt.value.trim());
    if (empty >= 0) return `Shot ${empty + 1} has no prompt.`;
    const duration = this.getDuration();
    const total = this.totalSeconds();
    if (duration !== null && total !== duration) return `The shots add up to ${total} s but the video is ${duration} s long.`;
    return "";
  }

  check() {
    clear(this.total);
    if (!this.enabled) return;
    const duration = this.getDuration();
    const total = this.totalSeconds();
    const ok = duration === null || total === duration;
    this.total.classList.toggle("bad", !ok);
    this.total.append(`Total ${total} s`, duration === null ? "" : ` of ${duration} s`, ok ? " ✓" : "");
    if (!ok && this.setDuration && this.durationChoices.includes(total)) {
      this.total.append(" ", h("button.linkish", { type: "button", onclick: () => { this.setDuration(total); this.check(); this.onChange(); } }, `Make the video ${total} s`));
    }
  }

  value() {
    if (!this.enabled) return undefined;
    return this.rows.map((r) => ({ prompt: r.prompt.value, duration: r.seconds.value }));
  }

  set(shots) {
    clear(this.list);
    this.rows = [];
    this.addButton.disabled = false;
    if (Array.isArray(shots) && shots.length) {
      for (const shot of shots) this.add(shot);
      this.enable(true);
    } else {
      this.enable(false);
    }
  }
}
