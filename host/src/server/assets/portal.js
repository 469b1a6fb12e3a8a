// The administrator's portal, in the order of the set-up guide: Network
// (Homepage URL, Callback URL), the CRM integration (Authorization: the
// plugin's connection settings and Save; Status), Call logging (the
// plugin's call options), the users table with associations, extensions,
// and plugin versions. Served as a file (server/assets.rs) for the pages'
// Content-Security-Policy: no inline script or style anywhere, text from
// the API always goes in as text.
"use strict";
// The CRM plugin this page configures: each CRM has its own page,
// /crm/ID (the host serves this portal there for an active plugin), and
// ?plugin=ID names one too; at / it is the first active one. The list of
// CRMs, from the active plugins by their manifest's name, links to each
// page. Its wording comes from the plugin's own description.
const CRM_PAGE = location.pathname.match(/^\/crm\/([^/]+)\/?$/);
let PLUGIN = CRM_PAGE ? decodeURIComponent(CRM_PAGE[1]) : new URLSearchParams(location.search).get("plugin");
let CRM = "the CRM";
const el = (id) => document.getElementById(id);
const crmPath = (rest) => `/crm/${encodeURIComponent(PLUGIN)}${rest}`;

// An API error keeps what the page needs to place it: the HTTP status,
// the error kind and, for invalid input, the field.
class ApiError extends Error {
  constructor(message, status, value) {
    super(message);
    this.status = status;
    this.kind = value && value.kind;
    this.field = value && value.field;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const response = await fetch("/api" + path, init);
  const raw = await response.text();
  let value = null;
  try { value = raw ? JSON.parse(raw) : null; } catch (e) { value = null; }
  if (!response.ok) throw new ApiError(value && value.error ? value.error : response.statusText, response.status, value);
  return value;
}

function text(node, value) { node.textContent = value == null ? "" : String(value); }

// "a", "a and b", "a, b and c".
function andList(items) {
  return items.length < 2 ? items.join("") : items.slice(0, -1).join(", ") + " and " + items[items.length - 1];
}

// "1 user", "2 users".
function plural(n, one, many) { return `${n} ${n === 1 ? one : (many || one + "s")}`; }

// A message for the administrator: command names the API quotes between
// backticks are shown as code, not as backticks. A host the operator has
// not granted points at this page's Grant form, filled in.
function say(node, message, isError) {
  node.replaceChildren();
  node.className = isError ? "error" : "";
  const parts = String(message == null ? "" : message).split("`");
  parts.forEach((part, i) => {
    if (i % 2 === 1 && i < parts.length - 1) {
      const code = document.createElement("code");
      code.className = "inline";
      text(code, part);
      node.append(code);
    } else {
      node.append(i % 2 === 1 ? "`" + part : part);
    }
  });
  const grant = /does not allow connections to (\S+?): |requests (\S+?), which (?:the operator has|is) not granted/.exec(String(message));
  if (isError && grant) {
    const pattern = grant[1] || grant[2];
    const link = document.createElement("a");
    link.href = "#plugin-grant";
    link.className = "grant-link";
    text(link, `Grant ${pattern} in the Plugins section`);
    link.addEventListener("click", () => { el("grant-pattern").value = pattern; el("grant-pattern").focus(); });
    node.append(" ", link, ".");
  }
}

// A page title per section: the section the address points at.
function titleForSection() {
  const link = location.hash && document.querySelector(`nav a[href="${CSS.escape(location.hash)}"]`);
  document.title = link ? `${link.textContent} · PBX portal` : "PBX portal";
}
window.addEventListener("hashchange", titleForSection);
titleForSection();

// A confirmation the administrator answers in a dialog: true for yes.
function confirmDialog(title, message, yes) {
  const dialog = el("confirm-dialog");
  text(el("confirm-title"), title);
  text(el("confirm-message"), message);
  text(el("confirm-yes"), yes);
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

// ---- Network ----
// The Homepage URL (a host setting; --public-url stands in until it is
// set), what a CRM will object to in it, and the Callback URL composed
// from it.
function showNetwork(network) {
  el("homepage-url").value = network.homepage_url;
  text(el("homepage-source"), network.source === "administrator"
    ? `Set here; it wins over the host's --public-url, ${network.public_url}.`
    : "Until it is saved here, the host's --public-url applies.");
  const list = el("homepage-warnings");
  list.replaceChildren(...network.warnings.map((warning) => {
    const li = document.createElement("li");
    li.className = "warning";
    text(li, warning);
    return li;
  }));
}

async function loadNetwork() {
  try { showNetwork(await api("GET", "/network")); } catch (e) { say(el("network-result"), e.message, true); }
}

el("network-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = el("homepage-url");
  const result = el("network-result");
  input.removeAttribute("aria-invalid");
  text(el("homepage-error"), "");
  try {
    showNetwork(await api("PUT", "/network", { homepage_url: input.value.trim() }));
    say(result, "Saved. Enter the new Callback URL in " + CRM + " too.", false);
  } catch (e) {
    input.setAttribute("aria-invalid", "true");
    text(el("homepage-error"), e.message);
    say(result, "Nothing was saved: " + e.message, true);
    return;
  }
  if (PLUGIN) {
    try { text(el("callback-url"), (await api("GET", crmPath("/callback-url"))).callback_url); } catch (e) { say(el("callback-url"), e.message, true); }
  }
});

el("copy-callback").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(el("callback-url").textContent);
    say(el("copy-result"), "Copied.", false);
  } catch (e) {
    say(el("copy-result"), "The browser did not allow copying: select the address and copy it.", true);
  }
});

