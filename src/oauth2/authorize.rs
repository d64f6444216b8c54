// The authorization code flow with PKCE (RFC 6749 4.1, RFC 7636, RFC 9700):
// `GET /oauth2/authorize` checks the request and shows the login page (or, to a signed-in
// user, the consent page); `POST /oauth2/authorize` takes the login and consent forms;
// the token endpoint's `authorization_code` grant redeems a code. Codes live in the state
// backend; the login session is a signed cookie; forms carry a CSRF token that must match
// a cookie (double submit). The HTML is in `pages.rs`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::pages::{self, Page};
use super::{refresh, unavailable, Authenticated, Form, Issued, OAuthError, TokenServer};
use crate::authn;
use crate::config::GrantType;
use crate::error::AuthErrorKind;
use crate::identity::{Principal, QualifiedName};
use crate::state::{CodeRecord, CodeRedemption};

/// How long a code is valid.
const CODE_SECONDS: u64 = 60;
/// How long a login lasts for further authorization requests of the same browser.
const SESSION_SECONDS: u64 = 600;
const SESSION_COOKIE: &str = "tower_secure_session";
const CSRF_COOKIE: &str = "tower_secure_csrf";
/// The authorization request's parameters, carried by the forms as hidden fields.
pub(super) const REQUEST_PARAMS: [&str; 7] =
    ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

