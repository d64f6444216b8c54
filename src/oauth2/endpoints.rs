// The HTTP side of the token server: routes, body limits, content types and response
// headers. The decisions are in `TokenServer`'s methods.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{Form, OAuthError, TokenServer};

/// The paths [`TokenServer::router`] serves; a layer built with
/// [`token_server`](crate::SecureLayerBuilder::token_server) lets exactly these through.
/// The token endpoint comes first (the OpenAPI document's `tokenUrl` is the first).
pub const ENDPOINT_PATHS: [&str; 8] = [
    "/oauth2/token",
    "/oauth2/authorize",
    "/oauth2/logout",
    "/oauth2/jwks",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
];

impl TokenServer {
    /// The endpoints as an axum router ([`ENDPOINT_PATHS`]): `POST /oauth2/token`,
    /// `GET` and `POST /oauth2/authorize` (the authorization code flow's login and consent
    /// pages), `GET /oauth2/logout`,
    /// `GET /oauth2/jwks`, `POST /oauth2/introspect`, `POST /oauth2/revoke`,
    /// `GET /.well-known/openid-configuration` and `GET /.well-known/oauth-authorization-server`.
    /// Merge it into the app and put the layer around both; the layer must know the server
    /// ([`SecureLayerBuilder::token_server`](crate::SecureLayerBuilder::token_server)),
    /// otherwise it refuses the endpoints' callers with 401.
    pub fn router(&self) -> Router {
        let [token_path, authorize_path, logout_path, jwks_path, introspect_path, revoke_path, openid_path, oauth_path] =
            ENDPOINT_PATHS;
        Router::new()
            .route(token_path, post(token))
            .route(authorize_path, get(authorize_get).post(authorize_post))
            .route(logout_path, get(logout))
            .route(jwks_path, get(jwks))
            .route(introspect_path, post(introspect))
            .route(revoke_path, post(revoke))
            .route(openid_path, get(metadata))
            .route(oauth_path, get(metadata))
            .with_state(self.clone())
    }

    /// The request's headers and its form body, within the size limit.
    async fn read_form(&self, request: Request) -> Result<(HeaderMap, Form), OAuthError> {
        let (parts, body) = request.into_parts();
        let form_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(OAuthError::invalid_request("body is not application/x-www-form-urlencoded"));
        }
        let bytes = axum::body::to_bytes(body, self.inner.max_form_bytes).await.map_err(|_| {
            OAuthError::invalid_request("body over the size limit").with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
        Ok((parts.headers, Form::parse(&bytes)?))
    }
}

/// `no-store`: token responses must not be cached (RFC 6749 section 5.1).
fn no_store(body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn token(State(server): State<TokenServer>, request: Request) -> Response {
    let answer = async {
        let (headers, form) = server.read_form(request).await?;
        server.token(&headers, &form).await
    };
    match answer.await {
        Ok(issued) => no_store(issued.to_json()),
        Err(error) => error.into_response(),
    }
}

async fn authorize_get(State(server): State<TokenServer>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    server.authorize_get(request.headers(), &query).await
}

async fn authorize_post(State(server): State<TokenServer>, request: Request) -> Response {
    match server.read_form(request).await {
        Ok((headers, form)) => server.authorize_post(&headers, &form).await,
        Err(error) => error.into_response(),
    }
}

async fn logout(State(server): State<TokenServer>) -> Response {
    server.logout()
}

async fn introspect(State(server): State<TokenServer>, request: Request) -> Response {
    let answer = async {
        let (headers, form) = server.read_form(request).await?;
        server.client(&headers).await?;
        let token = form.required("token")?;
        server.introspect(token).await
    };
    match answer.await {
        Ok(body) => no_store(body),
        Err(error) => error.into_response(),
    }
}

async fn revoke(State(server): State<TokenServer>, request: Request) -> Response {
    let answer = async {
        let (headers, form) = server.read_form(request).await?;
        let caller = server.client(&headers).await?;
        let token = form.required("token")?;
        server.revoke(&caller.client, token).await
    };
    match answer.await {
        Ok(()) => (StatusCode::OK, [(CACHE_CONTROL, "no-store")], Body::empty()).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn jwks(State(server): State<TokenServer>) -> Response {
    let mut response = Json(server.jwks().clone()).into_response();
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

async fn metadata(State(server): State<TokenServer>) -> Json<serde_json::Value> {
    Json(server.metadata())
}
