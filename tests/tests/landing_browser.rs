//! The web integration in a real browser (headless Chromium, as the dashboard test): a
//! landing page on another site (`localhost` vs the gateway's `127.0.0.1`, so not even the
//! cookie jar is shared) loads `sdk.js`, a real `/r/{code}` click lands on it, the script
//! keeps the click id first-party and cleans the address bar, and the page signs up through
//! `fetch` — attributed. A page from an origin not in CORS_ALLOWED_ORIGINS is blocked by the
//! browser.
//!
//! Skips with a message when Chromium is not installed, unless REQUIRE_CHROMIUM is set.

use std::{net::SocketAddr, path::PathBuf};

use axum::{Router, response::Html, routing::get};
use chromiumoxide::browser::{Browser, BrowserConfig};
use futures::StreamExt;
use referral_tests::{spawn_app_with, unique};
use serde_json::{Value, json};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// A marketplace page: the snippet from the gateway, nothing else.
async fn landing_site(gateway: String) -> (tokio::net::TcpListener, SocketAddr, Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign up</title>\
         <script src=\"{gateway}/v1/sdk.js\"></script></head><body><h1 id=\"form\">Join</h1></body></html>"
    );
    let router = Router::new().route("/signup", get(move || async move { Html(page) }));
    (listener, addr, router)
}

