//! The sales UI and a prospect's share link in real headless Chromium (Debian's
//! chromium + chromium-driver), against showroom over the simulated cluster.
//! Screenshots of each page are saved under target/screenshots/.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;
use showroom::domain::template::Catalogue;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

async fn start_driver() -> Option<(Driver, String)> {
    let Some(bin) = chromedriver() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium-driver (.ci/run does)"
        );
        eprintln!("chromedriver not installed: skipping the browser test");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Driver(
        Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some((driver, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = driver.0.kill();
    panic!("chromedriver did not start");
}

/// A fresh browser profile: a new session is a new, empty context.
async fn browser(driver: &str, width: u32, height: u32) -> Browser {
    let profile = std::env::temp_dir().join(format!("showroom-chrome-{}", uuid::Uuid::new_v4()));
    let caps = json!({"goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 format!("--window-size={width},{height}"), format!("--user-data-dir={}", profile.display())]
    }});
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("start a Chromium session")
}

/// target/screenshots/<world>/
fn shots(world: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots")
        .join(world);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Browser, dir: &std::path::Path, name: &str) {
    let png = b.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The element was found on a page that has since been replaced. Chromium says so in
/// two ways: a stale element reference, or, while the new document is being built, an
/// inspector error that the node does not belong to the document.
fn replaced(e: &fantoccini::error::CmdError) -> bool {
    e.is_stale_element_reference() || e.to_string().contains("does not belong to the document")
}

/// Does `act` on the element `css`. A page that shows progress reloads itself while it
/// waits, and a form's answer replaces the page: an element found just before is
/// stale when used. A stale element was neither read nor clicked, so it is found again
/// on the new page and `act` runs there.
async fn on_element<T, F, Fut>(b: &Browser, css: &str, what: &str, act: F) -> T
where
    F: Fn(fantoccini::elements::Element) -> Fut,
    Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    let deadline = std::time::Instant::now() + T;
    loop {
        let el = match b.wait().at_most(T).for_element(Locator::Css(css)).await {
            Ok(el) => el,
            Err(e) => panic!("{css}: {e}\n{}", where_we_are(b).await),
        };
        match act(el).await {
            Ok(v) => return v,
            Err(e) if replaced(&e) && std::time::Instant::now() < deadline => {}
            Err(e) => panic!("{what} {css}: {e}\n{}", where_we_are(b).await),
        }
    }
}

async fn text(b: &Browser, css: &str) -> String {
    on_element(b, css, "reading", |el| async move { el.text().await }).await
}

async fn click(b: &Browser, css: &str) {
    on_element(b, css, "clicking", |el| async move { el.click().await }).await
}

async fn wait_css(b: &Browser, css: &str) {
    if let Err(e) = b.wait().at_most(T).for_element(Locator::Css(css)).await {
        panic!("waiting for {css}: {e}\n{}", where_we_are(b).await);
    }
}

/// The page a failed wait was on, for the failure message: CI keeps no screenshots.
async fn where_we_are(b: &Browser) -> String {
    let url = b.current_url().await.map(|u| u.to_string());
    let body = match b.find(Locator::Css("body")).await {
        Ok(el) => el.text().await.unwrap_or_else(|e| format!("({e})")),
        Err(e) => format!("({e})"),
    };
    let body: String = body.chars().take(1500).collect();
    format!("on {url:?}, showing:\n{body}")
}

scenarios!(sales_and_prospect_journey_in_chromium);

async fn sales_and_prospect_journey_in_chromium(tc: TestCluster) {
    let Some((_driver, driver_url)) = start_driver().await else {
        return;
    };
    // The shipped catalogue, its snapshots booting in 3 s so the progress steps show.
    let catalogue = Arc::new(
        Catalogue::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("snapshots")).unwrap(),
    );
    tc.snapshots.publish_catalogue(
        &catalogue,
        Duration::from_millis(300),
        Duration::from_secs(3),
    );
    // The vendor's brand on the prospect's pages.
    let mut cfg = test_config();
    let logo = br##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40"><rect width="40" height="40" rx="8" fill="#0a7d5a"/><text x="48" y="27" font-family="sans-serif" font-size="18" fill="#0a7d5a">ACME</text></svg>"##;
    cfg.brand = Arc::new(
        showroom::domain::brand::Brand::new(
            Some("Acme Commerce"),
            Some("#0a7d5a"),
            Some(("acme.svg", logo.to_vec())),
        )
        .unwrap(),
    );
    let running = start_showroom_full(&tc, cfg, dev_users(), catalogue).await;
    let base = format!("http://localhost:{}", running.addr.port());
    let api = Client::new(&running, SALES);
    let dir = shots(if tc.is_sim() { "sim" } else { "real" });

    // Sales: sign in with one click, see the catalogue; the web shop's warm pool makes
    // its start instant, and the page says so once its member is ready.
    let sales = browser(&driver_url, 1280, 900).await;
    sales.goto(&format!("{base}/demos")).await.unwrap();
    wait_css(&sales, "#dev-sales").await;
    shot(&sales, &dir, "01-sign-in").await;
    click(&sales, "#dev-sales").await;
    wait_css(&sales, "#template-web-shop").await;
    assert!(
        text(&sales, "#template-data-pipeline")
            .await
            .contains("Data pipeline")
    );
    eventually(
        T,
        "the catalogue says the web shop starts instantly",
        || async {
            sales.goto(&format!("{base}/")).await.unwrap();
            text(&sales, "#template-web-shop [data-estimate]")
                .await
                .contains("instantly")
                .then_some(())
        },
    )
    .await;
    shot(&sales, &dir, "02-catalogue").await;

    // An instant start: the web shop's demo comes ready from the pool.
    click(&sales, "#template-web-shop .start").await;
    wait_css(&sales, "#from-pool").await;
    assert_eq!(text(&sales, "[data-phase]").await, "Ready");
    shot(&sales, &dir, "03b-instant-start").await;
    sales.goto(&format!("{base}/")).await.unwrap();

    // A cold start: the progress view walks through the steps and turns into the demo page.
    sales
        .find(Locator::Css("#title-data-pipeline"))
        .await
        .unwrap()
        .send_keys("ACME Corp")
        .await
        .unwrap();
    click(&sales, "#template-data-pipeline .start").await;
    wait_css(&sales, "#progress .steps").await;
    // How long it takes, measured: nothing measured yet for this template.
    assert!(
        text(&sales, "#progress [data-eta]")
            .await
            .contains("a minute or two")
    );
    let phase = text(&sales, "[data-phase]").await;
    assert!(phase == "Pending" || phase == "Provisioning", "{phase}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    shot(&sales, &dir, "03-progress").await;
    wait_css(&sales, "#lease").await; // the page moved on by itself when Ready
    assert_eq!(text(&sales, "[data-phase]").await, "Ready");
    let demo_url = sales.current_url().await.unwrap().to_string();
    let name = demo_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();

    // Save it as a template for colleagues: progress on the demo page, then the
    // catalogue offers it, saying who saved it from what.
    click(&sales, "#save-as-template summary").await;
    sales
        .find(Locator::Css("#save-name"))
        .await
        .unwrap()
        .send_keys("acme-pipeline")
        .await
        .unwrap();
    sales
        .find(Locator::Css("#save-display"))
        .await
        .unwrap()
        .send_keys("Pipeline with ACME's data")
        .await
        .unwrap();
    click(&sales, "#save-button").await;
    wait_css(&sales, "#save").await;
    wait_css(&sales, "#save.Saved").await; // the page moved on by itself
    shot(&sales, &dir, "04a-saved-as-template").await;
    sales.goto(&format!("{base}/")).await.unwrap();
    let card = text(&sales, "#template-acme-pipeline").await;
    assert!(card.contains("Pipeline with ACME's data"), "{card}");
    assert!(card.contains("Saved by sales from data-pipeline"), "{card}");
    shot(&sales, &dir, "04b-catalogue-with-saved").await;
    sales.goto(&format!("{base}/demos/{name}")).await.unwrap();

    // Create a share link for the prospect, with a contact and a message.
    sales
        .find(Locator::Css("#label"))
        .await
        .unwrap()
        .send_keys("ACME Corp")
        .await
        .unwrap();
    sales
        .find(Locator::Css("#contact"))
        .await
        .unwrap()
        .send_keys("sales@vendor.example")
        .await
        .unwrap();
    sales
        .find(Locator::Css("#message"))
        .await
        .unwrap()
        .send_keys("Hi Dana, here is the pipeline with your data loaded.")
        .await
        .unwrap();
    click(&sales, "#create-link").await;
    wait_css(&sales, "#new-link-url").await;
    let share_url = sales
        .find(Locator::Css("#new-link-url"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(share_url.contains("/s/"), "{share_url}");
    shot(&sales, &dir, "04-demo-with-link").await;
    // Before sending it: the preview shows the prospect's page.
    let preview = sales
        .find(Locator::Css("#links .preview"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    sales.goto(&format!("{base}{preview}")).await.unwrap();
    wait_css(&sales, "#preview-banner").await;
    assert!(
        text(&sales, "[data-link-message]")
            .await
            .contains("Hi Dana")
    );
    shot(&sales, &dir, "04c-link-preview").await;

    // The prospect, in a fresh browser context: landing page, then the app through the proxy.
    let prospect = browser(&driver_url, 1280, 900).await;
    prospect.goto(&share_url).await.unwrap();
    wait_css(&prospect, "#open-demo").await;
    assert!(text(&prospect, "h1").await.contains("ACME Corp"));
    // The vendor's brand and the salesperson, with the logo served by showroom.
    assert_eq!(text(&prospect, ".brand-name").await, "Acme Commerce");
    let logo_loaded = prospect
        .execute(
            "const i = document.querySelector('.brand-logo'); return i.complete && i.naturalWidth > 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(logo_loaded, json!(true), "the logo loads");
    let sender = text(&prospect, "[data-sender]").await;
    assert!(
        sender.contains("Hi Dana") && sender.contains("sales@vendor.example"),
        "{sender}"
    );
    shot(&prospect, &dir, "05-prospect-landing").await;
    click(&prospect, "#open-demo").await;
    let app_text = text(&prospect, "#demo").await;
    assert!(
        app_text.contains(&name),
        "the stand-in app of {name}: {app_text}"
    );
    assert_eq!(
        text(&prospect, "#cookies").await,
        "",
        "the app never sees showroom's cookie"
    );
    shot(&prospect, &dir, "06-prospect-app").await;
    // The prospect fills the cart; sales resets the demo (after a confirmation); the
    // prospect's link shows the reset under way, then the app as the snapshot has it.
    for items in ["1", "2"] {
        click(&prospect, "#add").await;
        // The form's answer is a new page: wait for it, not for the old page's cart.
        eventually(T, "the cart counts the item", || async {
            (text(&prospect, "#cart").await == items).then_some(())
        })
        .await;
    }
    sales.goto(&format!("{base}/demos/{name}")).await.unwrap();
    click(&sales, "#reset").await;
    sales.accept_alert().await.unwrap();
    api.wait_phase(&name, Some("Resetting"), T).await;
    prospect.refresh().await.unwrap();
    wait_css(&prospect, "#waking").await;
    assert!(text(&prospect, "h1").await.contains("Resetting"));
    shot(&prospect, &dir, "06b-prospect-resetting").await;
    eventually(T, "the app back at its snapshot", || async {
        (text(&prospect, "#cart").await == "0").then_some(())
    })
    .await;
    // Absolute links of the app keep working on the link's own host.
    click(&prospect, "#products").await;
    eventually(T, "followed the app's absolute link", || async {
        (text(&prospect, "#path").await == "/products").then_some(())
    })
    .await;

    // Sales puts the demo to sleep from the UI.
    sales.goto(&format!("{base}/demos/{name}")).await.unwrap();
    click(&sales, "#sleep").await;
    api.wait_phase(&name, Some("Sleeping"), T).await;

    // The prospect opens the link again: the demo wakes, the waking page moves on by itself.
    prospect.goto(&share_url).await.unwrap();
    click(&prospect, "#open-demo").await;
    wait_css(&prospect, "#waking").await;
    assert_eq!(
        text(&prospect, "#waking .brand-name").await,
        "Acme Commerce"
    );
    shot(&prospect, &dir, "07-prospect-waking").await;
    let app_text = text(&prospect, "#demo").await;
    assert!(
        app_text.contains(&name),
        "arrived at the app by itself: {app_text}"
    );
    api.wait_phase(&name, Some("Ready"), T).await;

    // My demos, with the visits the prospect made.
    eventually(T, "two visits recorded", || async {
        sales.goto(&format!("{base}/demos/{name}")).await.unwrap();
        (text(&sales, "#links .visits").await == "2").then_some(())
    })
    .await;
    sales.goto(&format!("{base}/demos")).await.unwrap();
    wait_css(&sales, "#demos").await;
    assert!(text(&sales, "#demos").await.contains("ACME Corp"));
    shot(&sales, &dir, "08-my-demos").await;

    // Revoke: the prospect now gets the inactive page, with 410.
    sales.goto(&format!("{base}/demos/{name}")).await.unwrap();
    click(&sales, ".revoke").await;
    sales.accept_alert().await.unwrap();
    wait_css(&sales, ".notice.ok").await;
    prospect.goto(&share_url).await.unwrap();
    wait_css(&prospect, "#inactive").await;
    assert!(
        text(&prospect, "#inactive")
            .await
            .contains("Please ask sales (sales@vendor.example)")
            || text(&prospect, "#inactive")
                .await
                .contains("Please ask the person")
    );
    assert_eq!(
        text(&prospect, "#inactive .brand-name").await,
        "Acme Commerce"
    );
    shot(&prospect, &dir, "09-link-inactive").await;
    let (code, _) = http(
        "GET",
        &share_url.replace("localhost", "127.0.0.1"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 410);

    // A phone-sized window: the demo list stays readable.
    let phone = browser(&driver_url, 390, 844).await;
    phone
        .goto(&format!("{base}/dev/login/sales"))
        .await
        .unwrap();
    phone.goto(&format!("{base}/demos")).await.unwrap();
    wait_css(&phone, "#demos").await;
    shot(&phone, &dir, "10-phone-demos").await;
    let overflow = phone
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(false), "no horizontal scrolling on a phone");

    for b in [sales, prospect, phone] {
        let _ = b.close().await;
    }
    running.stop().await;
}
