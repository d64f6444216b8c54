//! `load-server MODE --data DIR [--workers N] [--token-cache N]`: serves the bench app in
//! one mode on 127.0.0.1 (a free port) and prints its base URL as the first line of
//! stdout once it is ready; it serves until it is killed.
//!
//! The second line of stdout is the address (`127.0.0.1:PORT`) of the allocation counter:
//! the process's global allocator counts every heap allocation of every thread
//! (`stats_alloc`), and each connection to that address gets one line with the count so far
//! and is closed. The runner reads it just before and just after the measured load. The
//! counter is served by a plain thread of its own, blocked in `accept` outside the tokio
//! runtime, so it costs the measured server nothing while it is not asked.
//!
//! Modes: `none`, `basic`, `bearer`, `introspection`, `tls-none`, `mtls`, `jwt-authorizer`,
//! `bare-jwt` (see `app.rs`). `--workers` is the number of tokio worker threads (default 1: the runner
//! pins the server to one core); `--token-cache` is `[oauth2] cache_capacity` of the bearer
//! and introspection modes (default 100,000).
#![forbid(unsafe_code)]

mod app;
mod bare;
mod idp;
mod reference;

use std::alloc::System;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tower_secure_load::data::DataDir;

/// The system allocator, counting: allocations of every thread of the process.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The server's modes: which app, and whether it speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Basic,
    Bearer,
    Introspection,
    TlsNone,
    Mtls,
    JwtAuthorizer,
    BareJwt,
}

impl Mode {
    fn parse(name: &str) -> Option<Mode> {
        Some(match name {
            "none" => Mode::None,
            "basic" => Mode::Basic,
            "bearer" => Mode::Bearer,
            "introspection" => Mode::Introspection,
            "tls-none" => Mode::TlsNone,
            "mtls" => Mode::Mtls,
            "jwt-authorizer" => Mode::JwtAuthorizer,
            "bare-jwt" => Mode::BareJwt,
            _ => return None,
        })
    }

    fn is_tls(self) -> bool {
        matches!(self, Mode::TlsNone | Mode::Mtls)
    }
}

struct Args {
    mode: Mode,
    data: DataDir,
    workers: usize,
    token_cache: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: load-server none|basic|bearer|introspection|tls-none|mtls|jwt-authorizer|bare-jwt --data DIR \
         [--workers N] [--token-cache N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mode = args.next().and_then(|name| Mode::parse(&name)).unwrap_or_else(|| usage());
    let (mut data, mut workers, mut token_cache) = (None, 1, 100_000);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--data" => data = Some(DataDir::new(value)),
            "--workers" => workers = value.parse().unwrap_or_else(|_| usage()),
            "--token-cache" => token_cache = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    Args { mode, data: data.unwrap_or_else(|| usage()), workers, token_cache }
}

fn main() {
    let args = parse_args();
    let counter = serve_allocation_count();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    runtime.block_on(serve(args, counter));
}

/// The heap allocations of the process so far: `allocations` (alloc and alloc_zeroed calls)
/// plus `reallocations` (realloc calls, each of which may move the block), every thread.
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Binds the allocation counter on 127.0.0.1 (a free port) and answers it from a thread of
/// its own: each connection gets `allocations()` as one line, then is closed. Answering
/// allocates nothing, so asking does not move the count.
fn serve_allocation_count() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the allocation counter on 127.0.0.1:0");
    let addr = listener.local_addr().expect("the allocation counter's address");
    std::thread::Builder::new()
        .name("alloc-counter".to_owned())
        .spawn(move || {
            for mut stream in listener.incoming().flatten() {
                // Formatted on the stack and sent in one write (`writeln!` on the socket
                // itself would send the number and the newline separately).
                let mut line = [0u8; 24];
                let mut cursor = std::io::Cursor::new(&mut line[..]);
                if writeln!(cursor, "{}", allocations()).is_ok() {
                    let length = cursor.position() as usize;
                    let _ = stream.write_all(&line[..length]);
                }
            }
        })
        .expect("start the allocation counter's thread");
    addr
}

async fn serve(args: Args, counter: SocketAddr) {
    let app = app::build(args.mode, &args.data, args.token_cache).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("the listener's address");
    let scheme = if args.mode.is_tls() { "https" } else { "http" };
    announce(&format!("{scheme}://{addr}"), counter);
    if args.mode.is_tls() {
        app::tls_server(&args.data).serve(listener, app).await.expect("serve TLS");
    } else {
        axum::serve(listener, app).await.expect("serve HTTP");
    }
}

/// The first two stdout lines, the app's URL and the allocation counter's address: the runner
/// waits for them.
fn announce(url: &str, counter: SocketAddr) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{url}\n{counter}").and_then(|()| out.flush()).expect("write the addresses to stdout");
}
