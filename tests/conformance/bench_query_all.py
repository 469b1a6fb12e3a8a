"""Time simple-salesforce's query_all of the given SOQL; print milliseconds.

Used by tests/e2e/benches/sync.rs, side by side with the plugin's sync.
Environment: SF_INSTANCE (the org's https base URL), SF_TOKEN, SF_CA (PEM path), SF_SOQL.
"""
import os
import time

import requests
from simple_salesforce import Salesforce

session = requests.Session()
session.verify = os.environ["SF_CA"]
sf = Salesforce(
    instance_url=os.environ["SF_INSTANCE"],
    session_id=os.environ["SF_TOKEN"],
    version="67.0",
    session=session,
)
started = time.perf_counter()
result = sf.query_all(os.environ["SF_SOQL"])
elapsed = (time.perf_counter() - started) * 1000
assert result["totalSize"] == len(result["records"]), "query_all lost records"
print(f"{elapsed:.1f}")
