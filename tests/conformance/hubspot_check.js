// Drives the HubSpot emulator with HubSpot's official Node client
// (@hubspot/api-client), unmodified: the install URL from
// oauth.getAuthorizationUrl (its host swapped for the emulator's), the
// install page submitted over plain HTTP as a browser would, the code
// exchange and a refresh through oauth.tokensApi, token information,
// owners across pages, contact search by phone, a call created with an
// association to the contact and read back, v4 associations, and the
// client's errors for a missing record and an unknown token. Run by
// tests/hubspot-emulator/tests/conformance.rs (NODE_EXTRA_CA_CERTS
// trusts the emulator's CA).
'use strict';

const assert = require('node:assert/strict');
const hubspot = require('@hubspot/api-client');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};
const BASE = env('EMU_BASE_URL');
const CLIENT_ID = env('EMU_CLIENT_ID');
const CLIENT_SECRET = env('EMU_CLIENT_SECRET');
const REDIRECT = env('EMU_REDIRECT_URI');
const EMAIL = env('EMU_EMAIL');
const PASSWORD = env('EMU_PASSWORD');
const EXPECTED_OWNERS = Number(env('EMU_EXPECTED_OWNERS'));
const CALLER = env('EMU_CALLER_PHONE');
const SCOPES = 'oauth crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read';

function step(name) {
  console.log(`@hubspot/api-client (node): ${name}`);
}

// Only the base path differs from production.
const client = (accessToken) => new hubspot.Client({ accessToken, basePath: BASE });

const unescape = (s) => s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

async function install(anon) {
  const official = new URL(anon.oauth.getAuthorizationUrl(CLIENT_ID, REDIRECT, SCOPES, undefined, 'node-state'));
  const url = `${BASE}${official.pathname}${official.search}`;
  const page = await fetch(url);
  assert.equal(page.status, 200, await page.clone().text());
  const html = await page.text();
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    form.append(m[1], unescape(m[2]));
  }
  form.append('email', EMAIL);
  form.append('password', PASSWORD);
  const res = await fetch(`${BASE}/oauth/authorize`, { method: 'POST', body: form, redirect: 'manual' });
  assert.equal(res.status, 302, await res.text());
  const target = new URL(res.headers.get('location'));
  assert.equal(`${target.origin}${target.pathname}`, REDIRECT);
  assert.equal(target.searchParams.get('state'), 'node-state');
  return target.searchParams.get('code');
}

async function main() {
  const anon = client();
  step('install flow');
  const code = await install(anon);

  step('code exchange and refresh through oauth.tokensApi');
  const tokens = await anon.oauth.tokensApi.create('authorization_code', code, REDIRECT, CLIENT_ID, CLIENT_SECRET);
  assert.equal(tokens.tokenType, 'bearer');
  assert.equal(tokens.expiresIn, 1800);
  const refreshed = await anon.oauth.tokensApi.create('refresh_token', undefined, undefined, CLIENT_ID, CLIENT_SECRET, tokens.refreshToken);
  assert.notEqual(refreshed.accessToken, tokens.accessToken);
  assert.equal(refreshed.refreshToken, tokens.refreshToken);
  const info = await anon.oauth.accessTokensApi.get(refreshed.accessToken);
  assert.equal(info.user, EMAIL);
  assert.deepEqual([...info.scopes].sort(), SCOPES.split(' ').sort());
  const rinfo = await anon.oauth.refreshTokensApi.get(tokens.refreshToken);
  assert.equal(rinfo.clientId, CLIENT_ID);

  const api = client(refreshed.accessToken);

  step('owners across pages');
  const owners = [];
  let after;
  let pages = 0;
  do {
    const page = await api.crm.owners.ownersApi.getPage(undefined, after, 100);
    owners.push(...page.results);
    pages += 1;
    after = page.paging?.next?.after;
  } while (after);
  assert.equal(owners.length, EXPECTED_OWNERS);
  assert.equal(new Set(owners.map((o) => o.id)).size, EXPECTED_OWNERS);
  assert.ok(pages >= 3, `pages: ${pages}`);
  const me = owners.find((o) => o.email === EMAIL);
  assert.ok(me);

  step('contact search by phone');
  const found = await api.crm.contacts.searchApi.doSearch({
    filterGroups: [
      { filters: [{ propertyName: 'phone', operator: 'EQ', value: CALLER }] },
      { filters: [{ propertyName: 'mobilephone', operator: 'EQ', value: CALLER }] },
    ],
    properties: ['firstname', 'lastname', 'phone'],
    limit: 5,
  });
  assert.equal(found.total, 1);
  const contact = found.results[0];
  assert.equal(contact.properties.phone, CALLER);

  step('call with an association to the contact');
  const call = await api.crm.objects.calls.basicApi.create({
    properties: {
      hs_timestamp: '2025-03-01T12:00:00.000Z',
      hs_call_title: 'node-conformance',
      hs_call_body: 'Logged by @hubspot/api-client',
      hs_call_direction: 'OUTBOUND',
      hs_call_duration: '42000',
      hs_call_from_number: '+1 415 555 0000',
      hs_call_to_number: CALLER,
      hs_call_status: 'COMPLETED',
      hubspot_owner_id: me.id,
    },
    associations: [
      { to: { id: contact.id }, types: [{ associationCategory: 'HUBSPOT_DEFINED', associationTypeId: 194 }] },
    ],
  });
  const back = await api.crm.objects.calls.basicApi.getById(
    call.id, ['hs_call_title', 'hubspot_owner_id'], undefined, ['contacts'],
  );
  assert.equal(back.properties.hs_call_title, 'node-conformance');
  assert.equal(back.properties.hubspot_owner_id, me.id);
  assert.equal(back.associations.contacts.results[0].id, contact.id);

  step('v4 associations');
  const assoc = await api.crm.associations.v4.basicApi.getPage('calls', call.id, 'contacts');
  assert.equal(String(assoc.results[0].toObjectId), contact.id);
  assert.equal(assoc.results[0].associationTypes[0].typeId, 194);

  step('errors');
  await assert.rejects(api.crm.objects.calls.basicApi.getById('999999999'), (e) => e.code === 404);
  await assert.rejects(client('CN-not-a-live-token').crm.owners.ownersApi.getPage(), (e) => e.code === 401);
  console.log('@hubspot/api-client (node): ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
