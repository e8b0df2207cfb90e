/* Labelwise dashboard: re-render every 30 s while the tab is visible.
 *
 * The page is server-rendered (charts are SVG from charts.py, all text escaped there), so a
 * refresh fetches the same page and swaps the #dashboard element for the new one. DOMParser
 * never runs scripts, and nothing is built from JSON with innerHTML.
 */
(function () {
  "use strict";

  const PERIOD = 30000;
  let timer = null;
  let lastOk = new Date();

  function localTimes(scope) {
    scope.querySelectorAll("time[data-local]").forEach((t) => {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      t.textContent = d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      t.title = d.toString();
    });
  }

  function stamp(text) {
    const u = document.getElementById("updated");
    if (u) u.textContent = text;
  }

  function stampOk() {
    stamp("Updated " + lastOk.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }) + " · refreshes every 30 s");
  }

  async function refresh() {
    if (document.hidden) return;
    try {
      const res = await fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (res.redirected || res.status === 401) { window.location.assign("/login"); return; }
      if (!res.ok) throw new Error(String(res.status));
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById("dashboard");
      const old = document.getElementById("dashboard");
      if (!fresh || !old) return;
      const node = document.importNode(fresh, true);
      localTimes(node);
      old.replaceWith(node);
      lastOk = new Date();
      stampOk();
    } catch (e) {
      stamp("Could not refresh (last update " + lastOk.toLocaleTimeString() + "); trying again in 30 s");
    }
  }

  function schedule() {
    clearInterval(timer);
    timer = setInterval(refresh, PERIOD);
  }

  localTimes(document);
  stampOk();
  schedule();
  document.addEventListener("visibilitychange", () => { if (!document.hidden && Date.now() - lastOk > PERIOD) refresh(); });
})();
