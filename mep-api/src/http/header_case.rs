//! Exact header spellings on HTTP/1.1.
//!
//! Some MEC test harnesses read response headers case-sensitively and expect `ETag` and
//! `WWW-Authenticate`, which hyper's title-casing would write as `Etag` and `Www-Authenticate`.
//! hyper writes the spelling recorded in a response's (crate-private) header-case extension when
//! it has one, and title-cases the rest. The only public way to obtain that extension is to have
//! hyper parse a request carrying the wanted spellings, so that is what [`spelling_template`] does,
//! once at start; every response then gets a clone of it.

use std::convert::Infallible;

use http::{Extensions, Request, Response};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// Header names whose exact spelling title-casing gets wrong.
const SPELLINGS: &[&str] = &["ETag", "WWW-Authenticate"];

/// Extensions that make hyper spell [`SPELLINGS`] exactly; empty if hyper's parser could not be
/// driven (then hyper's title case is used, which is still valid HTTP).
pub async fn spelling_template() -> Extensions {
    let (mut client, server) = tokio::io::duplex(4096);
    let (tx, rx) = tokio::sync::oneshot::channel::<Extensions>();
    let tx = parking_lot::Mutex::new(Some(tx));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        if let Some(tx) = tx.lock().take() {
            let _ = tx.send(req.extensions().clone());
        }
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let connection = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .preserve_header_case(true)
            .serve_connection(TokioIo::new(server), service),
    );
    let mut request = String::from("GET / HTTP/1.1\r\nHost: mep\r\n");
    for name in SPELLINGS {
        request.push_str(name);
        request.push_str(": x\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let template = match client.write_all(request.as_bytes()).await {
        Ok(()) => rx.await.unwrap_or_default(),
        Err(_) => Extensions::default(),
    };
    drop(client);
    connection.abort();
    template
}
