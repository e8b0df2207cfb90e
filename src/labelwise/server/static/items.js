/* Labelwise data browser: filters in the address (so a search can be shared or reloaded), a
 * page of results from GET /api/projects/{id}/items at a time, an item's history, and the
 * admin's relabel through POST /review/{item_id}. Text goes into the page as text only. */
(function () {
  "use strict";
  var L = window.Labelwise;
  var el = L.el;

  document.addEventListener("DOMContentLoaded", function () {
    var page = L.page();
    var data = page.data;
    var api = page.api;
    var form = document.getElementById("filters");
    var rows = document.getElementById("browse-rows");
    var status = document.getElementById("browse-status");
    var info = document.getElementById("page-info");
    var prev = document.getElementById("page-prev");
    var next = document.getElementById("page-next");
    var detail = document.getElementById("detail");
    var pages = [null]; // the `after` of each page shown so far
    var nextAfter = null;
    var openId = null;
    var shown = {};
    // A multi-label project stores a set as its labels joined by ";" ("" for none of them).
    var multi = !!data.multi_label;
    var NONE = "none of the labels";

    function labelsOf(value) {
      return value ? String(value).split(";") : [];
    }

    function words(value) {
      if (!multi || value === null || value === undefined) return value;
      return value === "" ? NONE : labelsOf(value).join(", ");
    }

    function say(text, ok) {
      if (!text) { status.hidden = true; return; }
      status.textContent = text;
      status.className = "alert " + (ok ? "alert-ok" : "alert-error");
      status.hidden = false;
    }

    function filters() {
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, name) {
        if (String(value).trim() !== "") params.set(name, String(value).trim());
      });
      return params;
    }

    function fill(params) {
      form.querySelectorAll("input, select").forEach(function (input) {
        var v = params.get(input.name);
        if (input.type === "checkbox") input.checked = v === "true";
        else if (v !== null) input.value = v;
      });
    }

    function content(item) {
      if (item.text !== undefined) return el("span", { class: "browse-text", text: item.text + (item.truncated ? "…" : "") });
      if (item.image_url) return el("img", { class: "browse-thumb", src: item.image_url, alt: "Item " + item.external_id, loading: "lazy" });
      var f = item.fields || {};
      return el("span", { class: "browse-text", text: Object.keys(f).slice(0, 6).map(function (k) {
        var v = f[k];
        return k + " " + (typeof v === "number" ? Number(v.toPrecision(4)) : v);
      }).join(" · ") });
    }

    function answers(item) {
      return item.answers.map(function (a) {
        return a.annotator + ": " + words(a.value) + (a.action === "adjudicate" ? " (decided)" : "");
      }).join(", ");
    }

    function model(item) {
      if (!item.predicted) return "";
      return words(item.predicted) + (item.confidence === null ? "" : " " + L.pct(item.confidence));
    }

    function labelChips(value) {
      if (value === null || value === undefined || (!multi && !value)) return [el("span", { class: "muted", text: "–" })];
      if (!multi) return [el("span", { class: "chip", text: value })];
      if (value === "") return [el("span", { class: "chip", text: NONE })];
      return labelsOf(value).map(function (label) { return el("span", { class: "chip", text: label }); });
    }

    function row(item) {
      var tr = el("tr", { "data-id": item.id, tabindex: "0", class: item.id === openId ? "is-open" : "" }, [
        el("td", { class: "browse-id", text: item.external_id }),
        el("td", null, [content(item)]),
        el("td", null, labelChips(item.label)),
        el("td", { class: "browse-status-" + item.status, text: { review: "in review" }[item.status] || item.status }),
        el("td", { class: "small", text: answers(item) }),
        el("td", { class: "small", text: model(item) }),
      ]);
      tr.addEventListener("click", function () { open(item.id); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") open(item.id); });
      return tr;
    }

    function load(after, keepStatus) {
      var params = filters();
      if (after !== null && after !== undefined) params.set("after", after);
      if (!keepStatus) say("");
      return L.getJSON(api + "/items?" + params.toString())
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
        .then(function (answer) {
          if (!answer.ok) { say(answer.body.error || "The search failed.", false); return; }
          var body = answer.body;
          L.clear(rows);
          shown = {};
          body.items.forEach(function (item) { shown[item.id] = item; rows.appendChild(row(item)); });
          if (!body.items.length) rows.appendChild(el("tr", null, [el("td", { colspan: 6, class: "muted", text: "No item matches." })]));
          var wantsModel = params.has("predicted") || params.has("min_confidence") || params.has("max_confidence");
          if (wantsModel && !body.predictions) say("The model's predictions are not there yet: they are written after each fit.", false);
          nextAfter = body.next_after;
          next.disabled = nextAfter === null;
          prev.disabled = pages.length <= 1;
          info.textContent = "Page " + pages.length + (body.items.length ? " · " + body.items.length + " items" : "");
        })
        .catch(function () { say("The server did not answer. Try again.", false); });
    }

    function search() {
      pages = [null];
      var params = filters();
      history.replaceState(null, "", "?" + params.toString());
      load(null);
    }

    function open(id) {
      openId = id;
      rows.querySelectorAll("tr").forEach(function (tr) { tr.classList.toggle("is-open", Number(tr.getAttribute("data-id")) === id); });
      var item = shown[id];
      detail.hidden = false;
      document.getElementById("detail-title").textContent = "Item " + (item ? item.external_id : id);
      if (multi) showSet(item ? item.label : null);
      var box = document.getElementById("detail-content");
      L.clear(box);
      L.getJSON(api + "/items/" + id).then(function (r) { return r.json(); }).then(function (view) {
        if (view.text !== undefined) box.appendChild(el("p", { class: "browse-full", text: view.text }));
        else if (view.image_url) box.appendChild(el("img", { class: "browse-image", src: view.image_url, alt: "Item " + view.external_id }));
        else if (view.fields) {
          var table = el("table", { class: "browse-fields" });
          Object.keys(view.fields).forEach(function (k) {
            var v = view.fields[k];
            table.appendChild(el("tr", null, [el("th", { scope: "row", text: k }), el("td", { text: typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v) })]));
          });
          box.appendChild(table);
        }
      });
      loadHistory(id);
    }

    function loadHistory(id) {
      var list = document.getElementById("detail-history");
      L.clear(list);
      L.getJSON(api + "/items/" + id + "/history").then(function (r) { return r.json(); }).then(function (body) {
        if (!body.history.length) list.appendChild(el("li", { class: "muted", text: "No answer yet." }));
        body.history.forEach(function (h) {
          var what = h.action === "adjudicate" ? "decided " + words(h.value) : h.action === "label" ? "answered " + words(h.value) : h.action;
          list.appendChild(el("li", { class: h.current ? "" : "is-past" }, [
            el("strong", { text: h.annotator }), " " + what + " ",
            el("time", { class: "muted small", datetime: h.at, text: h.at.replace("T", " ").replace("Z", " UTC") }),
            h.current ? null : el("span", { class: "muted small", text: " (replaced)" }),
          ]));
        });
      });
    }

    function toggles() {
      return Array.prototype.slice.call(document.querySelectorAll("#detail-labels button[data-label]"));
    }

    function showSet(value) {
      var on = labelsOf(value);
      toggles().forEach(function (b) { b.setAttribute("aria-pressed", on.indexOf(b.getAttribute("data-label")) >= 0 ? "true" : "false"); });
    }

    // One listener for the relabel: a label (single-label), or toggles and "Save this set".
    detail.addEventListener("click", function (e) {
      var toggle = e.target.closest("button[data-label]");
      if (toggle) { toggle.setAttribute("aria-pressed", toggle.getAttribute("aria-pressed") === "true" ? "false" : "true"); return; }
      var button = e.target.closest(multi ? "#detail-save" : "button[data-value]");
      if (!button || openId === null) return;
      var picked = toggles().filter(function (b) { return b.getAttribute("aria-pressed") === "true"; })
        .map(function (b) { return b.getAttribute("data-label"); });
      var value = multi ? words(picked.join(";")) : button.getAttribute("data-value");
      button.disabled = true;
      L.post(api + "/review/" + openId, multi ? { labels: picked } : { value: value })
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
        .then(function (answer) {
          if (!answer.ok) { say(answer.body.error || "Not saved.", false); return; }
          say("Item " + (shown[openId] ? shown[openId].external_id : openId) + " is now " + value + ".", true);
          loadHistory(openId);
          load(pages[pages.length - 1], true);
        })
        .catch(function () { say("Not saved: the server did not answer. Try again.", false); })
        .then(function () { button.disabled = false; });
    });

    form.addEventListener("submit", function (e) { e.preventDefault(); search(); });
    document.getElementById("f-clear").addEventListener("click", function () { form.reset(); search(); });
    next.addEventListener("click", function () { if (nextAfter !== null) { pages.push(nextAfter); load(nextAfter); } });
    prev.addEventListener("click", function () { if (pages.length > 1) { pages.pop(); load(pages[pages.length - 1]); } });
    document.getElementById("detail-close").addEventListener("click", function () { detail.hidden = true; openId = null; });

    fill(new URLSearchParams(window.location.search));
    load(null);
  });
})();
