"""Drives the emulator with simple-salesforce, unmodified, over TLS with
the emulator's CA: query_all across pages, search, Task create and the
exceptions for expired sessions, missing records and bad SOQL. Run by
tests/salesforce-emulator/tests/conformance.rs."""

import json
import os
import sys
import urllib.parse

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"missing environment variable {name}")
    return value


BASE = env("EMU_BASE_URL")
CA = env("EMU_CA_FILE")
TOKEN = env("EMU_ACCESS_TOKEN")
EXPECTED_USERS = int(env("EMU_EXPECTED_USERS"))


def step(name):
    print(f"simple-salesforce: {name}", flush=True)


def admin(session, path, body=None):
    url = f"{BASE}/__admin/{path}"
    res = session.post(url, json=body) if body is not None else session.get(url)
    res.raise_for_status()
    return res.json()


def main():
    session = requests.Session()
    session.verify = CA
    sf = Salesforce(instance_url=BASE, session_id=TOKEN, version="67.0", session=session)
    host = urllib.parse.urlparse(BASE)
    assert sf.sf_instance == f"{host.hostname}:{host.port}", sf.sf_instance

    step("query_all across pages")
    pages = []
    original = sf.query_more

    def counting_query_more(*args, **kwargs):
        pages.append(args[0])
        return original(*args, **kwargs)

    sf.query_more = counting_query_more
    result = sf.query_all("SELECT Id, Name, Email FROM User")
    assert result["totalSize"] == EXPECTED_USERS, result["totalSize"]
    assert len({r["Id"] for r in result["records"]}) == EXPECTED_USERS
    assert len(pages) >= 2, f"{len(pages) + 1} pages"

    step("query with WHERE, IN, LIKE, ORDER BY")
    res = sf.query("SELECT Id, Name FROM User WHERE IsActive = true AND (Username LIKE 'user1%' OR Username IN ('admin@example.org')) ORDER BY Username LIMIT 3")
    assert res["done"] is True and len(res["records"]) == 3, res
    assert res["records"][0]["Name"] == "Admin User", res["records"][0]

    step("search (phone, national format)")
    found = sf.search("FIND {4155550100} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone)")
    assert found and any(r["Phone"] == "(415) 555-0100" for r in found["searchRecords"]), found

    step("create a Task")
    contact_id = found["searchRecords"][0]["Id"]
    created = sf.Task.create({
        "Subject": "Call", "TaskSubtype": "Call", "CallType": "Outbound",
        "CallObject": "simple-salesforce-1", "WhoId": contact_id, "Status": "Completed",
    })
    assert created["success"] is True and created["id"].startswith("00T"), created
    task = sf.Task.get(created["id"])
    assert task["CallType"] == "Outbound" and task["WhoId"] == contact_id, task
    sf.Task.update(created["id"], {"Description": "updated"})
    assert any(t["Id"] == created["id"] and t["Description"] == "updated" for t in admin(session, "tasks"))

    step("SalesforceResourceNotFound on 404")
    try:
        sf.Contact.get("0035g0000009zzz")
        raise AssertionError("expected SalesforceResourceNotFound")
    except SalesforceResourceNotFound as e:
        assert e.content[0]["errorCode"] == "NOT_FOUND", e.content

    step("SalesforceMalformedRequest on bad SOQL")
    try:
        sf.query("SELECT Id FROM User WHERE")
        raise AssertionError("expected SalesforceMalformedRequest")
    except SalesforceMalformedRequest as e:
        assert e.content[0]["errorCode"] == "MALFORMED_QUERY", e.content

    step("SalesforceMalformedRequest on a restricted picklist")
    try:
        sf.Task.create({"CallType": "Sideways"})
        raise AssertionError("expected SalesforceMalformedRequest")
    except SalesforceMalformedRequest as e:
        assert e.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", e.content

    step("SalesforceExpiredSession on expiry")
    admin(session, "faults", {"expire_sessions": True})
    try:
        sf.query("SELECT Id FROM User LIMIT 1")
        raise AssertionError("expected SalesforceExpiredSession")
    except SalesforceExpiredSession as e:
        assert e.content[0]["errorCode"] == "INVALID_SESSION_ID", e.content
        assert e.content[0]["message"] == "Session expired or invalid", e.content

    print("simple-salesforce: all checks passed", json.dumps({"pages": len(pages) + 1}))


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report and fail
        import traceback
        traceback.print_exc()
        print(f"simple-salesforce: FAILED {exc!r}", file=sys.stderr)
        sys.exit(1)