/// A checked authorization request.
pub(super) struct AuthorizationRequest {
    caller: Authenticated,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
    code_challenge: String,
    /// The parameters as received, for the forms' hidden fields.
    pub(super) params: Vec<(&'static str, String)>,
}

/// Why an authorization request is refused.
enum Refusal {
    /// The client or its redirect URI is not valid: an error page, never a redirect (no
    /// open redirect).
    Page(&'static str),
    /// Sent back to the client (RFC 6749 4.1.2.1).
    Redirect { redirect_uri: String, state: Option<String>, error: &'static str, description: &'static str },
}

impl TokenServer {
    /// `GET /oauth2/authorize`.
    pub(super) async fn authorize_get(&self, headers: &HeaderMap, query: &[u8]) -> Response {
        let form = match Form::parse(query) {
            Ok(form) => form,
            Err(_) => return self.refused(Refusal::Page("a parameter is repeated")),
        };
        let request = match self.authorization_request(&form) {
            Ok(request) => request,
            Err(refusal) => return self.refused(refusal),
        };
        let csrf = csrf_token(headers);
        match self.session_user(headers).await {
            Ok(Some(user)) => self.consent_or_code(&request, &user, &csrf, false).await,
            Ok(None) => self.page(Page::Login { request: &request, error: None }, &request, &csrf, StatusCode::OK),
            Err(_) => self.page(Page::Unavailable, &request, &csrf, StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// `POST /oauth2/authorize`: the login form (`action=login`) or the consent form
    /// (`action=approve` or `deny`).
    pub(super) async fn authorize_post(&self, headers: &HeaderMap, form: &Form) -> Response {
        let request = match self.authorization_request(form) {
            Ok(request) => request,
            Err(refusal) => return self.refused(refusal),
        };
        let csrf = csrf_token(headers);
        let sent = form.0.get("csrf").map(String::as_bytes).unwrap_or_default();
        let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
        if cookie.is_empty() || !bool::from(cookie.as_bytes().ct_eq(sent)) {
            tracing::warn!(target: crate::AUDIT_TARGET, client = %request.caller.client.id,
                "authorization form without its CSRF token: refused");
            return self.page(Page::Forbidden, &request, &csrf, StatusCode::FORBIDDEN);
        }
        match form.0.get("action").map(String::as_str) {
            Some("login") => self.login(&request, form, &csrf).await,
            Some(action @ ("approve" | "deny")) => match self.session_user(headers).await {
                Ok(Some(_)) if action == "deny" => {
                    tracing::info!(target: crate::AUDIT_TARGET, client = %request.caller.client.id, "consent denied");
                    redirect(&request.redirect_uri, &[("error", "access_denied")], request.state.as_deref())
                }
                Ok(Some(user)) => self.consent_or_code(&request, &user, &csrf, true).await,
                Ok(None) => self.page(Page::Login { request: &request, error: None }, &request, &csrf, StatusCode::OK),
                Err(_) => self.page(Page::Unavailable, &request, &csrf, StatusCode::SERVICE_UNAVAILABLE),
            },
            _ => self.page(Page::Forbidden, &request, &csrf, StatusCode::BAD_REQUEST),
        }
    }

    /// `GET /oauth2/logout`: ends the login session.
    pub(super) fn logout(&self) -> Response {
        let mut response = pages::response(StatusCode::OK, &pages::signed_out(), None);
        response.headers_mut().append(SET_COOKIE, self.cookie(SESSION_COOKIE, "", 0));
        response
    }

    /// Checks a user's name and password exactly as the `basic` handler does (lockout,
    /// throttle, timing), then signs the user in.
    async fn login(&self, request: &AuthorizationRequest, form: &Form, csrf: &str) -> Response {
        let (user, password) = (form.0.get("username"), form.0.get("password"));
        let (Some(user), Some(password)) = (user.filter(|u| !u.is_empty()), password) else {
            let page = Page::Login { request, error: Some(pages::WRONG_PASSWORD) };
            return self.page(page, request, csrf, StatusCode::UNAUTHORIZED);
        };
        match self.inner.users.verify(user, password).await {
            Ok(principal) => {
                let mut response = self.consent_or_code(request, &principal, csrf, false).await;
                let session = self.session_cookie(principal.name());
                response.headers_mut().append(SET_COOKIE, session);
                response
            }
            Err(error) => {
                tracing::warn!(target: crate::AUDIT_TARGET, client = %request.caller.client.id,
                    reason = error.reason(), "login refused");
                let (message, status) = match error.kind() {
                    AuthErrorKind::TooManyRequests => (pages::TOO_MANY, StatusCode::TOO_MANY_REQUESTS),
                    AuthErrorKind::Unavailable => (pages::UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE),
                    _ => (pages::WRONG_PASSWORD, StatusCode::UNAUTHORIZED),
                };
                self.page(Page::Login { request, error: Some(message) }, request, csrf, status)
            }
        }
    }

    /// The scopes `user` gets (scope validation, then the client's allowed scopes); the
    /// consent page, or, for a trusted client or an approval, a code.
    async fn consent_or_code(
        &self,
        request: &AuthorizationRequest,
        user: &Principal,
        csrf: &str,
        approved: bool,
    ) -> Response {
        let scopes = match self.grant_scopes(&request.caller, GrantType::AuthorizationCode, user, &request.scopes).await
        {
            Ok(scopes) => scopes,
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, reason = error.reason(), "scope validation failed");
                return self.page(Page::Unavailable, request, csrf, StatusCode::SERVICE_UNAVAILABLE);
            }
        };
        if !(approved || request.caller.client.trusted) {
            let page = Page::Consent { request, user: user.name(), scopes: &scopes };
            return self.page(page, request, csrf, StatusCode::OK);
        }
        match self.new_code(request, user.name(), scopes).await {
            Ok(code) => redirect(&request.redirect_uri, &[("code", &code)], request.state.as_deref()),
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, reason = error.reason(), "no code stored");
                self.page(Page::Unavailable, request, csrf, StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// A new code for `user`, stored (as its digest) with what it is bound to.
    async fn new_code(
        &self,
        request: &AuthorizationRequest,
        user: &QualifiedName,
        scopes: Vec<String>,
    ) -> Result<String, OAuthError> {
        let state = &self.inner.state;
        let code = refresh::random_token().ok_or_else(|| OAuthError::server_error("no randomness"))?;
        let record = CodeRecord {
            client_id: request.caller.client.id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            user: user.to_string(),
            scopes,
            code_challenge: request.code_challenge.clone(),
            expires: crate::unix_seconds().saturating_add(CODE_SECONDS),
            family: state.new_family().await.map_err(unavailable)?,
        };
        state.put_code(&refresh::digest(&code), &record).await.map_err(unavailable)?;
        tracing::info!(target: crate::AUDIT_TARGET, client = %record.client_id, user = %record.user,
            scope = %record.scopes.join(" "), "authorization code issued");
        Ok(code)
    }

    /// The `authorization_code` grant: the code, once, by the client it was issued to,
    /// with the same redirect URI and the verifier of its challenge. A second use revokes
    /// what the first one issued.
    pub(super) async fn code_grant(&self, caller: &Authenticated, form: &Form) -> Result<Issued, OAuthError> {
        let client = &*caller.client;
        let code = form.required("code")?;
        let redirect_uri = form.required("redirect_uri")?;
        let verifier = form.required("code_verifier")?;
        if !is_pkce_text(verifier) {
            return Err(OAuthError::invalid_request("code_verifier is not 43 to 128 unreserved characters"));
        }
        let now = crate::unix_seconds();
        let record = match self.inner.state.redeem_code(&refresh::digest(code), &client.id, now).await {
            Err(e) => return Err(unavailable(e)),
            Ok(CodeRedemption::Fresh(record)) => record,
            Ok(CodeRedemption::Replayed(access)) => {
                self.revoke_access(&access, &client.id).await?;
                tracing::warn!(target: crate::AUDIT_TARGET, client = %client.id,
                    "authorization code used twice: what it issued is revoked");
                return Err(OAuthError::invalid_grant("authorization code used twice"));
            }
            Ok(_) => return Err(OAuthError::invalid_grant("unknown, expired or foreign authorization code")),
        };
        if record.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant("redirect_uri differs from the authorization request's"));
        }
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !bool::from(challenge.as_bytes().ct_eq(record.code_challenge.as_bytes())) {
            return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
        }
        let user = self
            .current_user(&record.user)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user is gone or disabled"))?;
        self.issue(client, user.name(), &user.name().to_string(), record.scopes, Some(record.family)).await
    }

    /// The user of `name` as the store has it now; `None` when gone or disabled.
    async fn current_user(&self, name: &str) -> Result<Option<Principal>, OAuthError> {
        let Ok(name) = QualifiedName::parse(name) else { return Ok(None) };
        let inner = &self.inner;
        let record = authn::find_user(&*inner.store, &name, inner.store_timeout)
            .await
            .map_err(|e| OAuthError::from_auth(e, OAuthError::invalid_grant))?;
        Ok(record.filter(|r| !r.disabled).map(|record| {
            Principal::builder(record.name, crate::policy::OAUTH2_HANDLER)
                .roles(record.roles)
                .permissions(record.permissions)
                .build()
        }))
    }

    /// The authorization request of a query or form (RFC 6749 4.1.1, RFC 7636 4.3). The
    /// client and redirect URI are checked first: until both are valid nothing redirects.
    fn authorization_request(&self, form: &Form) -> Result<AuthorizationRequest, Refusal> {
        let issuance = self.inner.current.load_full();
        let param = |name: &str| form.0.get(name).filter(|v| !v.is_empty());
        let client = match param("client_id").and_then(|id| issuance.clients.get(id.as_str())) {
            Some(client) if !client.disabled => Arc::clone(client),
            _ => return Err(Refusal::Page("unknown client")),
        };
        let redirect_uri = match param("redirect_uri") {
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.clone(),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            _ => return Err(Refusal::Page("redirect_uri is not one the client registered")),
        };
        let state = param("state").cloned();
        if state.as_ref().is_some_and(|s| s.len() > 2048) {
            return Err(Refusal::Page("state is longer than 2048 bytes"));
        }
        let refuse = |error, description| Refusal::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description,
        };
        if param("response_type").map(String::as_str) != Some("code") {
            return Err(refuse("unsupported_response_type", "only response_type=code is supported"));
        }
        if !client.grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(refuse("unauthorized_client", "the client may not use the authorization code flow"));
        }
        let Some(code_challenge) = param("code_challenge") else {
            return Err(refuse("invalid_request", "code_challenge is required (PKCE, S256)"));
        };
        // Without a method the challenge is `plain` (RFC 7636 4.3), which is refused.
        if param("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err(refuse("invalid_request", "code_challenge_method must be S256"));
        }
        if code_challenge.len() != 43 || !is_pkce_text(code_challenge) {
            return Err(refuse("invalid_request", "code_challenge is not a base64url SHA-256"));
        }
        let scopes = form.scopes().map_err(|_| refuse("invalid_scope", "scope is malformed"))?;
        let params = REQUEST_PARAMS.iter().filter_map(|&name| form.0.get(name).map(|v| (name, v.clone()))).collect();
        let code_challenge = code_challenge.clone();
        let caller = Authenticated { issuance, client };
        Ok(AuthorizationRequest { caller, redirect_uri, state, scopes, code_challenge, params })
    }

