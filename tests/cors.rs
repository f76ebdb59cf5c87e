//! Browser pages of the configured origins may call the API and open SSE
//! streams: a preflight is answered before authentication, and other
//! origins get no CORS headers.

mod common;

use common::*;

const PAGE: &str = "http://127.0.0.1:8765";

#[actix_rt::test]
async fn listed_origins_get_cors_headers_and_preflights_need_no_credentials() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.auth.enabled = true;
    config.auth.jwt.hs256_secret = Some("a-secret-of-at-least-32-bytes-long!!".into());
    config.server.cors_allowed_origins = vec![PAGE.into()];
    let gw = TestGateway::start(config).await;

    let preflight = gw
        .client
        .request(
            awc::http::Method::OPTIONS,
            format!("{}/messages/publish", gw.base),
        )
        .insert_header(("Origin", PAGE))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header((
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ))
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status().as_u16(), 200);
    let allowed = preflight.headers().get("access-control-allow-origin");
    assert_eq!(allowed.and_then(|v| v.to_str().ok()), Some(PAGE));

    // A request without credentials is refused, with the header that lets
    // the page read the refusal.
    let refused = gw
        .client
        .get(format!("{}/asyncapis", gw.base))
        .insert_header(("Origin", PAGE))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 401);
    let allowed = refused.headers().get("access-control-allow-origin");
    assert_eq!(allowed.and_then(|v| v.to_str().ok()), Some(PAGE));

    let other = gw
        .client
        .get(format!("{}/health", gw.base))
        .insert_header(("Origin", "http://elsewhere.example"))
        .send()
        .await
        .expect("request");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    gw.stop().await;
}

#[actix_rt::test]
async fn an_origin_with_a_path_stops_the_start_with_its_name() {
    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.server.cors_allowed_origins = vec!["https://app.example.com/page".into()];
    let error = stepflow_gateway::gateway::Gateway::start(config)
        .await
        .err()
        .expect("refused");
    let text = error.to_string();
    assert!(text.contains("https://app.example.com/page"), "{text}");
}
