// The HTML of the authorization code flow: the login page, the consent page and the error
// pages. Server-rendered, no JavaScript; every value escaped; served with `no-store`, a
// strict Content-Security-Policy (one nonce for the one style sheet) and no framing.

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use super::authorize::AuthorizationRequest;
use crate::config::ClientRecord;
use crate::identity::QualifiedName;

/// The one message for a wrong user name, a wrong password, a disabled or locked user.
pub(super) const WRONG_PASSWORD: &str = "The user name or password is not correct.";
pub(super) const TOO_MANY: &str = "Too many attempts. Wait a moment, then try again.";
pub(super) const UNAVAILABLE: &str = "Signing in is not possible right now. Try again in a moment.";

/// A page of the flow that has a valid authorization request behind it.
pub(super) enum Page<'a> {
    Login { request: &'a AuthorizationRequest, error: Option<&'static str> },
    Consent { request: &'a AuthorizationRequest, user: &'a QualifiedName, scopes: &'a [String] },
    Forbidden,
    Unavailable,
}

impl Page<'_> {
    /// The page's HTML; its forms carry `csrf`.
    pub(super) fn render(&self, csrf: &str, client: &ClientRecord) -> Html {
        let client = escape(&client.id);
        match self {
            Page::Login { request, error } => {
                let error = error.map_or(String::new(), |e| format!("<p class=\"error\" role=\"alert\">{e}</p>"));
                let body = format!(
                    "<h1>Sign in</h1>\n<p><strong>{client}</strong> asks you to sign in.</p>\n{error}\
                     <form method=\"post\" action=\"/oauth2/authorize\">\n{hidden}\
                     <label for=\"username\">User name</label>\n\
                     <input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\n\
                     <label for=\"password\">Password</label>\n\
                     <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
                     <button name=\"action\" value=\"login\">Sign in</button>\n</form>",
                    hidden = hidden_fields(request, csrf),
                );
                Html { title: "Sign in", body }
            }
            Page::Consent { request, user, scopes } => {
                let list = if scopes.is_empty() {
                    "<p>No scopes: it can only know who you are.</p>".to_owned()
                } else {
                    let items: String =
                        scopes.iter().map(|s| format!("<li><code>{}</code></li>\n", escape(s))).collect();
                    format!("<p>It asks for:</p>\n<ul>\n{items}</ul>")
                };
                let body = format!(
                    "<h1>Allow access?</h1>\n<p>Signed in as <strong>{user}</strong>. \
                     <strong>{client}</strong> wants to act for you.</p>\n{list}\n\
                     <form method=\"post\" action=\"/oauth2/authorize\">\n{hidden}\
                     <button name=\"action\" value=\"approve\">Allow</button>\n\
                     <button name=\"action\" value=\"deny\" class=\"secondary\">Deny</button>\n</form>",
                    user = escape(&user.to_string()),
                    hidden = hidden_fields(request, csrf),
                );
                Html { title: "Allow access?", body }
            }
            Page::Forbidden => error_page("The form has expired or was not sent from this site. Start again."),
            Page::Unavailable => error_page(UNAVAILABLE),
        }
    }
}

/// A page saying what went wrong; nothing the caller sent is shown.
pub(super) fn error_page(message: &str) -> Html {
    let body = format!("<h1>Cannot continue</h1>\n<p role=\"alert\">{}</p>", escape(message));
    Html { title: "Cannot continue", body }
}

pub(super) fn signed_out() -> Html {
    Html { title: "Signed out", body: "<h1>Signed out</h1>\n<p>You are signed out.</p>".to_owned() }
}

/// A page's title and the HTML of its `main`.
pub(super) struct Html {
    title: &'static str,
    body: String,
}

/// The request's parameters and the CSRF token, as hidden fields.
fn hidden_fields(request: &AuthorizationRequest, csrf: &str) -> String {
    let mut fields = String::new();
    for (name, value) in &request.params {
        fields.push_str(&format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", escape(value)));
    }
    fields.push_str(&format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n", escape(csrf)));
    fields
}

/// The whole page, its style sheet allowed by `nonce`.
fn layout(html: &Html, nonce: &str) -> String {
    let Html { title, body } = html;
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style nonce=\"{nonce}\">{STYLE}</style>\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:1rem 0 .3rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #888;border-radius:4px}\
button{margin-top:1.2rem;margin-right:.5rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:4px;\
background:#1f5fbf;color:#fff;cursor:pointer}button.secondary{background:#666}\
.error{color:#a00;background:#fdecec;padding:.6rem;border-radius:4px}";

/// An HTML response: `no-store`, no framing, a CSP allowing the page's one style sheet and
/// form posts to this server and, after the post, to `redirect_uri`'s origin (browsers
/// check redirects of a form submission against `form-action`).
pub(super) fn response(status: StatusCode, html: &Html, redirect_uri: Option<&str>) -> Response {
    let mut nonce = [0u8; 16];
    // A failed random source leaves a zero nonce: the page still works, styled or not.
    let _ = getrandom::fill(&mut nonce);
    let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    let form_action = redirect_uri.map(origin).map_or(String::new(), |o| format!(" {o}"));
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'{form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, layout(html, &nonce)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert("content-security-policy", csp);
    }
    response
}

/// The CSP source of a registered redirect URI: `scheme://host[:port]`, or `scheme:` for
/// an app's private-use scheme.
fn origin(uri: &str) -> String {
    match uri.parse::<http::Uri>() {
        Ok(parsed) if parsed.authority().is_some() => {
            format!("{}://{}", parsed.scheme_str().unwrap_or("https"), parsed.authority().map_or("", |a| a.as_str()))
        }
        _ => uri.split_once(':').map_or(String::new(), |(scheme, _)| format!("{scheme}:")),
    }
}

/// HTML text and attribute escaping.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}
