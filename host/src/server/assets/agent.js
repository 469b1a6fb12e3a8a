// The agent page's script: pop-ups over server-sent events (a caption when
// the pop-up has one, else its bare URL; records to pick from when a
// plugin offers several), click-to-call from this page's
// extension, and the extension's recent calls with a form for each call's
// after-call work (notes, a disposition from the administrator's list).
// Served as a file, not inline, for the Content-Security-Policy. Text
// from the PBX always goes in as text (textContent), never as HTML.
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

// The administrator's dispositions (from /calls), for the work forms.
let dispositions = [];
// Each call's row and after-call work form, by call id: kept across
// refreshes so what the agent is typing is never lost.
const callRows = new Map();
let formCount = 0;

// The disposition select: "(none)" and the administrator's list, keeping
// the agent's current pick (or the saved one) when it is still listed.
function fillDispositions(select, wanted) {
  const current = wanted !== undefined ? wanted : select.value;
  const names = dispositions.slice();
  if (current && !names.includes(current)) names.push(current);
  const same = select.options.length === names.length + 1
    && names.every((n, i) => select.options[i + 1].value === n);
  if (!same) {
    const none = document.createElement("option");
    none.value = ""; none.textContent = "(none)";
    select.replaceChildren(none, ...names.map((n) => {
      const o = document.createElement("option");
      o.value = n; o.textContent = n;
      return o;
    }));
  }
  select.value = current || "";
}

// After-call work for one call: notes and a disposition, saved to the
// call's Task (the same Task, updated) through the PBX.
function workFormOf(call) {
  const n = ++formCount;
  const form = document.createElement("form");
  form.className = "work";
  const notesLabel = document.createElement("label");
  notesLabel.htmlFor = `work-notes-${n}`; notesLabel.textContent = "Notes";
  const notes = document.createElement("textarea");
  notes.id = `work-notes-${n}`; notes.name = "notes"; notes.className = "work-notes";
  notes.rows = 3; notes.maxLength = 4000;
  notes.value = (call.work && call.work.notes) || "";
  const dispLabel = document.createElement("label");
  dispLabel.htmlFor = `work-disposition-${n}`; dispLabel.textContent = "Disposition";
  const select = document.createElement("select");
  select.id = `work-disposition-${n}`; select.name = "disposition"; select.className = "work-disposition";
  fillDispositions(select, (call.work && call.work.disposition) || "");
  const save = document.createElement("button");
  save.type = "submit"; save.className = "save-work"; save.textContent = "Save notes";
  const result = document.createElement("p");
  result.className = "work-result"; result.setAttribute("role", "status");
  form.append(notesLabel, notes, dispLabel, select, save, result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveWork(call.call_id, notes, select, save, result);
  });
  return form;
}

async function saveWork(callId, notes, select, save, result) {
  result.className = "work-result";
  result.textContent = "Saving…";
  save.disabled = true;
  try {
    const response = await fetch(`${BASE}/calls/${encodeURIComponent(callId)}/work`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ notes: notes.value, disposition: select.value }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      result.className = "work-result error";
      result.textContent = (answer.error || `The PBX answered ${response.status}.`).replaceAll("`", "");
      return;
    }
    const said = (answer.plugins || [])
      .flatMap((p) => p.ok ? (p.outcome || []).map((o) => o.detail) : [`${p.plugin}: ${p.error}`])
      .filter(Boolean);
    const at = new Date(answer.saved_at_ms).toLocaleTimeString();
    result.className = "work-result saved";
    result.textContent = `Saved at ${at}${answer.disposition ? ` (${answer.disposition})` : ""}. ${said.join(" ")}`.trim();
  } catch (e) {
    result.className = "work-result error";
    result.textContent = "The PBX cannot be reached.";
  } finally {
    save.disabled = false;
  }
}

// A call's line: when, direction, number, phase, and its record.
function callInfoOf(call) {
  const info = document.createElement("div");
  info.className = "call-info";
  const time = document.createElement("time");
  const at = new Date(call.started_at_ms);
  time.dateTime = at.toISOString();
  time.textContent = at.toLocaleString();
  const what = document.createElement("span");
  what.textContent = `${call.direction} ${call.number} (${call.phase}) `;
  info.append(time, what);
  const record = call.record || records.get(call.call_id);
  if (record) {
    info.append(link(record.url, record.title, "record"));
    const facts = document.createElement("span");
    facts.className = "record-details";
    facts.textContent = (record.details || []).map((d) => ` ${d.label}: ${d.value}`).join(" ·");
    info.append(facts);
  }
  return info;
}

async function loadCalls() {
  let answer;
  try {
    const response = await fetch(`${BASE}/calls`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    answer = await response.json();
  } catch (e) { return; }
  dispositions = Array.isArray(answer.dispositions) ? answer.dispositions : [];
  const list = el("calls");
  const calls = answer.calls || [];
  const listed = new Set(calls.map((c) => c.call_id));
  for (const [id, row] of callRows) {
    if (!listed.has(id)) { row.li.remove(); callRows.delete(id); }
  }
  // Rows are updated in place and moved only when out of order, so a
  // form being typed in keeps its focus.
  calls.forEach((call, i) => {
    let row = callRows.get(call.call_id);
    if (!row) {
      const li = document.createElement("li");
      li.className = "call";
      li.dataset.callId = call.call_id;
      const form = workFormOf(call);
      li.append(callInfoOf(call), form);
      row = { li, form };
      callRows.set(call.call_id, row);
    } else {
      row.li.firstElementChild.replaceWith(callInfoOf(call));
      fillDispositions(row.form.querySelector("select"));
    }
    if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
  });
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