// ---- CRM integration: status ----
const STATE_LABELS = {
  NotConfigured: "Not configured",
  Configured: "Not authorized yet",
  Connected: "Connected",
  ReauthorizationNeeded: "Authorization needed",
  Disconnected: "Disconnected",
};
let STATE = null;

function showStatus(status) {
  STATE = status.state;
  const label = STATE_LABELS[status.state] || status.message;
  const node = el("status");
  text(node, label);
  node.className = status.state === "Connected" ? "state-connected" : "state-other";
  // "Connected — admin@acme.example (org 00D…)": the account beside the state.
  text(el("account"), status.account ? "— " + status.account : "");
  text(el("status-message"), status.message && status.message !== label ? status.message : "");
  text(el("problem"), status.problem || "");
  // Only what can apply: nothing to authorize before settings are saved,
  // nothing to disconnect before a connection.
  const authorize = el("authorize");
  authorize.hidden = status.state === "NotConfigured";
  text(authorize, ["Configured", "Disconnected"].includes(status.state) ? "Authorize" : "Authorize again");
  el("disconnect").hidden = !["Connected", "ReauthorizationNeeded"].includes(status.state);
  showCallLogs(status);
}

// The CRM org's daily API use, when the plugin reports it (contract 0.5.0):
// "API requests today: 13,599 of 15,000 (90 %)". Above 90 % the problem
// line says what waits.
function showApiUsage(status) {
  const usage = status.api_usage;
  const node = el("api-usage");
  if (!usage || !usage.limit) { text(node, ""); node.className = "muted-line"; return; }
  const percent = Math.floor((usage.used * 100) / usage.limit);
  const n = (v) => Number(v).toLocaleString("en-US");
  text(node, "API requests today: " + n(usage.used) + " of " + n(usage.limit) + " (" + percent + " %)");
  node.className = usage.used * 100 > usage.limit * 90 ? "warning-line" : "muted-line";
}

function showCallLogs(status) {
  showApiUsage(status);
  const parts = [];
  if (status.pending_call_logs != null) parts.push("call logs waiting: " + status.pending_call_logs);
  if (status.queued_call_events) parts.push("call events kept for another delivery: " + status.queued_call_events);
  const line = parts.join("; ");
  text(el("call-logs"), line ? line[0].toUpperCase() + line.slice(1) : "");
}

// The pending count changes as calls end: refresh it now and then.
setInterval(async () => {
  if (!PLUGIN) return;
  try { showCallLogs(await api("GET", crmPath("/status"))); } catch (e) { /* the status line says why */ }
}, 5000);

async function choosePlugin() {
  const active = (await api("GET", "/plugins")).plugins.filter((p) => p.active)
    .map((p) => ({ id: p.id, name: (p.manifest && p.manifest.name) || p.id }));
  if (!PLUGIN) PLUGIN = active.length ? active[0].id : null;
  const list = el("crm-plugins");
  list.replaceChildren(...active.map((p) => {
    const link = document.createElement("a");
    link.href = `/crm/${encodeURIComponent(p.id)}`;
    link.dataset.plugin = p.id;
    text(link, p.name);
    if (p.id === PLUGIN) link.setAttribute("aria-current", "page");
    return link;
  }));
  el("crm-plugin-line").hidden = active.length < 2;
}

