// Drives the emulator with jsforce, unmodified: OAuth web-server flow
// (PKCE) with the login and consent forms submitted over plain HTTP,
// multi-page query, search, Task create, automatic refresh after the
// sessions are expired. Run by tests/salesforce-emulator/tests/conformance.rs.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const jsforce = require('jsforce');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};
const BASE = env('EMU_BASE_URL');
const CLIENT_ID = env('EMU_CLIENT_ID');
const CLIENT_SECRET = env('EMU_CLIENT_SECRET');
const CALLBACK = env('EMU_CALLBACK');
const USERNAME = env('EMU_USERNAME');
const PASSWORD = env('EMU_PASSWORD');
const EXPECTED_USERS = Number(env('EMU_EXPECTED_USERS'));

function step(name) {
  console.log(`jsforce: ${name}`);
}

// A tiny cookie-keeping HTTP client over fetch, redirects by hand.
const jar = new Map();
async function http(url, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  const res = await fetch(url, { ...options, headers, redirect: 'manual' });
  for (const c of res.headers.getSetCookie()) {
    const [kv] = c.split(';');
    const i = kv.indexOf('=');
    jar.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim());
  }
  return res;
}

function formOf(html, id) {
  const m = html.match(new RegExp(`<form[^>]*id="${id}"[^>]*>([\\s\\S]*?)</form>`));
  assert.ok(m, `form #${id} in page:\n${html}`);
  const action = m[0].match(/action="([^"]*)"/)[1];
  const fields = {};
  for (const input of m[1].matchAll(/<input[^>]*>/g)) {
    const name = input[0].match(/name="([^"]*)"/);
    const value = input[0].match(/value="([^"]*)"/);
    if (name) fields[name[1]] = value ? value[1].replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>') : '';
  }
  return { action: new URL(action, BASE).href, fields };
}

async function submit(form, extra) {
  return http(form.action, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ ...form.fields, ...extra }).toString(),
  });
}

async function authorize(oauth2) {
  const state = crypto.randomBytes(8).toString('hex');
  const url = oauth2.getAuthorizationUrl({ scope: 'api refresh_token id', state });
  assert.ok(url.includes('code_challenge='), 'jsforce sends a PKCE challenge');
  let res = await http(url);
  assert.equal(res.status, 200);
  const login = formOf(await res.text(), 'login_form');
  res = await submit(login, { username: USERNAME, password: PASSWORD });
  assert.equal(res.status, 302, 'login redirects back to authorize');
  res = await http(new URL(res.headers.get('location'), BASE).href);
  assert.equal(res.status, 200);
  const consent = formOf(await res.text(), 'consent_form');
  res = await submit(consent, { action: 'allow' });
  assert.equal(res.status, 302, 'Allow redirects to the callback');
  const cb = new URL(res.headers.get('location'));
  assert.equal(`${cb.origin}${cb.pathname}`, CALLBACK);
  assert.equal(cb.searchParams.get('state'), state);
  const code = cb.searchParams.get('code');
  assert.ok(code, 'callback carries a code');
  return code;
}

