// The administrator's portal: the CRM integration (its settings form as the
// plugin describes it, authorization, status), the users page with
// associations, extensions, and plugin versions. Served as a file
// (server/assets.rs) for the pages' Content-Security-Policy: no inline
// script or style anywhere, text from the API always goes in as text.
"use strict";
// The CRM plugin this page configures: ?plugin=ID, else the first active
// one (a picker appears when there are several). Its wording comes from
// the plugin's own description.
let PLUGIN = new URLSearchParams(location.search).get("plugin");
let CRM = "the CRM";
const el = (id) => document.getElementById(id);

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const response = await fetch("/api" + path, init);
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(value && value.error ? value.error : response.statusText);
  return value;
}

function text(node, value) { node.textContent = value == null ? "" : String(value); }

function showStatus(status) {
  const node = el("status");
  text(node, status.message);
  node.className = status.state === "Connected" ? "state-connected" : "state-other";
  text(el("account"), status.account ? "Connected as " + status.account : "");
  text(el("problem"), status.problem || "");
  showCallLogs(status);
}

function showCallLogs(status) {
  let line = "";
  if (status.pending_call_logs != null) line = "Call logs waiting: " + status.pending_call_logs;
  if (status.queued_call_events) line += (line ? "; " : "") + "call events kept for another delivery: " + status.queued_call_events;
  text(el("call-logs"), line);
}

