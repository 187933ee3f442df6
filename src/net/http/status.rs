//! The status page: `GET /` (one self-contained HTML page, `status.html`, compiled into the
//! binary) and the read-only JSON it refreshes itself from, `GET /api/v1/status`.
//!
//! Contract: the JSON is built from what the broker already has in memory ([`Metrics`], the
//! store's per-session usage, [`Broker::top_backlogs`]); answering runs no SQL and writes
//! nothing. Its size is bounded: at most [`TOP_SESSIONS`] sessions with client ids of at most
//! [`MAX_ID_BYTES`], plus the configured bridges. The fields are documented in README "Status page"; a field is only ever added, so
//! scripts can rely on the ones there.
//!
//! The rates are 1-minute exponentially weighted averages (Mosquitto's `load/.../1min`, per
//! second), kept by the HTTP server in a [`Load`] advanced at each request: they need neither
//! a `$SYS` subscriber nor a timer, so an idle broker still never wakes for them.

use super::json::Json;
use super::routes::{Context, Response};
use crate::broker::{Backlogs, Load, Metrics};
use crate::config::SqliteConfig;

/// Sessions listed, largest backlog first.
pub const TOP_SESSIONS: usize = 50;

/// Client ids are shown up to this many bytes (then cut on a character boundary and ended
/// with `…`). MQTT allows 65,535 bytes, and escaping can make one six times longer: the cut
/// keeps the document under 100 KB whatever the clients chose.
pub const MAX_ID_BYTES: usize = 256;

/// The page, HTML with its CSS and JavaScript inline (no CDN, no framework).
const PAGE: &str = include_str!("status.html");

pub fn page_route(_: &mut Context) -> Response {
    Response {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: PAGE.as_bytes().to_vec(),
        allow: None,
    }
}

pub fn api_route(context: &mut Context) -> Response {
    let broker = context.broker;
    let m = broker.metrics(context.now, &context.process);
    context.rates.advance(context.now, &m);
    let backlogs = broker.top_backlogs(TOP_SESSIONS);
    Response {
        status: 200,
        content_type: "application/json",
        body: render(&m, &backlogs, context.rates, broker.store().config()).into_bytes(),
        allow: None,
    }
}

/// The JSON document (README "Status page" describes every field).
pub fn render(m: &Metrics, backlogs: &Backlogs, rates: &Load, store: &SqliteConfig) -> String {
    let mut j = Json::new();
    j.begin_object();
    j.key("version").string(env!("CARGO_PKG_VERSION"));
    j.key("uptime_secs").uint(m.uptime.as_secs());

    j.key("clients").begin_object();
    j.key("connected").uint(m.clients_connected);
    j.key("maximum").uint(m.clients_maximum);
    j.key("total").uint(m.clients_total);
    j.key("persistent").uint(backlogs.persistent);
    j.end_object();

    j.key("messages").begin_object();
    j.key("received").uint(m.publish_received);
    j.key("sent").uint(m.publish_sent);
    j.key("dropped").uint(m.publish_dropped);
    j.key("received_per_sec").float(rates.one_minute_per_second("publish/received"), 2);
    j.key("sent_per_sec").float(rates.one_minute_per_second("publish/sent"), 2);
    j.end_object();

    j.key("store").begin_object();
    j.key("queued").uint(m.store_queued);
    j.key("bytes").uint(m.store_bytes);
    j.key("dropped").uint(m.store_dropped);
    j.key("evicted").uint(m.store_evicted);
    j.key("db_size").uint(m.store_db_size);
    j.key("max_db_size").uint(store.max_db_size);
    j.key("disk_cache_size").uint(store.disk_cache_size);
    j.key("accepting").bool(m.store_refusing.is_none());
    match &m.store_refusing {
        Some(reason) => j.key("refusing").string(reason),
        None => j.key("refusing").null(),
    };
    j.end_object();

    j.key("sessions").begin_array();
    for session in &backlogs.top {
        j.begin_object();
        j.key("client_id").string(&shown_id(&session.client_id));
        j.key("online").bool(session.online);
        j.key("queued").uint(session.queued);
        j.key("bytes").uint(session.bytes);
        j.end_object();
    }
    j.end_array();

    j.key("bridges").begin_array();
    for bridge in &m.bridges {
        j.begin_object();
        j.key("name").string(&bridge.name);
        j.key("connected").bool(bridge.connected);
        j.key("queued").uint(bridge.queued);
        j.key("bytes").uint(bridge.queued_bytes);
        j.key("dropped").uint(bridge.dropped);
        j.end_object();
    }
    j.end_array();
    j.end_object();
    j.finish()
}

