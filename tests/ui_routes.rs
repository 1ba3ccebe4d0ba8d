//! Handler tests for the web UI, share links and the link proxy: status codes, auth,
//! CSRF refusal, rate limits, and what a prospect sees in each case.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

scenarios!(
    signed_in_sales_flow_over_http,
    share_links_api_landing_passcode_proxy_and_rate_limit,
    upgrades_such_as_websockets_pass_through_the_link_proxy,
    a_failed_start_says_what_failed_and_offers_retry_and_delete,
    nothing_the_demo_writes_steers_where_the_link_proxy_connects,
    lists_come_in_pages_in_the_api_and_the_ui,
);

/// A browser-like request: (status, headers as lower-case lines, body). `host` sets
/// the Host header (a share link's own host), `form` is a url-encoded body.
async fn raw(
    method: &str,
    url: &str,
    host: Option<&str>,
    cookie: Option<&str>,
    form: Option<&str>,
    accept: &str,
) -> (u16, String, String) {
    let mut headers = vec![("accept", accept)];
    if let Some(h) = host {
        headers.push(("host", h));
    }
    if let Some(c) = cookie {
        headers.push(("cookie", c));
    }
    if method == "POST" {
        headers.push(("content-type", "application/x-www-form-urlencoded"));
    }
    let url = url.replace("localhost", "127.0.0.1");
    let r = common::web::send(method, &url, &headers, form)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (r.status, r.head(), r.text)
}

/// A request as an SSO proxy forwards it, naming the user and their groups.
async fn via_sso(url: String, groups: &str) -> common::web::Reply {
    let headers = [
        ("x-forwarded-email", "dana@example.com"),
        ("x-forwarded-groups", groups),
    ];
    common::web::send("GET", &url, &headers, None)
        .await
        .unwrap()
}

fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with(name))
        .map(|c| c.split(';').next().unwrap().to_string())
}

fn location(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn csrf_of(body: &str) -> String {
    let i = body
        .find("name=\"csrf\" value=\"")
        .expect("a form with a csrf token")
        + 19;
    body[i..i + 64].to_string()
}

/// Every answer names its request: an id the ingress set is kept, else a new one is made
/// (a UUID, never the same twice), so a prospect's report can be found in the logs.
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let tc = TestCluster::sim().await;
    let app = start_showroom(&tc, test_config()).await;
    let base = format!("http://{}", app.addr);
    let id_of = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no x-request-id in {head}"))
    };
    let mut seen = std::collections::HashSet::new();
    for path in [
        "/livez",
        "/s/no-such-token",
        "/api/v1/nothing-here",
        "/livez",
    ] {
        let (_, head, _) = raw("GET", &format!("{base}{path}"), None, None, None, "*/*").await;
        let id = id_of(&head);
        let parsed = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(parsed.get_version_num(), 4, "{id}");
        assert!(seen.insert(id.clone()), "{id} given twice");
    }
    let r = common::web::send(
        "GET",
        &format!("{base}/livez"),
        &[("x-request-id", "from-the-ingress-42")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(id_of(&r.head()), "from-the-ingress-42");
}

#[tokio::test]
async fn pages_require_a_session_and_forms_require_the_csrf_token() {
    let tc = TestCluster::sim().await;
    let app = start_showroom(&tc, test_config()).await;
    let base = format!("http://{}", app.addr);
    for path in ["/", "/demos", "/demos/demo-x"] {
        let (code, head, _) = raw(
            "GET",
            &format!("{base}{path}"),
            None,
            None,
            None,
            "text/html",
        )
        .await;
        assert_eq!((code, location(&head).as_str()), (303, "/login"), "{path}");
    }
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/login"),
        None,
        None,
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        body.contains("dev-sales"),
        "showroom dev offers one-click sign-in"
    );
    // No password configured for test users: sign-in is refused with a plain message.
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/login"),
        None,
        None,
        Some("user=alice&password=x"),
        "text/html",
    )
    .await;
    assert_eq!(code, 401);
    assert!(body.contains("Unknown user name or wrong password"));
    // One-click dev sign-in exists only for the dev users.
    assert_eq!(
        raw(
            "GET",
            &format!("{base}/dev/login/root"),
            None,
            None,
            None,
            "text/html"
        )
        .await
        .0,
        404
    );

    // A forged or missing session cookie is not a session.
    let (code, _, _) = raw(
        "GET",
        &format!("{base}/"),
        None,
        Some("showroom_session=alice|99999999999|00"),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
}