// The pending count changes as calls end: refresh it now and then.
setInterval(async () => {
  try { showCallLogs(await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/status`)); } catch (e) { /* the status line says why */ }
}, 5000);

async function choosePlugin() {
  const active = (await api("GET", "/plugins")).plugins.filter((p) => p.active).map((p) => p.id);
  if (!PLUGIN) PLUGIN = active[0] || null;
  const picker = el("crm-plugin");
  picker.replaceChildren(...active.map((id) => { const o = document.createElement("option"); o.value = id; text(o, id); return o; }));
  picker.value = PLUGIN || "";
  picker.hidden = active.length < 2;
}

el("crm-plugin").addEventListener("change", async (event) => {
  PLUGIN = event.target.value;
  await loadCrm();
  await loadUsers();
});

async function loadCrm() {
  // Plugins come and go (install, activate): the picker follows.
  try { await choosePlugin(); } catch (e) { /* the plugins table says why */ }
  if (!PLUGIN) {
    text(el("crm-name"), "no CRM plugin is installed");
    text(el("status"), "Install a CRM plugin under Plugins below.");
    return;
  }
  try {
    const info = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/describe`);
    CRM = info.crm_name;
    text(el("crm-name"), CRM);
    for (const node of document.querySelectorAll(".crm-name")) text(node, CRM);
    const values = (await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/settings`)).settings;
    renderSettings(info.settings, values);
    showStatus(await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/status`));
  } catch (e) {
    text(el("crm-name"), PLUGIN);
    text(el("status"), e.message);
  }
  text(el("callback-url"), (await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/callback-url`)).callback_url);
}

function renderSettings(fields, values) {
  const form = el("settings-form");
  form.replaceChildren();
  const byKey = Object.fromEntries(values.map((v) => [v.key, v]));
  for (const field of fields) {
    const label = document.createElement("label");
    label.htmlFor = "setting-" + field.key;
    text(label, field.label + (field.required ? " *" : ""));
    let input;
    if (field.kind === "Choice") {
      input = document.createElement("select");
      for (const choice of field.choices) {
        const option = document.createElement("option");
        option.value = choice.value;
        text(option, choice.label);
        input.append(option);
      }
    } else {
      input = document.createElement("input");
      input.type = field.kind === "Secret" ? "password" : (field.kind === "Url" ? "url" : "text");
      input.autocomplete = "off";
    }
    input.id = "setting-" + field.key;
    input.name = field.key;
    input.dataset.kind = field.kind;
    const stored = byKey[field.key];
    if (field.kind === "Secret") {
      input.placeholder = stored && stored.is_set ? "•••••••• (stored; type to replace)" : "";
    } else {
      input.value = (stored && stored.value) || field.default_value || "";
    }
    const help = document.createElement("small");
    text(help, field.help);
    form.append(label, input, help);
  }
  const save = document.createElement("button");
  save.type = "submit";
  save.id = "save-settings";
  text(save, "Save");
  form.append(save);
}

// Save stores the settings, then starts the authorization: the consent page
// opens in a new tab. The tab is opened within the click (popup blockers
// allow that) and pointed at the consent page once the plugin has built it.
el("settings-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const settings = [];
  for (const input of event.target.querySelectorAll("input, select")) {
    const value = input.value.trim();
    // An empty secret keeps the stored one.
    settings.push({ key: input.name, value: input.dataset.kind === "Secret" && !value ? null : value });
  }
  // Only a connection that is not (or no longer) authorized needs the
  // consent page; changing other settings of a connected CRM does not.
  const connected = el("status").className === "state-connected";
  const tab = connected ? null : blankTab();
  try {
    const result = await api("PUT", `/crm/${encodeURIComponent(PLUGIN)}/settings`, { settings });
    showStatus(result.status);
    text(el("settings-result"), "Saved.");
    el("settings-result").className = "";
    if (result.status.state !== "Connected") {
      await startAuthorization(tab || blankTab());
    } else if (tab) {
      tab.close();
    }
  } catch (e) {
    if (tab) tab.close();
    text(el("settings-result"), e.message);
    el("settings-result").className = "error";
  }
});

// A page a plugin names is opened only if it is a web page (http or https):
// never a javascript: or data: URL, which would run in this origin.
function webPage(url) {
  try { return ["https:", "http:"].includes(new URL(url).protocol); } catch (e) { return false; }
}

// A tab opened within a click (popup blockers allow that) and pointed at a
// page later: cut from this page first (what noopener does), so the other
// site cannot reach back through window.opener.
function blankTab() {
  const tab = window.open("", "_blank");
  if (tab) tab.opener = null;
  return tab;
}

let pendingSince = null;
async function startAuthorization(tab) {
  const before = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/status`);
  pendingSince = before.last_authorization ? before.last_authorization.at_ms : 0;
  try {
    const authorization = await api("POST", `/crm/${encodeURIComponent(PLUGIN)}/authorize`);
    if (!webPage(authorization.url)) throw new Error(`the plugin ${PLUGIN} gave an authorization page that is not an http(s) URL; it was not opened`);
    openedByPage.add(authorization.url);
    if (tab) { tab.location.replace(authorization.url); } else { window.open(authorization.url, "_blank", "noopener,noreferrer"); }
    text(el("settings-result"), `${CRM}'s authorization page opened in a new tab: log in and click Allow.`);
    el("settings-result").className = "";
  } catch (e) {
    pendingSince = null;
    if (tab) tab.close();
    text(el("settings-result"), e.message);
    el("settings-result").className = "error";
  }
}

el("authorize").addEventListener("click", () => startAuthorization(blankTab()));
el("disconnect").addEventListener("click", async () => {
  try {
    showStatus(await api("POST", `/crm/${encodeURIComponent(PLUGIN)}/disconnect`));
  } catch (e) {
    text(el("settings-result"), e.message);
    el("settings-result").className = "error";
  }
});

// While an authorization is pending, watch for the callback's outcome and
// show it in a pop-up with the new status.
async function watchAuthorization() {
  if (pendingSince === null) return;
  let status;
  try { status = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/status`); } catch (e) { return; }
  const last = status.last_authorization;
  if (!last || last.at_ms === pendingSince) return;
  pendingSince = null;
  showStatus(status);
  const title = el("result-title");
  text(title, last.ok ? "Authorization succeeded!" : "Authorization failed");
  title.className = last.ok ? "ok" : "failed";
  text(el("result-message"), last.message);
  text(el("result-status"), status.message + (status.account ? " (" + status.account + ")" : ""));
  el("result-dialog").showModal();
}

el("copy-callback").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(el("callback-url").textContent));

async function loadExtensions() {
  const rows = el("extension-rows");
  rows.replaceChildren();
  for (const ext of (await api("GET", "/extensions")).extensions) {
    const tr = document.createElement("tr");
    for (const value of [ext.number, ext.name, ext.email || ""]) {
      const td = document.createElement("td");
      text(td, value);
      tr.append(td);
    }
    const td = document.createElement("td");
    const remove = document.createElement("button");
    text(remove, "Remove");
    remove.className = "flush";
    remove.addEventListener("click", async () => {
      await api("DELETE", "/extensions/" + encodeURIComponent(ext.number));
      await loadExtensions();
      await loadUsers();
    });
    td.append(remove);
    tr.append(td);
    rows.append(tr);
  }
}

el("extension-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  try {
    await api("POST", "/extensions", { number: data.get("number"), name: data.get("name"), email: data.get("email") || null });
    event.target.reset();
    text(el("extension-result"), "");
    await loadExtensions();
    await loadUsers();
  } catch (e) {
    text(el("extension-result"), e.message);
  }
});

async function loadPlugins() {
  const rows = el("plugin-rows");
  const notices = el("plugin-notices");
  const grantTo = el("grant-plugin");
  const grantKvTo = el("grant-kv-plugin");
  rows.replaceChildren();
  notices.replaceChildren();
  grantTo.replaceChildren();
  grantKvTo.replaceChildren();
  const cell = (tr, value) => { const td = document.createElement("td"); text(td, value); tr.append(td); return td; };
  const button = (label, action) => {
    const b = document.createElement("button");
    text(b, label);
    b.className = "flush";
    b.addEventListener("click", async () => {
      try { text(el("plugin-result"), await action()); el("plugin-result").className = ""; }
      catch (e) { text(el("plugin-result"), e.message); el("plugin-result").className = "error"; }
      await loadPlugins();
      await loadCrm();
    });
    return b;
  };
  for (const p of (await api("GET", "/plugins")).plugins) {
    const option = document.createElement("option");
    text(option, p.id);
    grantTo.append(option);
    grantKvTo.append(option.cloneNode(true));
    for (const v of p.versions) {
      const tr = document.createElement("tr");
      tr.dataset.plugin = p.id;
      tr.dataset.version = v.version;
      cell(tr, p.id);
      cell(tr, v.version + (v.active ? " (active)" : ""));
      cell(tr, v.api_version);
      cell(tr, v.requested.join(", "));
      cell(tr, p.granted.join(", "));
      cell(tr, p.kv_max_keys + " keys, " + Math.floor(p.kv_max_bytes / 1048576) + " MiB");
      cell(tr, v.sha256.slice(0, 12) + "…").title = v.sha256;
      const actions = cell(tr, "");
      const path = "/plugins/" + encodeURIComponent(p.id);
      if (v.active) {
        if (p.previous) {
          actions.append(button("Roll back to " + p.previous, async () => {
            const done = await api("POST", path + "/rollback", {});
            return p.id + " " + done.active + " is active again.";
          }));
        }
      } else {
        const activate = button("Activate", async () => {
          const done = await api("POST", path + "/activate", { version: v.version });
          return p.id + " " + done.active + " is active (switched in " + (done.swap_us / 1000).toFixed(1) + " ms).";
        });
        activate.disabled = v.waiting_for_grants.length > 0;
        actions.append(activate, " ", button("Remove", async () => {
          await api("DELETE", path + "/versions/" + encodeURIComponent(v.version));
          return p.id + " " + v.version + " removed.";
        }));
      }
      rows.append(tr);
      if (v.waiting_for_grants.length > 0) {
        const notice = document.createElement("div");
        notice.className = "notice waiting";
        text(notice, p.id + " " + v.version + " requests " + v.waiting_for_grants.join(", ") +
          ", which is not granted. It stays installed but inactive: grant it below, then activate it.");
        notices.append(notice);
      }
    }
  }
}

el("plugin-install").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = el("plugin-file").files[0];
  if (!file) return;
  const query = new URLSearchParams({ activate: el("plugin-activate").checked ? "yes" : "if-none-active" });
  const sha = el("plugin-sha").value.trim();
  if (sha) query.set("sha256", sha);
  const result = el("plugin-result");
  try {
    const response = await fetch("/api/plugins?" + query, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/wasm" }, body: await file.arrayBuffer() });
    const value = await response.json();
    if (!response.ok) throw new Error(value.error || response.statusText);
    result.className = "";
    text(result, "Installed " + value.manifest.id + " " + value.manifest.version +
      (value.activated ? "; it is active." : value.waiting_for_grants.length ? "; not active: it waits for grants." : "; not active yet."));
    event.target.reset();
  } catch (e) {
    result.className = "error";
    text(result, e.message);
  }
  await loadPlugins();
});

el("plugin-grant").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = el("grant-plugin").value;
  const result = el("plugin-result");
  try {
    const granted = await api("POST", "/plugins/" + encodeURIComponent(id) + "/grants", { pattern: el("grant-pattern").value });
    result.className = "";
    text(result, id + " may reach " + granted.granted.join(", ") + ".");
    event.target.reset();
  } catch (e) {
    result.className = "error";
    text(result, e.message);
  }
  await loadPlugins();
});

el("plugin-grant-kv").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = el("grant-kv-plugin").value;
  const result = el("plugin-result");
  try {
    const granted = await api("POST", "/plugins/" + encodeURIComponent(id) + "/grants", {
      kv_max_keys: Number(el("grant-kv-keys").value), kv_max_mib: Number(el("grant-kv-mib").value) });
    result.className = "";
    text(result, id + " may keep " + granted.kv_max_keys + " keys, " + Math.floor(granted.kv_max_bytes / 1048576) + " MiB in its kv-store.");
    event.target.reset();
  } catch (e) {
    result.className = "error";
    text(result, e.message);
  }
  await loadPlugins();
});

// Pages a plugin asked to show the administrator (e.g. the CRM's consent
// page) open in a new tab; the notice keeps a link in case a blocker stops it.
let lastBrowserRequest = 0;
const openedByPage = new Set();
async function pollBrowserRequests(initial) {
  try {
    const { requests } = await api("GET", "/browser-requests?after=" + lastBrowserRequest);
    for (const request of requests) {
      lastBrowserRequest = Math.max(lastBrowserRequest, request.id);
      if (initial || request.viewer.kind !== "administrator" || openedByPage.has(request.url) || !webPage(request.url)) continue;
      // Started elsewhere (e.g. `pbx-host crm authorize`): follow it here too.
      if (pendingSince === null) {
        const before = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/status`);
        pendingSince = before.last_authorization ? before.last_authorization.at_ms : 0;
      }
      window.open(request.url, "_blank", "noopener,noreferrer");
      const notice = el("browser-notice");
      notice.className = "notice";
      notice.replaceChildren();
      const link = document.createElement("a");
      link.href = request.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.id = "browser-link";
      text(link, "Open the page the plugin asked for");
      notice.append(link);
    }
  } catch (e) { /* the next poll tries again */ }
}


