/* Labelwise review page (admins): conflicts one card each, decided with the label keys.
 * In a multi-label project each annotator's set shows as chips; the admin takes one of them,
 * their union, or a set of their own (label keys toggle labels, Enter saves the set).
 * User content (item text, labels, annotator names) goes in with textContent only. */
(function () {
  "use strict";

  const L = window.Labelwise;
  const page = L && L.page();
  if (!page) return;
  const cfg = page.data;
  const base = page.api;
  const el = L.el;
  const list = document.getElementById("review-list");
  const toast = document.getElementById("toast");

  // The server assigns the keys (routes/pages.py label_keys), the same as on the annotate page.
  const keyOf = new Map((cfg.keys || []).map(([k, label]) => [label, k]));
  const labelOfKey = new Map(Array.from(keyOf, ([label, k]) => [k, label]));
  const multi = Boolean(cfg.multi_label);
  const NONE = "none of the labels";

  // A set's labels in the project's order (the order of its stored form).
  function ordered(labels) {
    const chosen = new Set(labels);
    return cfg.labels.filter((label) => chosen.has(label));
  }

  function chips(labels) {
    if (!labels.length) return [el("span", { class: "chip", text: NONE })];
    // Spaces between the chips: they read apart on screen and aloud.
    return labels.flatMap((label, j) => (j ? [" "] : []).concat([el("span", { class: "chip chip-label", text: label })]));
  }

  function setWords(labels) {
    return labels.length ? labels.join(", ") : NONE;
  }

  let cards = [];
  let active = -1;
  let toastTimer = null;

  function status(text, kind, ms) {
    clearTimeout(toastTimer);
    L.clear(toast);
    toast.appendChild(el("span", { class: "toast-dot", "aria-hidden": "true" }));
    toast.appendChild(el("span", { text: text }));
    toast.className = "toast toast-" + (kind || "info");
    toast.hidden = false;
    if (ms) toastTimer = setTimeout(() => { toast.hidden = true; }, ms);
  }

  function content(item) {
    if (item.kind === "tabular" && item.fields) {
      return el("table", { class: "fields" }, [el("tbody", null, Object.keys(item.fields).map((k) =>
        el("tr", null, [el("th", { scope: "row", text: k }), el("td", { text: String(item.fields[k]) })])))]);
    }
    if (item.image_url) {
      const img = el("img", { class: "item-image", src: item.image_url, alt: "Item " + item.external_id });
      img.addEventListener("load", () => { if (img.naturalWidth <= 128) img.classList.add("pixelated"); });
      return el("div", { class: "image-frame" }, [img]);
    }
    return el("div", { class: "item-text", dir: "auto", text: String(item.text || "") });
  }

  function setActive(i, scroll) {
    if (!cards.length) return;
    active = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, j) => c.node.classList.toggle("active", j === active));
    if (scroll) cards[active].node.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  function nextOpen(from) {
    for (let j = from + 1; j < cards.length; j++) if (!cards[j].resolved) return j;
    for (let j = 0; j < cards.length; j++) if (!cards[j].resolved) return j;
    return -1;
  }

  function remaining() {
    const open = cards.filter((c) => !c.resolved).length;
    document.getElementById("review-count").textContent = open
      ? open + " item" + (open > 1 ? "s" : "") + " left where annotators disagree. Your decision is final: it becomes the training label."
      : "All conflicts resolved. Thank you.";
  }

  async function resolve(index, value) {
    const c = cards[index];
    if (!c || c.busy) return;
    c.busy = true;
    try {
      const body = multi ? { labels: ordered(value) } : { value: value };
      const res = await L.post(base + "/review/" + c.conflict.item.id, body);
      if (!res.ok) {
        let msg = res.status + "";
        try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
        status("Not saved: " + msg, "error", 8000);
        return;
      }
      c.resolved = multi ? { labels: ordered(value) } : value;
      c.node.classList.add("resolved");
      if (multi) {
        c.picked = new Set(value);
        showPicked(c);
        c.note.textContent = "Resolved as: " + setWords(ordered(value));
      } else {
        c.buttons.forEach((b, label) => b.classList.toggle("is-chosen", label === value));
        c.note.textContent = "Resolved as “" + value + "”";
      }
      c.note.hidden = false;
      remaining();
      const n = nextOpen(index);
      if (n >= 0) setActive(n, true);
    } catch (e) {
      status("Connection problem: nothing saved. Try again.", "warn", 6000);
    } finally {
      c.busy = false;
    }
  }

  // The label toggles of a multi-label card show its edited set.
  function showPicked(c) {
    c.buttons.forEach((b, label) => b.setAttribute("aria-pressed", c.picked.has(label) ? "true" : "false"));
  }

  function toggle(c, label) {
    if (c.picked.has(label)) c.picked.delete(label);
    else c.picked.add(label);
    showPicked(c);
  }

  // A multi-label conflict: every annotator's set as chips, a button to take it, the union,
  // and label toggles for a set of the admin's own.
  function setCard(conflict, i, note) {
    const answers = conflict.answers || [];
    const buttons = new Map();
    const card = { conflict: conflict, note: note, buttons: buttons, resolved: null, busy: false, picked: new Set() };
    const union = ordered(answers.flatMap((a) => a.labels || []));
    const take = answers.map((a) => {
      const b = el("button", { type: "button", class: "btn", title: "Decide: " + setWords(a.labels || []) }, [
        "Use " + a.annotator + "’s",
      ]);
      b.addEventListener("click", () => { setActive(i); resolve(i, a.labels || []); });
      return b;
    });
    const merge = el("button", { type: "button", class: "btn", title: "Decide: " + setWords(union) }, ["Merge (union)"]);
    merge.addEventListener("click", () => { setActive(i); resolve(i, union); });
    const save = el("button", { type: "button", class: "btn btn-primary", title: "Decide the set the toggles show (Enter)" }, ["Save this set"]);
    save.addEventListener("click", () => { setActive(i); resolve(i, Array.from(card.picked)); });
    const toggles = cfg.labels.map((label) => {
      const b = el("button", { type: "button", class: "btn btn-label", "aria-pressed": "false", title: "Toggle: " + label }, [
        el("span", { class: "btn-label-check", "aria-hidden": "true" }),
        keyOf.has(label) ? el("kbd", { text: keyOf.get(label) }) : null,
        el("span", { class: "btn-label-text", text: label }),
      ]);
      b.addEventListener("click", (e) => { if (e.detail > 0) b.blur(); setActive(i); toggle(card, label); });
      buttons.set(label, b);
      return b;
    });
    card.node = el("article", { class: "card conflict", tabindex: "-1" }, [
      el("div", { class: "conflict-head" }, [
        el("span", { class: "item-ref muted", text: "#" + conflict.item.external_id }),
        note,
      ]),
      content(conflict.item),
      el("div", { class: "votes" }, answers.map((a) => el("span", { class: "vote" }, [
        el("strong", { text: a.annotator }),
        document.createTextNode(" "),
      ].concat(chips(a.labels || []))))),
      el("div", { class: "label-bar", role: "group", "aria-label": "Decide" }, take.concat([merge])),
      el("div", { class: "label-bar label-bar-multi", role: "group", "aria-label": "Or edit a set" }, toggles.concat([save])),
    ]);
    return card;
  }

  function render(conflicts) {
    L.clear(list);
    cards = [];
    if (!conflicts.length) {
      list.appendChild(el("div", { class: "card done-state" }, [
        el("h2", { text: "Nothing to review" }),
        el("p", { text: "When two annotators give an item different labels it waits here for your decision, and stays out of training until then." }),
      ]));
      remaining();
      return;
    }
    conflicts.forEach((conflict, i) => {
      const note = el("span", { class: "resolved-note", hidden: true });
      if (multi) {
        const card = setCard(conflict, i, note);
        card.node.addEventListener("click", () => setActive(i));
        cards.push(card);
        list.appendChild(card.node);
        return;
      }
      const buttons = new Map();
      const votes = Object.entries(conflict.votes || {}).sort((a, b) => b[1].length - a[1].length);
      const node = el("article", { class: "card conflict", tabindex: "-1" }, [
        el("div", { class: "conflict-head" }, [
          el("span", { class: "item-ref muted", text: "#" + conflict.item.external_id }),
          note,
        ]),
        content(conflict.item),
        el("div", { class: "votes" }, votes.map(([label, names]) => el("span", { class: "vote" }, [
          el("strong", { text: label }),
          document.createTextNode(names.length + " · " + names.join(", ")),
        ]))),
        el("div", { class: "label-bar", role: "group", "aria-label": "Decide" }, cfg.labels.map((label) => {
          const b = el("button", { type: "button", class: "btn btn-label", title: "Decide: " + label }, [
            keyOf.has(label) ? el("kbd", { text: keyOf.get(label) }) : null,
            el("span", { class: "btn-label-text", text: label }),
          ]);
          b.addEventListener("click", (e) => { if (e.detail > 0) b.blur(); setActive(i); resolve(i, label); });
          buttons.set(label, b);
          return b;
        })),
      ]);
      node.addEventListener("click", () => setActive(i));
      cards.push({ conflict: conflict, node: node, note: note, buttons: buttons, resolved: null, busy: false });
      list.appendChild(node);
    });
    setActive(0);
    remaining();
  }

  async function load() {
    try {
      const res = await L.getJSON(base + "/review");
      if (res.status === 401) { window.location.assign("/login"); return; }
      if (!res.ok) throw new Error(String(res.status));
      render(await res.json());
    } catch (e) {
      status("Could not load the conflicts. Reload to try again.", "error");
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) return;
    if (e.key === "ArrowDown") { e.preventDefault(); setActive(active + 1, true); return; }
    if (e.key === "ArrowUp") { e.preventDefault(); setActive(active - 1, true); return; }
    if (e.key === "Escape") { if (document.activeElement) document.activeElement.blur(); return; }
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (multi && active >= 0) {
      const c = cards[active];
      if (labelOfKey.has(k)) { e.preventDefault(); toggle(c, labelOfKey.get(k)); return; }
      if (e.key === "Enter" && !(t && t.tagName === "BUTTON")) { e.preventDefault(); resolve(active, Array.from(c.picked)); }
      return;
    }
    if (labelOfKey.has(k) && active >= 0) { e.preventDefault(); resolve(active, labelOfKey.get(k)); }
  });

  load();
})();
