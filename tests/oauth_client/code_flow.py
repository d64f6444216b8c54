"""The authorization code flow with PKCE, driven by requests-oauthlib's OAuth2Session
(pkce="S256") against tower-secure's authorization and token endpoints; run by
tests/authorization_code.rs.

Usage: code_flow.py BASE_URL CONFIG_JSON
CONFIG_JSON: {"client_id", "redirect_uri", "scope", "user", "password", "api"}

The library builds the authorization URL (state, code challenge), checks the state of
the redirect and exchanges the code with its verifier; this script plays the user on the
login and consent pages with `requests`, as a browser would post the forms. It prints one
JSON object with what happened; the Rust test asserts.
"""

import html
import json
import os
import re
import sys

# Loopback plain HTTP: oauthlib refuses http:// URLs unless told otherwise.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

try:
    import requests
    from requests_oauthlib import OAuth2Session
except ImportError as missing:
    sys.stderr.write(f"missing Python package: {missing}. Run scripts/test, which provisions it.\n")
    sys.exit(3)

BASE = sys.argv[1].rstrip("/")
CONFIG = json.loads(sys.argv[2])
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def hidden_fields(page):
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def main():
    report = {}
    oauth = OAuth2Session(
        CONFIG["client_id"], redirect_uri=CONFIG["redirect_uri"], scope=CONFIG["scope"].split(), pkce="S256"
    )
    url, state = oauth.authorization_url(f"{BASE}/oauth2/authorize")
    report["authorization_url"] = url

    browser = requests.Session()
    page = browser.get(url, timeout=10)
    report["login_page_status"] = page.status_code
    form = hidden_fields(page.text)
    form.update(username=CONFIG["user"], password=CONFIG["password"], action="login")
    consent = browser.post(f"{BASE}/oauth2/authorize", data=form, allow_redirects=False, timeout=10)
    form = hidden_fields(consent.text)
    form["action"] = "approve"
    approved = browser.post(f"{BASE}/oauth2/authorize", data=form, allow_redirects=False, timeout=10)
    report["redirect_status"] = approved.status_code
    location = approved.headers.get("Location", "")
    report["state_matches"] = f"state={state}" in location

    # A public client: client_id in the body, no secret; oauthlib adds the verifier.
    token = oauth.fetch_token(
        f"{BASE}/oauth2/token", authorization_response=location, include_client_id=True, timeout=10
    )
    report["token"] = {k: token.get(k) for k in ("token_type", "scope", "expires_in")}
    api = oauth.get(f"{BASE}{CONFIG['api']}", timeout=10)
    report["api_status"] = api.status_code
    report["api_body"] = api.json() if api.ok else api.text
    print(json.dumps(report))


if __name__ == "__main__":
    main()