// ---- Users and associations ----
const PAGE = 100;
let users = { entries: [], version: 0, extensions: [] };
let assigned = new Map(); // user id -> extension number (unsaved edits included)
let page = 0;

function userName(id) {
  const entry = users.entries.find((e) => e.user.id === id);
  return entry ? entry.user.name : id;
}

async function loadUsers() {
  if (!PLUGIN) return;
  try {
    users = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/users`);
  } catch (e) {
    text(el("sync-text"), e.message);
    return;
  }
  assigned = new Map(users.entries.filter((e) => e.extension).map((e) => [e.user.id, e.extension]));
  renderUsers();
  showSync(users.sync);
}

function stateLabel(entry) {
  const extension = assigned.get(entry.user.id);
  if (entry.state === "StaleUser") return `Stale: no longer active in ${CRM}`;
  if (entry.state === "StaleExtension" && extension === entry.extension) return "Stale: extension removed";
  return extension ? "Associated" : "";
}

function renderUsers() {
  const filter = el("user-filter").value.trim().toLowerCase();
  const shown = users.entries.filter((e) => !filter
    || e.user.name.toLowerCase().includes(filter)
    || (e.user.email || "").toLowerCase().includes(filter));
  page = Math.min(page, Math.max(0, Math.ceil(shown.length / PAGE) - 1));
  const rows = el("user-rows");
  rows.replaceChildren();
  for (const entry of shown.slice(page * PAGE, (page + 1) * PAGE)) {
    const tr = document.createElement("tr");
    tr.dataset.user = entry.user.id;
    const name = document.createElement("td");
    text(name, entry.user.name);
    const email = document.createElement("td");
    text(email, entry.user.email || "(no e-mail)");
    const cell = document.createElement("td");
    const select = document.createElement("select");
    select.className = "extension-select";
    select.setAttribute("aria-label", "Extension of " + entry.user.name);
    const none = document.createElement("option");
    none.value = "";
    text(none, "—");
    select.append(none);
    const current = assigned.get(entry.user.id) || "";
    const numbers = new Set(users.extensions.map((x) => x.number));
    if (current && !numbers.has(current)) numbers.add(current);
    for (const number of numbers) {
      const option = document.createElement("option");
      option.value = number;
      const ext = users.extensions.find((x) => x.number === number);
      text(option, ext ? `${number} ${ext.name}` : `${number} (removed)`);
      select.append(option);
    }
    select.value = current;
    select.addEventListener("change", () => {
      const chosen = select.value;
      const owner = chosen && [...assigned.entries()].find(([u, x]) => x === chosen && u !== entry.user.id);
      if (owner) {
        text(el("assoc-result"), `Extension ${chosen} already belongs to ${userName(owner[0])}: one extension belongs to one ${CRM} user. Clear it there first.`);
        el("assoc-result").className = "error";
        select.value = assigned.get(entry.user.id) || "";
        return;
      }
      if (chosen) assigned.set(entry.user.id, chosen); else assigned.delete(entry.user.id);
      text(el("assoc-result"), "Not saved yet.");
      el("assoc-result").className = "";
      renderUsers();
    });
    cell.append(select);
    const state = document.createElement("td");
    text(state, stateLabel(entry));
    if (entry.state === "StaleUser" || entry.state === "StaleExtension") state.className = "stale";
    tr.append(name, email, cell, state);
    rows.append(tr);
  }
  const pages = Math.ceil(shown.length / PAGE);
  const nav = el("user-pages");
  nav.replaceChildren();
  text(nav, `${shown.length} users` + (pages > 1 ? ` — page ${page + 1} of ${pages} ` : ""));
  if (pages > 1) {
    for (const [label, to] of [["Previous", page - 1], ["Next", page + 1]]) {
      const b = document.createElement("button");
      text(b, label);
      b.type = "button";
      b.disabled = to < 0 || to >= pages;
      b.addEventListener("click", () => { page = to; renderUsers(); });
      nav.append(b);
    }
  }
}

el("user-filter").addEventListener("input", () => { page = 0; renderUsers(); });

function showSync(job) {
  const bar = el("sync-progress");
  if (!job) return;
  if (job.running) {
    bar.hidden = false;
    bar.max = Math.max(job.total, 1);
    bar.value = job.fetched;
    text(el("sync-text"), `Reading users from ${CRM}: ${job.fetched} of ${job.total || "?"}`);
  } else {
    bar.hidden = true;
    if (job.ok === false) {
      text(el("sync-text"), job.error);
      el("sync-text").className = "error";
    } else if (job.ok === true) {
      text(el("sync-text"), `${job.fetched} users read from ${CRM}.`);
      el("sync-text").className = "";
    }
  }
}

el("sync-users").addEventListener("click", async () => {
  try {
    let job = await api("POST", `/crm/${encodeURIComponent(PLUGIN)}/users/sync`);
    showSync(job);
    while (job.running) {
      await new Promise((r) => setTimeout(r, 300));
      job = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/users/sync`);
      showSync(job);
    }
    await loadUsers();
    showSync(job);
  } catch (e) {
    text(el("sync-text"), e.message);
    el("sync-text").className = "error";
  }
});

