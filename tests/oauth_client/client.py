"""A real OAuth2 client nobody here wrote (requests-oauthlib over oauthlib and requests)
against tower-secure's token endpoint; driven by tests/oauth_client_interop.rs.

Usage: client.py BASE_URL CONFIG_JSON
CONFIG_JSON: {"app": {"id", "secret"}, "service": {"id", "secret"},
              "users": {"alex": password, "bob": password}, "scope": name, "api": path}

Prints one JSON object on stdout: what was sent, what came back and what the protected
API answered for each step. Asserting is the Rust test's job; this script only records.
Exit code 3: a required package is missing.
"""

import base64
import json
import os
import sys
from urllib.parse import parse_qs

# Loopback plain HTTP: oauthlib refuses http:// token URLs unless told otherwise.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
# Strict scope checking stays on (OAUTHLIB_RELAX_TOKEN_SCOPE unset): a narrowed grant
# must come back as oauthlib's "Scope has changed" warning.
os.environ.pop("OAUTHLIB_RELAX_TOKEN_SCOPE", None)

try:
    import jwt  # PyJWT, to verify the issued tokens against the published JWKS
    import oauthlib
    import requests
    import requests_oauthlib
    from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error
    from requests.auth import HTTPBasicAuth
    from requests_oauthlib import OAuth2Session
except ImportError as missing:
    sys.stderr.write(
        f"missing Python package: {missing}. Run scripts/test, which provisions it.\n"
    )
    sys.exit(3)

BASE = sys.argv[1].rstrip("/")
CONFIG = json.loads(sys.argv[2])
TIMEOUT = 10
SCOPE = CONFIG["scope"]
API = BASE + CONFIG["api"]
ME = BASE + "/api/me"
APP = CONFIG["app"]
SERVICE = CONFIG["service"]


def plain_session(**kwargs):
    # trust_env off: no proxy from the environment gets between us and 127.0.0.1.
    session = OAuth2Session(**kwargs)
    session.trust_env = False
    return session


def recorder(session):
    """Records every token-endpoint exchange the session makes (request as sent on the
    wire, raw response) through requests-oauthlib's compliance hooks."""
    exchanges = []

    def capture(response):
        request = response.request
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode()
        auth = request.headers.get("Authorization")
        basic = None
        if auth and auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            basic = {"id": user, "secret": password}
        try:
            raw = response.json()
        except ValueError:
            raw = response.text
        exchanges.append(
            {
                "status": response.status_code,
                "basic": basic,
                "body": {k: v[0] if len(v) == 1 else v for k, v in parse_qs(body).items()},
                "content_type": request.headers.get("Content-Type"),
                "response": raw,
                "cache_control": response.headers.get("Cache-Control"),
                "www_authenticate": response.headers.get("WWW-Authenticate"),
            }
        )
        return response

    session.register_compliance_hook("access_token_response", capture)
    session.register_compliance_hook("refresh_token_response", capture)
    return exchanges


def error_of(exc):
    return {"type": type(exc).__name__, "error": getattr(exc, "error", None), "message": str(exc)}


def call(session, url):
    response = session.get(url, timeout=TIMEOUT)
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "body": body, "www_authenticate": response.headers.get("WWW-Authenticate")}


JWKS = None


def verify(token, audience):
    """The access token's claims, verified by PyJWT with the key from the JWKS the
    discovery document names."""
    header = jwt.get_unverified_header(token)
    key = JWKS.get_signing_key(header["kid"]).key
    claims = jwt.decode(
        token,
        key,
        algorithms=[header["alg"]],
        issuer=BASE,
        audience=audience,
        options={"require": ["exp", "iat", "iss", "sub", "jti"]},
    )
    return {"header": header, "claims": claims}


def token_view(token):
    return {
        "token_type": token.get("token_type"),
        "scope": token.get("scope"),
        "expires_in": token.get("expires_in"),
        "has_expires_at": "expires_at" in token,
        "has_refresh_token": bool(token.get("refresh_token")),
    }


results = {
    "versions": {
        "requests_oauthlib": requests_oauthlib.__version__,
        "oauthlib": oauthlib.__version__,
        "requests": requests.__version__,
        "pyjwt": jwt.__version__,
    }
}

# Discovery: the endpoints come from the server's metadata, as a real client finds them.
metadata = requests.Session()
metadata.trust_env = False
discovery = metadata.get(BASE + "/.well-known/openid-configuration", timeout=TIMEOUT).json()
results["discovery"] = discovery
TOKEN_URL = discovery["token_endpoint"]
JWKS = jwt.PyJWKClient(discovery["jwks_uri"])


def step(name, body):
    """Runs one step; an unexpected exception is recorded instead of ending the run."""
    try:
        results[name] = body()
    except Exception as exc:  # noqa: BLE001 - the Rust side reports it
        results[name] = {"unexpected": error_of(exc)}


# (a) Password grant, the documented call: client_id and client_secret as arguments;
# requests-oauthlib turns them into HTTP Basic. Then the protected API with the session.
sessions = {}


def password_grant():
    session = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE])
    exchanges = recorder(session)
    token = session.fetch_token(
        TOKEN_URL,
        username="alex",
        password=CONFIG["users"]["alex"],
        client_id=APP["id"],
        client_secret=APP["secret"],
        scope=[SCOPE],
        timeout=TIMEOUT,
    )
    sessions["alex"] = session
    return {
        "sent": exchanges[-1],
        "token": token_view(token),
        "verified": verify(token["access_token"], APP["id"]),
        "api": call(session, API),
        "me": call(session, ME),
    }


