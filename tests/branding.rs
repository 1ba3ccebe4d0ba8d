//! Prospect pages carry the vendor's brand (product name, logo, colour, served by
//! showroom) and, per link, the salesperson's name, contact and message; the
//! salesperson previews the page before sending it. Inactive and waking pages too.

mod common;

use common::TestCluster;
use common::harness::*;
use common::web::send;
use showroom::domain::brand::Brand;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(prospect_pages_carry_the_brand_and_the_salesperson);

/// The smallest PNG there is: a 1x1 pixel.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x60, 0xf8, 0x0f,
    0x00, 0x01, 0x04, 0x01, 0x00, 0x5f, 0xe5, 0xc3, 0x4b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn prospect_pages_carry_the_brand_and_the_salesperson(tc: TestCluster) {
    let mut cfg = test_config();
    cfg.brand = Arc::new(
        Brand::new(
            Some("Acme Commerce"),
            Some("#0a7d5a"),
            Some(("acme.png", PNG.to_vec())),
        )
        .unwrap(),
    );
    let app = start_showroom_with_users(&tc, cfg, dev_users()).await;
    let base = format!("http://{}", app.addr);
    let sales = Client::new(&app, SALES);
    let d = sales.start(r#"{"template": "shop"}"#).await;
    let name = d["name"].as_str().unwrap().to_string();
    sales.wait_phase(&name, Some("Ready"), T).await;

    // Bad input names the field and makes no link.
    let links = format!("/api/v1/demos/{name}/share-links");
    let (code, v) = sales
        .post(&links, &format!(r#"{{"message": "{}"}}"#, "x".repeat(501)))
        .await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("message:"),
        "{v}"
    );
    let (code, v) = sales
        .post(&links, r#"{"label": "Dana", "senderContact": "sales@acme.example", "message": "Hi Dana, here is the shop with <b>your</b> catalogue loaded."}"#)
        .await;
    assert_eq!(code, 201, "{v}");
    let (url, id) = (
        v["url"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    );

    // The landing page: brand, salesperson, message (escaped, never markup).
    let page = send("GET", &url, &[("accept", "text/html")], None)
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let html = &page.text;
    assert!(html.contains("Acme Commerce"), "{html}");
    assert!(html.contains("--brand: #0a7d5a"), "{html}");
    assert!(html.contains(r#"src="/brand/logo""#), "{html}");
    assert!(
        html.contains("Hi Dana, here is the shop with &#60;b&#62;your&#60;/b&#62;")
            || html.contains("Hi Dana, here is the shop with &lt;b&gt;your&lt;/b&gt;"),
        "{html}"
    );
    assert!(
        html.contains("<strong>sales</strong> · sales@acme.example"),
        "{html}"
    );
    // The logo is showroom's to serve, on its host and on the link's.
    let logo = send("GET", &format!("{base}/brand/logo"), &[], None)
        .await
        .unwrap();
    assert_eq!(logo.status, 200);
    assert_eq!(logo.header("content-type"), Some("image/png"));
    let app_host = format!("{id}.localhost:{}", app.addr.port());
    let logo = send(
        "GET",
        &format!("{base}/_showroom/brand/logo"),
        &[("host", app_host.as_str())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(logo.status, 200);
    // (The test client reads bodies as text: compare the size and the PNG's signature.)
    assert_eq!(
        logo.header("content-length"),
        Some(PNG.len().to_string().as_str())
    );
    assert!(logo.text.contains("PNG\r\n"));

    // The salesperson previews exactly that page; nothing can be opened from it.
    let login = send(
        "GET",
        &format!("{base}/dev/login/sales"),
        &[("accept", "text/html")],
        None,
    )
    .await
    .unwrap();
    let session = login.cookie("showroom_session").unwrap();
    let preview = send(
        "GET",
        &format!("{base}/demos/{name}/links/{id}/preview"),
        &[("cookie", session.as_str()), ("accept", "text/html")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(preview.status, 200);
    assert!(preview.text.contains("id=\"preview-banner\""));
    assert!(preview.text.contains("Acme Commerce") && preview.text.contains("sales@acme.example"));
    assert!(
        preview.text.contains("disabled"),
        "the open button is disabled"
    );
    let other = send(
        "GET",
        &format!("{base}/demos/{name}/links/lnope/preview"),
        &[("cookie", session.as_str()), ("accept", "text/html")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(other.status, 404);

    // The waking page of a sleeping demo, reached on the link's host: branded too.
    let (code, _) = sales.post(&format!("/api/v1/demos/{name}/sleep"), "").await;
    assert_eq!(code, 202);
    sales.wait_phase(&name, Some("Sleeping"), T).await;
    let token = url.rsplit('/').next().unwrap();
    let cookie = format!("showroom_link={token}");
    let waking = send(
        "GET",
        &format!("{base}/"),
        &[
            ("host", app_host.as_str()),
            ("cookie", cookie.as_str()),
            ("accept", "text/html"),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(waking.status, 503, "{}", waking.text);
    assert!(waking.text.contains("Acme Commerce") && waking.text.contains("/_showroom/brand/logo"));
    assert!(
        waking.text.contains("sales@acme.example"),
        "{}",
        waking.text
    );
    assert!(waking.text.contains("data-eta"), "{}", waking.text);

    // A revoked link's page: branded, and says whom to ask.
    let (code, _) = sales.delete(&format!("{links}/{id}")).await;
    assert!(code == 200 || code == 204, "{code}");
    let gone = send("GET", &url, &[("accept", "text/html")], None)
        .await
        .unwrap();
    assert!(gone.status >= 400, "{}", gone.status);
    assert!(gone.text.contains("Acme Commerce"), "{}", gone.text);
    let unknown = send(
        "GET",
        &format!("{base}/s/nosuchtoken0000000000000000000000"),
        &[("accept", "text/html")],
        None,
    )
    .await
    .unwrap();
    assert!(unknown.text.contains("Acme Commerce") && !unknown.text.contains("sales@acme.example"));
    app.stop().await;
}
