//! What the HTTP listener answers: a small table of paths, each a handler that builds a
//! [`Response`] as a value from a [`Context`]. No socket here (`http/mod.rs` owns those), so
//! every route is tested by calling it.
//!
//! Adding a route is one more line in [`ROUTES`] and one handler. The status page (`GET /`
//! and `GET /api/v1/status`) is `status.rs`.

use std::time::{Duration, Instant};

use super::{metrics, status};
use crate::broker::{Broker, Load, Process};
use crate::store::Health;

/// What a handler may look at.
pub struct Context<'a> {
    pub broker: &'a Broker,
    pub now: Instant,
    pub process: Process,
    /// The status page's message rates, advanced by each `/api/v1/status` request.
    pub rates: &'a mut Load,
    /// Recent answers of the routes that walk every session.
    pub cache: &'a mut ResponseCache,
}

/// A complete response; `Connection: close` always follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
        }
    }

    /// Status line, headers and body, ready for the socket. `head_only` (a HEAD request)
    /// keeps the headers of the full response and leaves the body out.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

type Handler = fn(&mut Context) -> Response;

/// What building a route's answer costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    /// A few fields.
    Small,
    /// A walk over every session: kept in the [`ResponseCache`].
    Walk,
}

/// Every path served, with its handler. Each answers GET (and HEAD); other methods get 405.
const ROUTES: &[(&str, Handler, Cost)] = &[
    ("/metrics", metrics_route, Cost::Walk),
    ("/health", health_route, Cost::Small),
    ("/", status::page_route, Cost::Small),
    ("/api/v1/status", status::api_route, Cost::Walk),
];

/// The response to `method path` (the query string, if any, is ignored).
pub fn respond(method: &str, target: &str, context: &mut Context) -> Response {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let Some(&(path, handler, cost)) = ROUTES.iter().find(|(p, _, _)| *p == path) else {
        return Response::text(404, "not found\n");
    };
    if method != "GET" && method != "HEAD" {
        let mut response = Response::text(405, "only GET\n");
        response.allow = Some("GET, HEAD");
        return response;
    }
    if cost == Cost::Small {
        return handler(context);
    }
    if let Some(kept) = context.cache.get(path, context.now) {
        return kept;
    }
    let started = Instant::now();
    let response = handler(context);
    context.cache.keep(path, &response, context.now, started.elapsed());
    response
}

/// The answers of the routes that walk every session (`/metrics`, `/api/v1/status`), each
/// kept for [`REUSE_FACTOR`] times as long as it took to build.
///
/// Why: the walk runs on the event loop. With 100,000 sessions it takes tens of ms, and
/// clients polling in a loop would keep MQTT waiting that long each time; reusing the answer
/// for nine times its cost means the loop spends at most a tenth of its time on them however
/// many ask. An answer built in under [`REUSE_FROM`] (a broker with a few thousand sessions)
/// is not kept at all, so figures are always current there.
#[derive(Debug, Default)]
pub struct ResponseCache {
    /// Path, answer, and until when it is served again; at most one per `Cost::Walk` route.
    kept: Vec<(&'static str, Response, Instant)>,
}

/// A kept answer is served for this many times as long as it took to build.
pub const REUSE_FACTOR: u32 = 9;

/// Answers built faster than this are not kept.
pub const REUSE_FROM: Duration = Duration::from_millis(2);

impl ResponseCache {
    fn get(&self, path: &str, now: Instant) -> Option<Response> {
        self.kept
            .iter()
            .find(|(p, _, until)| *p == path && now < *until)
            .map(|(_, response, _)| response.clone())
    }