async function admin(path, body) {
  const res = await fetch(`${BASE}/__admin/${path}`, body === undefined ? {} : {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.ok(res.ok, `admin ${path}: ${res.status}`);
  return res.json();
}

async function main() {
  const oauth2 = new jsforce.OAuth2({
    loginUrl: BASE,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    redirectUri: CALLBACK,
    useVerifier: true,
  });

  step('authorization code flow (login form, consent form, PKCE)');
  const code = await authorize(oauth2);
  const token = await oauth2.requestToken(code);
  assert.ok(token.access_token && token.refresh_token, 'access and refresh tokens');
  assert.equal(token.instance_url, BASE);
  assert.equal(token.token_type, 'Bearer');
  const sig = crypto.createHmac('sha256', CLIENT_SECRET).update(token.id + token.issued_at).digest('base64');
  assert.equal(token.signature, sig, 'signature = HMAC-SHA256(secret, id + issued_at)');

  step('code reuse is refused');
  await assert.rejects(oauth2.requestToken(code), (e) => e.name === 'invalid_grant');

  const conn = new jsforce.Connection({
    oauth2,
    instanceUrl: token.instance_url,
    accessToken: token.access_token,
    refreshToken: token.refresh_token,
    version: '67.0',
  });
  let refreshes = 0;
  conn.on('refresh', () => { refreshes += 1; });

  step('identity');
  const identity = await conn.identity();
  assert.equal(identity.username, USERNAME);

  step('query across several pages (autoFetch)');
  const seenPages = [];
  const records = [];
  await new Promise((resolve, reject) => {
    const q = conn.query('SELECT Id, Name, Username, Email, IsActive FROM User ORDER BY Username')
      .on('record', (r) => records.push(r))
      .on('end', resolve)
      .on('error', reject);
    q.on('fetch', () => seenPages.push(q.totalSize));
    q.run({ autoFetch: true, maxFetch: 100000 });
  });
  assert.equal(records.length, EXPECTED_USERS);
  assert.ok(seenPages.length >= 3, `fetched ${seenPages.length} pages`);
  assert.equal(new Set(records.map((r) => r.Id)).size, EXPECTED_USERS, 'no duplicates across pages');
  assert.equal(records[0].attributes.type, 'User');

  step('query + queryMore by hand');
  const first = await conn.query('SELECT Id FROM User');
  assert.equal(first.done, false);
  assert.match(first.nextRecordsUrl, /\/services\/data\/v67\.0\/query\/01g[0-9A-Za-z]{15}-2000$/);
  const second = await conn.queryMore(first.nextRecordsUrl);
  assert.equal(second.records.length, 2000);

  step('search (SOSL, phone fields, escaped +)');
  const found = await conn.search(
    'FIND {\\+14155550100} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, OwnerId), Lead(Id, Name, Phone, OwnerId), Account(Id, Name, Phone)',
  );
  assert.ok(found.searchRecords.some((r) => r.attributes.type === 'Contact' && r.Phone === '(415) 555-0100'),
    JSON.stringify(found));

  step('create a Task');
  const contactId = found.searchRecords[0].Id;
  const callId = `jsforce-${crypto.randomBytes(6).toString('hex')}`;
  const created = await conn.sobject('Task').create({
    Subject: 'Call', TaskSubtype: 'Call', CallType: 'Inbound', CallDurationInSeconds: 42,
    CallObject: callId, WhoId: contactId, Status: 'Completed', ActivityDate: '2025-06-01',
  });
  assert.equal(created.success, true);
  const tasks = await admin('tasks');
  assert.ok(tasks.some((t) => t.Id === created.id && t.CallObject === callId), 'the org holds the Task');
  const q = await conn.query(`SELECT Id, CallType FROM Task WHERE CallObject = '${callId}'`);
  assert.equal(q.totalSize, 1);

  step('validation errors');
  await assert.rejects(conn.sobject('Task').create({ CallType: 'Sideways' }),
    (e) => e.errorCode === 'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST');
  await assert.rejects(conn.query('SELECT FROM User'), (e) => e.errorCode === 'MALFORMED_QUERY');

  step('automatic refresh after forced expiry');
  await admin('faults', { expire_sessions: true });
  const before = (await admin('token-stats')).refresh_grants;
  const after = await conn.query('SELECT Id FROM Contact LIMIT 5');
  assert.equal(after.records.length, 5);
  assert.equal(refreshes, 1, 'jsforce refreshed once');
  assert.equal((await admin('token-stats')).refresh_grants, before + 1);
  assert.notEqual(conn.accessToken, token.access_token);

  step('revoke');
  await oauth2.revokeToken(token.refresh_token);
  await admin('faults', { expire_sessions: true });
  await assert.rejects(conn.query('SELECT Id FROM Contact LIMIT 1'));
  console.log('jsforce: all checks passed');
}

main().catch((e) => {
  console.error('jsforce: FAILED', e);
  process.exit(1);
});
