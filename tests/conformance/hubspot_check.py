"""Drives the HubSpot emulator with HubSpot's official Python client
(hubspot-api-client), unmodified, over TLS with the emulator's CA: the
install flow (plain HTTP, as a browser would), the code exchange and a
refresh through the client's OAuth API, token information, owners across
pages, contact search by phone, a call created with an association to
the contact and read back, v4 associations, and the client's exceptions
for a missing record and an expired token. Run by
tests/hubspot-emulator/tests/conformance.rs."""

import html
import os
import re
import urllib.parse

import requests
from hubspot import HubSpot
from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest
from hubspot.crm.objects.calls import (
    AssociationSpec,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.calls.exceptions import NotFoundException
from hubspot.crm.owners.exceptions import ApiException as OwnersApiException


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"missing environment variable {name}")
    return value


BASE = env("EMU_BASE_URL")
CA = env("EMU_CA_FILE")
CLIENT_ID = env("EMU_CLIENT_ID")
CLIENT_SECRET = env("EMU_CLIENT_SECRET")
REDIRECT = env("EMU_REDIRECT_URI")
EMAIL = env("EMU_EMAIL")
PASSWORD = env("EMU_PASSWORD")
EXPECTED_OWNERS = int(env("EMU_EXPECTED_OWNERS"))
CALLER = env("EMU_CALLER_PHONE")
SCOPES = "oauth crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read"


def step(name):
    print(f"hubspot-api-client (python): {name}", flush=True)


def client(access_token=None):
    # Only the host and the CA differ from production.
    return HubSpot(access_token=access_token, host=BASE, ssl_ca_cert=CA)


def install():
    """The install page as a browser uses it; answers the code."""
    session = requests.Session()
    session.verify = CA
    url = f"{BASE}/oauth/authorize?" + urllib.parse.urlencode(
        {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "scope": SCOPES, "state": "py-state"}
    )
    page = session.get(url)
    page.raise_for_status()
    form = {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    form.update({"email": EMAIL, "password": PASSWORD})
    res = session.post(f"{BASE}/oauth/authorize", data=form, allow_redirects=False)
    assert res.status_code == 302, (res.status_code, res.text)
    target = urllib.parse.urlparse(res.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT, target
    query = urllib.parse.parse_qs(target.query)
    assert query["state"] == ["py-state"], query
    return query["code"][0]


def main():
    step("install flow")
    code = install()

    step("code exchange and refresh through oauth.tokens_api")
    anon = client()
    tokens = anon.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert tokens.token_type == "bearer" and tokens.expires_in == 1800, tokens
    refreshed = anon.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=tokens.refresh_token,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert refreshed.access_token != tokens.access_token
    assert refreshed.refresh_token == tokens.refresh_token
    info = anon.oauth.access_tokens_api.get(refreshed.access_token)
    assert info.user == EMAIL and sorted(info.scopes) == sorted(SCOPES.split()), info
    rinfo = anon.oauth.refresh_tokens_api.get(tokens.refresh_token)
    assert rinfo.client_id == CLIENT_ID, rinfo

    api = client(refreshed.access_token)

    step("owners across pages")
    first = api.crm.owners.owners_api.get_page(limit=10)
    assert len(first.results) == 10 and first.paging.next.after, first.paging
    owners = api.crm.owners.get_all()
    assert len(owners) == EXPECTED_OWNERS, len(owners)
    assert len({o.id for o in owners}) == EXPECTED_OWNERS
    me = next(o for o in owners if o.email == EMAIL)

    step("contact search by phone")
    found = api.crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[Filter(property_name="phone", operator="EQ", value=CALLER)]),
                FilterGroup(filters=[Filter(property_name="mobilephone", operator="EQ", value=CALLER)]),
            ],
            properties=["firstname", "lastname", "phone"],
            limit=5,
        )
    )
    assert found.total == 1, found
    contact = found.results[0]
    assert contact.properties["phone"] == CALLER, contact

    step("call with an association to the contact")
    call = api.crm.objects.calls.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={
                "hs_timestamp": "2025-03-01T12:00:00.000Z",
                "hs_call_title": "python-conformance",
                "hs_call_body": "Logged by hubspot-api-client",
                "hs_call_direction": "INBOUND",
                "hs_call_duration": "42000",
                "hs_call_from_number": CALLER,
                "hs_call_to_number": "+1 415 555 0000",
                "hs_call_status": "COMPLETED",
                "hubspot_owner_id": me.id,
            },
            associations=[
                PublicAssociationsForObject(
                    to=PublicObjectId(id=contact.id),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=194)],
                )
            ],
        )
    )
    back = api.crm.objects.calls.basic_api.get_by_id(
        call.id, properties=["hs_call_title", "hs_call_duration", "hubspot_owner_id"], associations=["contacts"]
    )
    assert back.properties["hs_call_title"] == "python-conformance", back
    assert back.properties["hubspot_owner_id"] == me.id, back
    assert back.associations["contacts"].results[0].id == contact.id, back.associations

    step("v4 associations")
    page = api.crm.associations.v4.basic_api.get_page("calls", call.id, "contacts")
    assert str(page.results[0].to_object_id) == contact.id, page
    assert page.results[0].association_types[0].type_id == 194, page

    step("exceptions")
    try:
        api.crm.objects.calls.basic_api.get_by_id("999999999")
        raise AssertionError("a missing call must raise")
    except NotFoundException as e:
        assert e.status == 404
    expired = client("CN-not-a-live-token")
    try:
        expired.crm.owners.owners_api.get_page()
        raise AssertionError("an unknown token must raise")
    except OwnersApiException as e:
        assert e.status == 401, e.status
    print("hubspot-api-client (python): ok", flush=True)


if __name__ == "__main__":
    main()