function showUnavailable(message) {
  STATE = null;
  text(el("status"), "Unavailable");
  el("status").className = "state-other";
  text(el("account"), "");
  text(el("status-message"), message);
  el("authorize").hidden = true;
  el("disconnect").hidden = true;
}

async function loadCrm() {
  // Plugins come and go (install, activate): the picker follows.
  try { await choosePlugin(); } catch (e) { /* the plugins table says why */ }
  if (!PLUGIN) {
    text(el("crm-name"), "no CRM plugin is active");
    text(el("callback-url"), "shown once a CRM plugin is active");
    showUnavailable("Install a CRM plugin and activate it under Plugins.");
    return;
  }
  try {
    const info = await api("GET", crmPath("/describe"));
    CRM = info.crm_name;
    text(el("crm-name"), CRM);
    for (const node of document.querySelectorAll(".crm-name")) text(node, CRM);
    el("sync-users").setAttribute("aria-label", `Refresh ${CRM} users`);
    el("sync-users").title = `Refresh ${CRM} users`;
    FIELDS = info.settings;
    STORED = (await api("GET", crmPath("/settings"))).settings;
    renderSettings();
    showStatus(await api("GET", crmPath("/status")));
  } catch (e) {
    text(el("crm-name"), PLUGIN);
    showUnavailable(e.message);
  }
  try { text(el("callback-url"), (await api("GET", crmPath("/callback-url"))).callback_url); } catch (e) { say(el("callback-url"), e.message, true); }
}

// ---- CRM integration: the plugin's settings ----
// The plugin describes its settings; the host knows no CRM. What connects
// (every field up to the last required one, and any text, secret or URL
// field) goes under Authorization; the optional choices after them are
// the plugin's call options, under Call logging.
let FIELDS = [];
let STORED = [];

function isConnectionField(field, index) {
  const lastRequired = FIELDS.reduce((last, f, i) => (f.required ? i : last), -1);
  return index <= lastRequired || field.kind !== "Choice";
}

function storedOf(key) { return STORED.find((v) => v.key === key); }

function renderSettings() {
  const auth = el("settings-form");
  const calls = el("call-settings-form");
  auth.replaceChildren();
  calls.replaceChildren();
  FIELDS.forEach((field, index) => {
    const form = isConnectionField(field, index) ? auth : calls;
    const wrap = document.createElement("div");
    wrap.className = "field";
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
    if (field.required) input.setAttribute("aria-required", "true");
    const stored = storedOf(field.key);
    if (field.kind === "Secret") {
      input.placeholder = stored && stored.is_set ? "•••••••• stored; type to replace" : "";
    } else {
      input.value = (stored && stored.value) || field.default_value || "";
    }
    const help = document.createElement("small");
    help.id = "help-" + field.key;
    text(help, field.help);
    const error = document.createElement("span");
    error.id = "error-" + field.key;
    error.className = "field-error";
    input.setAttribute("aria-describedby", help.id + " " + error.id);
    input.addEventListener("input", () => clearFieldError(field.key));
    wrap.append(label, input, error, help);
    form.append(wrap);
  });
  const save = (id) => {
    const row = document.createElement("p");
    row.className = "save-row";
    const button = document.createElement("button");
    button.type = "submit";
    button.id = id;
    text(button, "Save");
    row.append(button);
    return row;
  };
  auth.append(save("save-settings"));
  calls.append(save("save-call-settings"));
  const hasCalls = calls.querySelector(".field") !== null;
  el("call-logging").hidden = !hasCalls;
  el("nav-call-logging").hidden = !hasCalls;
}

function clearFieldError(key) {
  const input = el("setting-" + key);
  const error = el("error-" + key);
  if (input) input.removeAttribute("aria-invalid");
  if (error) text(error, "");
}

function showFieldError(key, message) {
  const input = el("setting-" + key);
  const error = el("error-" + key);
  if (!input || !error) return false;
  input.setAttribute("aria-invalid", "true");
  text(error, message);
  return true;
}

// The settings to send when one form is saved: that form's values, and
// for the other form what is stored (a secret as null: keep it), so a
// Save changes only what its form shows.
function settingsFor(form) {
  const settings = [];
  FIELDS.forEach((field) => {
    const input = el("setting-" + field.key);
    const own = input && form.contains(input);
    let value;
    if (own) {
      value = input.value.trim();
    } else {
      const stored = storedOf(field.key);
      value = field.kind === "Secret" ? "" : ((stored && stored.value) || field.default_value || "");
    }
    // An empty secret keeps the stored one.
    settings.push({ key: field.key, value: field.kind === "Secret" && !value ? null : value });
  });
  return settings;
}