/// The page's signup through `fetch`, as a marketplace front end might post it: with the
/// newest click id, or (`all`) with every click id the script keeps.
fn signup_js(gateway: &str, token: &str, user: &str, all: bool) -> String {
    let clicks = if all {
        "clickIds: window.referralMesh ? window.referralMesh.clickIds() : []"
    } else {
        "clickId: window.referralMesh && window.referralMesh.clickId()"
    };
    format!(
        r#"(async () => {{
  try {{
    const r = await fetch("{gateway}/v1/signups", {{
      method: "POST",
      headers: {{ "Authorization": "Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": "{user}" }},
      body: JSON.stringify({{ userId: "{user}", userKind: "COUPLE", {clicks} }}),
    }});
    return JSON.stringify({{ status: r.status, body: await r.json() }});
  }} catch (e) {{
    return JSON.stringify({{ blocked: String(e.name) }});
  }}
}})()"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_page_on_another_site_keeps_the_click_and_signs_up_attributed() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("REQUIRE_CHROMIUM").is_some() {
            panic!("REQUIRE_CHROMIUM is set but no chromium is on PATH (apt-get install chromium)");
        }
        eprintln!("SKIPPED: the landing page test needs Debian's chromium (apt-get install chromium)");
        return;
    };
    // The gateway's address is only known once it runs, and the page names it: bind the
    // sites first, serve them once the gateway is up.
    let placeholder = "http://GATEWAY";
    let (listed_l, listed, _) = landing_site(placeholder.into()).await;
    let (unlisted_l, unlisted, _) = landing_site(placeholder.into()).await;
    let listed_origin = format!("http://localhost:{}", listed.port());
    let unlisted_origin = format!("http://localhost:{}", unlisted.port());
    let app = spawn_app_with(vec![
        "--landing-hosts".into(),
        "localhost".into(),
        "--cors-allowed-origins".into(),
        listed_origin.clone(),
    ])
    .await;
    for listener in [listed_l, unlisted_l] {
        let (_, _, router) = landing_site(app.base.clone()).await;
        tokio::spawn(async move { axum::serve(listener, router).await });
    }

    let sue = unique("sue");
    let sue_token = app.member(&sue, "SUPPLIER");
    let code = app
        .code_ok(
            &sue_token,
            json!({"referrerId": sue, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER",
                   "landingUrl": format!("{listed_origin}/signup?lang=en#form")}),
        )
        .await;
    let code = code["code"].as_str().expect("code").to_string();

    let (mut browser, mut handler) = Browser::launch(
        BrowserConfig::builder()
            .chrome_executable(chromium)
            .no_sandbox()
            .new_headless_mode()
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .user_data_dir(app.data_dir.join("chromium-landing"))
            .build()
            .expect("browser config"),
    )
    .await
    .expect("chromium starts");
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });

    // A real click: the browser follows /r/{code} to the landing page.
    let page = browser
        .new_page(app.url(&format!("/r/{code}")))
        .await
        .expect("the link opens");
    page.wait_for_navigation().await.expect("lands");
    let eval = |js: String| {
        let page = page.clone();
        async move {
            page.evaluate(js.as_str())
                .await
                .unwrap_or_else(|e| panic!("{js}: {e}"))
                .into_value::<Value>()
                .unwrap_or(Value::Null)
        }
    };
    let landed = eval(
        "JSON.stringify({href: location.href, id: window.referralMesh ? window.referralMesh.clickId() : null, cookie: document.cookie})"
            .into(),
    )
    .await;
    let landed: Value = serde_json::from_str(landed.as_str().unwrap_or("{}")).expect("json");
    let href = landed["href"].as_str().unwrap_or_default();
    assert_eq!(
        href,
        format!("{listed_origin}/signup?lang=en#form"),
        "landed with the query and fragment kept and rm_click cleaned away: {landed}"
    );
    let click_id = landed["id"].as_str().unwrap_or_default().to_string();
    assert!(click_id.starts_with("c1."), "sdk.js kept the click id: {landed}");
    assert!(
        landed["cookie"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("rm_click={click_id}"))),
        "in a first-party cookie: {landed}"
    );

    // The signup form posts it through fetch, cross-origin, allowed by CORS: attributed.
    let user = unique("couple");
    let token = app.member(&user, "COUPLE");
    let answer = eval(signup_js(&app.base, &token, &user, false)).await;
    let answer: Value = serde_json::from_str(answer.as_str().unwrap_or("{}")).expect("json");
    assert_eq!(answer["status"], json!(200), "{answer}");
    let body = &answer["body"];
    assert_eq!(
        (
            body["attributed"].clone(),
            body["referrerId"].clone(),
            body["code"].clone()
        ),
        (json!(true), json!(sue), json!(code)),
        "{answer}"
    );
    assert_eq!(body["touchpoints"][0]["id"], json!(click_id), "{answer}");

    // The same browser later follows a second photographer's link: the script keeps both
    // ids, and a signup naming them credits the second (newest) with both as touchpoints.
    let tom = unique("tom");
    let tom_code = app
        .code_ok(
            &app.member(&tom, "SUPPLIER"),
            json!({"referrerId": tom, "referrerKind": "SUPPLIER", "vendorType": "PHOTOGRAPHER",
                   "landingUrl": format!("{listed_origin}/signup")}),
        )
        .await;
    let tom_code = tom_code["code"].as_str().expect("code").to_string();
    page.goto(app.url(&format!("/r/{tom_code}")))
        .await
        .expect("the second link opens");
    page.wait_for_navigation().await.expect("lands");
    let ids = eval("JSON.stringify(window.referralMesh ? window.referralMesh.clickIds() : [])".into()).await;
    let ids: Value = serde_json::from_str(ids.as_str().unwrap_or("[]")).expect("json");
    assert_eq!(
        ids.as_array().map(Vec::len),
        Some(2),
        "both clicks kept, oldest first: {ids}"
    );
    assert_eq!(ids[0], json!(click_id), "{ids}");
    let user = unique("couple");
    let token = app.member(&user, "COUPLE");
    let answer = eval(signup_js(&app.base, &token, &user, true)).await;
    let answer: Value = serde_json::from_str(answer.as_str().unwrap_or("{}")).expect("json");
    assert_eq!(answer["status"], json!(200), "{answer}");
    let body = &answer["body"];
    assert_eq!(body["referrerId"], json!(tom), "the newest click wins: {answer}");
    let touched: Vec<&str> = body["touchpoints"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["referrerId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(touched, [sue.as_str(), tom.as_str()], "{answer}");

    // The same page from an origin not listed: the browser refuses the call.
    page.goto(format!("{unlisted_origin}/signup"))
        .await
        .expect("the unlisted page loads");
    let user = unique("couple");
    let token = app.member(&user, "COUPLE");
    let refused = eval(signup_js(&app.base, &token, &user, false)).await;
    let refused: Value = serde_json::from_str(refused.as_str().unwrap_or("{}")).expect("json");
    assert_eq!(refused, json!({"blocked": "TypeError"}), "CORS blocks it");

    browser.close().await.expect("close");
    let _ = browser.wait().await;
    driver.abort();
    app.stop().await;
}
