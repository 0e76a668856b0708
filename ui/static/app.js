// tufota dashboard: the live rollout chart. The page is complete without
// this script; it only keeps the chart, the table and the state current
// from the server-sent events of /ui/rollouts/ID/live.
"use strict";
(function () {
  var svg = document.getElementById("chart");
  if (!svg || !window.EventSource) { return; }
  var NS = "http://www.w3.org/2000/svg";
  var status = document.getElementById("live-status");

  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function setText(id, text) {
    var e = document.getElementById(id);
    if (e) { e.textContent = text; }
  }
  function draw(ch) {
    var desc = document.getElementById("chart-desc");
    while (svg.lastChild && svg.lastChild !== desc) { svg.removeChild(svg.lastChild); }
    svg.setAttribute("viewBox", "0 0 " + ch.width + " " + ch.height);
    ch.rows.forEach(function (r) {
      var g = el("g", { "class": "row" });
      g.appendChild(el("text", { x: 4, y: r.y, dy: 16 }, "Wave " + r.wave + " (" + r.spec + ")"));
      g.appendChild(el("rect", { "class": "track", x: ch.label, y: r.y, width: ch.span, height: 22 }));
      (r.segments || []).forEach(function (s) {
        var rect = el("rect", { "class": s.class, x: s.x, y: r.y, width: s.w, height: 22 });
        rect.appendChild(el("title", {}, s.n + " " + s.name));
        g.appendChild(rect);
      });
      if (r.gate_x >= 0) {
        var line = el("line", { "class": "gate", x1: r.gate_x, x2: r.gate_x, y1: r.y, y2: r.y2 });
        line.appendChild(el("title", {}, r.gate_text));
        g.appendChild(line);
      }
      svg.appendChild(g);
    });
    var body = document.querySelector("#waves tbody");
    if (body) {
      body.textContent = "";
      ch.rows.forEach(function (r) {
        var tr = document.createElement("tr");
        var th = document.createElement("th");
        th.setAttribute("scope", "row");
        th.textContent = r.wave + " (" + r.spec + ")";
        tr.appendChild(th);
        [r.started ? "yes" : "no", r.devices, r.offered, r.downloading, r.installed, r.failed, r.silent, r.deferred, r.gate_text].forEach(function (v) {
          var td = document.createElement("td");
          td.textContent = String(v);
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
    var state = document.getElementById("state");
    if (state) { state.textContent = ch.state; state.className = "tag " + ch.state; }
    setText("wave", String(ch.wave));
    setText("reason", ch.reason);
    setText("next", ch.next);
    svg.setAttribute("data-state", ch.state);
    svg.setAttribute("data-wave", String(ch.wave));
  }

  var es = new EventSource(svg.getAttribute("data-live"));
  var seen = 0;
  es.addEventListener("status", function (ev) {
    var ch = JSON.parse(ev.data);
    seen++;
    svg.setAttribute("data-updates", String(seen));
    draw(ch);
    var actions = document.getElementById("actions");
    if (actions && actions.getAttribute("data-state") !== null && actions.getAttribute("data-state") !== ch.state) {
      // The buttons the new state allows are the server's to say.
      window.location.reload();
    }
    if (actions) { actions.setAttribute("data-state", ch.state); }
    if (status) { status.textContent = "Live: updated " + new Date().toLocaleTimeString(); }
    if (ch.final) { es.close(); if (status) { status.textContent = "Final state: " + ch.state; } }
  });
  es.addEventListener("signedout", function () {
    es.close();
    if (status) { status.textContent = "Session ended: sign in again."; }
  });
  es.addEventListener("error", function () {
    if (status && es.readyState === EventSource.CLOSED) { status.textContent = "Live updates stopped."; }
  });
})();