/// `id`, or its first [`MAX_ID_BYTES`] (on a character boundary) and `…`.
fn shown_id(id: &str) -> std::borrow::Cow<'_, str> {
    if id.len() <= MAX_ID_BYTES {
        return id.into();
    }
    let mut end = MAX_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &id[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Backlog, BridgeMetrics};
    use std::time::Duration;

    #[test]
    fn the_document_has_every_field_with_ids_escaped() {
        let m = Metrics {
            uptime: Duration::from_secs(75),
            clients_connected: 2,
            clients_maximum: 3,
            clients_total: 4,
            publish_received: 10,
            store_queued: 5,
            store_bytes: 321,
            store_refusing: Some("disk \"full\"".into()),
            bridges: vec![BridgeMetrics {
                name: "cloud".into(),
                connected: false,
                queued: 5,
                queued_bytes: 50,
                dropped: 1,
            }],
            ..Metrics::default()
        };
        let backlogs = Backlogs {
            top: vec![Backlog { client_id: "a\"b\nc".into(), online: true, queued: 5, bytes: 9 }],
            persistent: 1,
        };
        let store = SqliteConfig { max_db_size: 1000, disk_cache_size: 100, ..Default::default() };
        let json = render(&m, &backlogs, &Load::default(), &store);
        let expected = format!(
            "{{\"version\":\"{}\",\"uptime_secs\":75,\
             \"clients\":{{\"connected\":2,\"maximum\":3,\"total\":4,\"persistent\":1}},\
             \"messages\":{{\"received\":10,\"sent\":0,\"dropped\":0,\
             \"received_per_sec\":0.00,\"sent_per_sec\":0.00}},\
             \"store\":{{\"queued\":5,\"bytes\":321,\"dropped\":0,\"evicted\":0,\"db_size\":0,\
             \"max_db_size\":1000,\"disk_cache_size\":100,\"accepting\":false,\
             \"refusing\":\"disk \\\"full\\\"\"}},\
             \"sessions\":[{{\"client_id\":\"a\\\"b\\nc\",\"online\":true,\"queued\":5,\"bytes\":9}}],\
             \"bridges\":[{{\"name\":\"cloud\",\"connected\":false,\"queued\":5,\"bytes\":50,\
             \"dropped\":1}}]}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn long_client_ids_are_cut_on_a_character_boundary() {
        let short = "x".repeat(MAX_ID_BYTES);
        assert_eq!(shown_id(&short), short);
        let long = "y".repeat(MAX_ID_BYTES + 1);
        assert_eq!(shown_id(&long), format!("{}…", "y".repeat(MAX_ID_BYTES)));
        // A 4-byte character across the limit is left out whole.
        let straddling = format!("{}😀", "z".repeat(MAX_ID_BYTES - 2));
        assert_eq!(shown_id(&straddling), format!("{}…", "z".repeat(MAX_ID_BYTES - 2)));
        // The worst case: 50 ids of control characters, each escaped to six bytes.
        let nasty = "\u{1}".repeat(65_535);
        let top = (0..TOP_SESSIONS)
            .map(|_| Backlog {
                client_id: nasty.as_str().into(),
                online: false,
                queued: 1,
                bytes: 1,
            })
            .collect();
        let backlogs = Backlogs { top, persistent: 50 };
        let json = render(&Metrics::default(), &backlogs, &Load::default(), &Default::default());
        assert!(json.len() < 100 * 1024, "{} bytes", json.len());
    }

    #[test]
    fn the_page_is_small_self_contained_and_polls_the_api() {
        assert!(PAGE.len() < 8 * 1024, "{} bytes", PAGE.len());
        assert!(PAGE.contains("fetch(\"api/v1/status\""));
        // Nothing loaded from elsewhere.
        for outside in ["http://", "https://", "src=", "<link"] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
    }
}
