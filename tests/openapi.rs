//! SPEC I3: the effective policy as OpenAPI 3.1. The quickstart's layer (its rule file,
//! users, token server and `#[secure]` handler) fills in a utoipa document describing its
//! routes; the security schemes and each operation's requirements are asserted exactly, the
//! document is checked against what the layer answers an anonymous caller, and it is
//! validated by openapi-spec-validator (provisioned by `scripts/test`).

mod common;

// The quickstart's routes, with its `#[secure]` handler (`admin_stats`), linked into this test.
#[path = "../examples/quickstart/api.rs"]
mod api;

use std::io::Write as _;

use axum::body::Body;
use http::request::Parts;
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use tower_secure::async_trait;
use tower_secure::authn::AuthenticationHandler;
use tower_secure::config::{load_clients_file, load_users, load_users_file, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::openapi::{OpenApiError, OpenApiSecurity};
use tower_secure::{AuthError, Principal, SecureLayer};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Required, ResponseBuilder};

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart/deployment.toml");
const USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart/users.toml");

/// The quickstart's operations: its API and two of its token server's endpoints.
const QUICKSTART_ROUTES: [(&str, &str); 6] = [
    ("get", "/api/health"),
    ("get", "/api/users/v1/{user_id}/challenges"),
    ("get", "/api/me"),
    ("get", "/api/admin/stats"),
    ("post", "/oauth2/token"),
    ("get", "/oauth2/jwks"),
];

/// The quickstart's layer as its `main` builds it, from `rules` (the rule file's text).
fn quickstart_layer(rules: &str) -> SecureLayer {
    let deployment = Deployment::from_toml_str(RULES, rules).unwrap();
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users_file(USERS).unwrap())
        .clients(load_clients_file(USERS).unwrap())
        .build()
        .unwrap();
    SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap()
}

/// A document with one operation per `(method, path)`, its path parameters declared and
/// one response, as an application describes its routes with utoipa's builders.
fn document(routes: &[(&str, &str)]) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for (method, path) in routes {
        let mut operation = OperationBuilder::new()
            .operation_id(Some(format!("{method} {path}")))
            .response("200", ResponseBuilder::new().description("OK"));
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        let method = match *method {
            "get" => HttpMethod::Get,
            "post" => HttpMethod::Post,
            "delete" => HttpMethod::Delete,
            "trace" => HttpMethod::Trace,
            other => panic!("no method {other} in this test"),
        };
        paths = paths.path(*path, PathItem::new(method, operation));
    }
    OpenApiBuilder::new().info(InfoBuilder::new().title("quickstart").version("1")).paths(paths).build()
}

/// `layer`'s security written into a document of `routes`, as JSON.
fn secured(layer: &SecureLayer, routes: &[(&str, &str)]) -> Value {
    let mut doc = document(routes);
    OpenApiSecurity::new(layer).apply(&mut doc).unwrap();
    serde_json::to_value(&doc).unwrap()
}

/// Validates `doc` with openapi-spec-validator (OpenAPI 3.1 schema and semantics), and
/// checks what it leaves out: every requirement names a declared scheme, and an OAuth2
/// requirement only scopes its flows declare. Panics with the validator's report.
fn validate(doc: &Value) {
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    file.write_all(serde_json::to_string_pretty(doc).unwrap().as_bytes()).unwrap();
    let script = r#"
import json, sys
from openapi_spec_validator import validate
with open(sys.argv[1]) as f:
    doc = json.load(f)
validate(doc)
schemes = doc.get("components", {}).get("securitySchemes", {})
for path, item in doc["paths"].items():
    for method, operation in item.items():
        for requirement in operation.get("security", []):
            for name, scopes in requirement.items():
                if name not in schemes:
                    sys.exit(f"{method} {path}: no security scheme {name!r}")
                for flow in schemes[name].get("flows", {}).values():
                    missing = set(scopes) - set(flow["scopes"])
                    if missing:
                        sys.exit(f"{method} {path}: scopes {sorted(missing)} not in the {name!r} flows")
print("valid")
"#;
    let output = std::process::Command::new(common::python()).arg("-c").arg(script).arg(file.path()).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && stdout.trim() == "valid",
        "the document is not valid OpenAPI 3.1:\n{stdout}\n{stderr}"
    );
}

