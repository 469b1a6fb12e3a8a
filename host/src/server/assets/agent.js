// The agent page's script: pop-ups over server-sent events (a caption when
// the pop-up has one, else its bare URL), click-to-call from this page's
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

// A pop-up's caption: title, label/value pairs, and the button opening it.
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
  box.append(link(popup.url, c.action || "Open", "open"));
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
  if (popup.caption && popup.caption.call_id) {
    records.set(popup.caption.call_id, { title: popup.caption.title, url: popup.url, details: popup.caption.details || [] });
  }
  loadCalls();
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