const REASONS = {
  NoEmail: () => "has no e-mail address",
  NoExtension: () => "no extension has this e-mail address",
  SharedEmail: (list) => "several extensions share the e-mail address: " + list.join(", "),
  SharedUserEmail: (list) => `other ${CRM} users share the e-mail address: ` + list.map(userName).join(", "),
};
function reasonText(reason) {
  if (typeof reason === "string") return (REASONS[reason] || (() => reason))();
  const [kind, value] = Object.entries(reason)[0];
  return (REASONS[kind] || (() => kind))(value);
}

let proposal = null;
el("auto-associate").addEventListener("click", async () => {
  try {
    proposal = await api("GET", `/crm/${encodeURIComponent(PLUGIN)}/associations/proposal`);
  } catch (e) {
    text(el("assoc-result"), e.message);
    el("assoc-result").className = "error";
    return;
  }
  const list = el("proposal-matches");
  list.replaceChildren();
  for (const m of proposal.matches) {
    const li = document.createElement("li");
    text(li, `${userName(m.user_id)} → ${m.extension}`);
    list.append(li);
  }
  if (!proposal.matches.length) { const li = document.createElement("li"); text(li, "No matches."); list.append(li); }
  text(el("proposal-unmatched-title"), proposal.unmatched.length ? `Not matched (${proposal.unmatched.length}):` : "");
  const un = el("proposal-unmatched");
  un.replaceChildren();
  for (const u of proposal.unmatched) {
    const li = document.createElement("li");
    text(li, `${userName(u.user_id)}: ${reasonText(u.reason)}`);
    un.append(li);
  }
  el("proposal-dialog").showModal();
});