// Required fields are checked before anything is sent; the first missing
// one gets the focus. Returns the labels of those missing.
function missingRequired(settings) {
  const missing = [];
  for (const field of FIELDS) {
    clearFieldError(field.key);
    if (!field.required) continue;
    const sent = settings.find((s) => s.key === field.key);
    const stored = storedOf(field.key);
    const empty = !sent || sent.value === null || sent.value === "";
    const kept = field.kind === "Secret" && sent && sent.value === null && stored && stored.is_set;
    if (empty && !kept) {
      showFieldError(field.key, `Enter the ${field.label}: it is required.`);
      missing.push(field);
    }
  }
  if (missing.length) el("setting-" + missing[0].key).focus();
  return missing;
}

async function saveSettings(form, result, authorizeAfter) {
  // A new attempt: what the last one said no longer applies.
  say(result, "", false);
  const settings = settingsFor(form);
  const missing = missingRequired(settings);
  if (missing.length) {
    say(result, `Nothing was saved: enter ${andList(missing.map((f) => "the " + f.label))}` +
      (missing.some((f) => !form.contains(el("setting-" + f.key))) ? " under Authorization first." : "."), true);
    return;
  }
  // Only a connection that is not (or no longer) authorized needs the
  // consent page. The tab is opened within the click (popup blockers
  // allow that) and pointed at the consent page once the plugin built it.
  const tab = authorizeAfter && STATE !== "Connected" ? blankTab() : null;
  let saved;
  try {
    saved = await api("PUT", crmPath("/settings"), { settings });
  } catch (e) {
    if (tab) tab.close();
    if (e.field) showFieldError(e.field, e.message);
    say(result, "Nothing was saved: " + e.message, true);
    return;
  }
  showStatus(saved.status);
  try { STORED = (await api("GET", crmPath("/settings"))).settings; } catch (e) { /* the form keeps what was typed */ }
  // A saved secret leaves the page; the other form keeps its unsaved edits.
  for (const input of form.querySelectorAll("input[data-kind=Secret]")) {
    const stored = storedOf(input.name);
    input.value = "";
    input.placeholder = stored && stored.is_set ? "•••••••• stored; type to replace" : "";
  }
  say(result, "Saved.", false);
  if (tab && saved.status.state !== "Connected") {
    await startAuthorization(tab);
  } else if (tab) {
    tab.close();
  }
}

el("settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  say(el("call-settings-result"), "", false);
  saveSettings(event.target, el("settings-result"), true);
});

el("call-settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  say(el("settings-result"), "", false);
  saveSettings(event.target, el("call-settings-result"), false);
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
  const result = el("settings-result");
  try {
    const before = await api("GET", crmPath("/status"));
    pendingSince = before.last_authorization ? before.last_authorization.at_ms : 0;
    const authorization = await api("POST", crmPath("/authorize"));
    if (!webPage(authorization.url)) throw new Error(`the plugin ${PLUGIN} gave an authorization page that is not an http(s) URL; it was not opened`);
    openedByPage.add(authorization.url);
    if (tab) { tab.location.replace(authorization.url); } else { window.open(authorization.url, "_blank", "noopener,noreferrer"); }
    say(result, `${CRM}'s authorization page opened in a new tab: log in and click Allow.`, false);
  } catch (e) {
    pendingSince = null;
    if (tab) tab.close();
    say(result, e.message, true);
  }
}

el("authorize").addEventListener("click", () => startAuthorization(blankTab()));
el("disconnect").addEventListener("click", async () => {
  if (!await confirmDialog(`Disconnect ${CRM}?`,
    `The PBX forgets its access to ${CRM}: calls are no longer logged and pop-ups stop until you authorize again. The settings and associations are kept.`,
    "Disconnect")) return;
  try {
    showStatus(await api("POST", crmPath("/disconnect")));
    say(el("settings-result"), `Disconnected from ${CRM}.`, false);
  } catch (e) {
    say(el("settings-result"), e.message, true);
  }
});

