// relctl board: refresh without a page flash, ages that tick, and the static export's extras.
// No framework, no build step. A refresh swaps <main> only for a complete page of a newer
// commit (parsed first, then swapped in one step), so nobody ever sees a half-written state.
(function () {
  "use strict";
  var POLL_MS = 3000;

  function board() { return document.getElementById("board"); }

  function age(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) {
      var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
      return m ? h + "h " + m + "m" : h + "h";
    }
    return Math.floor(s / 86400) + "d";
  }

  function tickAges() {
    var now = Date.now();
    document.querySelectorAll("time.age[datetime]").forEach(function (el) {
      var then = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(then)) el.textContent = age((now - then) / 1000);
    });
  }

  function filterStatic() {
    if (!board().dataset.static) return;  // the server filtered already
    var params = new URLSearchParams(window.location.search);
    var cards = document.querySelectorAll(".card[data-key]");
    var shown = 0;
    cards.forEach(function (card) {
      var ok = ["mp", "app", "phase"].every(function (k) {
        var want = params.get(k);
        return !want || card.dataset[k] === want;
      });
      card.hidden = !ok;
      if (ok) shown += 1;
    });
    var count = document.getElementById("count");
    if (count && cards.length) count.textContent = shown + " of " + cards.length + " releases";
  }

  function busy() {
    var active = document.activeElement;
    return active && active.closest && active.closest("form") && board().contains(active);
  }

  function swap(html, revision) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById("board");
    if (!fresh || fresh.dataset.revision !== revision) return false;
    var current = board();
    current.replaceWith(document.importNode(fresh, true));
    var shown = document.querySelector(".revision code");
    if (shown) shown.textContent = revision.slice(0, 12);
    var state = document.getElementById("refresh-state");
    if (state) state.textContent = "refreshed " + new Date().toLocaleTimeString();
    afterRender();
    return true;
  }

  function poll() {
    var main = board();
    if (!main || !window.fetch) return;
    fetch(main.dataset.api, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.revision || data.revision === board().dataset.revision || busy()) return;
        return fetch(window.location.href, { cache: "no-store" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html) swap(html, data.revision); });
      })
      .catch(function () { /* offline for a moment: keep the page as it is */ });
  }

  function bucket(mp, user) {
    var bytes = new TextEncoder().encode(mp + ":" + user);
    return crypto.subtle.digest("SHA-256", bytes).then(function (digest) {
      var view = new DataView(digest);
      return (view.getUint32(0) % 100) + 1;
    });
  }

  function staticLookup() {
    var form = document.querySelector("form.lookup[data-static]");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var user = form.querySelector("input[name=user]").value;
      var out = document.getElementById("lookup-result");
      if (!/^[0-9A-Za-z._-]{1,64}$/.test(user)) {
        out.textContent = "Cannot look up: a user id is 1 to 64 ASCII letters, digits, '.', '_' or '-'";
        return;
      }
      if (!window.crypto || !crypto.subtle) { out.textContent = "This browser cannot compute buckets here."; return; }
      bucket(form.dataset.mp, user).then(function (b) {
        var pct = parseInt(form.dataset.grayscale, 10), v = form.dataset.version;
        // The same answers as controller/board/data.py lookup_user (pilot testers aside).
        var phase = form.dataset.phase, text;
        if (phase === "Released") text = "everyone gets " + v;
        else if (phase === "Archived") text = "gets a newer version: " + v + " was replaced by a newer full release";
        else if (phase === "Canceled") text = "keeps the previous version: " + v + " was canceled";
        else if (pct > 0) text = b <= pct ? "gets " + v + ": bucket " + b + " is within " + pct + "%"
                                          : "keeps the previous version: bucket " + b + " is above " + pct + "%";
        else text = "keeps the previous version: " + v + " reaches no users yet";
        out.textContent = "User " + user + " " + text + ".";
      });
    });
  }

  function afterRender() { tickAges(); filterStatic(); staticLookup(); }

  document.addEventListener("DOMContentLoaded", function () {
    afterRender();
    window.setInterval(function () { tickAges(); poll(); }, POLL_MS);
  });
})();