el("proposal-dialog").addEventListener("close", () => {
  if (el("proposal-dialog").returnValue !== "ok" || !proposal) return;
  // The proposal replaces what it covers; nothing is stored until Save.
  for (const m of proposal.matches) {
    for (const [u, x] of [...assigned.entries()]) if (x === m.extension && u !== m.user_id) assigned.delete(u);
    assigned.set(m.user_id, m.extension);
  }
  users.version = proposal.version;
  text(el("assoc-result"), `${proposal.matches.length} proposed associations filled in. Click Save to store them.`);
  el("assoc-result").className = "";
  renderUsers();
});

el("save-associations").addEventListener("click", async () => {
  const associations = [...assigned.entries()].map(([user_id, extension]) => ({ user_id, extension }));
  try {
    const saved = await api("PUT", `/crm/${encodeURIComponent(PLUGIN)}/associations`, { version: users.version, associations });
    text(el("assoc-result"), `Saved (version ${saved.version}).`);
    el("assoc-result").className = "";
    await loadUsers();
  } catch (e) {
    text(el("assoc-result"), e.message);
    el("assoc-result").className = "error";
  }
});

loadCrm().then(loadUsers);
loadExtensions();
loadPlugins();
pollBrowserRequests(true).then(() => setInterval(() => pollBrowserRequests(false), 1000));
setInterval(watchAuthorization, 700);