// While an authorization is pending, watch for the callback's outcome and
// show it in a pop-up with the new status; the "opened in a new tab" line
// gives way to the outcome.
async function watchAuthorization() {
  if (pendingSince === null || !PLUGIN) return;
  let status;
  try { status = await api("GET", crmPath("/status")); } catch (e) { return; }
  const last = status.last_authorization;
  if (!last || last.at_ms === pendingSince) return;
  pendingSince = null;
  showStatus(status);
  el("browser-notice").replaceChildren();
  el("browser-notice").className = "";
  say(el("settings-result"), last.ok ? "Authorization succeeded." : last.message, !last.ok);
  showResult("authorization", last.ok, last.ok ? "Authorization succeeded!" : "Authorization failed", last.message,
    (STATE_LABELS[status.state] || status.message) + (status.account ? " — " + status.account : ""));
}

// The result pop-up: an authorization's outcome, or how a user refresh
// ended. A refresh's result is kept by the host until OK dismisses it, so
// it is still here after a reload or a host restart.
function showResult(kind, ok, title, message, status) {
  const dialog = el("result-dialog");
  if (dialog.open) dialog.close();
  dialog.dataset.kind = kind;
  text(el("result-title"), title);
  el("result-title").className = ok ? "ok" : "failed";
  text(el("result-message"), message);
  text(el("result-status"), status || "");
  el("result-status-line").hidden = !status;
  dialog.returnValue = "";
  dialog.showModal();
}

el("result-dialog").addEventListener("close", async () => {
  const dialog = el("result-dialog");
  if (dialog.dataset.kind !== "user-sync" || !PLUGIN) return;
  dialog.dataset.kind = "";
  try { await api("DELETE", crmPath("/users/sync/result")); } catch (e) { say(el("sync-text"), e.message, true); }
});

// ---- Extensions ----
let EXTENSIONS = [];

function describeExtension(ext) {
  return ext.name + (ext.email ? ", " + ext.email : ", no e-mail");
}

async function loadExtensions() {
  const rows = el("extension-rows");
  try { EXTENSIONS = (await api("GET", "/extensions")).extensions; } catch (e) { say(el("extension-result"), e.message, true); return; }
  rows.replaceChildren();
  for (const ext of EXTENSIONS) {
    const tr = document.createElement("tr");
    tr.dataset.extension = ext.number;
    for (const value of [ext.number, ext.name, ext.email || ""]) {
      const td = document.createElement("td");
      text(td, value);
      tr.append(td);
    }
    const td = document.createElement("td");
    const remove = document.createElement("button");
    remove.type = "button";
    text(remove, "Remove");
    remove.className = "flush remove-extension";
    remove.setAttribute("aria-label", `Remove extension ${ext.number}`);
    remove.addEventListener("click", () => removeExtension(ext));
    td.append(remove);
    tr.append(td);
    rows.append(tr);
  }
}

async function removeExtension(ext) {
  const result = el("extension-result");
  if (!await confirmDialog(`Remove extension ${ext.number}?`,
    `Extension ${ext.number} is ${describeExtension(ext)}. Its agents are signed out, its password is dropped, and a ${CRM} user associated with it shows as stale.`,
    "Remove")) {
    say(result, `Extension ${ext.number} was kept.`, false);
    return;
  }
  try {
    await api("DELETE", "/extensions/" + encodeURIComponent(ext.number));
    say(result, `Extension ${ext.number} removed.`, false);
  } catch (e) {
    say(result, e.message, true);
  }
  await loadExtensions();
  await loadUsers();
}

// An existing number is replaced only once the administrator confirmed,
// seeing what is there now; the API refuses a silent replacement too
// (409 "exists" without ?replace=yes).
el("extension-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const result = el("extension-result");
  const data = new FormData(form);
  const wanted = { number: String(data.get("number")).trim(), name: String(data.get("name")).trim(), email: String(data.get("email") || "").trim() || null };
  const confirmReplace = async () => {
    await loadExtensions();
    const current = EXTENSIONS.find((x) => x.number === wanted.number);
    const now = current ? `Extension ${wanted.number} is ${describeExtension(current)}.` : `Extension ${wanted.number} exists.`;
    return confirmDialog(`Replace extension ${wanted.number}?`,
      `${now} Replace it with ${describeExtension(wanted)}? A ${CRM} user associated with it stays associated with the number.`,
      "Replace");
  };
  let replace = false;
  if (EXTENSIONS.some((x) => x.number === wanted.number)) {
    if (!await confirmReplace()) { say(result, `Extension ${wanted.number} was kept as it is.`, false); return; }
    replace = true;
  }
  try {
    try {
      await api("POST", "/extensions" + (replace ? "?replace=yes" : ""), wanted);
    } catch (e) {
      // Added meanwhile elsewhere: ask, as for one already listed.
      if (replace || e.kind !== "exists") throw e;
      if (!await confirmReplace()) { say(result, `Extension ${wanted.number} was kept as it is.`, false); return; }
      replace = true;
      await api("POST", "/extensions?replace=yes", wanted);
    }
    form.reset();
    say(result, `Extension ${wanted.number} ${replace ? "replaced" : "added"}.`, false);
  } catch (e) {
    say(result, e.message, true);
  }
  await loadExtensions();
  await loadUsers();
});