    fn keep(&mut self, path: &'static str, response: &Response, now: Instant, took: Duration) {
        self.kept.retain(|(p, _, _)| *p != path);
        if took >= REUSE_FROM {
            self.kept.push((path, response.clone(), now + took * REUSE_FACTOR));
        }
    }
}

fn metrics_route(context: &mut Context) -> Response {
    let m = context.broker.metrics(context.now, &context.process);
    Response {
        status: 200,
        content_type: "text/plain; version=0.0.4; charset=utf-8",
        body: metrics::render(&m).into_bytes(),
        allow: None,
    }
}

/// 200 while the store accepts writes; 503 with the reason while it refuses them.
fn health_route(context: &mut Context) -> Response {
    match context.broker.store().health() {
        Health::Writable => Response::text(200, "ok\n"),
        Health::Refusing(reason) => {
            Response::text(503, format!("store refuses writes: {reason}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::broker;
    use super::*;

    fn get(broker: &Broker, method: &str, target: &str) -> Response {
        let mut rates = Load::default();
        let mut cache = ResponseCache::default();
        let mut context = Context {
            broker,
            now: Instant::now(),
            process: Process::default(),
            rates: &mut rates,
            cache: &mut cache,
        };
        respond(method, target, &mut context)
    }

    #[test]
    fn costly_answers_are_reused_for_nine_times_their_cost_cheap_ones_never() {
        let mut cache = ResponseCache::default();
        let t0 = Instant::now();
        let first = Response::text(200, "first\n");
        cache.keep("/metrics", &first, t0, Duration::from_millis(10));
        assert_eq!(cache.get("/metrics", t0 + Duration::from_millis(89)), Some(first));
        assert_eq!(cache.get("/metrics", t0 + Duration::from_millis(90)), None);
        assert_eq!(cache.get("/api/v1/status", t0), None);
        // A fast build replaces the kept answer and is not kept itself.
        cache.keep("/metrics", &Response::text(200, "second\n"), t0, Duration::from_millis(1));
        assert_eq!(cache.get("/metrics", t0), None);
        assert!(cache.kept.is_empty());
    }

    #[test]
    fn a_small_broker_answers_with_current_figures_every_time() {
        let b = broker();
        let mut rates = Load::default();
        let mut cache = ResponseCache::default();
        let now = Instant::now();
        for _ in 0..3 {
            let mut context = Context {
                broker: &b,
                now,
                process: Process::default(),
                rates: &mut rates,
                cache: &mut cache,
            };
            assert_eq!(respond("GET", "/metrics", &mut context).status, 200);
        }
        assert!(cache.kept.is_empty(), "built in well under {REUSE_FROM:?}");
    }

    #[test]
    fn known_paths_answer_get_and_head_only() {
        let b = broker();
        assert_eq!(get(&b, "GET", "/health").status, 200);
        assert_eq!(get(&b, "GET", "/health").body, b"ok\n");
        assert_eq!(get(&b, "GET", "/metrics?x=1").status, 200);
        assert_eq!(get(&b, "HEAD", "/metrics").status, 200);
        let post = get(&b, "POST", "/metrics");
        assert_eq!((post.status, post.allow), (405, Some("GET, HEAD")));
        assert_eq!(get(&b, "GET", "/").status, 200);
        assert_eq!(get(&b, "GET", "/").content_type, "text/html; charset=utf-8");
        assert_eq!(get(&b, "GET", "/api/v1/status?t=1").content_type, "application/json");
        assert_eq!(get(&b, "POST", "/api/v1/status").status, 405);
        assert_eq!(get(&b, "GET", "/index.html").status, 404);
        assert_eq!(get(&b, "GET", "/api/v1/status/").status, 404);
        assert_eq!(get(&b, "GET", "/metrics/").status, 404);
        assert_eq!(get(&b, "DELETE", "/nothing").status, 404);
    }

    #[test]
    fn responses_close_and_head_keeps_the_length_without_the_body() {
        let r = Response::text(200, "ok\n");
        assert_eq!(
            r.encode(false),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
              Connection: close\r\n\r\nok\n"
        );
        assert!(r.encode(true).ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
        let mut r = Response::text(405, "");
        r.allow = Some("GET, HEAD");
        let text = String::from_utf8(r.encode(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
    }
}