// ---- Signed-in agents (self-contained block): who is signed in, and
// signing a session out, from GET/DELETE /api/sessions.
async function loadSessions() {
  let answer;
  try { answer = await api("GET", "/sessions"); } catch (e) { text(el("sessions-result"), e.message); return; }
  const body = el("sessions-body");
  body.replaceChildren();
  for (const s of answer.sessions) {
    const row = document.createElement("tr");
    row.dataset.handle = s.handle;
    const how = s.how === "crm" ? `${s.plugin} user ${s.crm_user}` : (s.how || "admin token");
    const cells = [s.kind, s.extension || "", how,
      new Date(s.since_ms).toLocaleString(), new Date(s.last_seen_ms).toLocaleTimeString()];
    for (const value of cells) { const td = document.createElement("td"); text(td, value); row.append(td); }
    const td = document.createElement("td");
    if (s.kind === "agent") {
      const button = document.createElement("button");
      button.type = "button"; button.className = "sign-out"; text(button, "Sign out");
      button.addEventListener("click", async () => {
        try { await api("DELETE", `/sessions/${encodeURIComponent(s.handle)}`); text(el("sessions-result"), `Signed out extension ${s.extension}.`); }
        catch (e) { text(el("sessions-result"), e.message); }
        loadSessions();
      });
      td.append(button);
    }
    row.append(td);
    body.append(row);
  }
}
loadSessions();
setInterval(loadSessions, 10000);
// ---- Dead letters ------------------------------------------------------
// Call events the host gave up delivering to a plugin (its retry queue was
// full, or the event ran out of attempts or time): list them, deliver one
// again, or discard it. A self-contained block: it uses only api(), text()
// and el() from above.
async function loadDeadLetters() {
  const rows = el("dead-letter-rows");
  let answer;
  try {
    answer = await api("GET", "/calls/dead-letters");
  } catch (e) {
    text(el("dead-letters-summary"), e.message);
    return;
  }
  const letters = answer.dead_letters || [];
  text(el("dead-letters-summary"), letters.length
    ? `${letters.length} call events were not delivered (at most ${answer.limits.dead_letters_max} are kept; after ${answer.limits.max_attempts} attempts or ${Math.round(answer.limits.max_age_s / 3600)} h an event lands here).`
    : "Every call event was delivered or is still being retried.");
  el("dead-letters-table").hidden = letters.length === 0;
  rows.replaceChildren(...letters.map((letter) => {
    const row = document.createElement("tr");
    const cells = [new Date(letter.dead_at_ms).toLocaleString(), letter.plugin, letter.call_id, letter.phase,
      letter.attempts, `${letter.reason}; last error: ${letter.last_error}`];
    for (const value of cells) { const td = document.createElement("td"); text(td, value); row.append(td); }
    const actions = document.createElement("td");
    for (const [label, run] of [["Retry", retryDeadLetter], ["Discard", discardDeadLetter]]) {
      const button = document.createElement("button");
      button.type = "button";
      text(button, label);
      button.addEventListener("click", () => run(letter.id));
      actions.append(button);
    }
    row.append(actions);
    return row;
  }));
}

async function deadLetterAction(work, done) {
  const result = el("dead-letters-result");
  try {
    await work();
    text(result, done);
    result.className = "";
  } catch (e) {
    text(result, e.message);
    result.className = "error";
  }
  await loadDeadLetters();
}

function retryDeadLetter(id) {
  return deadLetterAction(() => api("POST", `/calls/dead-letters/${encodeURIComponent(id)}/retry`, {}), "Delivered again.");
}

function discardDeadLetter(id) {
  return deadLetterAction(() => api("DELETE", `/calls/dead-letters/${encodeURIComponent(id)}`), "Discarded.");
}

loadDeadLetters();
setInterval(loadDeadLetters, 10000);
