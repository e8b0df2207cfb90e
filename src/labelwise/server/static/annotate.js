/* Labelwise annotate page: one item at a time, keyboard first, answers saved in the background.
 *
 * Flow. The page shows `current` and keeps one prefetched assignment in `buffer`, so the next
 * item appears the instant an answer is given. Answers go into `outbox`, sent one at a time in
 * order (undo needs the server to have seen every earlier answer) and retried with backoff on
 * network or server errors with the same request_id, which makes retries idempotent on the
 * server. Nothing is dropped silently: a stale item (404/409) is reported in the status line.
 *
 * Every id the page holds (current, buffer, answers in flight) is sent as `exclude` to /next,
 * because the server hands an annotator's unexpired leases back first.
 *
 * A multi-label project (cfg.multi_label): an answer is a set. Label keys and buttons turn
 * labels on and off (aria-pressed), Enter submits the set as `labels`; with none on it answers
 * "none of these" (the empty set). The why-panel shows every label's probability in label
 * order, its threshold marked on the bar.
 *
 * CSP: no inline styles or handlers. User content is put in the page with textContent only.
 */
(function () {
  "use strict";

  const L = window.Labelwise;
  const page = L && L.page();
  if (!page) return;
  const cfg = page.data;
  const base = page.api;
  const $ = (id) => document.getElementById(id);
  const el = L.el;

  const keyToLabel = new Map(cfg.keys.map(([k, label]) => [String(k).toLowerCase(), label]));
  const labelButtons = new Map();
  document.querySelectorAll("#label-bar .btn-label").forEach((b) => labelButtons.set(b.dataset.value, b));
  const multi = !!cfg.multi_label;
  const labelOrder = Array.isArray(cfg.labels) ? cfg.labels.map(String) : [];

  const KIND_TEXT = {
    "strategy": "Model is unsure",
    "exploration": "Random check",
    "routine": "Routine check",
    "overlap": "Second opinion",
    "fallback": "Random pick",
    "cold-start": "Random pick · no model yet",
  };

  const state = {
    current: null, // {a, requestId, clock, undone}
    buffer: [],
    prefetching: null,
    loading: false,
    loadSeq: 0,
    done: false,
    undoing: false,
    outbox: [],
    sending: false,
    drainWaiters: [],
    lastVersion: undefined,
    answered: new Map(), // item id -> value, this page load (shown again after an undo)
    signedOut: false,
  };

  // ---------------------------------------------------------------- small utilities

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not (plain http on a LAN).
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** A set of labels for reading: "a, b", or "none of these" for the empty set. */
  function setText(labels) {
    return labels && labels.length ? labels.join(", ") : "none of these";
  }

  /** An answer as stored, for reading: a multi-label set ("a;b") as its labels. */
  function answerText(value) {
    if (!multi) return String(value);
    return setText(value ? String(value).split(";") : []);
  }

  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "";
    const s = t.charAt(0).toUpperCase() + t.slice(1);
    return /[.!?]$/.test(s) ? s : s + ".";
  }

  /** What an item is called on the page: its id in the data (the database's id without one). */
  function itemName(item) {
    const ext = item.external_id;
    return ext !== undefined && ext !== null && ext !== "" ? String(ext) : String(item.id);
  }

  function fmtInt(n) {
    return Number(n || 0).toLocaleString();
  }

  /** A field value for reading: fractions to 4 significant digits, never fewer than the
   * whole part has (the exact value stays in the tooltip). */
  function fmtValue(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v === "number") {
      if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
      const whole = Math.max(0, Math.floor(Math.log10(Math.abs(v))) + 1);
      return v.toLocaleString(undefined, { maximumSignificantDigits: Math.min(21, Math.max(4, whole)), useGrouping: false });
    }
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  /** Time an item was on screen, paused while the tab is hidden. */
  class Clock {
    constructor() { this.acc = 0; this.since = document.hidden ? null : performance.now(); }
    pause() { if (this.since !== null) { this.acc += performance.now() - this.since; this.since = null; } }
    resume() { if (this.since === null) this.since = performance.now(); }
    ms() { return Math.max(0, Math.round(this.acc + (this.since !== null ? performance.now() - this.since : 0))); }
  }

  // ---------------------------------------------------------------- status line (toast)

  const toast = $("toast");
  let toastTimer = null;

  function status(text, kind, ms) {
    clearTimeout(toastTimer);
    if (!text) { toast.hidden = true; return; }
    L.clear(toast);
    toast.appendChild(el("span", { class: "toast-dot", "aria-hidden": "true" }));
    toast.appendChild(el("span", { text: text }));
    toast.className = "toast toast-" + (kind || "info");
    toast.hidden = false;
    if (ms) toastTimer = setTimeout(() => { toast.hidden = true; }, ms);
  }

  function signedOut() {
    if (state.signedOut) return;
    state.signedOut = true;
    clearTimeout(toastTimer);
    L.clear(toast);
    const unsaved = state.outbox.length;
    toast.className = "toast toast-error";
    toast.appendChild(el("span", { class: "toast-dot", "aria-hidden": "true" }));
    toast.appendChild(el("span", {
      text: "Your session has ended" + (unsaved ? " (" + unsaved + " answer" + (unsaved > 1 ? "s" : "") + " not saved)" : "") + ". ",
    }));
    toast.appendChild(el("a", { href: "/login", text: "Sign in again" }));
    toast.hidden = false;
  }

  // ---------------------------------------------------------------- HTTP with retries

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function errorOf(res) {
    let message = res.status + " " + res.statusText;
    try { const body = await res.json(); if (body && body.error) message = body.error; } catch (e) { /* not JSON */ }
    return new HttpError(res.status, message);
  }

  const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

  /**
   * Call `send()` until it gives a response that is not a transient failure; `what` names the
   * work in the status line while retrying. Network errors and 5xx retry with capped
   * exponential backoff, for as long as it takes: an answer is never given up on silently.
   */
  async function withRetry(send, what) {
    for (let attempt = 0; ; attempt++) {
      let res = null;
      try {
        res = await send();
        if (!RETRYABLE.has(res.status)) {
          if (attempt > 0) status("Back online. Everything is saved.", "ok", 2500);
          return res;
        }
      } catch (e) {
        if (e && e.name === "AbortError") throw e;
      }
      const wait = Math.min(15000, 500 * 2 ** attempt) * (0.8 + 0.4 * Math.random());
      const waiting = state.outbox.length;
      status(
        (res ? "The server had a problem" : "Connection lost") + " while " + what + ". " +
        (waiting ? waiting + " answer" + (waiting > 1 ? "s" : "") + " kept safe here; " : "") +
        "retrying in " + Math.ceil(wait / 1000) + " s…",
        "warn",
      );
      await Promise.race([sleep(wait), onlineAgain()]);
    }
  }

  function onlineAgain() {
    return new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
  }

  function shownIds() {
    const ids = new Set();
    if (state.current) ids.add(state.current.a.item.id);
    state.buffer.forEach((a) => ids.add(a.item.id));
    return Array.from(ids).slice(0, 20);
  }

  function answeringIds() {
    return Array.from(new Set(state.outbox.map((e) => e.itemId))).slice(0, 20);
  }

  function heldIds() {
    return Array.from(new Set(shownIds().concat(answeringIds())));
  }

  async function requestNext() {
    // Items with answers on their way go apart: the server keeps their leases.
    const body = () => ({ exclude: shownIds(), answering: answeringIds() });
    const res = await withRetry(() => L.post(base + "/next", body()), "loading the next item");
    if (res.status === 204) return null;
    if (res.status === 401 || res.status === 403) { signedOut(); throw await errorOf(res); }
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  // ---------------------------------------------------------------- showing an item

  const root = $("annotate");
  const body = $("item-body");
  const card = $("item-card");

  function setView(view) {
    root.dataset.state = view; // loading | item | done
    card.setAttribute("aria-busy", view === "loading" ? "true" : "false");
    $("done-state").hidden = view !== "done";
    card.hidden = view === "done";
  }

  // Words that drive the prediction (see labelwise.explain): a linear model's exact weights,
  // or, for any other text model, how much leaving the word out changes its probability.
  const MARK_KEY = "labelwise.mark";

  function markWords() {
    try { return localStorage.getItem(MARK_KEY) !== "off"; } catch (e) { return true; }
  }

  function driverTitle(drivers, term, w) {
    if (drivers && drivers.method === "leave-one-word-out") {
      const what = drivers.kind === "decision" ? "score" : "probability";
      const change = drivers.kind === "decision" ? Number(w).toFixed(3) : (100 * Number(w)).toFixed(1) + " points";
      return "Leaving “" + term + "” out lowers the " + what + " of " + drivers.toward + " by " + change;
    }
    return "weight " + Number(w).toFixed(3);
  }

  function driverChips(container, drivers) {
    L.clear(container);
    const terms = drivers && Array.isArray(drivers.terms) ? drivers.terms : [];
    if (!terms.length) return false;
    const toward = String(drivers.toward);
    // A multi-label model's words are one label's: they lean toward it or away from it.
    const against = drivers.against !== null && drivers.against !== undefined
      ? "toward " + String(drivers.against)
      : multi ? "away from " + toward : "toward the other classes";
    const groups = [["toward " + toward, terms.filter(([, w]) => w > 0), "pos"], [against, terms.filter(([, w]) => w < 0), "neg"]];
    groups.forEach(([leaning, list, tone]) => {
      if (!list.length) return;
      container.appendChild(el("p", { class: "drivers-line" }, [
        el("span", { class: "muted small", text: leaning + ": " }),
        ...list.map(([term, w]) => el("span", { class: "chip chip-driver " + tone, title: driverTitle(drivers, term, w), text: term })),
      ]));
    });
    return true;
  }

  function textWithMarks(text, spans, drivers) {
    // Spans are [start, end, weight] in text order; everything goes in as text nodes.
    const frag = document.createDocumentFragment();
    let at = 0;
    const biggest = Math.max(...spans.map((s) => Math.abs(Number(s[2]) || 0)), 1e-9);
    spans.forEach(([start, end, w]) => {
      if (typeof start !== "number" || typeof end !== "number" || start < at || end > text.length) return;
      frag.appendChild(document.createTextNode(text.slice(at, start)));
      const strength = Math.min(1, Math.abs(Number(w) || 0) / biggest);
      const mark = el("mark", { class: "driver " + (w > 0 ? "pos" : "neg"), title: driverTitle(drivers, text.slice(start, end).toLowerCase(), w), text: text.slice(start, end) });
      mark.style.setProperty("--strength", String(0.25 + 0.75 * strength));
      frag.appendChild(mark);
      at = end;
    });
    frag.appendChild(document.createTextNode(text.slice(at)));
    return frag;
  }

  function heatOverlay(occ) {
    // One SVG rect per patch; opacity grows with how much covering it lowers the model's score.
    const rows = Array.isArray(occ.drop) ? occ.drop : [];
    const w = Number(occ.width) || 1, h = Number(occ.height) || 1, p = Number(occ.patch) || 1;
    const biggest = Math.max(...rows.flat().map((v) => Number(v) || 0), 1e-9);
    const rects = [];
    rows.forEach((row, i) => row.forEach((v, j) => {
      const strength = Math.max(0, Number(v) || 0) / biggest;
      if (strength < 0.15) return;
      rects.push(el("svg:rect", { class: "heat-cell", x: j * p, y: i * p, width: p, height: p, "fill-opacity": (0.6 * strength).toFixed(3) }));
    }));
    return el("svg:svg", { class: "heat-overlay", viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", "aria-hidden": "true" }, rects);
  }

  /** What the heat map shows, with a key of its shades, into `container`. */
  function heatLegend(container, occ) {
    L.clear(container);
    const what = (occ.kind === "proba" ? "probability" : "score") + " for " + occ.target;
    const drops = (Array.isArray(occ.drop) ? occ.drop : []).flat().map((v) => Number(v) || 0);
    if (!drops.some((v) => v > 0)) {
      container.appendChild(document.createTextNode("Covering any one patch of the image does not lower the model's " + what + "."));
      return;
    }
    const key = [0.25, 0.5, 0.75, 1].map((f, i) => el("svg:rect", { class: "heat-cell", x: 10 * i, y: 0, width: 10, height: 10, "fill-opacity": (0.6 * f).toFixed(3) }));
    container.appendChild(el("svg:svg", { class: "heat-key", viewBox: "0 0 40 10", "aria-hidden": "true" }, key));
    container.appendChild(document.createTextNode(
      "Shaded patches are where covering the image lowers the model's " + what + " most: the darker, the bigger the drop."));
  }

  function renderContent(item, drivers, occlusion) {
    L.clear(body);
    if (item.kind === "tabular" && item.fields && typeof item.fields === "object") {
      const rows = Object.keys(item.fields).map((k) => {
        const v = item.fields[k];
        return el("tr", null, [
          el("th", { scope: "row", text: k }),
          el("td", { class: typeof v === "number" ? "num" : null, title: typeof v === "number" ? String(v) : null, text: fmtValue(v) }),
        ]);
      });
      body.appendChild(el("table", { class: "fields" }, [el("tbody", null, rows)]));
    } else if (item.kind === "image" || item.image_url) {
      const img = el("img", { class: "item-image", src: item.image_url, alt: "Item " + itemName(item), decoding: "async" });
      img.addEventListener("load", () => {
        // Tiny images (digits, icons) are scaled up with hard pixels instead of blur.
        if (img.naturalWidth <= 128 && img.naturalHeight <= 128) img.classList.add("pixelated");
      });
      img.addEventListener("error", () => {
        L.clear(body);
        body.appendChild(el("p", { class: "alert alert-error", text: "The image of this item could not be loaded. Skip it with S." }));
      });
      const frame = el("div", { class: "image-holder" }, [img]);
      if (occlusion && markWords()) frame.appendChild(heatOverlay(occlusion));
      body.appendChild(el("div", { class: "image-frame" }, [frame]));
    } else {
      const text = item.text === undefined || item.text === null ? "" : String(item.text);
      const box = el("div", { class: "item-text" + (text.length > 600 ? " long" : ""), dir: "auto", text: text || "(empty text)" });
      const spans = drivers && Array.isArray(drivers.spans) ? drivers.spans : [];
      if (text && spans.length && markWords()) {
        L.clear(box);
        box.appendChild(textWithMarks(text, spans, drivers));
      }
      body.appendChild(box);
    }
    card.classList.remove("enter");
    void card.offsetWidth; // restart the entrance animation
    card.classList.add("enter");
  }

  function show(a, opts) {
    opts = opts || {};
    state.current = { a: a, requestId: uuid(), clock: new Clock(), undone: !!opts.undone, chosen: new Set() };
    state.done = false;
    setView("item");
    renderContent(a.item, a.why && a.why.drivers, a.why && a.why.occlusion);

    const reason = $("reason-chip");
    const kind = (a.why && a.why.kind) || "strategy";
    reason.textContent = opts.undone ? "Back after undo" : (KIND_TEXT[kind] || kind);
    reason.className = "chip chip-reason chip-" + (opts.undone ? "undo" : kind.replace(/[^a-z-]/g, ""));
    reason.title = sentence(a.why && a.why.summary);
    reason.hidden = false;

    const ref = $("item-ref");
    ref.textContent = "#" + itemName(a.item);
    ref.title = "Item " + itemName(a.item); // one identifier: the chip and its tooltip agree

    labelButtons.forEach((b) => b.classList.remove("is-guess", "is-previous"));
    const guessChip = $("guess-chip");
    guessChip.hidden = true;
    if (cfg.show_guess === "before" && a.guess && multi && Array.isArray(a.guess.labels)) {
      guessChip.textContent = "Model guess: " + setText(a.guess.labels);
      guessChip.hidden = false;
      a.guess.labels.forEach((label) => { const b = labelButtons.get(label); if (b) b.classList.add("is-guess"); });
    } else if (cfg.show_guess === "before" && a.guess && a.guess.label !== undefined) {
      guessChip.textContent = "Model guess: " + a.guess.label +
        (typeof a.guess.confidence === "number" ? " · " + L.pct(a.guess.confidence) : "");
      guessChip.hidden = false;
      const b = labelButtons.get(a.guess.label);
      if (b) b.classList.add("is-guess");
    }
    if (opts.undone && state.answered.has(a.item.id)) {
      const prev = state.answered.get(a.item.id);
      const taken = multi ? (Array.isArray(a.previous_labels) ? a.previous_labels : []) : [prev];
      taken.forEach((label) => { const b = label && labelButtons.get(label); if (b) b.classList.add("is-previous"); });
      if (prev !== null && prev !== undefined && (multi || prev)) {
        status("Undone. Your earlier answer was “" + answerText(prev) + "”; answer again.", "info", 4000);
      }
    }
    renderChosen();
    renderGroup();
    noteModel(a.model_version_id);
    renderWhy();
  }

  // Near-duplicates offered with the item: one answer for all of them, once confirmed with G.
  // More than GROUP_CONFIRM of them take a second G, with the list of them open to look at.
  const GROUP_CONFIRM = 3;

  function groupIds(cur) {
    const d = cur && cur.a.why && Array.isArray(cur.a.why.duplicates) ? cur.a.why.duplicates : [];
    return d.map((x) => x.item_id).filter((id) => typeof id === "number");
  }

  function renderGroup() {
    const cur = state.current;
    const dups = cur && cur.a.why && Array.isArray(cur.a.why.duplicates) ? cur.a.why.duplicates : [];
    const bar = $("group-bar");
    bar.hidden = !dups.length;
    if (!dups.length) return;
    const on = !!cur.group;
    const armed = !on && !!cur.groupArmed;
    const n = dups.length;
    const items = n + " near-identical item" + (n === 1 ? "" : "s");
    $("group-text").textContent = on
      ? "Your answer also goes to " + items + " (G to undo this choice)"
      : armed
        ? "Give your answer to all " + items + " listed below? Press G again to confirm"
        : items + " still open: press G to give them your answer too";
    $("group-list").open = on || armed;
    bar.classList.toggle("is-armed", armed);
    $("btn-group").setAttribute("aria-pressed", on ? "true" : "false");
    $("btn-group").classList.toggle("is-on", on);
    const list = $("group-items");
    L.clear(list);
    dups.forEach((d) => {
      list.appendChild(el("li", null, [
        neighborPreview(d),
        el("span", { class: "neighbor-sim", text: " · " + L.pct(Math.max(0, Number(d.similarity) || 0)) + " similar" }),
      ]));
    });
  }

  function toggleGroup() {
    const cur = state.current;
    const n = groupIds(cur).length;
    if (!cur || !n) return;
    if (cur.group) {
      cur.group = false;
      cur.groupArmed = false;
    } else if (n > GROUP_CONFIRM && !cur.groupArmed) {
      cur.groupArmed = true; // a large group: look at them first, then confirm
    } else {
      cur.group = true;
      cur.groupArmed = false;
    }
    renderGroup();
  }

  // A multi-label answer: the labels turned on for the item on screen, submitted with Enter.

  function chosenLabels() {
    const cur = state.current;
    return cur ? labelOrder.filter((label) => cur.chosen.has(label)) : [];
  }

  function renderChosen() {
    if (!multi) return;
    const chosen = chosenLabels();
    labelButtons.forEach((b, label) => {
      const on = chosen.includes(label);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.classList.toggle("is-on", on);
    });
    const line = $("set-line");
    L.clear(line);
    if (chosen.length) {
      line.appendChild(document.createTextNode("Chosen: "));
      line.appendChild(el("strong", { text: setText(chosen) }));
      line.appendChild(document.createTextNode(" · "));
      line.appendChild(el("kbd", { text: "Enter" }));
      line.appendChild(document.createTextNode(" submits them."));
    } else {
      line.appendChild(document.createTextNode("Nothing chosen: "));
      line.appendChild(el("kbd", { text: "Enter" }));
      line.appendChild(document.createTextNode(" answers “none of these”."));
    }
    $("submit-text").textContent = chosen.length
      ? "Submit " + chosen.length + " label" + (chosen.length === 1 ? "" : "s")
      : "None of these";
  }

  function toggleLabel(label) {
    const cur = state.current;
    if (!cur || state.undoing || state.signedOut) return;
    if (cur.chosen.has(label)) cur.chosen.delete(label);
    else cur.chosen.add(label);
    renderChosen();
  }

  function clearChosen() {
    if (!state.current) return;
    state.current.chosen.clear();
    renderChosen();
  }

  function submitSet() {
    if (state.current) answer("label", chosenLabels());
  }

  function noteModel(versionId) {
    const note = $("model-note");
    if (versionId === null || versionId === undefined) return;
    if (state.lastVersion !== undefined && state.lastVersion !== versionId) {
      note.textContent = state.lastVersion === null ? "First model trained" : "Model retrained";
      note.title = "The worker trained a new model: the next items come from its ranking.";
      note.hidden = false;
      setTimeout(() => { note.hidden = true; }, 8000);
    }
    state.lastVersion = versionId;
  }

  // ---------------------------------------------------------------- the "why" panel

  const whyPanel = $("why-panel");
  const whyButton = $("btn-why");
  const WHY_KEY = "labelwise.why";

  function whyOpen() {
    const stored = window.localStorage ? localStorage.getItem(WHY_KEY) : null;
    if (stored === "open") return true;
    if (stored === "closed") return false;
    return window.matchMedia("(min-width: 1100px)").matches;
  }

  function setWhy(open, remember) {
    whyPanel.hidden = !open;
    whyButton.setAttribute("aria-expanded", open ? "true" : "false");
    whyButton.classList.toggle("is-on", open);
    root.classList.toggle("with-why", open);
    if (remember) { try { localStorage.setItem(WHY_KEY, open ? "open" : "closed"); } catch (e) { /* private mode */ } }
  }

  function splitRows(container, split, outputKind) {
    L.clear(container);
    if (!Array.isArray(split) || !split.length) return false;
    const decision = outputKind === "decision";
    const biggest = Math.max(...split.map(([, v]) => Math.abs(Number(v) || 0)), 1e-9);
    split.forEach(([label, value], i) => {
      const v = Number(value) || 0;
      container.appendChild(el("div", { class: "split-row" + (i === 0 ? " top" : "") }, [
        el("span", { class: "split-label", text: label, title: label }),
        L.bar(decision ? Math.abs(v) / biggest : v, decision && v < 0 ? "neg" : ""),
        el("span", { class: "split-value", text: decision ? (v >= 0 ? "+" : "") + v.toFixed(2) : L.pct(v) }),
      ]));
    });
    if (decision) container.appendChild(el("p", { class: "muted small", text: "Decision values (the model gives no probabilities)." }));
    return true;
  }

  /** A multi-label model's view: every label's probability in label order, its threshold marked
   * on the bar; the labels at or above their thresholds (the predicted set) stand out. */
  function setRows(container, split, thresholds) {
    L.clear(container);
    if (!Array.isArray(split) || !split.length) return false;
    const th = thresholds && typeof thresholds === "object" ? thresholds : {};
    split.forEach(([label, value]) => {
      const p = Number(value) || 0;
      const t = typeof th[label] === "number" ? th[label] : null;
      const on = t !== null && p >= t;
      const bar = L.bar(p, on ? "" : "below");
      if (t !== null) {
        const x = Math.min(98.8, Math.max(0, 100 * t - 0.6));
        bar.appendChild(el("svg:rect", { class: "minibar-threshold", x: x.toFixed(2), y: 0, width: 1.2, height: 8 }));
      }
      container.appendChild(el("div", {
        class: "split-row set-row" + (on ? " top" : ""),
        "data-label": label,
        title: label + ": " + L.pct(p, 1) + (t === null ? "" : " · threshold " + L.pct(t, 1)),
      }, [
        el("span", { class: "split-label", text: (on ? "\u2713 " : "") + label }),
        bar,
        el("span", { class: "split-value", text: L.pct(p) }),
      ]));
    });
    container.appendChild(el("p", { class: "muted small", text: "Each label's probability. The mark on a bar is that label's threshold: at or above it (✓) the model predicts the label." }));
    return true;
  }

  /** The model's view in a why section: a class split, or a multi-label model's per-label bars. */
  function viewRows(container, why) {
    return multi
      ? setRows(container, why.class_split, why.details && why.details.thresholds)
      : splitRows(container, why.class_split, why.output_kind);
  }

  function neighborPreview(n) {
    if (cfg.kind === "image") {
      return el("img", { class: "neighbor-thumb", src: base + "/items/" + n.item_id + "/image", alt: "labeled item " + n.item_id, loading: "lazy" });
    }
    const text = String(n.preview || "");
    if (cfg.kind === "tabular") {
      let pairs = Array.isArray(n.fields) ? n.fields : null;
      if (!pairs) {
        try { pairs = Object.entries(JSON.parse(text)); } catch (e) { /* cut off: not JSON */ }
      }
      if (pairs && pairs.length) return fieldTable(pairs, Number(n.fields_left_out) || 0);
    }
    return el("span", { class: "neighbor-text", dir: "auto", text: text });
  }

  /** A table row beside the item: its column names over its values, rounded for reading. */
  function fieldTable(pairs, more) {
    const num = (v) => typeof v === "number";
    return el("div", { class: "neighbor-fields" }, [
      el("table", null, [
        el("thead", null, [el("tr", null, pairs.map(([k]) => el("th", { scope: "col", title: k, text: k })))]),
        el("tbody", null, [el("tr", null, pairs.map(([, v]) => el("td", {
          class: num(v) ? "num" : null, title: num(v) ? String(v) : null, text: fmtValue(v),
        })))]),
      ]),
      more ? el("p", { class: "muted small", text: "and " + more + " more column" + (more === 1 ? "" : "s") }) : null,
    ]);
  }

  function renderWhy() {
    const cur = state.current;
    const why = (cur && cur.a.why) || {};
    $("why-summary").textContent = cur
      ? (cur.undone ? "You took this answer back; it is yours to answer again. " : "") + sentence(why.summary || "")
      : (state.done ? "Nothing to label right now." : "Loading the next item…");
    const meta = [];
    if (why.kind === "strategy" && why.strategy) meta.push("Picked by the " + why.strategy + " strategy");
    if (why.kind === "strategy" && typeof why.rank === "number") meta.push("position " + (why.rank + 1) + " in the model's queue");
    if (typeof why.utility === "number") meta.push("utility " + why.utility.toFixed(3));
    $("why-meta").textContent = meta.join(" · ");
    $("why-meta").hidden = !meta.length;

    $("why-split-box").hidden = !viewRows($("why-split"), why);

    $("why-drivers-box").hidden = !driverChips($("why-drivers"), why.drivers);
    $("why-mark").checked = markWords();
    const occ = why.occlusion;
    $("why-occlusion-box").hidden = !occ;
    if (occ) {
      heatLegend($("why-occlusion-text"), occ);
      $("why-heat").checked = markWords();
    }

    const votes = why.details && why.details.votes;
    const labelVotes = why.details && why.details.label_votes;
    const members = why.details && Number(why.details.members);
    const votesBox = $("why-votes");
    L.clear(votesBox);
    if (labelVotes && typeof labelVotes === "object" && members > 0) {
      // A committee of multi-label models: per label, how many members predict it.
      labelOrder.filter((label) => label in labelVotes).forEach((label) => {
        const n = Number(labelVotes[label]) || 0;
        votesBox.appendChild(el("div", { class: "split-row" }, [
          el("span", { class: "split-label", text: label, title: label }),
          L.bar(n / members),
          el("span", { class: "split-value", title: n + " of " + members + " members predict " + label, text: n + " of " + members }),
        ]));
      });
      $("why-votes-box").hidden = false;
    } else if (votes && typeof votes === "object" && Object.keys(votes).length) {
      const total = Object.values(votes).reduce((s, n) => s + (Number(n) || 0), 0) || 1;
      Object.entries(votes).sort((x, y) => y[1] - x[1]).forEach(([label, n]) => {
        votesBox.appendChild(el("div", { class: "split-row" }, [
          el("span", { class: "split-label", text: answerText(label), title: answerText(label) }),
          L.bar(n / total),
          el("span", { class: "split-value", text: n + " of " + total }),
        ]));
      });
      $("why-votes-box").hidden = false;
    } else {
      $("why-votes-box").hidden = true;
    }

    const list = $("why-neighbors");
    L.clear(list);
    const neighbors = Array.isArray(why.neighbors) ? why.neighbors : [];
    neighbors.forEach((n) => {
      const sim = typeof n.similarity === "number" ? n.similarity : null;
      list.appendChild(el("li", { class: "neighbor" }, [
        neighborPreview(n),
        el("span", { class: "neighbor-meta" }, [
          el("span", { class: "chip chip-label", text: answerText(n.label) }),
          sim === null ? null : el("span", { class: "neighbor-sim", title: "cosine similarity", text: L.pct(Math.max(0, sim)) + " similar" }),
        ]),
      ]));
    });
    $("why-neighbors-box").hidden = !neighbors.length;
    // The worker judges "far" against how close labeled items usually are to each other.
    $("why-neighbors-note").hidden = !neighbors.length || !why.far_from_labeled;
  }

  function renderLast(reveal, itemId) {
    const box = $("why-last-box");
    const split = reveal && reveal.why && reveal.why.class_split;
    if (!Array.isArray(split) || !split.length) { box.hidden = true; return; }
    $("why-last-summary").textContent = sentence(reveal.why.summary);
    viewRows($("why-last-split"), reveal.why);
    driverChips($("why-last-drivers"), reveal.why.drivers);
    // An image's heat map, over the image just answered (shown before the answer, it would
    // give the model's leaning away).
    const heat = $("why-last-heat");
    const occ = reveal.why.occlusion;
    L.clear(heat);
    heat.hidden = !(occ && cfg.kind === "image" && typeof itemId === "number");
    if (!heat.hidden) {
      const img = el("img", { class: "last-image", src: base + "/items/" + itemId + "/image", alt: "The item you just answered" });
      heat.appendChild(el("div", { class: "image-holder" }, [img, heatOverlay(occ)]));
      const legend = el("p", { class: "small heat-legend" });
      heatLegend(legend, occ);
      heat.appendChild(legend);
    }
    box.hidden = false;
  }

  // ---------------------------------------------------------------- answers

  const lastLine = $("last-answer");
  let lastTimer = null;

  function showLast(parts, tone) {
    clearTimeout(lastTimer);
    L.clear(lastLine);
    parts.forEach((p) => lastLine.appendChild(typeof p === "string" ? document.createTextNode(p) : p));
    lastLine.className = "last-answer " + (tone || "");
    lastLine.hidden = false;
    lastTimer = setTimeout(() => lastLine.classList.add("faded"), 5000);
  }

  function onSaved(entry, r) {
    if (entry.kind === "skip") {
      $("why-last-box").hidden = true;
      showLast(["Skipped ", el("span", { class: "muted", text: "· it goes back to the pool for others" })], "skip");
      return;
    }
    state.answered.set(entry.itemId, r.value);
    const mine = answerText(r.value);
    const parts = [el("span", { class: "muted", text: "You: " }), el("strong", { class: "last-value", text: mine })];
    let tone = "";
    const guess = r.reveal && r.reveal.guess;
    const guessed = !guess ? undefined : multi ? (Array.isArray(guess.labels) ? setText(guess.labels) : undefined) : guess.label;
    if (guessed !== undefined) {
      const conf = typeof guess.confidence === "number" ? " (" + L.pct(guess.confidence) + ")" : "";
      if (guessed === mine) {
        parts.push(el("span", { class: "muted", text: " · model agreed" + conf }));
        tone = "agree";
      } else {
        parts.push(el("span", { class: "muted", text: " · model guessed " }));
        parts.push(el("strong", { text: guessed }));
        parts.push(el("span", { class: "muted", text: conf }));
        tone = "disagree";
      }
    } else if (r.reveal) {
      parts.push(el("span", { class: "muted", text: " · no model guess for this item" }));
    }
    if (r.item_labels > 1) parts.push(el("span", { class: "muted", text: " · " + r.item_labels + " answers on this item" }));
    const grouped = Array.isArray(r.grouped) ? r.grouped.length : 0;
    const missed = Array.isArray(r.group_skipped) ? r.group_skipped.length : 0;
    if (grouped) parts.push(el("span", { class: "muted", text: " · also given to " + grouped + " near-identical item" + (grouped === 1 ? "" : "s") + (missed ? " (" + missed + " taken meanwhile)" : "") }));
    showLast(parts, tone);
    renderLast(r.reveal, entry.itemId);
  }

  function drained() {
    if (!state.outbox.length && !state.sending) return Promise.resolve();
    return new Promise((resolve) => state.drainWaiters.push(resolve));
  }

  async function pump() {
    if (state.sending || state.signedOut) return;
    state.sending = true;
    let slowTimer = null;
    while (state.outbox.length) {
      const entry = state.outbox[0];
      let slow = false;
      slowTimer = setTimeout(() => { slow = true; status("Saving…", "info"); }, 800);
      let res;
      try {
        res = await withRetry(() => L.post(entry.url, entry.body), "saving your answer");
      } finally {
        clearTimeout(slowTimer);
      }
      if (slow && toast.classList.contains("toast-info")) status(null);
      if (res.status === 401 || res.status === 403) {
        state.sending = false;
        signedOut();
        return;
      }
      if (res.ok) {
        onSaved(entry, await res.json().catch(() => ({})));
      } else if (res.status === 404 || res.status === 409) {
        const err = await errorOf(res);
        status("Not saved: " + err.message, "warn", 7000);
        showLast([el("span", { class: "muted", text: "Your last answer was not needed: the item was finished by someone else." })], "skip");
      } else {
        const err = await errorOf(res);
        status("Could not save an answer: " + err.message, "error", 10000);
      }
      state.outbox.shift();
    }
    state.sending = false;
    state.drainWaiters.splice(0).forEach((resolve) => resolve());
    refreshSoon();
    prefetch();
  }

  function answer(kind, value) {
    const cur = state.current;
    if (!cur || state.undoing || state.signedOut) return;
    const item = cur.a.item;
    const duration = cur.clock.ms();
    const entry = {
      kind: kind,
      itemId: item.id,
      url: base + "/items/" + item.id + "/" + (kind === "label" ? "label" : "skip"),
      body: kind === "label"
        ? Object.assign(multi ? { labels: value } : { value: value },
          { duration_ms: duration, request_id: cur.requestId, group: cur.group ? groupIds(cur) : [] })
        : { duration_ms: duration, request_id: cur.requestId },
    };
    const button = kind !== "label" ? $("btn-skip") : multi ? $("btn-submit") : labelButtons.get(value);
    if (button) {
      button.classList.remove("pressed");
      void button.offsetWidth;
      button.classList.add("pressed");
    }
    if (kind === "label") session.record(duration);
    state.current = null;
    state.outbox.push(entry);
    pump();
    advance();
  }

  // ---------------------------------------------------------------- moving on

  function setLoading() {
    setView("loading");
    renderWhy();
    L.clear(body);
    body.appendChild(el("div", { class: "skeleton", "aria-hidden": "true" }, [el("span"), el("span"), el("span", { class: "short" })]));
    $("reason-chip").hidden = true;
    $("guess-chip").hidden = true;
    $("item-ref").textContent = "";
    renderChosen();
  }

  function showDone() {
    state.done = true;
    state.current = null;
    setView("done");
    $("reason-chip").hidden = true;
    $("guess-chip").hidden = true;
    $("item-ref").textContent = "";
    renderWhy();
  }

  async function advance() {
    if (state.buffer.length) {
      show(state.buffer.shift());
      prefetch();
      return;
    }
    const seq = ++state.loadSeq;
    setLoading();
    if (state.prefetching) {
      await state.prefetching;
      if (seq !== state.loadSeq || state.current) return;
      if (state.buffer.length) { show(state.buffer.shift()); prefetch(); return; }
    }
    let a;
    try {
      a = await requestNext();
    } catch (e) {
      if (!state.signedOut) status("Could not load an item: " + e.message, "error");
      return;
    }
    if (seq !== state.loadSeq || state.current) {
      // Undo put an item on screen meanwhile: keep this one for later.
      if (a && !state.buffer.some((b) => b.item.id === a.item.id)) state.buffer.push(a);
      return;
    }
    if (a) { show(a); prefetch(); } else { showDone(); }
  }

  function prefetch() {
    // Answers in flight do not hold this back: the server keeps their items apart (answering)
    // and does not count them against the items one annotator may hold.
    if (state.prefetching || state.buffer.length || state.done || !state.current) return;
    state.prefetching = (async () => {
      try {
        const a = await requestNext();
        const held = new Set(heldIds());
        if (a && !held.has(a.item.id)) state.buffer.push(a);
      } catch (e) {
        /* the next advance() asks again, visibly */
      } finally {
        state.prefetching = null;
      }
    })();
  }

  async function undo() {
    if (state.undoing || state.signedOut) return;
    state.undoing = true;
    state.loadSeq++; // an item still loading goes to the buffer, not on screen
    $("btn-undo").disabled = true;
    try {
      await drained();
      // One id for every retry: an undo whose answer was lost must not take back a second one.
      const undoId = uuid();
      const res = await withRetry(() => L.post(base + "/undo", { request_id: undoId }), "undoing");
      if (res.status === 409) {
        status("Nothing to undo.", "info", 2500);
        if (!state.current && !state.done) advance();
        return;
      }
      if (res.status === 401 || res.status === 403) { signedOut(); return; }
      if (!res.ok) { status("Undo failed: " + (await errorOf(res)).message, "error", 8000); return; }
      const a = await res.json();
      if (state.current && state.current.a.item.id !== a.item.id) state.buffer.unshift(state.current.a);
      state.buffer = state.buffer.filter((b) => b.item.id !== a.item.id);
      lastLine.hidden = true;
      $("why-last-box").hidden = true; // it described the answer just taken back
      show(a, { undone: true });
      if (state.answered.has(a.item.id)) session.unrecord();
      refreshSoon();
    } finally {
      state.undoing = false;
      $("btn-undo").disabled = false;
    }
  }

  // ---------------------------------------------------------------- progress and session

  let refreshTimer = null;
  let lastRefresh = 0;

  async function refreshSummary() {
    lastRefresh = Date.now();
    try {
      const res = await L.getJSON(base);
      if (res.status === 401) { signedOut(); return; }
      if (!res.ok) return;
      const s = await res.json();
      const items = s.progress.items || 0;
      const done = s.progress.done || 0;
      const frac = items ? done / items : 0;
      $("progress-fill").setAttribute("width", (100 * frac).toFixed(2));
      // The server's wording, the dashboard's and `labelwise status`'s too.
      $("progress-text").textContent = (s.progress.text || fmtInt(done) + " of " + fmtInt(items) + " items done") +
        (s.me ? " · " + fmtInt(s.me.labels) + " by you" : "");
      session.fatigue(s.me && s.me.fatigue);
    } catch (e) { /* offline: the next refresh tries again */ }
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    const wait = Math.max(0, 3000 - (Date.now() - lastRefresh));
    refreshTimer = setTimeout(refreshSummary, wait);
  }

  const session = (function () {
    const KEY = "labelwise.session." + cfg.project_id;
    const GAP = 10 * 60 * 1000; // a pause this long starts a new session
    const BREAK = 45 * 60 * 1000;
    let s = null;
    try { s = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { s = null; }
    if (!s || Date.now() - s.last > GAP) s = { start: Date.now(), last: Date.now(), breakFrom: Date.now(), durations: [] };

    function save() { try { sessionStorage.setItem(KEY, JSON.stringify(s)); } catch (e) { /* full or private */ } }

    function render() {
      $("session-count").textContent = fmtInt(s.durations.length);
      const d = s.durations.slice().sort((x, y) => x - y);
      const median = d.length ? (d.length % 2 ? d[(d.length - 1) / 2] : (d[d.length / 2 - 1] + d[d.length / 2]) / 2) : null;
      $("session-pace").textContent = median === null ? "–" : (median / 1000).toFixed(median < 10000 ? 1 : 0);
      checkBreak();
    }

    // The server's fatigue signals (slowing down, missing easy items), as of the last summary.
    let tiredSignals = [];

    function checkBreak() {
      const now = Date.now();
      if (now - s.last > GAP) { s.start = now; s.breakFrom = now; }
      const worked = now - s.breakFrom;
      const hint = $("break-hint");
      const dismissed = now - s.breakFrom < 15 * 60 * 1000 && s.breakFrom !== s.start;
      const tired = tiredSignals.length > 0 && !dismissed;
      $("break-fatigue").textContent = tired
        ? "A short break may help: " + tiredSignals.join("; ") + ". Easier items are mixed in meanwhile."
        : "";
      $("break-fatigue").hidden = !tired;
      const long = worked >= BREAK && now - s.last < GAP;
      $("break-time").hidden = !long || tired;
      if (long) $("break-minutes").textContent = String(Math.round((now - s.start) / 60000));
      hint.hidden = !(long || tired);
    }

    return {
      record(ms) {
        const now = Date.now();
        if (now - s.last > GAP) { s.start = now; s.breakFrom = now; s.durations = []; }
        s.last = now;
        s.durations.push(ms);
        if (s.durations.length > 2000) s.durations.shift();
        save();
        render();
      },
      unrecord() { s.durations.pop(); save(); render(); },
      dismissBreak() { s.breakFrom = Date.now(); save(); checkBreak(); },
      fatigue(f) {
        tiredSignals = f && f.tired && Array.isArray(f.signals) ? f.signals.map(String) : [];
        checkBreak();
      },
      render: render,
      checkBreak: checkBreak,
    };
  })();

  // ---------------------------------------------------------------- help overlay and keys

  const help = $("help");
  let helpReturn = null;

  function setHelp(open) {
    if (open === !help.hidden) return;
    help.hidden = !open;
    if (open) { helpReturn = document.activeElement; $("help-close").focus(); }
    else if (helpReturn && helpReturn.focus) { helpReturn.focus(); helpReturn = null; }
  }

  function onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (key === "Escape") {
      if (!help.hidden) setHelp(false);
      else if (!whyPanel.hidden && window.matchMedia("(max-width: 1099px)").matches) setWhy(false, true);
      return;
    }
    // Enter on a focused button presses that button, as everywhere else.
    const setKey = multi && (key === "Backspace" || (key === "Enter" && !(t && /^(BUTTON|A|SUMMARY)$/.test(t.tagName))));
    const known = setKey || keyToLabel.has(key) || ["s", "u", "z", "w", "g", "?", "h"].includes(key);
    if (!known) return;
    e.preventDefault();
    if (e.repeat) return; // holding a key down answers once
    if (!help.hidden) { if (key === "?" || key === "h") setHelp(false); return; }
    if (keyToLabel.has(key) && multi) toggleLabel(keyToLabel.get(key));
    else if (keyToLabel.has(key)) answer("label", keyToLabel.get(key));
    else if (key === "Enter") submitSet();
    else if (key === "Backspace") clearChosen();
    else if (key === "s") answer("skip");
    else if (key === "u" || key === "z") undo();
    else if (key === "w") setWhy(whyPanel.hidden, true);
    else if (key === "g") toggleGroup();
    else if (key === "?" || key === "h") setHelp(true);
  }

  /* A mouse click leaves focus on the button, where Enter or Space would press it again on
   * the next item: drop the focus after pointer clicks (keyboard users keep theirs). */
  function clickThen(button, fn) {
    button.addEventListener("click", (e) => {
      if (e.detail > 0) button.blur();
      fn();
    });
  }

  // ---------------------------------------------------------------- lifecycle

  function releaseAll() {
    // Unsaved answers go out once more (same request_id: harmless if already stored) ...
    state.outbox.forEach((entry) => {
      L.post(entry.url, entry.body, { keepalive: true }).catch(() => {});
    });
    // ... and the items this page holds go back to the pool for others.
    // By lease token, not item id: this request can arrive after a reloaded page has been
    // given the same item again, and must not end that newer lease.
    const pending = new Set(state.outbox.map((e) => e.itemId));
    const held = state.current ? [state.current.a].concat(state.buffer) : state.buffer.slice();
    const leases = held.filter((a) => a.lease && !pending.has(a.item.id)).map((a) => a.lease);
    if (leases.length) L.post(base + "/release", { leases: leases.slice(0, 20) }, { keepalive: true }).catch(() => {});
  }

  function rerender() {
    const cur = state.current;
    if (cur) renderContent(cur.a.item, cur.a.why && cur.a.why.drivers, cur.a.why && cur.a.why.occlusion);
  }

  function init() {
    labelButtons.forEach((b, value) => clickThen(b, () => (multi ? toggleLabel(value) : answer("label", value))));
    if (multi) clickThen($("btn-submit"), submitSet);
    clickThen($("btn-skip"), () => answer("skip"));
    clickThen($("btn-undo"), undo);
    clickThen(whyButton, () => setWhy(whyPanel.hidden, true));
    clickThen($("why-close"), () => setWhy(false, true));
    clickThen($("btn-group"), toggleGroup);
    $("why-mark").addEventListener("change", (e) => {
      try { localStorage.setItem(MARK_KEY, e.target.checked ? "on" : "off"); } catch (err) { /* private mode */ }
      rerender();
    });
    $("why-heat").addEventListener("change", (e) => {
      try { localStorage.setItem(MARK_KEY, e.target.checked ? "on" : "off"); } catch (err) { /* private mode */ }
      rerender();
    });
    clickThen($("btn-help"), () => setHelp(true));
    clickThen($("help-close"), () => setHelp(false));
    help.addEventListener("click", (e) => { if (e.target === help) setHelp(false); });
    clickThen($("check-again"), () => { if (state.done) advance(); });
    $("break-dismiss").addEventListener("click", () => session.dismissBreak());
    document.addEventListener("keydown", onKey);

    document.addEventListener("visibilitychange", () => {
      if (!state.current) return;
      if (document.hidden) state.current.clock.pause();
      else state.current.clock.resume();
    });
    window.addEventListener("pagehide", releaseAll);
    window.addEventListener("pageshow", (e) => { if (e.persisted) window.location.reload(); });
    window.addEventListener("beforeunload", (e) => {
      if (state.outbox.length && !navigator.onLine) { e.preventDefault(); e.returnValue = ""; }
    });
    window.addEventListener("online", () => { if (state.done) advance(); });
    L.onSignOut(async () => {
      await Promise.race([drained(), sleep(2000)]);
      releaseAll();
    });

    setWhy(whyOpen(), false);
    session.render();
    refreshSummary();
    setInterval(() => { if (!document.hidden) refreshSummary(); }, 20000);
    setInterval(() => { session.checkBreak(); if (state.done && !document.hidden) advance(); }, 30000);
    advance();
  }

  init();
})();
