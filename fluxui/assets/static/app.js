// flux console: a little JavaScript over server-rendered pages. Every page
// works without it; it adds the time-travel slider, typed confirmations
// and the live tail.
"use strict";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderEvent(ev) {
  const a = el("article", { class: "event" });
  const h = el("h3");
  h.append(el("span", { class: "name" }, ev.event), " v" + ev.event_version + " · version " + ev.version + " · position " + ev.position + " · " + ev.occurred_at);
  a.append(h);
  const dl = el("dl", { class: "ids" });
  const add = (k, v) => { if (v) { dl.append(el("dt", {}, k), el("dd", {}, v)); } };
  add("event ID", ev.event_id);
  add("request", ev.request_id);
  add("correlation", ev.correlation_id);
  add("causation", ev.causation_id);
  a.append(dl);
  if (ev.note) a.append(el("p", { class: "note" }, ev.note));
  a.append(el("pre", { class: "payload" }, JSON.stringify(ev.payload, null, 2)));
  return a;
}

function timeTravel() {
  const form = document.getElementById("travel");
  const slider = document.getElementById("slider");
  if (!form || !slider) return;
  const id = form.dataset.id;
  let seq = 0;
  async function show(v) {
    const mine = ++seq;
    document.getElementById("version-label").textContent = v;
    const res = await fetch("/api/state?id=" + encodeURIComponent(id) + "&version=" + v, { headers: { Accept: "application/json" } });
    const body = await res.json();
    if (mine !== seq) return; // a later move won
    if (!res.ok) { document.getElementById("load-info").textContent = body.error; return; }
    document.getElementById("state-version").textContent = body.version;
    document.getElementById("load-info").textContent = body.load;
    const tb = document.querySelector("#fields tbody");
    tb.replaceChildren(...body.fields.map(f => { const tr = el("tr"); tr.append(el("td", {}, f.path)); const td = el("td"); td.append(el("code", {}, f.value)); tr.append(td); return tr; }));
    document.getElementById("state-json").textContent = JSON.stringify(body.state, null, 2);
    const evBox = document.getElementById("event");
    evBox.replaceChildren(...(body.event ? [renderEvent(body.event)] : []));
    const d = document.getElementById("diff-prev");
    if (d) d.href = "/diff?id=" + encodeURIComponent(id) + "&from=" + Math.max(body.version - 1, 1) + "&to=" + body.version;
    history.replaceState(null, "", "/state?id=" + encodeURIComponent(id) + "&version=" + body.version);
    document.body.dataset.version = body.version;
  }
  slider.addEventListener("input", () => show(slider.value));
  document.addEventListener("keydown", e => {
    if (e.target instanceof HTMLInputElement) return; // the slider handles its own keys
    let v = Number(slider.value);
    const max = Number(slider.max);
    if (e.key === "ArrowLeft") v = Math.max(v - 1, 1);
    else if (e.key === "ArrowRight") v = Math.min(v + 1, max);
    else if (e.key === "Home") v = 1;
    else if (e.key === "End") v = max;
    else return;
    e.preventDefault();
    slider.value = v;
    show(v);
  });
}

// Typed confirmation: the submit button stays disabled until the typed
// text matches. (The server checks it too.)
function confirmations() {
  for (const form of document.querySelectorAll("form.confirm")) {
    const input = form.querySelector("input[name=confirm]");
    const button = form.querySelector("button[type=submit]");
    const want = () => form.dataset.want || form.querySelector("input[name=" + form.dataset.field + "]").value;
    const check = () => { button.disabled = input.value === "" || input.value !== want(); };
    form.addEventListener("input", check);
    check();
  }
}

function liveTail() {
  const table = document.querySelector("#tail tbody");
  if (!table) return;
  const status = document.getElementById("tail-status");
  const pause = document.getElementById("tail-pause");
  let paused = false;
  pause.addEventListener("click", () => { paused = !paused; pause.textContent = paused ? "Resume" : "Pause"; });
  const es = new EventSource("/api/tail");
  es.onopen = () => { status.textContent = "live"; };
  es.onerror = () => { status.textContent = "reconnecting…"; };
  es.addEventListener("failure", e => { status.textContent = JSON.parse(e.data).error; });
  es.addEventListener("record", e => {
    if (paused) return;
    const ev = JSON.parse(e.data);
    const tr = el("tr");
    const link = el("a", { href: "/stream?id=" + encodeURIComponent(ev.stream_id) + "&from=" + ev.version }, ev.stream_id);
    const corr = ev.correlation_id ? el("a", { href: "/trace?correlation=" + encodeURIComponent(ev.correlation_id) }, ev.correlation_id) : "";
    for (const c of [String(ev.position), ev.occurred_at, ev.event + " v" + ev.event_version, link, String(ev.version), corr]) {
      const td = el("td"); td.append(c); tr.append(td);
    }
    table.prepend(tr);
    while (table.rows.length > 500) table.deleteRow(-1);
    status.textContent = "live · last position " + ev.position;
  });
}

document.addEventListener("DOMContentLoaded", () => { timeTravel(); confirmations(); liveTail(); });
