//! Serves a directory through `ServeDir` behind the ETag layer.
//!
//! ```sh
//! cargo run --example serve                                  # examples/site on 127.0.0.1:3000
//! cargo run --example serve -- --addr 127.0.0.1:8080 --dir ./public
//! curl -i http://127.0.0.1:3000/                             # note the ETag
//! curl -i -H 'If-None-Match: "<etag>"' http://127.0.0.1:3000/  # 304 Not Modified
//! ```

use axum::Router;
use std::{net::SocketAddr, path::PathBuf};
use tower_etag::{ConstLruProvider, EtagCacheLayer};
use tower_http::services::ServeDir;

struct Args {
    addr: SocketAddr,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:3000".parse().expect("valid default address"),
        dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/site")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => args.addr = value.parse().map_err(|e| format!("--addr {value}: {e}"))?,
            "--dir" => args.dir = PathBuf::from(value),
            other => return Err(format!("unknown flag {other} (expected --addr or --dir)")),
        }
    }
    if !args.dir.is_dir() {
        return Err(format!("--dir {}: not a directory", args.dir.display()));
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\nusage: serve [--addr 127.0.0.1:3000] [--dir DIR]");
            std::process::exit(2);
        }
    };
    let app = Router::new()
        .fallback_service(ServeDir::new(&args.dir))
        .layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<
            4096,
        >::init()));

    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    println!("serving {} on http://{}", args.dir.display(), args.addr);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