// ---- Plugins ----
async function loadPlugins() {
  const rows = el("plugin-rows");
  const notices = el("plugin-notices");
  const grantTo = el("grant-plugin");
  const grantKvTo = el("grant-kv-plugin");
  let listing;
  try { listing = await api("GET", "/plugins"); } catch (e) { say(el("plugin-result"), e.message, true); return []; }
  rows.replaceChildren();
  notices.replaceChildren();
  grantTo.replaceChildren();
  grantKvTo.replaceChildren();
  const cell = (tr, value) => { const td = document.createElement("td"); text(td, value); tr.append(td); return td; };
  const button = (label, action) => {
    const b = document.createElement("button");
    b.type = "button";
    text(b, label);
    b.className = "flush";
    b.addEventListener("click", async () => {
      try { say(el("plugin-result"), await action(), false); }
      catch (e) { say(el("plugin-result"), e.message, true); }
      await loadPlugins();
      await loadCrm();
    });
    return b;
  };
  for (const p of listing.plugins) {
    const option = document.createElement("option");
    text(option, p.id);
    grantTo.append(option);
    grantKvTo.append(option.cloneNode(true));
    for (const v of p.versions) {
      const tr = document.createElement("tr");
      tr.dataset.plugin = p.id;
      tr.dataset.version = v.version;
      cell(tr, p.id).className = "nowrap";
      cell(tr, v.version + (v.active ? " (active)" : "")).className = "nowrap";
      cell(tr, v.api_version).className = "nowrap";
      cell(tr, v.requested.length ? v.requested.join(", ") : "none");
      cell(tr, p.granted.length ? p.granted.join(", ") : "none");
      cell(tr, p.kv_max_keys + " keys, " + Math.floor(p.kv_max_bytes / 1048576) + " MiB");
      const sha = cell(tr, v.sha256.slice(0, 10) + "…");
      sha.title = v.sha256;
      sha.className = "nowrap";
      const actions = cell(tr, "");
      const path = "/plugins/" + encodeURIComponent(p.id);
      if (v.active) {
        if (p.previous) {
          actions.append(button("Roll back to " + p.previous, async () => {
            const done = await api("POST", path + "/rollback", {});
            return `${p.id} ${done.active} is active again.`;
          }));
        }
      } else {
        const activate = button("Activate", async () => {
          const done = await api("POST", path + "/activate", { version: v.version });
          return `${p.id} ${done.active} is active, switched in ${(done.swap_us / 1000).toFixed(1)} ms.`;
        });
        activate.classList.add("activate");
        activate.setAttribute("aria-label", `Activate ${p.id} ${v.version}`);
        activate.disabled = v.waiting_for_grants.length > 0;
        const remove = button("Remove", async () => {
          await api("DELETE", path + "/versions/" + encodeURIComponent(v.version));
          return `${p.id} ${v.version} removed.`;
        });
        remove.setAttribute("aria-label", `Remove ${p.id} ${v.version}`);
        actions.append(activate, " ", remove);
      }
      rows.append(tr);
      if (v.waiting_for_grants.length > 0) {
        const notice = document.createElement("div");
        notice.className = "notice waiting";
        text(notice, `${p.id} ${v.version} requests ${v.waiting_for_grants.join(", ")}, which is not granted. ` +
          "It stays installed but inactive: grant it below, then activate it.");
        notices.append(notice);
      }
    }
  }
  return listing.plugins;
}