    fn refused(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::Page(reason) => {
                tracing::warn!(target: crate::AUDIT_TARGET, reason, "authorization request refused");
                pages::response(StatusCode::BAD_REQUEST, &pages::error_page(reason), None)
            }
            Refusal::Redirect { redirect_uri, state, error, description } => {
                tracing::warn!(target: crate::AUDIT_TARGET, error, reason = description, "authorization request refused");
                redirect(&redirect_uri, &[("error", error), ("error_description", description)], state.as_deref())
            }
        }
    }

    /// A page of the flow, with the CSRF cookie its forms need.
    fn page(&self, page: Page<'_>, request: &AuthorizationRequest, csrf: &str, status: StatusCode) -> Response {
        let html = page.render(csrf, &request.caller.client);
        let mut response = pages::response(status, &html, Some(&request.redirect_uri));
        response.headers_mut().append(SET_COOKIE, self.cookie(CSRF_COOKIE, csrf, SESSION_SECONDS));
        response
    }

    /// A cookie for the flow's paths: `HttpOnly`, `SameSite=Lax`, `Secure` when the
    /// issuer is https.
    fn cookie(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.inner.issuer.starts_with("https://") { "; Secure" } else { "" };
        let text = format!("{name}={value}; Path=/oauth2; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
        // Names are constants, values base64url or empty: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// `user.expires.mac`, signed with a key derived from the token server's signing key.
    fn session_cookie(&self, user: &QualifiedName) -> HeaderValue {
        let expires = crate::unix_seconds().saturating_add(SESSION_SECONDS);
        let payload = format!("{}.{expires}", URL_SAFE_NO_PAD.encode(user.to_string()));
        let mac = URL_SAFE_NO_PAD.encode(self.session_mac(&payload));
        self.cookie(SESSION_COOKIE, &format!("{payload}.{mac}"), SESSION_SECONDS)
    }

    fn session_mac(&self, payload: &str) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.inner.keys.signing().session_key);
        let tag = aws_lc_rs::hmac::sign(&key, payload.as_bytes());
        let mut mac = [0u8; 32];
        mac.copy_from_slice(tag.as_ref());
        mac
    }