step("password", password_grant)


# (a') The same grant with client_id in the body as well as in Basic
# (include_client_id=True with an explicit auth), as some requests-oauthlib setups send it.
def password_grant_body_client_id():
    session = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE])
    exchanges = recorder(session)
    token = session.fetch_token(
        TOKEN_URL,
        username="alex",
        password=CONFIG["users"]["alex"],
        auth=HTTPBasicAuth(APP["id"], APP["secret"]),
        include_client_id=True,
        scope=[SCOPE],
        timeout=TIMEOUT,
    )
    return {"sent": exchanges[-1], "token": token_view(token), "api": call(session, API)}


step("password_body_client_id", password_grant_body_client_id)


# (a'') client_secret_post (the secret in the body, no Basic): not a method this server
# offers (discovery lists client_secret_basic only), so it must be refused.
def password_grant_secret_in_body():
    session = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE])
    exchanges = recorder(session)
    try:
        session.fetch_token(
            TOKEN_URL,
            username="alex",
            password=CONFIG["users"]["alex"],
            include_client_id=True,
            client_secret=APP["secret"],
            timeout=TIMEOUT,
        )
        return {"sent": exchanges[-1], "error": None}
    except OAuth2Error as exc:
        return {"sent": exchanges[-1], "error": error_of(exc)}


step("password_secret_in_body", password_grant_secret_in_body)


# (b) client_credentials with BackendApplicationClient.
def client_credentials():
    session = plain_session(client=BackendApplicationClient(client_id=SERVICE["id"]), scope=[SCOPE])
    exchanges = recorder(session)
    token = session.fetch_token(
        TOKEN_URL, client_id=SERVICE["id"], client_secret=SERVICE["secret"], scope=[SCOPE], timeout=TIMEOUT
    )
    return {
        "sent": exchanges[-1],
        "token": token_view(token),
        "verified": verify(token["access_token"], SERVICE["id"]),
        "api": call(session, API),
        "me": call(session, ME),
    }


step("client_credentials", client_credentials)


# (c) Refresh with session.refresh_token (client authenticated with Basic via auth=),
# then the API with the new token; then a replay of the spent refresh token.
def refresh():
    session = sessions["alex"]
    exchanges = recorder(session)
    old = dict(session.token)
    new = session.refresh_token(TOKEN_URL, auth=HTTPBasicAuth(APP["id"], APP["secret"]), timeout=TIMEOUT)
    result = {
        "sent": exchanges[-1],
        "token": token_view(new),
        "access_rotated": new["access_token"] != old["access_token"],
        "refresh_rotated": new["refresh_token"] != old["refresh_token"],
        "verified": verify(new["access_token"], APP["id"]),
        "api": call(session, API),
    }
    # RFC 9700 4.14: the spent refresh token again is refused and ends the whole family.
    replay = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE])
    replay_exchanges = recorder(replay)
    try:
        replay.refresh_token(
            TOKEN_URL,
            refresh_token=old["refresh_token"],
            auth=HTTPBasicAuth(APP["id"], APP["secret"]),
            timeout=TIMEOUT,
        )
        result["replay"] = {"sent": replay_exchanges[-1], "error": None}
    except OAuth2Error as exc:
        result["replay"] = {"sent": replay_exchanges[-1], "error": error_of(exc)}
    result["api_after_replay"] = call(session, API)
    return result


step("refresh", refresh)


# (d) bob lacks the permission the scope is bound to. First asking for the scope alone,
# then together with a whitelisted scope.
def lacking_scope():
    session = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE])
    exchanges = recorder(session)
    warning = None
    try:
        token = session.fetch_token(
            TOKEN_URL,
            username="bob",
            password=CONFIG["users"]["bob"],
            client_id=APP["id"],
            client_secret=APP["secret"],
            scope=[SCOPE],
            timeout=TIMEOUT,
        )
    except Warning as w:  # oauthlib: the empty `scope` answers "nothing granted"
        warning = {"message": str(w), "old": sorted(w.old_scope), "new": sorted(w.new_scope)}
        token = w.token
        session.token = token
    return {
        "sent": exchanges[-1],
        "warning": warning,
        "token": token_view(token),
        "verified": verify(token["access_token"], APP["id"]),
        "api": call(session, API),
        "me": call(session, ME),
    }


step("lacking_scope", lacking_scope)


def narrowed_scope():
    session = plain_session(client=LegacyApplicationClient(client_id=APP["id"]), scope=[SCOPE, "openid"])
    exchanges = recorder(session)
    warning = None
    try:
        token = session.fetch_token(
            TOKEN_URL,
            username="bob",
            password=CONFIG["users"]["bob"],
            client_id=APP["id"],
            client_secret=APP["secret"],
            scope=[SCOPE, "openid"],
            timeout=TIMEOUT,
        )
    except Warning as w:  # oauthlib: "Scope has changed from ... to ..."
        warning = {"message": str(w), "old": sorted(w.old_scope), "new": sorted(w.new_scope)}
        token = w.token
        session.token = token
    return {"sent": exchanges[-1], "warning": warning, "token": token_view(token), "api": call(session, API)}


step("narrowed_scope", narrowed_scope)

print(json.dumps(results))