// Unchecked, "Make it the active version" installs the version inactive
// (activate=no), even a plugin's first: the administrator first sees what
// it requests, then activates it.
el("plugin-install").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = el("plugin-file").files[0];
  const result = el("install-result");
  if (!file) { say(result, "Choose a plugin file first.", true); return; }
  const query = new URLSearchParams({ activate: el("plugin-activate").checked ? "yes" : "no" });
  const sha = el("plugin-sha").value.trim();
  if (sha) query.set("sha256", sha);
  let value;
  try {
    const response = await fetch("/api/plugins?" + query, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/wasm" }, body: await file.arrayBuffer() });
    const raw = await response.text();
    try { value = raw ? JSON.parse(raw) : null; } catch (e) { value = null; }
    if (!response.ok) throw new Error(value && value.error ? value.error : response.statusText);
  } catch (e) {
    say(result, e.message, true);
    await loadPlugins();
    return;
  }
  event.target.reset();
  const plugins = await loadPlugins();
  const { id, version } = value.manifest;
  const listed = (plugins.find((p) => p.id === id) || { versions: [] }).versions.find((v) => v.version === version);
  const requested = value.requested || (listed ? listed.requested : []);
  // The list knows what waits for grants even when the answer does not
  // (an install that did not try to activate).
  const waiting = (value.waiting_for_grants && value.waiting_for_grants.length) ? value.waiting_for_grants
    : (listed ? listed.waiting_for_grants : []);
  const asks = requested.length ? `It requests ${requested.join(", ")}.` : "It requests no hosts.";
  if (value.activated) {
    say(result, `Installed ${id} ${version}; it is active. ${asks}`, false);
  } else if (waiting.length) {
    say(result, `Installed ${id} ${version}; it is not active. ${asks} Not granted yet: ${waiting.join(", ")}. Grant what it needs below, then activate it.`, false);
  } else {
    say(result, `Installed ${id} ${version}; it is not active. ${asks} Activate it when you are ready.`, false);
    const activate = document.createElement("button");
    activate.type = "button";
    activate.id = "activate-installed";
    text(activate, `Activate ${id} ${version}`);
    activate.addEventListener("click", async () => {
      try {
        const done = await api("POST", `/plugins/${encodeURIComponent(id)}/activate`, { version });
        say(result, `${id} ${done.active} is active.`, false);
      } catch (e) {
        say(result, e.message, true);
      }
      await loadPlugins();
      await loadCrm();
      await loadUsers();
    });
    result.append(" ", activate);
  }
  await loadCrm();
});

