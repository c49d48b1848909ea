//! The HTTP gateway: the legacy `password_change.php` API exactly as its
//! documentation shows it (curl commands, XML valid against the served DTD in
//! every outcome), and the pages people reach from emails, in curl and in a
//! real headless Chromium.

use crate::common;
use crate::common::tools::Tool;

use std::time::Duration;

use common::{
    Backend, MEMBER_PASSWORD, bearer, create_user,
    http::{
        Browser, GatewayServer, HttpResponse, assert_valid_xml, cdata, curl, elements, gateway_server, shell,
        shown_password, start_gateway,
    },
    latest_link, login_session, member, reset_client, tenant, users_client,
};
use identity::pb::{self, Role};

const API: &str = "/msp/password_change.php";

/// A manager of a fresh tenant and their session.
async fn manager(gw: &GatewayServer) -> (common::Tenant, String) {
    let t = tenant(gw);
    let token = login_session(gw, &t.manager_login, &t.manager_password).await;
    (t, token)
}

/// A legacy API call as the docs show it: Basic credentials and Requested-With.
fn legacy(gw: &GatewayServer, user: &str, password: &str, query: &str) -> HttpResponse {
    let credentials = format!("{user}:{password}");
    curl(&["-H", "Requested-With:curl demo2", "-u", &credentials, &gw.url(&format!("{API}?{query}"))])
}

fn dtd(gw: &GatewayServer) -> String {
    let response = curl(&[&gw.url("/password_change_output.dtd")]);
    assert_eq!(response.status, 200);
    response.body
}