fn security<'d>(doc: &'d Value, method: &str, path: &str) -> &'d Value {
    &doc["paths"][path][method]["security"]
}

const SCOPE: &str = "internal_identity_mgt_view";

// SPEC I3: the quickstart's schemes (basic, bearer JWT, oauth2 at its token endpoint with
// its scope definition) and every operation's exact requirements: open routes and the token
// endpoints `[]`, the scoped route with the scope on both token alternatives and Basic,
// the secure default with every handler, the admin route Basic only with the rule file's
// and the handler's permissions. The document is valid OpenAPI 3.1.
#[test]
fn quickstart_policy_as_openapi() {
    let layer = quickstart_layer(&std::fs::read_to_string(RULES).unwrap());
    assert_eq!(layer.handler_order(), [("oauth2".to_owned(), 30), ("basic".to_owned(), 20)]);
    let doc = secured(&layer, &QUICKSTART_ROUTES);

    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes.as_object().unwrap().keys().collect::<Vec<_>>(), ["basic", "bearer", "oauth2"]);
    assert_eq!(schemes["basic"]["type"], "http");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["oauth2"]["type"], "oauth2");
    let flows = &schemes["oauth2"]["flows"];
    assert_eq!(
        flows.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["authorizationCode", "clientCredentials", "password"]
    );
    assert_eq!(flows["authorizationCode"]["authorizationUrl"], "/oauth2/authorize");
    for flow in ["authorizationCode", "clientCredentials", "password"] {
        assert_eq!(flows[flow]["tokenUrl"], "/oauth2/token");
        let scopes = flows[flow]["scopes"].as_object().unwrap();
        assert_eq!(scopes.keys().collect::<Vec<_>>(), [SCOPE]);
        assert!(scopes[SCOPE].as_str().unwrap().contains("/permission/admin/manage/identity/identitymgt/view"));
    }

    assert_eq!(*security(&doc, "get", "/api/health"), json!([]));
    assert_eq!(
        *security(&doc, "get", "/api/users/v1/{user_id}/challenges"),
        json!([{ "bearer": [SCOPE] }, { "oauth2": [SCOPE] }, { "basic": [] }])
    );
    assert_eq!(
        doc["paths"]["/api/users/v1/{user_id}/challenges"]["get"]["x-permissions"],
        json!([{
            "rule": format!("{RULES}:{}", table_line("/api/users/v1/{user_id}/challenges")),
            "match": "all",
            "permissions": ["/permission/admin/manage/identity/identitymgt/view"],
            "token_permissions": "scopes",
        }])
    );
    // No rule covers /api/me: the secure default, any authenticated caller.
    assert_eq!(*security(&doc, "get", "/api/me"), json!([{ "bearer": [] }, { "oauth2": [] }, { "basic": [] }]));
    assert!(doc["paths"]["/api/me"]["get"].get("x-permissions").is_none());
    // `/api/admin/**` allows Basic only; its permission and the handler's both apply.
    assert_eq!(*security(&doc, "get", "/api/admin/stats"), json!([{ "basic": [] }]));
    let admin = doc["paths"]["/api/admin/stats"]["get"]["x-permissions"].as_array().unwrap();
    assert_eq!(admin.len(), 2, "{admin:?}");
    assert_eq!(admin[0]["rule"], format!("{RULES}:{}", table_line("/api/admin/**")));
    assert_eq!(admin[0]["permissions"], json!(["/permission/admin"]));
    assert!(admin[1]["rule"].as_str().unwrap().starts_with("#[secure] "), "{admin:?}");
    assert!(admin[1]["rule"].as_str().unwrap().contains("admin_stats"), "{admin:?}");
    assert_eq!(admin[1]["permissions"], json!(["/permission/admin"]));
    // The token server's endpoints authenticate their clients themselves.
    assert_eq!(*security(&doc, "post", "/oauth2/token"), json!([]));
    assert_eq!(*security(&doc, "get", "/oauth2/jwks"), json!([]));

    validate(&doc);
}