el("plugin-grant").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = el("grant-plugin").value;
  const result = el("plugin-result");
  try {
    const granted = await api("POST", "/plugins/" + encodeURIComponent(id) + "/grants", { pattern: el("grant-pattern").value.trim() });
    say(result, id + " may reach " + granted.granted.join(", ") + ".", false);
    event.target.reset();
  } catch (e) {
    say(result, e.message, true);
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
    say(result, id + " may keep " + granted.kv_max_keys + " keys, " + Math.floor(granted.kv_max_bytes / 1048576) + " MiB in its kv-store.", false);
    event.target.reset();
  } catch (e) {
    say(result, e.message, true);
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
      // Started elsewhere (e.g. from the command line): follow it here too.
      if (pendingSince === null && PLUGIN) {
        const before = await api("GET", crmPath("/status"));
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
    users = await api("GET", crmPath("/users"));
  } catch (e) {
    say(el("sync-text"), e.message, true);
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
    text(email, entry.user.email || "no e-mail");
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
      text(option, ext ? `${number} ${ext.name}` : `${number}, removed`);
      select.append(option);
    }
    select.value = current;
    select.addEventListener("change", () => {
      const chosen = select.value;
      const owner = chosen && [...assigned.entries()].find(([u, x]) => x === chosen && u !== entry.user.id);
      if (owner) {
        say(el("assoc-result"), `Extension ${chosen} already belongs to ${userName(owner[0])}: one extension belongs to one ${CRM} user. Clear it there first.`, true);
        select.value = assigned.get(entry.user.id) || "";
        return;
      }
      if (chosen) assigned.set(entry.user.id, chosen); else assigned.delete(entry.user.id);
      say(el("assoc-result"), "Not saved yet: click Save.", false);
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
  text(nav, plural(shown.length, "user") + (pages > 1 ? `, page ${page + 1} of ${pages} ` : ""));
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
    say(el("sync-text"), `Reading users from ${CRM}: ${job.fetched} of ${job.total || "?"}`, false);
  } else {
    bar.hidden = true;
    if (job.ok === false) {
      say(el("sync-text"), job.error, true);
    } else if (job.ok === true) {
      say(el("sync-text"), `${plural(job.fetched, "user")} read from ${CRM}.`, false);
    }
  }
}

// How the last refresh started here ended, until the administrator
// dismissed it (the host keeps it: GET /users/sync/result).
async function loadSyncResult() {
  if (!PLUGIN) return;
  let answer;
  try { answer = await api("GET", crmPath("/users/sync/result")); } catch (e) { return; }
  // Asked: whatever the host kept is shown now (or there is none).
  el("result-dialog").dataset.checked = "true";
  const result = answer && answer.result;
  if (!result) return;
  const total = result.total > result.fetched ? ` of ${result.total}` : "";
  showResult("user-sync", result.ok, result.ok ? `${CRM} users refreshed` : `Refreshing ${CRM} users failed`,
    result.ok ? `${plural(result.fetched, "user")}${total} read from ${CRM}.` : result.error,
    `finished ${new Date(result.finished_at_ms).toLocaleString()}`);
}

el("sync-users").addEventListener("click", async () => {
  const button = el("sync-users");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    let job = await api("POST", crmPath("/users/sync"), { show_result: true });
    showSync(job);
    while (job.running) {
      await new Promise((r) => setTimeout(r, 300));
      job = await api("GET", crmPath("/users/sync"));
      showSync(job);
    }
    await loadUsers();
    showSync(job);
    await loadSyncResult();
  } catch (e) {
    say(el("sync-text"), e.message, true);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
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
    proposal = await api("GET", crmPath("/associations/proposal"));
  } catch (e) {
    say(el("assoc-result"), e.message, true);
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
  text(el("proposal-unmatched-title"), proposal.unmatched.length ? `Not matched: ${plural(proposal.unmatched.length, "user")}` : "");
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
  say(el("assoc-result"), `${plural(proposal.matches.length, "proposed association")} filled in. Click Save to store them.`, false);
  renderUsers();
});

el("save-associations").addEventListener("click", async () => {
  const associations = [...assigned.entries()].map(([user_id, extension]) => ({ user_id, extension }));
  try {
    const saved = await api("PUT", crmPath("/associations"), { version: users.version, associations });
    say(el("assoc-result"), `Saved: ${plural(associations.length, "association")}, version ${saved.version}.`, false);
    await loadUsers();
  } catch (e) {
    say(el("assoc-result"), e.message, true);
  }
});

loadNetwork();
loadCrm().then(loadUsers).then(loadSyncResult);
loadExtensions();
loadPlugins();
pollBrowserRequests(true).then(() => setInterval(() => pollBrowserRequests(false), 1000));
setInterval(watchAuthorization, 700);

// ---- Signed-in agents (self-contained block): who is signed in, and
// signing a session out, from GET/DELETE /api/sessions.
async function loadSessions() {
  let answer;
  try { answer = await api("GET", "/sessions"); } catch (e) { say(el("sessions-result"), e.message, true); return; }
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
        catch (e) { say(el("sessions-result"), e.message, true); }
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
// ---- Call dispositions (self-contained block): the pick-list agents
// choose from for their after-call work, one per line, from GET/PUT
// /api/call-dispositions. Blank lines are dropped; the host checks the
// rest and says what to fix.
async function loadDispositions() {
  try {
    const answer = await api("GET", "/call-dispositions");
    el("dispositions").value = (answer.dispositions || []).join("\n");
  } catch (e) {
    say(el("dispositions-result"), e.message, true);
  }
}

el("dispositions-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = el("dispositions-result");
  const error = el("dispositions-error");
  const input = el("dispositions");
  text(error, "");
  input.removeAttribute("aria-invalid");
  const names = input.value.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  try {
    const answer = await api("PUT", "/call-dispositions", { dispositions: names });
    const saved = answer.dispositions || [];
    input.value = saved.join("\n");
    say(result, saved.length ? `Saved ${plural(saved.length, "disposition")}.` : "Saved: agents have no dispositions to pick from.", false);
  } catch (e) {
    say(result, "", false);
    if (e.field === "dispositions") {
      text(error, e.message);
      input.setAttribute("aria-invalid", "true");
    } else {
      say(result, e.message, true);
    }
  }
});
loadDispositions();
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
    ? `${plural(letters.length, "call event was", "call events were")} not delivered. An event lands here after ${answer.limits.max_attempts} attempts or ${Math.round(answer.limits.max_age_s / 3600)} h; at most ${answer.limits.dead_letters_max} are kept.`
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
    say(result, e.message, true);
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
