//! Instant demos and limits that hold: warm pools (fill, claim, refill, rotate,
//! sleeping members), 50 concurrent starts over two replicas against a pool of 10,
//! reset to the snapshot, the cluster-wide ceiling and the exact per-user limit.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::Value;
use showroom::app::Running;
use showroom::cluster::leader::LeaderConfig;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(
    a_pool_fills_a_start_claims_a_member_and_the_pool_refills,
    a_sleeping_pool_wakes_the_member_it_hands_out,
    members_are_replaced_on_max_age_and_on_a_template_change_without_emptying_the_pool,
    fifty_concurrent_starts_over_two_replicas_claim_each_member_once,
    a_reset_brings_back_the_snapshot_and_keeps_links_and_lease,
    the_ceiling_refuses_starts_and_wakes_and_frees_with_sleep_and_delete,
    the_per_user_limit_is_exact_over_two_replicas,
);

fn pooled(name: &str, pool: &str) -> showroom::domain::template::Template {
    template(
        name,
        "oci://example.test/snap/shop:1",
        &format!("warmPool: {pool}"),
    )
}

async fn with_catalogue(
    tc: &TestCluster,
    cfg: showroom::app::Config,
    templates: Vec<showroom::domain::template::Template>,
) -> Running {
    start_showroom_full(tc, cfg, test_users(), catalogue_of(templates)).await
}

/// The admins' view of one pool.
async fn pool(admin: &Client, template: &str) -> Value {
    let (code, v) = admin.get("/api/v1/pools").await;
    assert_eq!(code, 200, "{v}");
    v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["template"] == template)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn ready_members(admin: &Client, template: &str, n: u64) {
    eventually(T, &format!("{n} ready members of {template}"), || async {
        (pool(admin, template).await["ready"].as_u64() == Some(n)).then_some(())
    })
    .await;
}

async fn a_pool_fills_a_start_claims_a_member_and_the_pool_refills(tc: TestCluster) {
    let app = with_catalogue(&tc, test_config(), vec![pooled("pooled", "{size: 2}")]).await;
    let (alice, carol) = (Client::new(&app, SALES), Client::new(&app, ADMIN));
    ready_members(&carol, "pooled", 2).await;
    // The catalogue says a start is instant now.
    let members_before: Vec<String> = tc
        .demos()
        .await
        .iter()
        .filter(|d| d.spec.pool.is_some())
        .map(|d| d.name_any())
        .collect();
    assert_eq!(members_before.len(), 2);

    let started = std::time::Instant::now();
    let d = alice
        .start(r#"{"template": "pooled", "title": "ACME", "maxLifetime": "1d"}"#)
        .await;
    let took = started.elapsed();
    let name = d["name"].as_str().unwrap().to_string();
    assert!(
        members_before.contains(&name),
        "a member was handed out: {d}"
    );
    assert_eq!(d["phase"], "Ready", "ready at once: {d}");
    assert_eq!(
        (d["owner"].as_str(), d["title"].as_str()),
        (Some("alice"), Some("ACME"))
    );
    assert_eq!(d["fromPool"], true);
    eprintln!("claim answered in {took:?}");
    // The lease counts from the claim, not from when the member was made.
    let expires = chrono::DateTime::parse_from_rfc3339(d["expiresAt"].as_str().unwrap()).unwrap();
    let from_now = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        (from_now - chrono::Duration::days(1)).num_seconds().abs() < 30,
        "expires a day after the claim: {d}"
    );
    // The claimed demo is alice's, and only hers; the pool is back to two.
    let (_, mine) = alice.get("/api/v1/demos").await;
    assert_eq!(mine["demos"].as_array().unwrap().len(), 1, "{mine}");
    ready_members(&carol, "pooled", 2).await;
    let demo = Api::<showroom::cluster::crd::Demo>::all(tc.client.clone())
        .get(&name)
        .await
        .unwrap();
    assert!(demo.spec.pool.is_none() && !demo.labels().contains_key("showroom.dev/pool"));
    // It is a demo like any other: its app answers through a share link.
    alice.wait_phase(&name, Some("Ready"), T).await;
    let (code, link) = alice
        .post(&format!("/api/v1/demos/{name}/share-links"), "{}")
        .await;
    assert_eq!(code, 201, "{link}");
    app.stop().await;
}