    /// The signed-in user of a valid, unexpired session cookie, as the store has it now.
    async fn session_user(&self, headers: &HeaderMap) -> Result<Option<Principal>, OAuthError> {
        let Some(value) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
        let Some((payload, mac)) = value.rsplit_once('.') else { return Ok(None) };
        let valid = URL_SAFE_NO_PAD.decode(mac).is_ok_and(|mac| bool::from(mac.ct_eq(&self.session_mac(payload))));
        let Some((user, expires)) = payload.split_once('.').filter(|_| valid) else { return Ok(None) };
        if expires.parse::<u64>().map_or(true, |e| e <= crate::unix_seconds()) {
            return Ok(None);
        }
        let Some(user) = URL_SAFE_NO_PAD.decode(user).ok().and_then(|u| String::from_utf8(u).ok()) else {
            return Ok(None);
        };
        // A user locked out since signing in is signed out.
        match QualifiedName::parse(&user) {
            Ok(name) if !self.inner.users.is_locked(&name) => self.current_user(&user).await,
            _ => Ok(None),
        }
    }
}

/// A public client's token request: no `Authorization` header, its `client_id` in the
/// form. `None` when the request is not one.
pub(super) fn public_client(server: &TokenServer, headers: &HeaderMap, form: &Form) -> Option<Authenticated> {
    if headers.contains_key(http::header::AUTHORIZATION) {
        return None;
    }
    let issuance = server.inner.current.load_full();
    let client = Arc::clone(issuance.clients.get(form.0.get("client_id")?.as_str())?);
    (client.is_public() && !client.disabled).then_some(Authenticated { client, issuance })
}

/// RFC 7636 4.1: 43 to 128 of `A-Z a-z 0-9 - . _ ~`.
fn is_pkce_text(text: &str) -> bool {
    (43..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The CSRF token of this browser: its cookie's when it has a valid one, else a new one.
fn csrf_token(headers: &HeaderMap) -> String {
    match cookie(headers, CSRF_COOKIE) {
        Some(token) if token.len() == 43 && is_base64url(token) => token.to_owned(),
        _ => refresh::random_token().unwrap_or_default(),
    }
}

fn is_base64url(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The value of cookie `name` (the first of that name over every `Cookie` header).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// 303 to `uri` with `params` and `state` added to its query.
fn redirect(uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{separator}{}", query.finish());
    match HeaderValue::from_str(&location) {
        Ok(location) => {
            (StatusCode::SEE_OTHER, [(LOCATION, location), (CACHE_CONTROL, HeaderValue::from_static("no-store"))])
                .into_response()
        }
        // Registered URIs have no controls and the query is encoded: not reached.
        Err(_) => pages::response(StatusCode::BAD_REQUEST, &pages::error_page("bad redirect URI"), None),
    }
}
