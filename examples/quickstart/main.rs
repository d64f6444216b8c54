//! The quickstart: an axum API secured by tower-secure with the rules and users shipped
//! beside this file (embedded, so it runs from any directory).
//!
//! ```text
//! cargo run --example quickstart
//! curl -i http://127.0.0.1:3000/api/users/v1/42/challenges                 # 401
//! curl -i -u alex:alex123 http://127.0.0.1:3000/api/users/v1/42/challenges # 200
//! curl -i -u bob:bob123 http://127.0.0.1:3000/api/users/v1/42/challenges   # 403
//!
//! # a token from the built-in token endpoint, then the API with it
//! curl -s -u quickstart-client:quickstart-secret http://127.0.0.1:3000/oauth2/token \
//!      -d grant_type=password -d username=alex -d password=alex123 -d scope=internal_identity_mgt_view
//! curl -i -H "Authorization: Bearer <access_token>" http://127.0.0.1:3000/api/users/v1/42/challenges  # 200
//!
//! # or the authorization code flow: open the "browser:" URL it prints, sign in as alex,
//! # allow, and exchange the code shown on /callback with the printed curl command
//! ```
//!
//! `TOWER_SECURE_DEPLOYMENT` and `TOWER_SECURE_USERS` point it at other files, which are
//! then watched and reloaded when they change; `ADDR` changes the listen address (default
//! 127.0.0.1:3000). `cargo run --example quickstart -- --policy` prints the effective
//! policy (rule file and `#[secure]` handlers) and exits.

mod api;

use std::io::Write as _;

use axum::Router;
use tower_secure::config::{load_clients, load_clients_file, load_users, load_users_file, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::{PolicyListing, SecureLayer};

const DEPLOYMENT: &str = include_str!("deployment.toml");
const USERS: &str = include_str!("users.toml");

/// The app, secured, with the token endpoint beside it. `addr` is where it listens; the
/// embedded configuration names it as the token issuer.
fn app(addr: std::net::SocketAddr) -> Result<(Router, SecureLayer), Box<dyn std::error::Error>> {
    let (deployment, issuer) = match std::env::var_os("TOWER_SECURE_DEPLOYMENT") {
        Some(path) => (Deployment::from_file(path)?, None),
        // The embedded file's issuer is where this process listens, known once bound.
        None => {
            let deployment = Deployment::from_toml_str("examples/quickstart/deployment.toml", DEPLOYMENT)?;
            (deployment, Some(format!("http://{addr}")))
        }
    };
    let (users, clients) = match std::env::var_os("TOWER_SECURE_USERS") {
        Some(path) => (load_users_file(&path)?, load_clients_file(&path)?),
        None => {
            let file = "examples/quickstart/users.toml";
            let mut clients = load_clients(file, USERS)?;
            // The embedded file's public client is sent back to where this process listens.
            for client in clients.iter_mut().filter(|client| client.is_public()) {
                client.redirect_uris = vec![format!("http://{addr}/callback")];
            }
            (load_users(file, USERS)?, clients)
        }
    };
    let mut tokens = TokenServer::builder().deployment(&deployment).user_store(users).clients(clients);
    if let Some(issuer) = issuer {
        tokens = tokens.issuer(issuer);
    }
    let tokens = tokens.build()?;
    // The layer trusts the token server's tokens and shares its user store and lockout.
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build()?;
    let app = api::routes()
        // The token endpoint's routes; the layer lets exactly them through (they
        // authenticate their clients themselves) and guards everything else.
        .merge(tokens.router())
        .layer(layer.clone());
    Ok((app, layer))
}

/// A PKCE verifier (32 random bytes, base64url) and its S256 challenge.
fn pkce_pair() -> (String, String) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut bytes = [0u8; 32];
    // Without randomness the demo URL still works, with a guessable verifier.
    let _ = getrandom::fill(&mut bytes);
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    // The banner is best effort: a closed stdout (`| head -1`) must not stop the server.
    let addr = listener.local_addr()?;
    let (app, layer) = app(addr)?;
    if std::env::args().any(|a| a == "--policy") {
        print!("{}", PolicyListing::new(&layer));
        return Ok(());
    }
    // Files given by path are watched: an edit reloads them, a broken edit is refused
    // (logged) and the running rules stay.
    if let Some(rules) = std::env::var_os("TOWER_SECURE_DEPLOYMENT") {
        let users = std::env::var_os("TOWER_SECURE_USERS").map(Into::into);
        layer.reloader().watch(rules, users, std::time::Duration::from_secs(2));
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "quickstart listening on http://{addr}");
    let _ = writeln!(stdout, "try: curl -i -u alex:alex123 http://{addr}/api/users/v1/42/challenges");
    let _ = writeln!(
        stdout,
        "or:  curl -s -u quickstart-client:quickstart-secret http://{addr}/oauth2/token \\\n       \
         -d grant_type=password -d username=alex -d password=alex123 -d scope=internal_identity_mgt_view"
    );
    // The authorization code flow with PKCE for the public client: a fresh verifier, its
    // S256 challenge in the URL to open in a browser, the verifier for the exchange.
    let (verifier, challenge) = pkce_pair();
    let redirect = format!("http://{addr}/callback");
    let _ = writeln!(
        stdout,
        "browser: http://{addr}/oauth2/authorize?response_type=code&client_id=quickstart-spa\
         &redirect_uri={redirect}&scope=internal_identity_mgt_view&state=demo\
         &code_challenge={challenge}&code_challenge_method=S256\n\
         then:    curl -s http://{addr}/oauth2/token -d grant_type=authorization_code -d client_id=quickstart-spa \\\n       \
         -d redirect_uri={redirect} -d code_verifier={verifier} -d code=<code shown on /callback>"
    );
    let _ = stdout.flush();
    axum::serve(listener, app).await?;
    Ok(())
}
