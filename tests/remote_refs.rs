//! `$ref`s to URLs: refused by default, fetched when the config allows,
//! with relative references inside a fetched file resolved against its URL.

mod common;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::*;
use serde_json::json;

/// Serves two files on a loopback port of its own.
fn serve_files() -> String {
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/api/messages.yaml",
                web::get().to(|| async {
                    HttpResponse::Ok().body("Hello:\n  payload: {$ref: 'schemas.yaml#/Greeting'}\n")
                }),
            )
            .route(
                "/api/schemas.yaml",
                web::get().to(|| async {
                    HttpResponse::Ok().body("Greeting: {type: object, required: [text]}\n")
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("loopback port");
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}/api/messages.yaml")
}

fn document(url: &str) -> String {
    format!("asyncapi: 2.6.0\ninfo: {{title: Remote, version: '1'}}\nchannels:\n  r:\n    publish:\n      message: {{$ref: '{url}#/Hello'}}\n")
}

#[actix_rt::test]
async fn remote_references_are_refused_unless_allowed() {
    let url = serve_files();
    let db = TestDb::sqlite();
    let gw = TestGateway::start(test_config(&db.url)).await;
    let (status, problem, _) = gw
        .post(
            "/asyncapis/register",
            &json!({"name": "r", "asyncapi_content": document(&url)}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["rule"], "remote-ref");
    gw.stop().await;

    let db = TestDb::sqlite();
    let mut config = test_config(&db.url);
    config.asyncapi.allow_remote_refs = true;
    let gw = TestGateway::start(config).await;
    let registered = gw.register("r", &document(&url), None).await;
    let channel = channel_id(&registered, "r");
    let (status, problem, _) = gw
        .post(
            "/messages/publish",
            &json!({"channel_id": channel, "message_data": {}}),
        )
        .await;
    assert_eq!(
        status, 422,
        "the fetched schema, reached through a relative ref, applies: {problem}"
    );
    assert_eq!(problem["errors"][0]["rule"], "required");
    gw.stop().await;
}
