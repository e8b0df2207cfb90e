/* Labelwise guidelines on the labeling page: shown on the first visit (and again whenever the
 * admin changes them), then behind the I key or the Guidelines button. While they are open, no
 * key reaches the labeling page behind them. */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("guidelines");
    if (!box) return;
    var button = document.getElementById("btn-guidelines");
    var close = document.getElementById("guidelines-close");
    var seenKey = "labelwise-guidelines-" + box.getAttribute("data-project");
    var version = box.getAttribute("data-version");
    var back = null;

    function set(open) {
      if (open === !box.hidden) return;
      box.hidden = !open;
      if (open) {
        back = document.activeElement;
        close.focus();
        try { window.localStorage.setItem(seenKey, version); } catch (e) { /* private mode */ }
      } else if (back && back.focus) {
        back.focus();
        back = null;
      }
    }

    // Capture phase: before the labeling page's own key handler, which skips handled keys.
    window.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      var t = e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (!box.hidden) {
        if (key === "Tab") return; // moving within the dialog
        e.preventDefault();
        if (key === "Escape" || key === "i") set(false);
        return;
      }
      if (key === "i" && !e.repeat) {
        e.preventDefault();
        set(true);
      }
    }, true);
    if (button) button.addEventListener("click", function () { set(true); });
    close.addEventListener("click", function () { set(false); });
    box.addEventListener("click", function (e) { if (e.target === box) set(false); });

    var seen = null;
    try { seen = window.localStorage.getItem(seenKey); } catch (e) { /* private mode */ }
    if (seen !== version) set(true);
  });
})();
