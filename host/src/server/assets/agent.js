// The agent page's script (agent.html), a file for the Content-Security-Policy.
"use strict";
const el = (id) => document.getElementById(id);
const EXTENSION = document.body.dataset.extension;
// Only pages opened after this page was served are shown (the server
// replays from this id, then streams live ones; a reconnect resumes from
// the last id received, sent by the browser as Last-Event-ID).
const AFTER = document.body.dataset.after;
const seen = new Set();

function link(url) {
  const a = document.createElement("a");
  a.href = url; a.textContent = url; a.target = "_blank"; a.rel = "noopener";
  return a;
}

function show(popup) {
  if (seen.has(popup.id)) return;
  seen.add(popup.id);
  const latest = el("latest");
  latest.replaceChildren(link(popup.url));
  latest.dataset.id = popup.id;
  const li = document.createElement("li");
  li.className = "popup";
  li.dataset.id = popup.id;
  const time = document.createElement("time");
  const at = new Date(popup.at_ms);
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleTimeString();
  li.append(time, link(popup.url));
  el("popups").prepend(li);
  while (el("popups").children.length > 50) el("popups").lastElementChild.remove();
  // A browser may block this without a click; the link above stays.
  window.open(popup.url, "_blank", "noopener");
}

const source = new EventSource(`/agent/${encodeURIComponent(EXTENSION)}/events?after=${encodeURIComponent(AFTER)}`);
source.addEventListener("open", () => { const c = el("connection"); c.textContent = "Live"; c.className = "live"; });
source.addEventListener("error", () => { const c = el("connection"); c.textContent = "Reconnecting…"; c.className = "down"; });
source.addEventListener("popup", (event) => {
  try { show(JSON.parse(event.data)); } catch (e) { console.error(e); }
});
