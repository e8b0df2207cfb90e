/* Labelwise: helpers shared by every page (no framework, no build step).
 *
 * - Labelwise.csrf: the CSRF token from <meta name="csrf-token">, sent as X-CSRF-Token on
 *   every state-changing request (the server checks the header, not a form field).
 * - Labelwise.post(url, body, opts): a same-origin JSON POST with that header.
 * - Labelwise.el(tag, attrs, children): builds DOM nodes; text goes in as text nodes, never HTML.
 * - Sign-out: POST /logout via fetch (with the header), after the page's own hooks ran.
 */
(function () {
  "use strict";

  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var beforeSignOut = [];

  function headers(extra) {
    var h = { "Accept": "application/json", "X-CSRF-Token": csrf };
    if (extra) Object.keys(extra).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }

  function post(url, body, opts) {
    opts = opts || {};
    var init = {
      method: opts.method || "POST",
      credentials: "same-origin",
      headers: headers(body === undefined ? null : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
      keepalive: !!opts.keepalive,
    };
    if (opts.signal) init.signal = opts.signal;
    return fetch(url, init);
  }

  function getJSON(url, opts) {
    var init = { credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (opts && opts.signal) init.signal = opts.signal;
    return fetch(url, init);
  }

  /* el("span", {class: "chip", text: label}, [child, "text"]) */
  function el(tag, attrs, children) {
    var svg = tag.indexOf("svg:") === 0;
    var node = svg
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") node.textContent = String(v);
        else if (k === "class") node.setAttribute("class", v);
        else if (k === "style") throw new Error("inline styles are blocked by the CSP: use a class");
        else if (/^on/i.test(k)) throw new Error("inline handlers are blocked by the CSP: use addEventListener");
        else node.setAttribute(k, v === true ? "" : String(v));
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  /* A horizontal bar (0..1) as a tiny SVG: widths as SVG attributes keep the CSP strict. */
  function bar(fraction, cls) {
    var f = Math.max(0, Math.min(1, Number(fraction) || 0));
    return el("svg:svg", { class: "minibar " + (cls || ""), viewBox: "0 0 100 8",
      preserveAspectRatio: "none", "aria-hidden": "true" }, [
      el("svg:rect", { class: "minibar-track", x: 0, y: 0, width: 100, height: 8, rx: 2 }),
      el("svg:rect", { class: "minibar-fill", x: 0, y: 0, width: (100 * f).toFixed(2), height: 8, rx: 2 }),
    ]);
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function pct(x, digits) {
    return (100 * x).toFixed(digits === undefined ? 0 : digits) + "\u202f%";
  }

  function signOut() {
    var hooks = beforeSignOut.map(function (fn) {
      try { return Promise.resolve(fn()); } catch (e) { return Promise.resolve(); }
    });
    var timeout = new Promise(function (resolve) { setTimeout(resolve, 2500); });
    Promise.race([Promise.all(hooks), timeout])
      .then(function () { return post("/logout"); })
      .catch(function () { /* the cookie may already be gone: still leave */ })
      .then(function () { window.location.assign("/login"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("sign-out");
    if (button) button.addEventListener("click", function () {
      button.disabled = true;
      signOut();
    });
  });

  /* What the page's template put in #page-data (templates/_macros.html page_data), and the
   * base address of its project's API; null on a page without it. */
  function page() {
    var node = document.getElementById("page-data");
    if (!node) return null;
    var data = JSON.parse(node.textContent);
    return { data: data, api: "/api/projects/" + data.project_id };
  }

  window.Labelwise = {
    csrf: csrf,
    page: page,
    post: post,
    getJSON: getJSON,
    el: el,
    bar: bar,
    clear: clear,
    pct: pct,
    onSignOut: function (fn) { beforeSignOut.push(fn); },
  };
})();
