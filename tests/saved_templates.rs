//! Saving a live demo as a new template: `vcluster snapshot create` in a Job, the
//! template joining the catalogue once the snapshot is written (with who saved it,
//! from what, when), starts restoring the new snapshot, the catalogue surviving a
//! restart, a deleted template never breaking the demos made from it, and a failed
//! save leaving nothing behind but the reason.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::Value;
use showroom::cluster::crd::DemoTemplate;
use showroom::sim::agent::vcluster::RESTORED_FROM;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(
    a_saved_demo_becomes_a_template_that_starts_from_its_snapshot,
    a_failed_save_leaves_no_template_and_says_why,
    two_saves_at_once_start_one,
);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The saved template as `GET /api/v1/templates` lists it.
async fn listed(c: &Client, name: &str) -> Option<Value> {
    let (code, v) = c.get("/api/v1/templates").await;
    assert_eq!(code, 200, "{v}");
    v["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
}

async fn save_phase(c: &Client, demo: &str) -> Option<String> {
    let (_, v) = c.get(&format!("/api/v1/demos/{demo}")).await;
    v["save"]["phase"].as_str().map(str::to_string)
}

fn saved_templates(tc: &TestCluster) -> Api<DemoTemplate> {
    Api::namespaced(tc.client.clone(), &test_config().namespace)
}

async fn a_saved_demo_becomes_a_template_that_starts_from_its_snapshot(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let (alice, bob) = (Client::new(&app, SALES), Client::new(&app, OTHER));
    let demo = alice.start_ready("shop", T).await;
    let new = unique("acme");
    let path = format!("/api/v1/demos/{demo}/snapshot");

    // Bad input is refused, naming the problem, and changes nothing.
    let (code, v) = alice.post(&path, r#"{"template": "Not A Name"}"#).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("template:"),
        "{v}"
    );
    let (code, v) = alice
        .post(&path, r#"{"template": "x", "colour": "red"}"#)
        .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = alice.post(&path, r#"{"template": "shop"}"#).await;
    assert_eq!(code, 409, "a shipped name: {v}");
    let (code, _) = bob
        .post(&path, &format!(r#"{{"template": "{new}"}}"#))
        .await;
    assert_eq!(code, 403, "another user's demo is not theirs to save");
    assert!(saved_templates(&tc).get_opt(&new).await.unwrap().is_none());

    let body = format!(
        r#"{{"template": "{new}", "displayName": "Shop with ACME's catalogue", "description": "ACME's 200 products loaded"}}"#
    );
    let (code, v) = alice.post(&path, &body).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["phase"], "Saving");
    let url = v["snapshot"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("oci://example.test/snap/{new}:")),
        "next to the origin's snapshot: {url}"
    );
    // One save at a time; the name is taken from the first moment.
    let (code, v) = alice
        .post(&path, &format!(r#"{{"template": "{}"}}"#, unique("other")))
        .await;
    assert_eq!(code, 409, "{v}");

    // The Job runs the template's pinned CLI with the right arguments.
    let jobs: Api<Job> = Api::namespaced(tc.client.clone(), &demo);
    let job = eventually(T, "the snapshot Job", || async {
        jobs.get_opt(&format!("showroom-snapshot-{new}"))
            .await
            .ok()
            .flatten()
    })
    .await;
    let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/loft-sh/vcluster-cli:0.36.1")
    );
    let cmd: Vec<String> = c
        .command
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(c.args.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        cmd,
        [
            "vcluster",
            "snapshot",
            "create",
            &demo,
            &url,
            "--namespace",
            &demo
        ]
    );

    // Done: in the catalogue, for everyone, with its provenance.
    let t = eventually(T, "the saved template listed", || listed(&bob, &new)).await;
    assert_eq!(t["displayName"], "Shop with ACME's catalogue");
    assert_eq!(t["snapshot"], url.as_str());
    assert_eq!(t["origin"], "saved");
    assert_eq!(t["provenance"]["savedBy"], "alice");
    assert_eq!(t["provenance"]["fromDemo"], demo.as_str());
    assert_eq!(t["provenance"]["fromTemplate"], "shop");
    assert!(t["provenance"]["savedAt"].is_string(), "{t}");
    assert_eq!(
        t["lifecycle"]["maxExtension"], "1h",
        "inherits the origin's lifecycle: {t}"
    );
    eventually(T, "the demo says saved", || async {
        (save_phase(&alice, &demo).await.as_deref() == Some("Saved")).then_some(())
    })
    .await;
    assert_eq!(
        alice.phase(&demo).await.as_deref(),
        Some("Ready"),
        "the demo stays usable"
    );
    let shipped = listed(&bob, "shop").await.unwrap();
    assert_eq!(shipped["origin"], "shipped");
    assert_eq!(shipped["snapshot"], "oci://example.test/snap/shop:1");

    // A start from it restores the saved snapshot.
    let from_saved = bob.start_ready(&new, T).await;
    let secrets: Api<Secret> = Api::namespaced(tc.client.clone(), &from_saved);
    let config = secrets
        .get(&format!("vc-config-{from_saved}"))
        .await
        .unwrap();
    assert_eq!(config.annotations().get(RESTORED_FROM), Some(&url));

    // The catalogue lives in the cluster: a restarted showroom offers it still.
    app.stop().await;
    let app = start_showroom(&tc, test_config()).await;
    let (alice, bob) = (Client::new(&app, SALES), Client::new(&app, OTHER));
    assert!(listed(&alice, &new).await.is_some(), "survives a restart");

    // Deleting the template takes it out of the catalogue; bob's demo keeps working.
    saved_templates(&tc)
        .delete(&new, &Default::default())
        .await
        .unwrap();
    eventually(T, "the template withdrawn", || async {
        listed(&alice, &new).await.is_none().then_some(())
    })
    .await;
    let (code, v) = alice
        .post("/api/v1/demos", &format!(r#"{{"template": "{new}"}}"#))
        .await;
    assert_eq!(code, 422, "no new start from a deleted template: {v}");
    let (code, v) = bob
        .post(&format!("/api/v1/demos/{from_saved}/sleep"), "")
        .await;
    assert_eq!(code, 202, "{v}");
    bob.wait_phase(&from_saved, Some("Sleeping"), T).await;
    let (code, v) = bob
        .post(&format!("/api/v1/demos/{from_saved}/wake"), "")
        .await;
    assert_eq!(code, 202, "{v}");
    bob.wait_phase(&from_saved, Some("Ready"), T).await;
    assert!(
        saved_templates(&tc).get_opt(&new).await.unwrap().is_some(),
        "kept while a demo uses it"
    );
    // Once its last demo is gone, so is the template.
    let (code, _) = bob.delete(&format!("/api/v1/demos/{from_saved}")).await;
    assert_eq!(code, 202);
    eventually(T, "the deleted template let go", || async {
        saved_templates(&tc)
            .get_opt(&new)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    app.stop().await;
}

async fn a_failed_save_leaves_no_template_and_says_why(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let demo = alice.start_ready("shop", T).await;
    let new = unique("nopush");
    // The registry refuses pushes to where the snapshot would go.
    tc.snapshots.refuse_pushes(
        &format!("oci://example.test/snap/{new}:"),
        "denied: requested access to the resource is denied",
    );
    let path = format!("/api/v1/demos/{demo}/snapshot");
    let (code, v) = alice
        .post(&path, &format!(r#"{{"template": "{new}"}}"#))
        .await;
    assert_eq!(code, 202, "{v}");
    let why = eventually(T, "the save failed", || async {
        let (_, v) = alice.get(&format!("/api/v1/demos/{demo}")).await;
        (v["save"]["phase"] == "Failed").then(|| v["save"]["message"].as_str().unwrap().to_string())
    })
    .await;
    assert!(
        why.contains("requested access to the resource is denied"),
        "{why}"
    );
    assert!(listed(&alice, &new).await.is_none());
    eventually(T, "no half template", || async {
        saved_templates(&tc)
            .get_opt(&new)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        alice.phase(&demo).await.as_deref(),
        Some("Ready"),
        "the demo is unharmed"
    );
    // The name is free again, and a sleeping demo is not saved.
    let (code, _) = alice.post(&format!("/api/v1/demos/{demo}/sleep"), "").await;
    assert_eq!(code, 202);
    alice.wait_phase(&demo, Some("Sleeping"), T).await;
    let (code, v) = alice
        .post(&path, &format!(r#"{{"template": "{new}"}}"#))
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wake it first"),
        "{v}"
    );
    app.stop().await;
}

/// A double click (or two tabs) saving one demo under two names: one save starts, the
/// other is refused and leaves no template behind, however stale the cache that both
/// requests read.
async fn two_saves_at_once_start_one(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let demo = alice.start_ready("shop", T).await;
    let path = format!("/api/v1/demos/{demo}/snapshot");
    let (a, b) = (unique("twin"), unique("twin"));
    let (body_a, body_b) = (
        format!(r#"{{"template": "{a}"}}"#),
        format!(r#"{{"template": "{b}"}}"#),
    );
    let ((code_a, va), (code_b, vb)) =
        tokio::join!(alice.post(&path, &body_a), alice.post(&path, &body_b));
    let mut codes = [code_a, code_b];
    codes.sort();
    assert_eq!(codes, [202, 409], "{va} {vb}");
    let (won, lost, refusal) = if code_a == 202 {
        (a, b, vb)
    } else {
        (b, a, va)
    };
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already"),
        "{refusal}"
    );
    assert!(
        saved_templates(&tc).get_opt(&lost).await.unwrap().is_none(),
        "the refused save left its template behind"
    );
    let (_, v) = alice.get(&format!("/api/v1/demos/{demo}")).await;
    assert_eq!(v["save"]["template"], won.as_str(), "{v}");
    eventually(T, "the winner's template is written", || async {
        listed(&alice, &won).await.map(|_| ())
    })
    .await;
    assert!(listed(&alice, &lost).await.is_none());
    app.stop().await;
}
