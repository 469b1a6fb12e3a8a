// The agent page's script: pop-ups over server-sent events (a caption when
// the pop-up has one, else its bare URL; records to pick from when a
// plugin offers several), click-to-call from this page's
// extension, and the extension's recent calls. Served as a file, not
// inline, for the Content-Security-Policy.
"use strict";
const el = (id) => document.getElementById(id);
const EXTENSION = document.body.dataset.extension;
// Only pages opened after this page was served are shown (the server
// replays from this id, then streams live ones; a reconnect resumes from
// the last id received, sent by the browser as Last-Event-ID).
const AFTER = document.body.dataset.after;
const BASE = `/agent/${encodeURIComponent(EXTENSION)}`;
const seen = new Set();
// Records named by pop-ups, by call id, for the recent calls list.
const records = new Map();

function link(url, text, cls) {
  const a = document.createElement("a");
  a.href = url; a.textContent = text || url; a.target = "_blank"; a.rel = "noopener noreferrer";
  if (cls) a.className = cls;
  return a;
}

// Several records offered for a call: one button each (name, type,
// account); the pick goes to the PBX, which logs the call to it and answers
// the page to open.
function offeredOf(popup, box) {
  const list = document.createElement("ul");
  list.className = "offered";
  const status = document.createElement("p");
  status.className = "choice-result";
  for (const r of popup.offered) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "pick";
    button.dataset.recordId = r.id;
    button.textContent = [r.name, r.object_type, r.account].filter(Boolean).join(" · ");
    button.addEventListener("click", () => pick(popup, r, list, status));
    li.append(button);
    list.append(li);
  }
  box.append(list, status);
}

async function pick(popup, record, list, status) {
  const callId = popup.caption && popup.caption.call_id;
  if (!callId) return;
  status.textContent = "Opening…";
  try {
    const response = await fetch(`${BASE}/calls/${encodeURIComponent(callId)}/choice`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ record_id: record.id }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      status.textContent = (answer.error || `The PBX answered ${response.status}.`).replaceAll("`", "");
      return;
    }
    status.replaceChildren("Chosen: ", link(answer.url, answer.name, "chosen"));
    for (const b of list.querySelectorAll("button")) b.disabled = true;
    loadCalls();
    // A browser may block this; the link above stays.
    window.open(answer.url, "_blank", "noopener");
  } catch (e) {
    status.textContent = "The PBX cannot be reached.";
  }
}

// A pop-up's caption: title, label/value pairs, and the button opening it
// (or the records offered to pick from).
function captionOf(popup) {
  const c = popup.caption;
  const box = document.createElement("div");
  box.className = "caption";
  const title = document.createElement("h3");
  title.textContent = c.title;
  box.append(title);
  if (Array.isArray(c.details) && c.details.length) {
    const dl = document.createElement("dl");
    for (const d of c.details) {
      const dt = document.createElement("dt"); dt.textContent = d.label;
      const dd = document.createElement("dd"); dd.textContent = d.value;
      dl.append(dt, dd);
    }
    box.append(dl);
  }
  if (Array.isArray(popup.offered) && popup.offered.length) {
    offeredOf(popup, box);
  } else {
    box.append(link(popup.url, c.action || "Open", "open"));
  }
  return box;
}

function show(popup) {
  if (seen.has(popup.id)) return;
  seen.add(popup.id);
  const latest = el("latest");
  latest.replaceChildren(popup.caption ? captionOf(popup) : link(popup.url));
  latest.dataset.id = popup.id;
  const li = document.createElement("li");
  li.className = "popup";
  li.dataset.id = popup.id;
  const time = document.createElement("time");
  const at = new Date(popup.at_ms);
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleTimeString();
  li.append(time, link(popup.url, popup.caption ? popup.caption.title : popup.url));
  el("popups").prepend(li);
  while (el("popups").children.length > 50) el("popups").lastElementChild.remove();
  const offering = Array.isArray(popup.offered) && popup.offered.length > 0;
  if (popup.caption && popup.caption.call_id && !offering) {
    records.set(popup.caption.call_id, { title: popup.caption.title, url: popup.url, details: popup.caption.details || [] });
  }
  loadCalls();
  // Nothing opens until the agent picks one of several records.
  if (offering) return;
  // A browser may block this without a click; the link above stays.
  window.open(popup.url, "_blank", "noopener");
}

async function loadCalls() {
  let answer;
  try {
    const response = await fetch(`${BASE}/calls`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    answer = await response.json();
  } catch (e) { return; }
  const list = el("calls");
  list.replaceChildren();
  for (const call of answer.calls || []) {
    const li = document.createElement("li");
    li.className = "call";
    li.dataset.callId = call.call_id;
    const time = document.createElement("time");
    const at = new Date(call.started_at_ms);
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleString();
    const what = document.createElement("span");
    what.textContent = `${call.direction} ${call.number} (${call.phase}) `;
    li.append(time, what);
    const record = call.record || records.get(call.call_id);
    if (record) {
      li.append(link(record.url, record.title, "record"));
      const facts = document.createElement("span");
      facts.className = "record-details";
      facts.textContent = (record.details || []).map((d) => ` ${d.label}: ${d.value}`).join(" ·");
      li.append(facts);
    }
    list.append(li);
  }
}

el("dial-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = el("dial-result");
  out.textContent = "Calling…";
  try {
    const response = await fetch(`${BASE}/dial`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ number: el("dial-number").value }),
    });
    const answer = await response.json().catch(() => ({}));
    out.textContent = response.ok
      ? `Calling ${answer.number} from ${answer.extension}.`
      // A command quoted for the terminal reads as plain words here.
      : (answer.error || `The PBX answered ${response.status}.`).replaceAll("`", "");
  } catch (e) {
    out.textContent = "The PBX cannot be reached.";
  }
});

const source = new EventSource(`${BASE}/events?after=${encodeURIComponent(AFTER)}`);
source.addEventListener("open", () => { const c = el("connection"); c.textContent = "Live"; c.className = "live"; });
source.addEventListener("error", () => { const c = el("connection"); c.textContent = "Reconnecting…"; c.className = "down"; });
source.addEventListener("popup", (event) => {
  try { show(JSON.parse(event.data)); } catch (e) { console.error(e); }
});
loadCalls();
setInterval(loadCalls, 15000);