async fn a_sleeping_pool_wakes_the_member_it_hands_out(tc: TestCluster) {
    let app = with_catalogue(
        &tc,
        test_config(),
        vec![pooled("dozing", "{size: 1, state: Sleeping}")],
    )
    .await;
    let (alice, carol) = (Client::new(&app, SALES), Client::new(&app, ADMIN));
    ready_members(&carol, "dozing", 1).await;
    let member = tc
        .demos()
        .await
        .into_iter()
        .find(|d| d.spec.pool.is_some())
        .unwrap();
    assert_eq!(
        member.phase().as_str(),
        "Sleeping",
        "kept asleep: no compute"
    );
    let d = alice.start(r#"{"template": "dozing"}"#).await;
    let name = d["name"].as_str().unwrap().to_string();
    assert_eq!(name, member.name_any());
    alice.wait_phase(&name, Some("Ready"), T).await;
    ready_members(&carol, "dozing", 1).await;
    app.stop().await;
}

async fn members_are_replaced_on_max_age_and_on_a_template_change_without_emptying_the_pool(
    tc: TestCluster,
) {
    let app = with_catalogue(
        &tc,
        test_config(),
        vec![pooled("aging", "{size: 2, maxAge: 4s}")],
    )
    .await;
    let carol = Client::new(&app, ADMIN);
    ready_members(&carol, "aging", 2).await;
    let first: Vec<String> = pool_names(&tc).await;
    // Members older than maxAge are replaced, one at a time: never fewer than two ready.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let p = pool(&carol, "aging").await;
        assert!(
            p["ready"].as_u64().unwrap() >= 2,
            "the pool never empties: {p}"
        );
        let now = pool_names(&tc).await;
        if first.iter().all(|n| !now.contains(n)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members were not rotated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;

    // A new revision of the template (other values): every member is replaced.
    let app = with_catalogue(&tc, test_config(), vec![pooled("aging", "{size: 2}")]).await;
    let carol = Client::new(&app, ADMIN);
    ready_members(&carol, "aging", 2).await;
    let old = pool_names(&tc).await;
    app.stop().await;
    let mut changed = pooled("aging", "{size: 2}");
    changed.vcluster.values =
        serde_json::json!({"sync": {"toHost": {"ingresses": {"enabled": true}}}});
    let app = with_catalogue(&tc, test_config(), vec![changed]).await;
    let carol = Client::new(&app, ADMIN);
    eventually(T, "every member of the old revision replaced", || async {
        let p = pool(&carol, "aging").await;
        let now = pool_names(&tc).await;
        (old.iter().all(|n| !now.contains(n)) && p["ready"].as_u64() == Some(2)).then_some(())
    })
    .await;
    app.stop().await;
}

async fn pool_names(tc: &TestCluster) -> Vec<String> {
    tc.demos()
        .await
        .iter()
        .filter(|d| d.spec.pool.is_some() && d.metadata.deletion_timestamp.is_none())
        .map(|d| d.name_any())
        .collect()
}

/// A replica that serves but never leads: the Lease is held by someone else.
fn follower(tc: &TestCluster, identity: &str, lease: &str) -> showroom::app::Config {
    let mut c = test_config();
    c.max_demos_per_user = 100;
    c.leader = Some(LeaderConfig {
        namespace: "default".into(),
        lease_name: lease.into(),
        identity: identity.into(),
        duration_secs: 3600,
        grace_secs: 1,
    });
    let _ = tc;
    c
}

async fn fifty_concurrent_starts_over_two_replicas_claim_each_member_once(tc: TestCluster) {
    let big = || pooled("popular", "{size: 10}");
    // One replica fills the pool, then stops.
    let mut cfg = test_config();
    cfg.max_demos_per_user = 100;
    let filler = with_catalogue(&tc, cfg, vec![big()]).await;
    ready_members(&Client::new(&filler, ADMIN), "popular", 10).await;
    let members = pool_names(&tc).await;
    filler.stop().await;
    // Two replicas serve, and neither leads (a Lease held by nobody else's process), so
    // the pool is not refilled while 50 starts race for its 10 members.
    let lease = format!("nobody-leads-{}", tc.instance.name());
    let held: Lease = serde_json::from_value(serde_json::json!({"metadata": {"name": lease},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "renewTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}))
    .unwrap();
    Api::<Lease>::namespaced(tc.client.clone(), "default")
        .create(&PostParams::default(), &held)
        .await
        .unwrap();
    let a = with_catalogue(&tc, follower(&tc, "a", &lease), vec![big()]).await;
    let b = with_catalogue(&tc, follower(&tc, "b", &lease), vec![big()]).await;
    let urls = [
        format!("http://{}/api/v1/demos", a.addr),
        format!("http://{}/api/v1/demos", b.addr),
    ];
    let starts: Vec<_> = (0..50)
        .map(|i| {
            let url = urls[i % 2].clone();
            tokio::spawn(async move {
                http(
                    "POST",
                    &url,
                    Some(ADMIN),
                    Some(r#"{"template": "popular"}"#),
                )
                .await
            })
        })
        .collect();
    let mut names = Vec::new();
    let mut claimed = 0;
    for s in starts {
        let (code, v) = s.await.unwrap();
        assert_eq!(code, 202, "{v}");
        claimed += (v["fromPool"] == true) as usize;
        names.push(v["name"].as_str().unwrap().to_string());
    }
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 50, "50 different demos");
    assert_eq!(claimed, 10, "each of the 10 members claimed once");
    let from_pool: Vec<&String> = names.iter().filter(|n| members.contains(n)).collect();
    assert_eq!(from_pool.len(), 10, "the claimed ones are the members");
    let demos = tc.demos().await;
    for m in &members {
        let d = demos.iter().find(|d| d.name_any() == *m).unwrap();
        assert_eq!(
            d.spec.owner, "carol",
            "claimed exactly once, by the start that got it"
        );
        assert!(d.spec.pool.is_none());
    }
    // Clear them away (the 40 never provisioned: nobody led) before the next round.
    let carol = Client::new(&a, ADMIN);
    for n in &names {
        assert_eq!(carol.delete(&format!("/api/v1/demos/{n}")).await.0, 202);
    }
    a.stop().await;
    b.stop().await;

    // Again, with one replica killed in the middle of the claims: every member ends
    // either in the pool or claimed by one start (never half), and every answered
    // start's demo exists.
    let filler = with_catalogue(
        &tc,
        {
            let mut c = test_config();
            c.max_demos_per_user = 200;
            c
        },
        vec![big()],
    )
    .await;
    eventually(T, "the pool refilled", || async {
        (pool(&Client::new(&filler, ADMIN), "popular").await["ready"].as_u64() == Some(10))
            .then_some(())
    })
    .await;
    let members = pool_names(&tc).await;
    filler.stop().await;
    let a = with_catalogue(&tc, follower(&tc, "a", &lease), vec![big()]).await;
    let b = with_catalogue(&tc, follower(&tc, "b", &lease), vec![big()]).await;
    let urls = [
        format!("http://{}/api/v1/demos", a.addr),
        format!("http://{}/api/v1/demos", b.addr),
    ];
    // Spread over 40 ms; replica b dies at 12 ms, with claims in flight.
    let starts: Vec<_> = (0..20)
        .map(|i| {
            let url = urls[i % 2].clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
                try_http(
                    "POST",
                    &url,
                    Some(ADMIN),
                    Some(r#"{"template": "popular"}"#),
                    &[],
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(12)).await;
    b.kill();
    let mut answered = Vec::new();
    for s in starts {
        if let Ok((202, v)) = s.await.unwrap() {
            answered.push(v["name"].as_str().unwrap().to_string());
        }
    }
    let demos = tc.demos().await;
    for n in &answered {
        assert!(
            demos.iter().any(|d| d.name_any() == *n),
            "{n} was answered and exists"
        );
    }
    for m in &members {
        let d = demos
            .iter()
            .find(|d| d.name_any() == *m)
            .expect("no member lost");
        let in_pool = d.spec.pool.is_some() && d.spec.owner.is_empty();
        let claimed =
            d.spec.pool.is_none() && d.spec.owner == "carol" && d.spec.claimed_at.is_some();
        assert!(in_pool || claimed, "{m} is whole: {:?}", d.spec);
    }
    eprintln!(
        "killed a replica mid-claim: {} starts answered, every member whole",
        answered.len()
    );
    a.stop().await;
}

async fn a_reset_brings_back_the_snapshot_and_keeps_links_and_lease(tc: TestCluster) {
    let url = "oci://example.test/snap/reset:1";
    let app = with_catalogue(&tc, test_config(), vec![template("resettable", url, "")]).await;
    let alice = Client::new(&app, SALES);
    let d = alice.start(r#"{"template": "resettable"}"#).await;
    let name = d["name"].as_str().unwrap().to_string();
    alice.wait_phase(&name, Some("Ready"), T).await;
    let (_, link) = alice
        .post(
            &format!("/api/v1/demos/{name}/share-links"),
            r#"{"label": "ACME"}"#,
        )
        .await;
    let (_, before) = alice.get(&format!("/api/v1/demos/{name}")).await;
    // A prospect fills the cart through the link.
    let app_host = format!(
        "{}.localhost:{}",
        link["id"].as_str().unwrap(),
        app.addr.port()
    );
    let token = link["url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("showroom_link={token}");
    let visit = |method: &'static str, path: &'static str| {
        let (base, host, cookie) = (
            format!("http://{}", app.addr),
            app_host.clone(),
            cookie.clone(),
        );
        async move {
            let headers = [
                ("host", host.as_str()),
                ("cookie", cookie.as_str()),
                ("accept", "text/html"),
            ];
            common::web::send(method, &format!("{base}{path}"), &headers, None)
                .await
                .unwrap()
        }
    };
    let cart = |page: &str| -> Option<u64> {
        let i = page.find("id=\"cart\">")? + 10;
        page[i..].split('<').next()?.parse().ok()
    };
    eventually(T, "the app through the link", || async {
        (visit("GET", "/").await.status == 200).then_some(())
    })
    .await;
    visit("POST", "/cart").await;
    visit("POST", "/cart").await;
    assert_eq!(cart(&visit("GET", "/").await.text), Some(2));

    // A restore slow enough that the demo is surely still Resetting when the third
    // click below arrives.
    let shop = |restore_time| showroom::sim::agent::Snapshot {
        apps: vec![showroom::sim::agent::App {
            namespace: "shop".into(),
            service: "storefront".into(),
            port: 80,
        }],
        restore_time,
        boot_time: Duration::from_millis(300),
    };
    tc.snapshots.publish(url, shop(Duration::from_secs(3)));
    // A double click asks for one reset, not two.
    let reset = format!("/api/v1/demos/{name}/reset");
    let ((code, v), (code2, v2)) = tokio::join!(alice.post(&reset, ""), alice.post(&reset, ""));
    assert_eq!((code, code2), (202, 202), "{v} {v2}");
    eventually(T, "resetting", || async {
        (alice.phase(&name).await.as_deref() == Some("Resetting")).then_some(())
    })
    .await;
    // A click once the controller has begun the reset joins it too.
    let (code3, v3) = alice.post(&reset, "").await;
    assert_eq!(code3, 202, "{v3}");
    assert_eq!(v3["resetGeneration"], 1, "joined, not a second reset: {v3}");
    tc.snapshots.publish(url, shop(Duration::from_millis(100)));
    // Meanwhile the link shows the waking page.
    let during = visit("GET", "/").await;
    assert!(
        during.status == 503 || during.status == 200,
        "{}",
        during.status
    );
    alice.wait_phase(&name, Some("Ready"), T).await;
    let (_, after) = alice.get(&format!("/api/v1/demos/{name}")).await;
    assert_eq!(after["resetGeneration"], 1);
    assert_eq!(after["expiresAt"], before["expiresAt"], "the lease is kept");
    assert_eq!(
        after["shareLinks"].as_array().unwrap().len(),
        1,
        "the links are kept"
    );
    let page = eventually(T, "the app again, through the same link", || async {
        let r = visit("GET", "/").await;
        (r.status == 200).then_some(r.text)
    })
    .await;
    assert_eq!(cart(&page), Some(0), "back to the snapshot's state: {page}");

    // A restore that fails (the snapshot is gone) leaves the demo as it was.
    tc.snapshots.withdraw(url);
    visit("POST", "/cart").await;
    let (code, _) = alice.post(&format!("/api/v1/demos/{name}/reset"), "").await;
    assert_eq!(code, 202);
    let message = eventually(T, "the failed reset reported", || async {
        let (_, v) = alice.get(&format!("/api/v1/demos/{name}")).await;
        (v["phase"] == "Ready"
            && v["resetGeneration"] == 2
            && v["message"].as_str()?.contains("reset failed"))
        .then(|| v["message"].as_str().unwrap().to_string())
    })
    .await;
    assert!(message.contains("not found"), "{message}");
    assert_eq!(
        cart(&visit("GET", "/").await.text),
        Some(1),
        "usable, as it was"
    );
    tc.snapshots.publish(url, shop(Duration::from_millis(100)));
    app.stop().await;
}

async fn the_ceiling_refuses_starts_and_wakes_and_frees_with_sleep_and_delete(tc: TestCluster) {
    let mut cfg = test_config();
    cfg.max_running_demos = 2;
    cfg.max_demos_per_user = 10;
    let app = start_showroom(&tc, cfg).await;
    let carol = Client::new(&app, ADMIN);
    let first = carol.start(r#"{"template": "shop"}"#).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let second = carol.start(r#"{"template": "shop"}"#).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = carol.post("/api/v1/demos", r#"{"template": "shop"}"#).await;
    assert_eq!(code, 429, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("maximum of 2") && msg.contains("put to sleep or deleted"),
        "{msg}"
    );
    // A demo put to sleep frees its place.
    carol.wait_phase(&first, Some("Ready"), T).await;
    assert_eq!(
        carol
            .post(&format!("/api/v1/demos/{first}/sleep"), "")
            .await
            .0,
        202
    );
    carol.wait_phase(&first, Some("Sleeping"), T).await;
    let third = carol.start(r#"{"template": "shop"}"#).await["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Now full again: the sleeping one cannot wake.
    let (code, v) = carol.post(&format!("/api/v1/demos/{first}/wake"), "").await;
    assert_eq!(code, 429, "{v}");
    assert_eq!(carol.phase(&first).await.as_deref(), Some("Sleeping"));
    // A deleted demo frees its place at once.
    assert_eq!(
        carol.delete(&format!("/api/v1/demos/{second}")).await.0,
        202
    );
    let (code, v) = carol.post(&format!("/api/v1/demos/{first}/wake"), "").await;
    assert_eq!(code, 202, "{v}");
    carol.wait_phase(&first, Some("Ready"), T).await;
    carol.wait_phase(&third, Some("Ready"), T).await;
    let held = Api::<Lease>::namespaced(tc.client.clone(), "default")
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("{},showroom.dev/slot=run", tc.instance.selector())),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(held.len(), 2, "two places held, by the two running demos");
    // Each is bound (after the start answered) to the demo its label names, so the
    // garbage collector frees it with that Demo.
    for l in &held {
        let demo = l.labels()["showroom.dev/demo"].clone();
        assert!([&first, &third].contains(&&demo), "{demo}");
        let uid = Api::<showroom::cluster::crd::Demo>::all(tc.client.clone())
            .get(&demo)
            .await
            .unwrap()
            .metadata
            .uid;
        let owners = l.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1, "{owners:?}");
        assert_eq!(Some(owners[0].uid.clone()), uid);
    }
    app.stop().await;
}

async fn the_per_user_limit_is_exact_over_two_replicas(tc: TestCluster) {
    let cfg = |id: &str| {
        let mut c = test_config();
        c.leader = Some(LeaderConfig {
            namespace: "default".into(),
            lease_name: format!("showroom-leader-{}", tc.instance.name()),
            identity: id.into(),
            duration_secs: 2,
            grace_secs: 1,
        });
        c
    };
    let a = start_showroom(&tc, cfg("a")).await;
    let b = start_showroom(&tc, cfg("b")).await;
    // 20 simultaneous starts by bob (limit 3), alternating between the two replicas.
    let urls = Arc::new([
        format!("http://{}/api/v1/demos", a.addr),
        format!("http://{}/api/v1/demos", b.addr),
    ]);
    let starts: Vec<_> = (0..20)
        .map(|i| {
            let urls = urls.clone();
            tokio::spawn(async move {
                http(
                    "POST",
                    &urls[i % 2],
                    Some(OTHER),
                    Some(r#"{"template": "shop"}"#),
                )
                .await
                .0
            })
        })
        .collect();
    let mut codes = Vec::new();
    for s in starts {
        codes.push(s.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 17, "{codes:?}");
    let bobs = tc
        .demos()
        .await
        .into_iter()
        .filter(|d| d.spec.owner == "bob" && d.metadata.deletion_timestamp.is_none())
        .count();
    assert_eq!(bobs, 3, "exactly the limit, with nothing to withdraw");
    a.stop().await;
    b.stop().await;
}