// SPEC I3: the document says what the layer does: every API operation the document calls
// open answers an anonymous caller, and every secured one answers 401 with a challenge.
#[tokio::test]
async fn open_operations_are_exactly_those_the_layer_lets_anonymous_callers_into() {
    let layer = quickstart_layer(&std::fs::read_to_string(RULES).unwrap());
    let doc = secured(&layer, &QUICKSTART_ROUTES);
    let app = api::routes().layer(layer);
    for (method, path) in QUICKSTART_ROUTES.iter().filter(|(_, path)| path.starts_with("/api/")) {
        let open = *security(&doc, method, path) == json!([]);
        let request = Request::builder()
            .method(method.to_ascii_uppercase().as_str())
            .uri(path.replace("{user_id}", "42"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status() != StatusCode::UNAUTHORIZED, open, "{method} {path}: {}", response.status());
    }
}

// SPEC I3: a change of the rule file changes the document: a rule that opens /api/me makes
// it `[]`; `override = true` on the admin rule drops the handler's permissions; a scope
// list with `scopes_match = "any"` gives one requirement per scope, and scopes without a
// `[[scope]]` table are still declared in the flows. Still valid OpenAPI 3.1.
#[test]
fn a_changed_rule_file_changes_the_document() {
    let original = std::fs::read_to_string(RULES).unwrap();
    let admin_rule = "context = \"/api/admin/**\"\n";
    assert!(original.contains(admin_rule));
    let changed = original.replace(admin_rule, &format!("{admin_rule}override = true\n"))
        + r#"
[[resource.access_control]]
context = "/api/me"
secure = false

[[resource.access_control]]
context = "/api/reports/{id}"
http_method = "DELETE"
scope = ["reports_delete", "reports_admin"]
scopes_match = "any"
"#;
    let routes = [("get", "/api/me"), ("get", "/api/admin/stats"), ("delete", "/api/reports/{report}")];
    let before = secured(&quickstart_layer(&original), &routes);
    let after = secured(&quickstart_layer(&changed), &routes);

    assert_eq!(*security(&before, "get", "/api/me"), json!([{ "bearer": [] }, { "oauth2": [] }, { "basic": [] }]));
    assert_eq!(*security(&after, "get", "/api/me"), json!([]));

    assert_eq!(before["paths"]["/api/admin/stats"]["get"]["x-permissions"].as_array().unwrap().len(), 2);
    let admin = after["paths"]["/api/admin/stats"]["get"]["x-permissions"].as_array().unwrap();
    assert_eq!(admin.len(), 1, "{admin:?}");
    assert!(admin[0]["rule"].as_str().unwrap().starts_with(RULES), "{admin:?}");

    // The template's parameter name need not be the rule's.
    assert_eq!(
        *security(&before, "delete", "/api/reports/{report}"),
        json!([{ "bearer": [] }, { "oauth2": [] }, { "basic": [] }])
    );
    assert_eq!(
        *security(&after, "delete", "/api/reports/{report}"),
        json!([
            { "bearer": ["reports_delete"] },
            { "bearer": ["reports_admin"] },
            { "oauth2": ["reports_delete"] },
            { "oauth2": ["reports_admin"] },
            { "basic": [] },
        ])
    );
    let scopes = after["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["scopes"].as_object().unwrap();
    assert_eq!(scopes.keys().collect::<Vec<_>>(), ["internal_identity_mgt_view", "reports_admin", "reports_delete"]);

    validate(&before);
    validate(&after);
}

/// A plugin handler: `X-Api-Key` callers.
struct ApiKeys;

#[async_trait]
impl AuthenticationHandler for ApiKeys {
    fn name(&self) -> &str {
        "api_key"
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.contains_key("x-api-key")
    }

    async fn authenticate(&self, _request: &Parts) -> Result<Principal, AuthError> {
        Err(AuthError::invalid_credentials("no keys in this test"))
    }
}

// SPEC I3: a client certificate is `mutualTLS`; without a token endpoint there is no
// `oauth2` scheme; a plugin handler is documented only with the scheme it is given, and an
// operation only an undocumented handler may authenticate, a method no rule allows or a
// path the layer refuses is an error that leaves the document unchanged.
#[test]
fn client_certificates_plugins_and_what_cannot_be_documented() {
    let deployment = Deployment::from_toml_str(
        "rules.toml",
        r#"
[client_cert]

[[resource.access_control]]
context = "/api/devices/**"
allowed_auth_handlers = ["client_cert"]

[[resource.access_control]]
context = "/api/robots"
allowed_auth_handlers = ["api_key"]
"#,
    )
    .unwrap();
    let layer = SecureLayer::builder()
        .deployment(deployment)
        .user_store(load_users("users.toml", &common::users_toml()).unwrap())
        .authentication_handler(ApiKeys)
        .build()
        .unwrap();
    let names: Vec<String> = layer.handler_order().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["basic", "client_cert", "api_key"]);
    let routes = [("get", "/api/devices/{id}"), ("get", "/api/robots"), ("get", "/api/other")];

    let mut doc = document(&routes);
    let error = OpenApiSecurity::new(&layer).apply(&mut doc).unwrap_err();
    assert!(
        matches!(&error, OpenApiError::NoScheme { path, handlers, .. } if path == "/api/robots" && handlers == &["api_key"]),
        "{error}"
    );
    assert!(doc.components.is_none() && doc.paths.paths["/api/robots"].get.as_ref().unwrap().security.is_none());

    let key = SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key")));
    OpenApiSecurity::new(&layer).plugin_scheme("api_key", key).apply(&mut doc).unwrap();
    let doc = serde_json::to_value(&doc).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes.as_object().unwrap().keys().collect::<Vec<_>>(), ["api_key", "basic", "client_cert"]);
    assert_eq!(schemes["client_cert"]["type"], "mutualTLS");
    assert_eq!(schemes["api_key"], json!({ "type": "apiKey", "in": "header", "name": "X-Api-Key" }));
    assert_eq!(*security(&doc, "get", "/api/devices/{id}"), json!([{ "client_cert": [] }]));
    assert_eq!(*security(&doc, "get", "/api/robots"), json!([{ "api_key": [] }]));
    assert_eq!(
        *security(&doc, "get", "/api/other"),
        json!([{ "basic": [] }, { "client_cert": [] }, { "api_key": [] }])
    );
    validate(&doc);

    // TRACE is not a method `all` stands for, and no rule names it: 405 for everyone.
    let mut doc = document(&[("trace", "/api/other")]);
    let error = OpenApiSecurity::new(&layer).apply(&mut doc).unwrap_err();
    assert!(matches!(error, OpenApiError::MethodNotAllowed { .. }), "{error}");
    let mut doc = document(&[("get", "/api/../admin")]);
    let error = OpenApiSecurity::new(&layer).apply(&mut doc).unwrap_err();
    assert!(matches!(error, OpenApiError::Path { .. }), "{error}");
}

/// The line of the `[[resource.access_control]]` table whose context is `context` in the
/// quickstart's rule file (the origin a rule is listed with).
fn table_line(context: &str) -> usize {
    let text = std::fs::read_to_string(RULES).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == format!("context = \"{context}\"")).unwrap();
    lines[..at].iter().rposition(|l| l.starts_with("[[resource.access_control]]")).unwrap() + 1
}
