/* Labelwise settings page: sends what changed to PATCH /api/projects/{id}/settings, which checks
 * every value as the CLI's `labelwise config` does, and says what it refused. */
(function () {
  "use strict";
  var L = window.Labelwise;

  document.addEventListener("DOMContentLoaded", function () {
    var data = L.page().data;
    var saved = data.settings;
    var form = document.getElementById("settings-form");
    var status = document.getElementById("settings-status");
    var button = document.getElementById("settings-save");

    function say(text, ok) {
      status.textContent = text;
      status.className = "alert " + (ok ? "alert-ok" : "alert-error");
      status.hidden = false;
    }

    function read() {
      var values = {};
      form.querySelectorAll("[data-setting]").forEach(function (input) {
        var name = input.getAttribute("data-setting");
        var type = input.getAttribute("data-type");
        if (type === "radio") {
          if (input.checked) values[name] = input.value;
        } else if (type === "entry") {
          var entries = values[name] || (values[name] = {});
          var text = input.value.trim();
          if (text) entries[input.getAttribute("data-label")] = text;
        } else if (type === "int") {
          values[name] = input.value.trim() === "" ? input.value : Number(input.value);
          if (!Number.isInteger(values[name])) values[name] = input.value;
        } else if (type === "float") {
          values[name] = input.value.trim() === "" ? input.value : Number(input.value);
        } else if (type === "features") {
          values[name] = input.value.trim() || null;
        } else {
          values[name] = input.value;
        }
      });
      return values;
    }

    function changes() {
      var now = read();
      var out = {};
      Object.keys(now).forEach(function (name) {
        if (JSON.stringify(now[name]) !== JSON.stringify(saved[name])) out[name] = now[name];
      });
      return out;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var changed = changes();
      var names = Object.keys(changed);
      if (!names.length) { say("Nothing changed.", true); return; }
      button.disabled = true;
      L.post("/api/projects/" + data.project_id + "/settings", { changes: changed }, { method: "PATCH" })
        .then(function (r) {
          return r.json().then(function (body) { return { ok: r.ok, body: body }; });
        })
        .then(function (answer) {
          if (!answer.ok) { say("Not saved: " + (answer.body.error || "refused"), false); return; }
          saved = answer.body;
          say("Saved: " + names.map(function (n) { return n.replace(/_/g, " "); }).join(", ") + ".", true);
        })
        .catch(function () { say("Not saved: the server did not answer. Try again.", false); })
        .then(function () { button.disabled = false; });
    });
  });
})();