async fn signed_in_sales_flow_over_http(tc: TestCluster) {
    let app = start_showroom_with_users(&tc, test_config(), dev_users()).await;
    let base = format!("http://{}", app.addr);
    let (code, head, _) = raw(
        "GET",
        &format!("{base}/dev/login/sales"),
        None,
        None,
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
    assert!(
        head.contains("httponly") && head.contains("samesite=lax"),
        "{head}"
    );
    let session = set_cookie(&head, "showroom_session").unwrap();
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/"),
        None,
        Some(&session),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200);
    let csrf = csrf_of(&body);
    // Without the token: refused, nothing created.
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/demos"),
        None,
        Some(&session),
        Some("template=shop"),
        "text/html",
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        body.contains("Reload the page") && !body.contains("panicked"),
        "{body}"
    );
    let (code, _, _) = raw(
        "POST",
        &format!("{base}/demos"),
        None,
        Some(&session),
        Some("csrf=deadbeef&template=shop"),
        "text/html",
    )
    .await;
    assert_eq!(code, 403);
    let api = Client::new(&app, SALES);
    assert_eq!(
        api.get("/api/v1/demos").await.1["demos"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // An unknown template is a page in plain words.
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/demos"),
        None,
        Some(&session),
        Some(&format!("csrf={csrf}&template=nope")),
        "text/html",
    )
    .await;
    assert_eq!(code, 422);
    assert!(body.contains("unknown template"), "{body}");
    // Start for real; a double click (the same form twice) starts one demo.
    let form = format!("csrf={csrf}&template=shop&title=ACME&key=form-1");
    let (code, head, _) = raw(
        "POST",
        &format!("{base}/demos"),
        None,
        Some(&session),
        Some(&form),
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
    let (code2, head2, _) = raw(
        "POST",
        &format!("{base}/demos"),
        None,
        Some(&session),
        Some(&form),
        "text/html",
    )
    .await;
    assert_eq!(
        (code2, location(&head2)),
        (303, location(&head)),
        "one demo for a double click"
    );
    let page = location(&head);
    let name = page.rsplit('/').next().unwrap().to_string();
    api.wait_phase(&name, Some("Ready"), T).await;
    let (code, _, body) = raw(
        "GET",
        &format!("{base}{page}"),
        None,
        Some(&session),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        body.contains("ACME") && body.contains("Put to sleep"),
        "{body}"
    );
    let (code, _, state) = raw(
        "GET",
        &format!("{base}/demos/{name}/state"),
        None,
        Some(&session),
        None,
        "application/json",
    )
    .await;
    assert_eq!(code, 200);
    assert!(state.contains("\"phase\":\"Ready\""), "{state}");
    // Actions: sleep, then an unknown action, then extend beyond the limit.
    let (code, head, _) = raw(
        "POST",
        &format!("{base}/demos/{name}/sleep"),
        None,
        Some(&session),
        Some(&format!("csrf={csrf}")),
        "text/html",
    )
    .await;
    assert_eq!(
        (code, location(&head)),
        (303, format!("/demos/{name}?done=sleep"))
    );
    api.wait_phase(&name, Some("Sleeping"), T).await;
    assert_eq!(
        raw(
            "POST",
            &format!("{base}/demos/{name}/explode"),
            None,
            Some(&session),
            Some(&format!("csrf={csrf}")),
            "text/html"
        )
        .await
        .0,
        404
    );
    let (code, _, body) = raw(
        "POST",
        &format!("{base}/demos/{name}/extend"),
        None,
        Some(&session),
        Some(&format!("csrf={csrf}&by=30d")),
        "text/html",
    )
    .await;
    assert_eq!(code, 422);
    assert!(body.contains("limit"), "{body}");
    // The admin sees it; another sales user would not (covered by the API tests).
    let (_, head, _) = raw(
        "GET",
        &format!("{base}/dev/login/admin"),
        None,
        None,
        None,
        "text/html",
    )
    .await;
    let admin = set_cookie(&head, "showroom_session").unwrap();
    let (_, _, body) = raw(
        "GET",
        &format!("{base}/demos"),
        None,
        Some(&admin),
        None,
        "text/html",
    )
    .await;
    assert!(body.contains("All demos") && body.contains(&name), "{body}");
    // Delete from the UI.
    let (code, head, _) = raw(
        "POST",
        &format!("{base}/demos/{name}/delete"),
        None,
        Some(&session),
        Some(&format!("csrf={csrf}")),
        "text/html",
    )
    .await;
    assert_eq!((code, location(&head).as_str()), (303, "/demos"));
    api.wait_phase(&name, None, T).await;
    // Sign out clears the cookie.
    let (code, head, _) = raw(
        "POST",
        &format!("{base}/logout"),
        None,
        Some(&session),
        Some(&format!("csrf={csrf}")),
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
    assert!(head.contains("max-age=0"), "{head}");
}

async fn share_links_api_landing_passcode_proxy_and_rate_limit(tc: TestCluster) {
    let app = start_showroom_with_users(&tc, test_config(), dev_users()).await;
    let base = format!("http://{}", app.addr);
    let api = Client::new(&app, SALES);
    let name = api.start(r#"{"template": "shop", "title": "ACME"}"#).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_phase(&name, Some("Ready"), T).await;
    let links = format!("/api/v1/demos/{name}/share-links");

    // Create: 201 with the URL (the only time the token is shown).
    let (code, link) = api
        .post(&links, r#"{"label": "ACME", "passcode": "open-sesame"}"#)
        .await;
    assert_eq!(code, 201, "{link}");
    let url = link["url"].as_str().unwrap().to_string();
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(token.len(), 64);
    // Bad input is refused and names the field.
    let (code, v) = api
        .post(&links, r#"{"expiresAt": "2020-01-01T00:00:00Z"}"#)
        .await;
    assert_eq!(code, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expiresAt")
    );
    let (code, _) = api
        .post(&links, r#"{"expiresAt": "2999-01-01T00:00:00Z"}"#)
        .await;
    assert_eq!(code, 400, "never beyond the demo's expiry");
    assert_eq!(api.post(&links, r#"{"colour": "red"}"#).await.0, 400);
    assert_eq!(
        Client::new(&app, ADMIN).post(&links, "{}").await.0,
        201,
        "admins may share any demo"
    );
    // Listing never shows a token or its hash.
    let (code, listed) = api.get(&links).await;
    assert_eq!(code, 200);
    let text = listed.to_string();
    assert!(
        !text.contains(&token) && !text.contains("tokenSha256") && !text.contains("passcodeHash"),
        "{text}"
    );
    assert_eq!(listed["shareLinks"].as_array().unwrap().len(), 2);
    let (_, d) = api.get(&format!("/api/v1/demos/{name}")).await;
    assert_eq!(d["shareLinks"].as_array().unwrap().len(), 2);

    // The landing page asks for the passcode; a wrong one is refused.
    let (code, _, body) = raw("GET", &url, None, None, None, "text/html").await;
    assert_eq!(code, 200);
    assert!(body.contains("ACME") && body.contains("Passcode"));
    let (code, _, body) = raw(
        "POST",
        &format!("{url}/open"),
        None,
        None,
        Some("passcode=wrong"),
        "text/html",
    )
    .await;
    assert_eq!(code, 401);
    assert!(body.contains("not right"));
    let (code, head, _) = raw(
        "POST",
        &format!("{url}/open"),
        None,
        None,
        Some("passcode=open-sesame"),
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
    let enter = location(&head);
    let host = enter
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(host.starts_with(link["id"].as_str().unwrap()), "{enter}");
    let (code, head, _) = raw(
        "GET",
        &enter.replace(&host, base.trim_start_matches("http://")),
        Some(&host),
        None,
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 303);
    let cookie = set_cookie(&head, "showroom_link").unwrap();
    let app_url = format!("{base}/deep/path?q=1");
    let (code, _, body) = raw(
        "GET",
        &app_url,
        Some(&host),
        Some(&format!("{cookie}; theirs=1")),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&name)
            && body.contains("/deep/path")
            && body.contains("theirs=1")
            && !body.contains("showroom_link"),
        "{body}"
    );
    // Without the cookie the link host shows the inactive page, not the demo.
    let (code, _, body) = raw("GET", &app_url, Some(&host), None, None, "text/html").await;
    assert_eq!(code, 404);
    assert!(body.contains("no longer active"));
    // Asleep: a request wakes it; HTML gets the waking page, other clients 503 + Retry-After.
    api.post(&format!("/api/v1/demos/{name}/sleep"), "").await;
    api.wait_phase(&name, Some("Sleeping"), T).await;
    let (code, head, _) = raw(
        "GET",
        &format!("{base}/api/data"),
        Some(&host),
        Some(&cookie),
        None,
        "application/json",
    )
    .await;
    assert_eq!(code, 503);
    assert!(head.contains("retry-after"), "{head}");
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/"),
        Some(&host),
        Some(&cookie),
        None,
        "text/html",
    )
    .await;
    assert!(
        code == 503 && body.contains("moves on by itself") || code == 200,
        "{code} {body}"
    );
    api.wait_phase(&name, Some("Ready"), T).await;
    eventually(T, "proxied again after waking", || async {
        (raw(
            "GET",
            &format!("{base}/"),
            Some(&host),
            Some(&cookie),
            None,
            "text/html",
        )
        .await
        .0 == 200)
            .then_some(())
    })
    .await;

    // Visits are counted per link (coalesced writes).
    eventually(T, "visit recorded", || async {
        let (_, l) = api.get(&links).await;
        l["shareLinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == link["id"])
            .filter(|x| x["visits"] == 1 && x["firstOpenedAt"].is_string())
            .map(|_| ())
    })
    .await;

    // Revoke: 204, then 410 for the link; unknown ids 404.
    let id = link["id"].as_str().unwrap();
    let revoke = format!("{base}{links}/{id}");
    assert_eq!(http("DELETE", &revoke, Some(SALES), None).await.0, 204);
    assert_eq!(
        http("DELETE", &format!("{base}{links}/lnope"), Some(SALES), None)
            .await
            .0,
        404
    );
    assert_eq!(
        http("DELETE", &revoke, Some(OTHER), None).await.0,
        401,
        "bob is not a dev user here"
    );
    eventually(T, "revoked link is inactive", || async {
        (raw("GET", &url, None, None, None, "text/html").await.0 == 410).then_some(())
    })
    .await;
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/"),
        Some(&host),
        Some(&cookie),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 410, "{body}");
    let unknown = format!("{base}/s/{}", "0".repeat(64));
    let (code, _, body_unknown) = raw("GET", &unknown, None, None, None, "text/html").await;
    assert_eq!(code, 404);
    let (_, _, body_revoked) = raw("GET", &url, None, None, None, "text/html").await;
    assert_eq!(
        body_unknown, body_revoked,
        "unknown and revoked links look the same"
    );

    // Failed lookups are rate-limited per client.
    let mut last = 0;
    for _ in 0..25 {
        last = raw(
            "GET",
            &format!("{base}/s/{}", "1".repeat(64)),
            None,
            None,
            None,
            "text/html",
        )
        .await
        .0;
    }
    assert_eq!(last, 429);
    app.stop().await;
}

#[tokio::test]
async fn sso_headers_are_trusted_only_from_the_configured_proxy() {
    let tc = TestCluster::sim().await;
    // Trusted: 127.0.0.2 only; the test connects from 127.0.0.1.
    let mut cfg = test_config();
    cfg.sso = showroom::web::Sso {
        trusted_proxies: vec!["127.0.0.2".parse().unwrap()],
        admin_group: "admins".into(),
    };
    let app = start_showroom(&tc, cfg).await;
    let base = format!("http://{}", app.addr);
    let out = via_sso(format!("{base}/"), "admins").await;
    assert_eq!(
        out.status, 303,
        "headers from an untrusted peer are ignored: {}",
        out.text
    );
    app.stop().await;

    let mut cfg = test_config();
    cfg.sso = showroom::web::Sso {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        admin_group: "admins".into(),
    };
    let app = start_showroom(&tc, cfg).await;
    let base = format!("http://{}", app.addr);
    let reply = via_sso(format!("{base}/demos"), "staff,admins").await;
    let (code, body) = (reply.status, reply.text);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("dana@example.com") && body.contains("All demos"),
        "an admin through SSO: {body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn password_sign_in_sets_a_session() {
    let tc = TestCluster::sim().await;
    let users =
        showroom::domain::users::Users::from_entries(vec![showroom::domain::users::UserEntry {
            name: "erin".into(),
            role: showroom::domain::users::Role::Sales,
            token_sha256: vec![],
            max_demos: None,
            password_argon2: Some(showroom::domain::share::hash_secret("a long passphrase")),
        }])
        .unwrap();
    let app = start_showroom_with_users(&tc, test_config(), std::sync::Arc::new(users)).await;
    let base = format!("http://{}", app.addr);
    let (code, _, _) = raw(
        "POST",
        &format!("{base}/login"),
        None,
        None,
        Some("user=erin&password=nope"),
        "text/html",
    )
    .await;
    assert_eq!(code, 401);
    let (code, head, _) = raw(
        "POST",
        &format!("{base}/login"),
        None,
        None,
        Some("user=erin&password=a+long+passphrase"),
        "text/html",
    )
    .await;
    assert_eq!(code, 303, "{head}");
    let session = set_cookie(&head, "showroom_session").unwrap();
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/"),
        None,
        Some(&session),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("erin") && body.contains("Start demo"));
    app.stop().await;
}

async fn upgrades_such_as_websockets_pass_through_the_link_proxy(tc: TestCluster) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start_showroom_with_users(&tc, test_config(), dev_users()).await;
    let api = Client::new(&app, SALES);
    let name = api.start_ready("shop", T).await;
    let (_, link) = api
        .post(&format!("/api/v1/demos/{name}/share-links"), "{}")
        .await;
    let token = link["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let host = format!(
        "{}.localhost:{}",
        link["id"].as_str().unwrap(),
        app.addr.port()
    );
    eventually(T, "the link is in the cache", || async {
        (raw(
            "GET",
            &format!("http://{}/", app.addr),
            Some(&host),
            Some(&format!("showroom_link={token}")),
            None,
            "text/html",
        )
        .await
        .0 == 200)
            .then_some(())
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!(
        "GET /socket HTTP/1.1\r\nHost: {host}\r\nCookie: showroom_link={token}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping through the proxy").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 22 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping through the proxy");
    app.stop().await;
}

async fn a_failed_start_says_what_failed_and_offers_retry_and_delete(tc: TestCluster) {
    let app = start_showroom_with_users(&tc, test_config(), dev_users()).await;
    let base = format!("http://{}", app.addr);
    let api = Client::new(&app, SALES);
    let name = api.start(r#"{"template": "broken"}"#).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_phase(&name, Some("Failed"), T).await;
    let (_, head, _) = raw(
        "GET",
        &format!("{base}/dev/login/sales"),
        None,
        None,
        None,
        "text/html",
    )
    .await;
    let session = set_cookie(&head, "showroom_session").unwrap();
    let (code, _, body) = raw(
        "GET",
        &format!("{base}/demos/{name}"),
        None,
        Some(&session),
        None,
        "text/html",
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        body.contains("id=\"failed\"")
            && body.contains("restore failed")
            && body.contains("oci://example.test/snap/missing:1: not found"),
        "{body}"
    );
    assert!(
        body.contains("id=\"retry\"") && body.contains("/delete"),
        "{body}"
    );
    app.stop().await;
}

/// The synced entrypoint Service is written by the demo's own vcluster (whoever holds
/// its kubeconfig can annotate it, or point it elsewhere): the proxy must connect only
/// to the address showroom derives from the template and the demo's name.
async fn nothing_the_demo_writes_steers_where_the_link_proxy_connects(tc: TestCluster) {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, Patch, PatchParams};
    // Where an attacker would like the proxy to go: counts every connection.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bait_addr = bait.local_addr().unwrap();
    {
        let hits = hits.clone();
        tokio::spawn(async move {
            while let Ok((_s, _)) = bait.accept().await {
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let app = start_showroom_with_users(&tc, test_config(), dev_users()).await;
    let api = Client::new(&app, SALES);
    let name = api.start_ready("shop", T).await;
    // The vcluster's syncer writes what the virtual cluster says: annotations that
    // name another address, and a Service turned into a pointer elsewhere.
    let services: Api<Service> = Api::namespaced(tc.client.clone(), &name);
    let svc = format!("storefront-x-shop-x-{name}");
    // Ready means the vcluster is up; its syncer makes the app's Service on its own
    // time after that (a real one does too), so the test waits for it.
    eventually(T, "the synced entrypoint Service", || async {
        services.get_opt(&svc).await.ok().flatten()
    })
    .await;
    services
        .patch(
            &svc,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "sim.showroom.dev/address": bait_addr.to_string(),
                "showroom.dev/upstream": bait_addr.to_string(),
            }}, "spec": {"externalIPs": ["10.1.2.3"]}})),
        )
        .await
        .unwrap();
    let (_, link) = api
        .post(&format!("/api/v1/demos/{name}/share-links"), "{}")
        .await;
    let token = link["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let host = format!(
        "{}.localhost:{}",
        link["id"].as_str().unwrap(),
        app.addr.port()
    );
    let page = eventually(T, "the app through the proxy", || async {
        let (code, _, body) = raw(
            "GET",
            &format!("http://{}/", app.addr),
            Some(&host),
            Some(&format!("showroom_link={token}")),
            None,
            "text/html",
        )
        .await;
        (code == 200).then_some(body)
    })
    .await;
    assert!(page.contains(&format!("vcluster {name}/{name}")), "{page}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the proxy never connected where the demo's Service pointed"
    );
    app.stop().await;
}

/// Walks a list a page at a time: the names in order, and how many pages it took.
async fn walk(api: &Client, path: &str, limit: usize) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &next {
            Some(c) => format!("{path}{sep}limit={limit}&continue={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (code, v) = api.get(&url).await;
        assert_eq!(code, 200, "{url}: {v}");
        let page: Vec<String> = v["demos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= limit, "{url}: a page of at most {limit}: {v}");
        pages += 1;
        names.extend(page);
        match v["continue"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => return (names, pages),
        }
    }
}

async fn lists_come_in_pages_in_the_api_and_the_ui(tc: TestCluster) {
    let mut cfg = test_config();
    cfg.max_demos_per_user = 10;
    let app = start_showroom_with_users(&tc, cfg, dev_users()).await;
    let (sales, admin) = (Client::new(&app, SALES), Client::new(&app, ADMIN));
    for _ in 0..7 {
        sales.start(r#"{"template": "shop"}"#).await;
    }
    admin.start(r#"{"template": "shop"}"#).await;
    eventually(T, "the cache has all eight", || async {
        (admin.get("/api/v1/demos?all=true").await.1["total"] == 8).then_some(())
    })
    .await;
    // The whole list, newest first: what the pages must add up to.
    let (_, whole) = sales.get("/api/v1/demos").await;
    let whole: Vec<String> = whole["demos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(whole.len(), 7);
    let (paged, pages) = walk(&sales, "/api/v1/demos", 3).await;
    assert_eq!(
        (paged.clone(), pages),
        (whole.clone(), 3),
        "3 + 3 + 1, in order"
    );
    let (everyone, pages) = walk(&admin, "/api/v1/demos?all=true", 5).await;
    assert_eq!((everyone.len(), pages), (8, 2));
    for n in &whole {
        assert!(everyone.contains(n), "{n} is in the admin's pages");
    }
    // A page resumes after where the last one ended, even if that demo is gone now.
    let (_, first) = sales.get("/api/v1/demos?limit=3").await;
    let token = first["continue"].as_str().unwrap().to_string();
    assert_eq!(first["total"], 7);
    let (code, _) = sales.delete(&format!("/api/v1/demos/{}", whole[2])).await;
    assert_eq!(code, 202);
    let (_, second) = sales
        .get(&format!("/api/v1/demos?limit=3&continue={token}"))
        .await;
    let second: Vec<&str> = second["demos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        second,
        whole[3..6].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Bad paging input: 400 naming the parameter.
    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("continue=not-a-token", "continue"),
    ] {
        let (code, v) = sales.get(&format!("/api/v1/demos?{query}")).await;
        assert_eq!(code, 400, "{query}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(names),
            "{query}: {v}"
        );
    }

    // The UI's list: the same pages, with a link to the older ones.
    eventually(T, "the deleted demo gone", || async {
        (sales.get("/api/v1/demos?limit=1").await.1["total"] == 6).then_some(())
    })
    .await;
    let base = format!("http://{}", app.addr);
    let (_, head, _) = raw(
        "GET",
        &format!("{base}/dev/login/sales"),
        None,
        None,
        None,
        "text/html",
    )
    .await;
    let session = set_cookie(&head, "showroom_session").unwrap();
    let mut url = format!("{base}/demos?limit=4");
    let mut seen = Vec::new();
    for page in 0..3 {
        let (code, _, body) = raw("GET", &url, None, Some(&session), None, "text/html").await;
        assert_eq!(code, 200);
        for n in &whole {
            if body.contains(&format!("data-demo=\"{n}\"")) && !seen.contains(n) {
                seen.push(n.clone());
            }
        }
        let older = body
            .split("href=\"")
            .skip(1)
            // As a browser reads an attribute: askama writes `&` as `&#38;`.
            .map(|h| {
                h.split('"')
                    .next()
                    .unwrap()
                    .replace("&#38;", "&")
                    .replace("&amp;", "&")
            })
            .find(|h| h.starts_with("/demos?continue="));
        match older {
            Some(h) => url = format!("{base}{h}"),
            None => {
                assert_eq!(page, 1, "two pages of four hold six demos: {body}");
                assert!(body.contains("Showing 5–6 of 6"), "{body}");
                break;
            }
        }
    }
    let remaining: Vec<String> = whole.iter().filter(|n| **n != whole[2]).cloned().collect();
    seen.sort();
    let mut want = remaining.clone();
    want.sort();
    assert_eq!(seen, want, "every remaining demo on one of the pages");
    app.stop().await;
}