/// The reply is XML of the DTD's shape, with the given status, and valid.
fn assert_reply(gw: &GatewayServer, response: &HttpResponse, http: u16, status: &str) {
    assert_eq!(response.status, http, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("text/xml; charset=UTF-8"));
    assert!(response.body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{}", response.body);
    let doctype = format!("<!DOCTYPE PASSWORD_CHANGE_OUTPUT SYSTEM \"{}\">", gw.dtd_url());
    assert!(response.body.contains(&doctype), "{}", response.body);
    assert!(response.body.contains(&format!("<RETURN status=\"{status}\"")), "{}", response.body);
    assert_valid_xml(&response.body, &gw.dtd_url(), &dtd(gw));
}

fn assert_failed(gw: &GatewayServer, response: &HttpResponse, http: u16, number: u32) {
    assert_reply(gw, response, http, "FAILED");
    assert!(response.body.contains(&format!("number=\"{number}\"")), "{}", response.body);
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

fn passwords(xml: &str) -> Vec<String> {
    elements(xml, "PASSWORD").iter().map(|p| cdata(p)).collect()
}

async fn link_is_valid(gw: &GatewayServer, token: &str) -> bool {
    reset_client(gw)
        .await
        .inspect_activation(pb::InspectActivationRequest { token: token.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .valid
}

fn assert_security_headers(response: &HttpResponse) {
    let csp = response.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(response.header("referrer-policy"), Some("same-origin"));
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
}

// ---- the legacy API -------------------------------------------------------

async fn the_api_pages_curl_commands_work(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (_, token) = manager(gw).await;
    member(gw, &token, "john_d", Role::Manager, "").await;
    create_user(gw, &token, "fran_m", Role::Reader, "").await;
    create_user(gw, &token, "mike_fn", Role::Scanner, "").await;

    // Sample 1, host replaced: email notification.
    let sample1 = format!(
        r#"curl -k -s -S -H 'Requested-With:curl demo2' -u "john_d:{MEMBER_PASSWORD}" "{}/msp/password_change.php?user_logins=fran_m,mike_fn&email=1""#,
        gw.base
    );
    let xml = shell(&sample1);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
    assert!(xml.contains(&format!("<!DOCTYPE PASSWORD_CHANGE_OUTPUT SYSTEM \"{}\">", gw.dtd_url())), "{xml}");
    assert!(xml.contains("<API name=\"password_change.php\" username=\"john_d\" at=\""), "{xml}");
    assert!(xml.contains("<RETURN status=\"SUCCESS\">"), "{xml}");
    assert_eq!(elements(&xml, "MESSAGE"), ["The operation was successfully completed"]);
    assert!(xml.contains("<CHANGES count=\"2\">"), "{xml}");
    assert_eq!(elements(&xml, "USER_LOGIN"), ["fran_m", "mike_fn"]);
    assert!(passwords(&xml).is_empty(), "email=1 returns no password");
    assert_valid_xml(&xml, &gw.dtd_url(), &dtd(gw));
    common::assert_mail_sent(gw, "fran_m", "password_reset").await;
    common::assert_mail_sent(gw, "mike_fn", "password_reset").await;

    // Sample 2: the passwords come back, in CDATA, and they work.
    let sample2 = sample1.replace("email=1", "email=0");
    let xml = shell(&sample2);
    assert!(xml.contains("<RETURN status=\"SUCCESS\">") && xml.contains("<CHANGES count=\"2\">"), "{xml}");
    assert_eq!(elements(&xml, "USER_LOGIN"), ["fran_m", "mike_fn"]);
    assert!(xml.contains("<PASSWORD><![CDATA["), "{xml}");
    assert_valid_xml(&xml, &gw.dtd_url(), &dtd(gw));
    let new_passwords = passwords(&xml);
    assert_eq!(new_passwords.len(), 2);
    for (login, password) in ["fran_m", "mike_fn"].iter().zip(&new_passwords) {
        assert!(password.len() >= 16);
        common::login(gw, login, password).await;
    }
}

async fn every_outcome_validates_against_the_dtd(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let (p, mgr, pw) = (&t.prefix, t.manager_login.as_str(), t.manager_password.as_str());
    create_user(gw, &token, &format!("{p}_a"), Role::Reader, "").await;
    create_user(gw, &token, &format!("{p}_gone"), Role::Reader, "").await;
    users_client(gw)
        .await
        .delete_user(bearer(pb::DeleteUserRequest { user_login: format!("{p}_gone"), ..Default::default() }, &token))
        .await
        .unwrap();
    create_user(gw, &token, &format!("{p}_contact"), Role::Contact, "").await;

    // WARNING: one changed, the others listed with their reason.
    let query = format!("user_logins={p}_a,{p}_gone,{p}_contact,{p}_nobody,{mgr}&email=0");
    let warning = legacy(gw, mgr, pw, &query);
    assert_reply(gw, &warning, 200, "WARNING");
    assert!(warning.body.contains("<CHANGES count=\"1\">"), "{}", warning.body);
    assert!(warning.body.contains("<NOT_CHANGED count=\"4\">"), "{}", warning.body);
    for code in ["DELETED", "CONTACT", "UNKNOWN_USER", "SELF"] {
        assert!(warning.body.contains(&format!("<REASON code=\"{code}\">")), "{code}: {}", warning.body);
    }
    assert_eq!(passwords(&warning.body).len(), 1);

    // Nothing done: each failure with its status and number.
    let url = gw.url(&format!("{API}?user_logins={p}_a"));
    let basic = format!("{mgr}:{pw}");
    let no_header = curl(&["-u", &basic, &url]);
    assert_failed(gw, &no_header, 400, 1920);
    let with_bearer = curl(&["-H", "X-Requested-With: x", "-H", &format!("Authorization: Bearer {token}"), &url]);
    assert_failed(gw, &with_bearer, 401, 2001);
    let with_cookie = curl(&["-H", "X-Requested-With: x", "-u", &basic, "-b", "session=abc", &url]);
    assert_failed(gw, &with_cookie, 401, 2001);
    let anonymous = curl(&["-H", "X-Requested-With: x", &url]);
    assert_failed(gw, &anonymous, 401, 2000);
    assert!(anonymous.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    assert_failed(gw, &legacy(gw, mgr, "wrong password", &format!("user_logins={p}_a")), 401, 2000);
    assert_failed(gw, &legacy(gw, mgr, pw, &format!("user_logins={p}_a&echo_request=1")), 400, 1901);
    assert_failed(gw, &legacy(gw, mgr, pw, &format!("user_logins={p}_a&email=2")), 400, 1905);
    assert_failed(gw, &legacy(gw, mgr, pw, "email=1"), 400, 1903);
    assert_failed(gw, &legacy(gw, mgr, pw, "user_logins=%20,%20"), 400, 1903);
    let put = curl(&["-X", "PUT", "-H", "X-Requested-With: x", "-u", &basic, &url]);
    assert_failed(gw, &put, 405, 1921);

    // Oversize input, as a form body.
    let big = common::scratch_dir("big").join("body");
    std::fs::write(&big, format!("user_logins={}", "x,".repeat(100_000))).unwrap();
    let oversize = curl(&[
        "-H",
        "X-Requested-With: x",
        "-u",
        &basic,
        "--data-binary",
        &format!("@{}", big.display()),
        &gw.url(API),
    ]);
    assert_failed(gw, &oversize, 413, 1907);

    // A POSTed form body works like a query string.
    let posted = curl(&[
        "-H",
        "X-Requested-With: x",
        "-u",
        &basic,
        "--data",
        &format!("user_logins={p}_a&email=1"),
        &gw.url(API),
    ]);
    assert_reply(gw, &posted, 200, "SUCCESS");

    // No permission at all: a Reader.
    member(gw, &token, &format!("{p}_reader"), Role::Reader, "").await;
    let reader = legacy(gw, &format!("{p}_reader"), MEMBER_PASSWORD, &format!("user_logins={p}_a"));
    assert_failed(gw, &reader, 403, 2100);

    // Inactive account with the right password.
    member(gw, &token, &format!("{p}_idle"), Role::Manager, "").await;
    users_client(gw)
        .await
        .set_user_status(bearer(
            pb::SetUserStatusRequest {
                user_login: format!("{p}_idle"),
                status: pb::UserStatus::Inactive.into(),
                reason: String::new(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let idle = legacy(gw, &format!("{p}_idle"), MEMBER_PASSWORD, &format!("user_logins={p}_a"));
    assert_failed(gw, &idle, 409, 2002);

    // A second factor has no place in this API.
    let token_holder = format!("{p}_tok");
    member(gw, &token, &token_holder, Role::Manager, "").await;
    users_client(gw)
        .await
        .assign_token(bearer(pb::AssignTokenRequest { user_login: token_holder.clone(), ..Default::default() }, &token))
        .await
        .unwrap();
    let second_factor = legacy(gw, &token_holder, MEMBER_PASSWORD, &format!("user_logins={p}_a"));
    assert_failed(gw, &second_factor, 403, 2013);

    // Locked after repeated wrong passwords: from then on the right password
    // gets the wrong one's answer (the owner learns of the lock by email).
    let locked_login = format!("{p}_locked");
    member(gw, &token, &locked_login, Role::Manager, "").await;
    for _ in 0..6 {
        assert_failed(gw, &legacy(gw, &locked_login, "not my password", &format!("user_logins={p}_a")), 401, 2000);
    }
    let locked = legacy(gw, &locked_login, MEMBER_PASSWORD, &format!("user_logins={p}_a"));
    assert_failed(gw, &locked, 401, 2000);
    common::assert_mail_sent(gw, &locked_login, "account_locked").await;
}

async fn logins_are_trimmed_collapsed_and_all_means_everyone(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let p = &t.prefix;
    for name in ["x", "y"] {
        create_user(gw, &token, &format!("{p}_{name}"), Role::Reader, "").await;
    }
    let basic = format!("{}:{}", t.manager_login, t.manager_password);
    let messy = curl(&[
        "-G",
        "-H",
        "X-Requested-With: x",
        "-u",
        &basic,
        "--data-urlencode",
        &format!("user_logins=  {p}_x , {p}_x,,\t{p}_y  ,{p}_x"),
        "--data-urlencode",
        "email=0",
        &gw.url(API),
    ]);
    assert_reply(gw, &messy, 200, "SUCCESS");
    assert_eq!(elements(&messy.body, "USER_LOGIN"), [format!("{p}_x"), format!("{p}_y")]);

    let all = legacy(gw, &t.manager_login, &t.manager_password, "user_logins=all&email=0");
    assert_reply(gw, &all, 200, "SUCCESS");
    let logins = elements(&all.body, "USER_LOGIN");
    assert!(logins.contains(&format!("{p}_x")) && logins.contains(&format!("{p}_y")), "{logins:?}");
    assert!(!logins.contains(&t.manager_login), "`all` excludes the caller");
    assert_eq!(passwords(&all.body).len(), logins.len());
}

/// `all` over `reset.max_batch` is a bad value (400 / 1905), like naming too
/// many logins — not "account inactive" (409 / 2002), which the gateway once
/// answered because it mapped every FAILED_PRECONDITION to that.
async fn all_over_the_batch_limit_is_a_bad_value(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = start_gateway(backend, |mut config| {
        config.reset.max_batch = 2;
        config
    });
    let (t, token) = manager(&gw).await;
    let p = &t.prefix;
    for name in ["x", "y"] {
        create_user(&gw, &token, &format!("{p}_{name}"), Role::Reader, "").await;
    }
    let refused = reset_client(&gw)
        .await
        .reset_passwords(bearer(
            pb::ResetPasswordsRequest {
                user_logins: Vec::new(),
                all: true,
                notify_by_email: false,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.code(), common::reason(&refused).as_str()),
        (tonic::Code::FailedPrecondition, "BATCH_TOO_LARGE")
    );

    let (user, password) = (t.manager_login.as_str(), t.manager_password.as_str());
    let all = legacy(&gw, user, password, "user_logins=all&email=0");
    assert_failed(&gw, &all, 400, 1905);
    assert!(all.body.contains("name them in batches of at most 2"), "{}", all.body);
    let named = legacy(&gw, user, password, &format!("user_logins={p}_x,{p}_y,{p}_z&email=0"));
    assert_failed(&gw, &named, 400, 1905);
    let within = legacy(&gw, user, password, &format!("user_logins={p}_x,{p}_y&email=0"));
    assert_reply(&gw, &within, 200, "SUCCESS");
}

async fn concurrent_gateway_requests_all_succeed(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let logins: Vec<String> = (0..6).map(|i| format!("{}_c{i}", t.prefix)).collect();
    for login in &logins {
        create_user(gw, &token, login, Role::Reader, "").await;
    }
    let replies: Vec<HttpResponse> = std::thread::scope(|scope| {
        let calls: Vec<_> = logins
            .iter()
            .map(|login| {
                let query = format!("user_logins={login}&email=0");
                let (user, password) = (t.manager_login.clone(), t.manager_password.clone());
                scope.spawn(move || legacy(gw, &user, &password, &query))
            })
            .collect();
        calls.into_iter().map(|call| call.join().expect("curl thread")).collect()
    });
    for (login, reply) in logins.iter().zip(&replies) {
        assert_reply(gw, reply, 200, "SUCCESS");
        assert_eq!(elements(&reply.body, "USER_LOGIN"), std::slice::from_ref(login));
        common::login(gw, login, &passwords(&reply.body)[0]).await;
    }
}

// ---- pages ----------------------------------------------------------------

async fn activation_links_survive_scanners_and_are_redeemed_once(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let target = format!("{}_r", t.prefix);
    create_user(gw, &token, &target, Role::Reader, "").await;
    let reset = legacy(gw, &t.manager_login, &t.manager_password, &format!("user_logins={target}&email=1"));
    assert_reply(gw, &reset, 200, "SUCCESS");
    let link = latest_link(gw, &target, "password_reset").await;
    let page_url = gw.url(&format!("/activate/{link}"));

    // A scanner's GET and HEAD see the button and consume nothing.
    let get = curl(&[&page_url]);
    assert_eq!(get.status, 200, "{}", get.body);
    assert!(get.body.contains("Show my new password") && get.body.contains(&target), "{}", get.body);
    assert_security_headers(&get);
    assert_eq!(get.header("cache-control"), Some("no-store"));
    let head = curl(&["-I", &page_url]);
    assert_eq!(head.status, 200);
    assert!(link_is_valid(gw, &link).await, "GET and HEAD leave the link valid");

    // Cross-site posts are refused and consume nothing.
    let forged = curl(&["-X", "POST", "-H", "Origin: https://evil.example", "--data", "", &page_url]);
    assert_eq!(forged.status, 403);
    let forged = curl(&["-X", "POST", "-H", "Sec-Fetch-Site: cross-site", "--data", "", &page_url]);
    assert_eq!(forged.status, 403);
    assert!(link_is_valid(gw, &link).await);

    // The button: the password, once.
    let origin = gw.base.clone();
    let shown = curl(&["-X", "POST", "-H", &format!("Origin: {origin}"), "--data", "", &page_url]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.header("cache-control"), Some("no-store"));
    let password = shown_password(&shown.body);
    common::login(gw, &target, &password).await;

    for again in [curl(&[&page_url]), curl(&["-X", "POST", "--data", "", &page_url])] {
        assert_eq!(again.status, 404);
        assert!(again.body.contains("The activation key is not valid"), "{}", again.body);
        assert!(again.body.contains("href=\"/forgot-password\""), "{}", again.body);
    }
    assert_eq!(curl(&[&gw.url("/activate/not-a-real-token")]).status, 404);
}

/// Support replaced a lost token: the emailed link's page shows the new
/// token once (QR code and address), to the user alone.
async fn a_replaced_token_is_shown_once_on_the_link_page(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
    let (login, _, _) = common::second_factor::enrolled(gw, "lostphone").await;
    let (_, op) = common::operator(gw).await;
    let replace =
        pb::ReplaceUserTokenRequest { user_login: login.clone(), reason: "lost phone".into(), ..Default::default() };
    pb::support_client::SupportClient::new(gw.channel().await)
        .replace_user_token(common::bearer(replace, &op))
        .await
        .expect("replaced");
    let link = latest_link(gw, &login, "token_enrollment").await;
    let page_url = gw.url(&format!("/activate/{link}"));
    let get = curl(&[&page_url]);
    assert!(get.status == 200 && get.body.contains("Show my new token"), "{}", get.body);
    let shown = curl(&["-X", "POST", "-H", &format!("Origin: {}", gw.base), "--data", "", &page_url]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    let body = common::http::html_unescape(&shown.body);
    assert!(body.contains("<svg") && body.contains("otpauth://totp/identity:"), "{}", shown.body);
    assert_eq!(shown.header("cache-control"), Some("no-store"));
    let again = curl(&["-X", "POST", "-H", &format!("Origin: {}", gw.base), "--data", "", &page_url]);
    assert_eq!(again.status, 404, "shown once");
}

async fn welcome_links_ask_for_a_new_password(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let login = format!("{}_w", t.prefix);
    create_user(gw, &token, &login, Role::Reader, "").await;
    let link = latest_link(gw, &login, "welcome").await;
    let page_url = gw.url(&format!("/activate/{link}"));

    assert!(curl(&[&page_url]).body.contains("Choose my password"));
    let form = curl(&["-X", "POST", "--data", "", &page_url]);
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"new_password\"") && form.body.contains("name=\"confirm_password\""));
    assert!(form.body.contains("<div id=\"rules\""), "policy hints: {}", form.body);
    assert!(link_is_valid(gw, &link).await, "showing the form consumes nothing");

    let mismatch = curl(&["--data", "new_password=aaaa&confirm_password=bbbb", &page_url]);
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body.contains("not the same"), "{}", mismatch.body);
    let weak = curl(&["--data", "new_password=short&confirm_password=short", &page_url]);
    assert_eq!(weak.status, 400, "{}", weak.body);
    assert!(weak.body.contains("class=\"error\""), "{}", weak.body);
    assert!(link_is_valid(gw, &link).await);

    let chosen = "violet canyon lantern drift";
    let without_captcha = curl(&[
        "--data-urlencode",
        &format!("new_password={chosen}"),
        "--data-urlencode",
        &format!("confirm_password={chosen}"),
        &page_url,
    ]);
    assert_eq!(without_captcha.status, 400, "the new-password step asks for the captcha");
    assert!(link_is_valid(gw, &link).await);
    let (challenge, bits) = captcha_of(&without_captcha.body);
    let nonce = identity::crypto::captcha::solve(&challenge, bits);
    let weak_with_captcha = curl(&[
        "--data-urlencode",
        "new_password=password",
        "--data-urlencode",
        "confirm_password=password",
        "--data-urlencode",
        &format!("challenge={challenge}"),
        "--data-urlencode",
        &format!("nonce={nonce}"),
        &page_url,
    ]);
    assert_eq!(weak_with_captcha.status, 400);
    assert!(
        weak_with_captcha.body.contains("The new password ") && weak_with_captcha.body.contains(". Please try again."),
        "a person's sentence, not a field name: {}",
        weak_with_captcha.body
    );
    let (challenge, bits) = captcha_of(&weak_with_captcha.body);
    let nonce = identity::crypto::captcha::solve(&challenge, bits);
    let done = curl(&[
        "--data-urlencode",
        &format!("new_password={chosen}"),
        "--data-urlencode",
        &format!("confirm_password={chosen}"),
        "--data-urlencode",
        &format!("challenge={challenge}"),
        "--data-urlencode",
        &format!("nonce_typed={nonce}"),
        &page_url,
    ]);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("is set"), "{}", done.body);
    common::login(gw, &login, chosen).await;
    assert!(curl(&[&page_url]).body.contains("The activation key is not valid"));
}

fn captcha_of(page: &str) -> (String, u32) {
    let attribute = |name: &str| {
        let start = page.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    };
    (attribute("data-challenge"), attribute("data-bits").parse().unwrap())
}

async fn forgot_password_answers_the_same_whatever_the_outcome(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, _) = manager(gw).await;
    let page_url = gw.url("/forgot-password");
    let mut answers = Vec::new();
    for (login, email) in [
        (t.manager_login.clone(), format!("{}@example.com", t.prefix)),
        (format!("{}_nobody", t.prefix), "nobody@example.com".to_owned()),
    ] {
        let form = curl(&[&page_url]);
        assert_eq!(form.status, 200);
        assert_security_headers(&form);
        assert!(form.header("content-security-policy").unwrap().contains("script-src 'sha256-"));
        let (challenge, bits) = captcha_of(&form.body);
        let nonce = identity::crypto::captcha::solve(&challenge, bits).to_string();
        let sent = curl(&[
            "--data-urlencode",
            &format!("user_login={login}"),
            "--data-urlencode",
            &format!("email={email}"),
            "--data-urlencode",
            &format!("challenge={challenge}"),
            "--data-urlencode",
            &format!("nonce={nonce}"),
            &page_url,
        ]);
        assert_eq!(sent.status, 200, "{}", sent.body);
        answers.push(sent.body);
    }
    assert_eq!(answers[0], answers[1], "no enumeration");
    assert!(answers[0].contains("id=\"done\""));
    common::assert_mail_sent(gw, &t.manager_login, "forgot_password").await;

    let (challenge, _) = captcha_of(&curl(&[&page_url]).body);
    let unsolved = curl(&[
        "--data-urlencode",
        &format!("user_login={}", t.manager_login),
        "--data-urlencode",
        "email=x@example.com",
        "--data-urlencode",
        &format!("challenge={challenge}"),
        "--data-urlencode",
        "nonce=",
        &page_url,
    ]);
    assert_eq!(unsolved.status, 400, "{}", unsolved.body);
    assert!(unsolved.body.contains("class=\"error\"") && unsolved.body.contains("data-challenge"));
    let forged = curl(&["-H", "Origin: https://evil.example", "--data", "user_login=a", &page_url]);
    assert_eq!(forged.status, 403);
}

async fn status_keys_and_dtd_are_served(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
    let status = curl(&[&gw.url("/status")]);
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(status.body.contains("All systems operational"), "{}", status.body);
    assert_security_headers(&status);

    let jwks = curl(&[&gw.url("/.well-known/jwks.json")]);
    assert_eq!(jwks.status, 200);
    let set: serde_json::Value = serde_json::from_str(&jwks.body).unwrap();
    let from_grpc = common::auth_client(gw).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    assert_eq!(set["keys"].as_array().unwrap().len(), from_grpc.keys.len());
    let key = &set["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert_eq!(key["kid"].as_str(), Some(from_grpc.keys[0].kid.as_str()));

    let served = curl(&[&gw.url("/password_change_output.dtd")]);
    assert_eq!(served.body, identity::gateway::DTD);
    assert!(served.header("content-type").unwrap().starts_with("application/xml-dtd"));
    assert_eq!(curl(&[&gw.url("/nowhere")]).status, 404);
}

/// What a form filler sends: a password of its own choosing.
fn post_new_password(page_url: &str) -> HttpResponse {
    curl(&["--data", "new_password=my own choice please&confirm_password=my own choice please", page_url])
}

async fn a_new_password_posted_to_a_generated_password_link_is_refused(backend: Backend) {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(backend);
    let (t, token) = manager(gw).await;
    let target = format!("{}_g", t.prefix);
    create_user(gw, &token, &target, Role::Reader, "").await;
    let reset = legacy(gw, &t.manager_login, &t.manager_password, &format!("user_logins={target}&email=1"));
    assert_reply(gw, &reset, 200, "SUCCESS");
    let link = latest_link(gw, &target, "password_reset").await;
    let page_url = gw.url(&format!("/activate/{link}"));

    // The service refuses it, naming the field, and consumes nothing.
    let direct = reset_client(gw)
        .await
        .redeem_activation(pb::RedeemActivationRequest {
            token: link.clone(),
            new_password: "mine mine mine".into(),
            captcha: None,
        })
        .await
        .unwrap_err();
    assert_eq!(direct.code(), tonic::Code::InvalidArgument, "{direct:?}");
    assert!(direct.message().contains("new_password") && direct.message().contains("generates"), "{direct:?}");
    assert!(link_is_valid(gw, &link).await, "a refused password leaves the link unused");

    // A form filler posting a password gets the error and the button, not a burnt link.
    let filled = post_new_password(&page_url);
    assert_eq!(filled.status, 400, "{}", filled.body);
    assert!(filled.body.contains("class=\"error\"") && filled.body.contains("Show my new password"), "{}", filled.body);
    assert!(!filled.body.contains("name=\"new_password\""), "no password form for this link: {}", filled.body);
    assert!(link_is_valid(gw, &link).await);

    // The button still shows the password, which logs in.
    let shown = curl(&["-X", "POST", "--data", "", &page_url]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    common::login(gw, &target, &shown_password(&shown.body)).await;
}

async fn has_mail(gw: &GatewayServer, login: &str, kind: &str) -> bool {
    use identity::store::entities::email_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = common::store(gw).await;
    let user = identity::store::users::find_by_login(store.connection(), login).await.unwrap().expect("user exists");
    let mails = email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(user.id))
        .filter(email_outbox::Column::Kind.eq(kind))
        .count(store.connection());
    mails.await.unwrap() > 0
}

/// A subscription whose passwords the service generates, with its Manager
/// active (through the welcome link, which shows a generated password).
async fn generating_subscription(gw: &GatewayServer) -> (String, String) {
    let (_, operator) = common::operator(gw).await;
    let prefix = common::unique("g");
    let manager = format!("{prefix}_mgr");
    let request = pb::CreateSubscriptionRequest {
        name: "Generated".into(),
        login_prefix: prefix.clone(),
        users_define_own_password: false,
        lockout_threshold: 0,
        manager: Some(pb::create_subscription_request::NewManager {
            user_login: manager.clone(),
            email: format!("{prefix}@example.com"),
            first_name: String::new(),
            last_name: String::new(),
        }),
    };
    users_client(gw).await.create_subscription(bearer(request, &operator)).await.unwrap();
    let welcome = latest_link(gw, &manager, "welcome").await;
    let shown = curl(&["-X", "POST", "--data", "", &gw.url(&format!("/activate/{welcome}"))]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    common::login(gw, &manager, &shown_password(&shown.body)).await;
    (manager, format!("{prefix}@example.com"))
}

async fn forgot_links_follow_a_subscription_that_generates_passwords(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
    let (manager, email) = generating_subscription(gw).await;
    let solution = common::solved_captcha(gw).await;
    let request =
        pb::RequestPasswordResetRequest { user_login: manager.clone(), email: email.clone(), captcha: Some(solution) };
    reset_client(gw).await.request_password_reset(request).await.unwrap();
    // The email leaves after the answer.
    let mut waited = 0;
    while !has_mail(gw, &manager, "forgot_password").await {
        assert!(waited < 200, "no forgot-password email");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = latest_link(gw, &manager, "forgot_password").await;
    let page_url = gw.url(&format!("/activate/{link}"));
    {
        use identity::store::entities::email_outbox;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let store = common::store(gw).await;
        let mail = email_outbox::Entity::find()
            .filter(email_outbox::Column::Kind.eq("forgot_password"))
            .filter(email_outbox::Column::Recipient.eq(email.clone()))
            .one(store.connection())
            .await
            .unwrap()
            .expect("the forgot-password email");
        let text = common::email_text(gw, &mail).await;
        assert!(text.contains("Get a new password, shown once"), "the email says what the link does");
    }

    let seen = reset_client(gw)
        .await
        .inspect_activation(pb::InspectActivationRequest { token: link.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(!seen.requires_new_password, "the user does not choose here: {seen:?}");
    let page = curl(&[&page_url]);
    assert!(page.body.contains("Show my new password"), "{}", page.body);
    // Choosing one's own password is refused, and the link survives.
    assert_eq!(post_new_password(&page_url).status, 400);
    assert!(link_is_valid(gw, &link).await);

    let shown = curl(&["-X", "POST", "--data", "", &page_url]);
    assert_eq!(shown.status, 200, "{}", shown.body);
    let generated = shown_password(&shown.body);
    assert!(generated.len() >= 16, "{generated}");
    common::login(gw, &manager, &generated).await;
    assert!(!link_is_valid(gw, &link).await, "shown once");
}

on_both_backends!(
    a_replaced_token_is_shown_once_on_the_link_page,
    the_api_pages_curl_commands_work,
    every_outcome_validates_against_the_dtd,
    logins_are_trimmed_collapsed_and_all_means_everyone,
    all_over_the_batch_limit_is_a_bad_value,
    concurrent_gateway_requests_all_succeed,
    activation_links_survive_scanners_and_are_redeemed_once,
    welcome_links_ask_for_a_new_password,
    forgot_password_answers_the_same_whatever_the_outcome,
    status_keys_and_dtd_are_served,
    a_new_password_posted_to_a_generated_password_link_is_refused,
    forgot_links_follow_a_subscription_that_generates_passwords,
);

// ---- stories with a server of their own (SQLite) ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_rate_limit_is_reported_and_enforced_per_api_user() {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = start_gateway(Backend::Sqlite, |mut config| {
        config.gateway.rate_limit_per_user = 2;
        config.gateway.rate_limit_window_secs = 60;
        config
    });
    let (t, token) = manager(&gw).await;
    let target = format!("{}_t", t.prefix);
    create_user(&gw, &token, &target, Role::Reader, "").await;
    let query = format!("user_logins={target}");
    for remaining in ["1", "0"] {
        let reply = legacy(&gw, &t.manager_login, &t.manager_password, &query);
        assert_reply(&gw, &reply, 200, "SUCCESS");
        assert_eq!(reply.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(reply.header("x-ratelimit-window-sec"), Some("60"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
    }
    let refused = legacy(&gw, &t.manager_login, &t.manager_password, &query);
    assert_failed(&gw, &refused, 429, 1965);
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() <= 60));

    // Another API user has a budget of their own.
    let other = format!("{}_m2", t.prefix);
    member(&gw, &token, &other, Role::Manager, "").await;
    let reply = legacy(&gw, &other, MEMBER_PASSWORD, &query);
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("1"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_speaks_https_when_given_a_certificate() {
    if !common::tools::require(&[Tool::Curl, Tool::Openssl, Tool::Xmllint]) {
        return;
    }
    let dir = common::scratch_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let gw = start_gateway(Backend::Sqlite, move |mut config| {
        config.http_tls_cert = Some(cert);
        config.http_tls_key = Some(key);
        config
    });
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    // Every response over TLS asks the browser to stay on https (pages show passwords).
    for path in ["/status", "/forgot-password", "/activate/not-a-real-token", "/msp/password_change.php"] {
        let response = curl(&["-k", &gw.url(path)]);
        assert_eq!(response.header("strict-transport-security"), Some("max-age=31536000"), "{path}");
    }
    let (t, token) = manager(&gw).await;
    let target = format!("{}_t", t.prefix);
    create_user(&gw, &token, &target, Role::Reader, "").await;
    let xml = shell(&format!(
        r#"curl -k -s -S -H 'Requested-With:curl demo2' -u "{}:{}" "{}/msp/password_change.php?user_logins={target}&email=0""#,
        t.manager_login, t.manager_password, gw.base
    ));
    assert!(xml.contains("<RETURN status=\"SUCCESS\">"), "{xml}");
    assert_valid_xml(&xml, &gw.dtd_url(), identity::gateway::DTD);
    common::login(&gw, &target, &passwords(&xml)[0]).await;
    let plain = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{}/status", gw.http_addr)])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Platform status"), "no plaintext on the TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reveals_an_admin_reset_password_once() {
    if !common::tools::require(&[Tool::Chromium, Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = gateway_server(Backend::Sqlite);
    let (t, token) = manager(gw).await;
    let target = format!("{}_browser", t.prefix);
    create_user(gw, &token, &target, Role::Reader, "").await;
    let reset = legacy(gw, &t.manager_login, &t.manager_password, &format!("user_logins={target}&email=1"));
    assert_reply(gw, &reset, 200, "SUCCESS");
    let link = latest_link(gw, &target, "password_reset").await;
    let page_url = gw.url(&format!("/activate/{link}"));
    let forgot_url = gw.url("/forgot-password");
    let forgot_login = t.manager_login.clone();
    // A mail scanner passes first.
    assert_eq!(curl(&[&page_url]).status, 200);
    assert_eq!(curl(&["-I", &page_url]).status, 200);
    assert!(link_is_valid(gw, &link).await);

    let browse = tokio::task::spawn_blocking(move || {
        let browser = Browser::start();
        browser.goto(&page_url);
        let button = browser.find("#redeem");
        browser.click(button.as_str());
        let password = browser.text(&browser.find("#password"));
        browser.goto(&page_url);
        let invalid = browser.text(&browser.find("#invalid"));
        let forgot_link = browser.source().contains("href=\"/forgot-password\"");
        // The forgot-password page: the inline script (allowed by its CSP hash) solves the captcha.
        browser.goto(&forgot_url);
        browser.type_text(&browser.find("#user_login"), &forgot_login);
        browser.type_text(&browser.find("#email"), "someone@example.com");
        let submit = browser.find("button[type=submit]");
        browser.click(&submit);
        let confirmation = browser.text(&browser.find("#done"));
        (password, invalid, forgot_link, confirmation)
    });
    let (password, invalid, forgot_link, confirmation) =
        tokio::time::timeout(Duration::from_secs(180), browse).await.expect("the browser story ends in time").unwrap();
    assert!(password.len() >= 16, "{password:?}");
    common::login(gw, &target, &password).await;
    assert_eq!(invalid, "The activation key is not valid.");
    assert!(forgot_link);
    assert_eq!(confirmation, identity::app::forgot::ANSWER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_alone_and_stops_on_sigterm() {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(Backend::Sqlite);
    let port = common::free_port();
    let mut child = common::cli_command(
        &["gateway", "--grpc", &gw.server.url()],
        &[("IDENTITY_HTTP_ADDR", &format!("127.0.0.1:{port}"))],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start `identity gateway`");
    let jwks_url = format!("http://127.0.0.1:{port}/.well-known/jwks.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let jwks = loop {
        let output = std::process::Command::new("curl").args(["-s", "--max-time", "5", &jwks_url]).output().unwrap();
        if output.status.success() {
            break String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the standalone gateway did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(jwks.contains("\"kty\":\"OKP\""), "{jwks}");
    let stopped = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the standalone gateway ignored SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "graceful stop exits 0: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_the_status_page() {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(Backend::Sqlite);
    let response = curl(&[&gw.url("/status.json")]);
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let status: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(status["overall"], "COMPONENT_STATE_OPERATIONAL");
    let names: Vec<&str> =
        status["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["database", "email", "signing_keys", "password_hashing", "logins", "housekeeping"]);
    assert!(status["checked_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let page = curl(&[&gw.url("/status")]);
    for name in names {
        assert!(page.body.contains(name), "the page shows {name} too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_or_unreachable_service_still_answers_valid_xml() {
    if !common::tools::require(&[Tool::Curl, Tool::Xmllint]) {
        return;
    }
    let gw = start_gateway(Backend::Sqlite, |mut config| {
        config.throttle.login_per_user = 1;
        config
    });
    let t = tenant(&gw);
    let query = format!("user_logins={}", t.manager_login);
    assert_failed(&gw, &legacy(&gw, &t.manager_login, "wrong", &query), 401, 2000);
    let throttled = legacy(&gw, &t.manager_login, "wrong", &query);
    assert_failed(&gw, &throttled, 429, 1966);

    // A gateway whose gRPC service is gone answers 503, still valid.
    let port = common::free_port();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let mut child =
        common::cli_command(&["gateway", "--grpc", &dead], &[("IDENTITY_HTTP_ADDR", &format!("127.0.0.1:{port}"))])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start `identity gateway`");
    let dtd_url = format!("http://127.0.0.1:{port}/password_change_output.dtd");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::process::Command::new("curl").args(["-sf", "--max-time", "5", &dtd_url]).status().unwrap().success() {
        assert!(std::time::Instant::now() < deadline, "the standalone gateway did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply =
        curl(&["-H", "Requested-With:test", "-u", "a:b", &format!("http://127.0.0.1:{port}{API}?user_logins=a")]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("number=\"1999\""), "{}", reply.body);
    assert_valid_xml(&reply.body, "http://127.0.0.1:8080/password_change_output.dtd", identity::gateway::DTD);
}
