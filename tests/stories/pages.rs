//! The pages people use, driven in real headless Chromium as a person would:
//! sign in (and be refused), the SecurID steps with a real TOTP code, a
//! browser that refuses cookies, changing one's password (the captcha solved
//! by the page's own script) and user login, signing out (and the back
//! button), the email-link pages and a double-click on a reveal button.
//! Every page visited is checked by axe-core, at desktop and phone widths
//! (nothing may scroll sideways), and saved as a screenshot whose folder the
//! story prints.

use crate::common;
use crate::common::tools::Tool;

use std::{path::PathBuf, time::Duration};

use common::{
    Backend, MEMBER_PASSWORD,
    http::{Browser, GatewayServer, curl, gateway_server},
    latest_link, login_session, member, second_factor, tenant,
};
use identity::pb::{self, Role};

on_both_backends!(
    a_person_signs_in_changes_credentials_and_signs_out,
    securid_first_login_chooses_a_pin_then_asks_pin_and_tokencode,
    a_browser_refusing_cookies_is_told_so,
    email_link_pages_ask_twice_and_survive_a_double_click,
    the_login_page_words_each_refusal_as_the_service_decides_it,
    a_generated_password_is_shown_once_and_ends_every_session,
);

pub(crate) fn tools() -> bool {
    common::tools::require(&[Tool::Chromium, Tool::Curl, Tool::AxeCore])
}

/// A browser story: blocking WebDriver calls off the runtime, bounded in time.
pub(crate) async fn browse<T: Send + 'static>(story: impl FnOnce() -> T + Send + 'static) -> T {
    let run = tokio::task::spawn_blocking(story);
    tokio::time::timeout(Duration::from_secs(300), run).await.expect("the browser story ends in time").unwrap()
}

/// Checks each page a story shows: accessible (axe-core: no serious or
/// critical violation), nothing scrolls sideways at 1280 or 360 px, and a
/// screenshot at both widths.
pub(crate) struct Looker<'a> {
    browser: &'a Browser,
    shots: PathBuf,
    axe: String,
}

impl<'a> Looker<'a> {
    pub(crate) fn new(browser: &'a Browser, label: &str) -> Self {
        let shots = common::scratch_dir(label);
        eprintln!("screenshots of {label}: {}", shots.display());
        let axe = std::fs::read_to_string(common::tools::axe_script()).expect("axe-core");
        Self { browser, shots, axe }
    }

    pub(crate) fn look(&self, name: &str) {
        let b = self.browser;
        for (width, height) in [(1280, 900), (360, 780)] {
            b.resize(width, height);
            let overflow =
                b.execute("return document.documentElement.scrollWidth - window.innerWidth;", serde_json::json!([]));
            assert!(overflow.as_i64().unwrap_or(1) <= 0, "{name} scrolls sideways by {overflow}px at {width}px");
            b.screenshot(&self.shots.join(format!("{name}-{width}.png")));
        }
        b.resize(1280, 900);
        if b.execute("return typeof axe;", serde_json::json!([])) != "object" {
            b.execute(&format!("{}\nreturn true;", self.axe), serde_json::json!([]));
        }
        let violations = b.execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations
               .filter(v => v.impact === 'serious' || v.impact === 'critical')
               .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))));",
        );
        assert_eq!(violations, serde_json::json!([]), "axe-core on {name}");
    }
}

pub(crate) fn fill(b: &Browser, css: &str, text: &str) {
    let field = b.find(css);
    b.execute("arguments[0].value = '';", serde_json::json!([{ "element-6066-11e4-a52e-4f735466cecf": field }]));
    b.type_text(&field, text);
}

pub(crate) fn press(b: &Browser, css: &str) {
    let button = b.find(css);
    b.click(&button);
}

/// Waits for the page to be at a URL ending with `path` (without its query).
pub(crate) fn await_path(b: &Browser, path: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let url = b.url();
        if url.split('?').next().is_some_and(|u| u.ends_with(path))
            && b.execute("return document.readyState;", serde_json::json!([])) == "complete"
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never reached {path}: at {url}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn sign_in(b: &Browser, gw_base: &str, login: &str, password: &str) {
    b.goto(&format!("{gw_base}/login"));
    fill(b, "#user_login", login);
    fill(b, "#password", password);
    press(b, "#sign-in");
}

/// The session cookie as a curl `Cookie:` header, to replay it after the browser lost it.
pub(crate) fn session_cookie(b: &Browser) -> String {
    let cookie = b.cookies().into_iter().find(|c| c["name"] == "identity-session").expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    format!("Cookie: identity-session={}", cookie["value"].as_str().unwrap())
}

async fn a_person_signs_in_changes_credentials_and_signs_out(backend: Backend) {
    if !tools() {
        return;
    }
    let gw: &GatewayServer = gateway_server(backend);
    let t = tenant(gw);
    let base = gw.url("");
    let (login, password) = (t.manager_login.clone(), t.manager_password.clone());
    let new_password = format!("{password} renewed");
    let new_login = format!("{}_renamed", t.prefix);
    let email = format!("{}@example.com", t.prefix);
    let (nl, np, mail) = (new_login.clone(), new_password.clone(), email.clone());
    let (old_cookie, last_cookie) = browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "pages-signin");
        b.goto(&format!("{base}/"));
        await_path(&b, "/login");
        looker.look("login");
        sign_in(&b, &base, &login, "wrong password");
        assert_eq!(b.text(&b.find("#error strong")), "Invalid credentials");
        assert!(b.text(&b.find("#error")).contains("Caps Lock"));
        looker.look("login-refused");
        sign_in(&b, &base, &login, &password);
        await_path(&b, "/account");
        assert_eq!(b.text(&b.find("#my-login")), login);
        assert!(b.source().contains(&mail) && b.source().contains("Manager"));
        looker.look("account");

        press(&b, "#change-password");
        await_path(&b, "/account/password");
        looker.look("change-password");
        fill(&b, "#current_password", &password);
        fill(&b, "#new_password", &np);
        fill(&b, "#confirm_password", &np);
        let old_cookie = session_cookie(&b);
        press(&b, "#change");
        let said = b.text(&b.find("#message"));
        assert!(said.contains("Log back in using your new password"), "{said}");
        assert!(b.cookies().iter().all(|c| c["name"] != "identity-session"), "the browser forgot the session");
        looker.look("password-changed");

        sign_in(&b, &base, &login, &np);
        await_path(&b, "/account");
        b.goto(&format!("{base}/account/login"));
        looker.look("change-login");
        fill(&b, "#current_password", &np);
        fill(&b, "#new_login", &nl);
        fill(&b, "#confirm_login", &format!("{nl}x"));
        press(&b, "#change");
        assert!(b.text(&b.find("#error")).contains("not the same"));
        fill(&b, "#current_password", &np);
        fill(&b, "#new_login", &nl);
        fill(&b, "#confirm_login", &nl);
        press(&b, "#change");
        assert!(b.text(&b.find("#message")).contains(&nl));

        sign_in(&b, &base, &nl, &np);
        await_path(&b, "/account");
        assert_eq!(b.text(&b.find("#my-login")), nl);
        let last_cookie = session_cookie(&b);
        press(&b, "#sign-out");
        assert!(b.text(&b.find("#message")).contains("signed out"));
        looker.look("signed-out");
        b.back();
        std::thread::sleep(Duration::from_millis(500));
        let after = b.source();
        assert!(b.url().contains("/login"), "back after sign-out: {}\n{after}", b.url());
        assert!(!after.contains(&mail) && !after.contains(&nl), "the back button shows nothing private");
        assert!(b.cookies().iter().all(|c| c["name"] != "identity-session"));
        (old_cookie, last_cookie)
    })
    .await;
    // The session of before the password change is dead at the service, not only in the browser.
    let replay = curl(&["-H", &old_cookie, &gw.url("/account")]);
    assert_eq!(replay.status, 303, "{}", replay.body);
    assert_eq!(replay.header("location"), Some("/login?m=ended"));
    common::login(gw, &new_login, &new_password).await;
    // Signing out ended the service's session, not only the cookie.
    let after_sign_out = curl(&["-H", &last_cookie, &gw.url("/account")]);
    assert_eq!(after_sign_out.header("location"), Some("/login?m=ended"), "{}", after_sign_out.body);
}

async fn securid_first_login_chooses_a_pin_then_asks_pin_and_tokencode(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let manager = login_session(gw, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_securid", t.prefix);
    member(gw, &manager, &login, Role::Reader, "").await;
    let token = second_factor::assign(gw, &manager, &login).await;
    let base = gw.url("");
    browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "pages-securid");
        sign_in(&b, &base, &login, MEMBER_PASSWORD);
        await_path(&b, "/login/securid");
        assert!(b.source().contains("enter the tokencode only"));
        looker.look("securid-tokencode");
        fill(&b, "#passcode", "000000");
        press(&b, "#submit-passcode");
        assert_eq!(b.text(&b.find("#error strong")), "Invalid Tokencode or PIN");
        fill(&b, "#passcode", &token.code(0));
        press(&b, "#submit-passcode");
        await_path(&b, "/login/securid");
        b.find("#new-pin");
        looker.look("securid-new-pin");
        fill(&b, "#pin", "12");
        fill(&b, "#confirm_pin", "12");
        b.execute("document.getElementById('pin').removeAttribute('pattern'); document.getElementById('pin').removeAttribute('minlength'); document.getElementById('confirm_pin').removeAttribute('pattern'); document.getElementById('confirm_pin').removeAttribute('minlength');", serde_json::json!([]));
        press(&b, "#set-pin");
        assert_eq!(b.text(&b.find("#error strong")), "Your new PIN has been rejected");
        assert!(b.text(&b.find("#error")).contains("4 to 8 digits"));
        fill(&b, "#pin", "2468");
        fill(&b, "#confirm_pin", "2468");
        press(&b, "#set-pin");
        await_path(&b, "/account");
        assert!(b.text(&b.find("#who")).contains("Assigned"));
        press(&b, "#sign-out");
        b.find("#message");

        sign_in(&b, &base, &login, MEMBER_PASSWORD);
        await_path(&b, "/login/securid");
        assert!(b.source().contains("PIN+tokencode in a single entry"));
        looker.look("securid-passcode");
        fill(&b, "#passcode", &format!("1357{}", token.code(1)));
        press(&b, "#submit-passcode");
        assert_eq!(b.text(&b.find("#error strong")), "Invalid Tokencode or PIN", "a wrong PIN");
        fill(&b, "#passcode", &format!("2468{}", token.code(1)));
        press(&b, "#submit-passcode");
        await_path(&b, "/account");
        assert!(b.cookies().iter().all(|c| c["name"] != "identity-challenge"), "the challenge cookie is gone");
    })
    .await;
}

async fn a_browser_refusing_cookies_is_told_so(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let base = gw.url("");
    let (login, password) = (t.manager_login.clone(), t.manager_password.clone());
    browse(move || {
        let b = Browser::refusing_cookies();
        let looker = Looker::new(&b, "pages-cookies");
        sign_in(&b, &base, &login, &password);
        assert_eq!(b.text(&b.find("h1")), "Unable to detect cookies");
        assert!(b.source().contains("accepts cookies"));
        looker.look("cookies-refused");
        press(&b, "#next");
        await_path(&b, "/login");
    })
    .await;
    // A forged post (no anti-forgery token) changes nothing and is refused.
    let forged = curl(&["-d", "current_password=x&new_password=y&confirm_password=y", &gw.url("/account/password")]);
    assert_eq!(forged.status, 400, "{}", forged.body);
    let cross_site = curl(&["-H", "Sec-Fetch-Site: cross-site", "-d", "csrf=x", &gw.url("/logout")]);
    assert_eq!(cross_site.status, 403);
}

async fn email_link_pages_ask_twice_and_survive_a_double_click(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let manager = login_session(gw, &t.manager_login, &t.manager_password).await;
    let newcomer = format!("{}_welcome", t.prefix);
    common::create_user(gw, &manager, &newcomer, Role::Reader, "").await;
    let welcome = gw.url(&format!("/activate/{}", latest_link(gw, &newcomer, "welcome").await));
    let resettee = format!("{}_reset", t.prefix);
    member(gw, &manager, &resettee, Role::Reader, "").await;
    let by_email = pb::ResetPasswordsRequest {
        user_logins: vec![resettee.clone()],
        all: false,
        notify_by_email: true,
        ..Default::default()
    };
    common::reset_client(gw).await.reset_passwords(common::bearer(by_email, &manager)).await.expect("a reset");
    common::await_mail(gw, &resettee, "password_reset").await;
    let reset = gw.url(&format!("/activate/{}", latest_link(gw, &resettee, "password_reset").await));
    let chosen = "a chosen pass phrase of mine";
    let revealed = browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "pages-links");
        b.goto(&welcome);
        looker.look("link-welcome");
        press(&b, "#redeem");
        b.find("#choose");
        assert!(b.source().contains("data-challenge"), "the new-password step has a captcha");
        looker.look("link-choose");
        fill(&b, "#new_password", chosen);
        fill(&b, "#confirm_password", "something else entirely");
        press(&b, "#set-password");
        assert!(b.text(&b.find("#error")).contains("not the same"));
        fill(&b, "#new_password", chosen);
        fill(&b, "#confirm_password", chosen);
        press(&b, "#set-password");
        assert!(b.text(&b.find("#done")).contains("is set"));
        looker.look("link-done");
        press(&b, "#next");
        await_path(&b, "/login");

        b.goto(&reset);
        let button = b.find("#redeem");
        b.double_click(&button);
        let password = b.text(&b.find("#password"));
        looker.look("link-revealed");
        b.goto(&reset);
        assert!(b.text(&b.find("#invalid")).contains("The activation key is not valid"));
        assert!(b.source().contains("href=\"/forgot-password\""), "a spent link offers Forgot Password");
        looker.look("link-invalid");
        password
    })
    .await;
    common::login(gw, &newcomer, chosen).await;
    assert!(revealed.len() >= 12, "the double-click kept the password: {revealed:?}");
    common::login(gw, &resettee, &revealed).await;
}

/// A browser without a browser: curl with a cookie jar, reading each form's
/// anti-forgery token as a page would send it.
struct CurlBrowser {
    jar: PathBuf,
}

impl CurlBrowser {
    fn new() -> Self {
        Self { jar: common::scratch_dir("cookie-jar").join("jar") }
    }

    fn get(&self, url: &str) -> common::http::HttpResponse {
        let jar = self.jar.to_str().unwrap();
        curl(&["-c", jar, "-b", jar, url])
    }

    /// Posts `fields` (and the token of the page `form_url` shows) to `url`.
    fn post(&self, form_url: &str, url: &str, fields: &[(&str, &str)]) -> common::http::HttpResponse {
        let csrf = hidden(&self.get(form_url).body, "csrf");
        let jar = self.jar.to_str().unwrap();
        let mut args = vec!["-c".to_owned(), jar.to_owned(), "-b".to_owned(), jar.to_owned()];
        for (name, value) in [("csrf", csrf.as_str())].iter().chain(fields) {
            args.extend(["--data-urlencode".to_owned(), format!("{name}={value}")]);
        }
        args.push(url.to_owned());
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// The value of `<input … name="{name}" value="…">` on a page.
fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} field: {html}"));
    let start = at + name.len() + 15;
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

async fn the_login_page_words_each_refusal_as_the_service_decides_it(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = common::http::start_gateway(backend, |mut config| {
        config.throttle.login_per_user = 3;
        config
    });
    let t = tenant(&gw);
    let manager = login_session(&gw, &t.manager_login, &t.manager_password).await;
    let idle = format!("{}_idle", t.prefix);
    member(&gw, &manager, &idle, Role::Reader, "").await;
    let deactivate = pb::SetUserStatusRequest {
        user_login: idle.clone(),
        status: pb::UserStatus::Inactive.into(),
        reason: "on leave".into(),
        ..Default::default()
    };
    common::users_client(&gw).await.set_user_status(common::bearer(deactivate, &manager)).await.expect("deactivated");
    let (login_url, browser) = (gw.url("/login"), CurlBrowser::new());

    let inactive = browser.post(&login_url, &login_url, &[("user_login", &idle), ("password", MEMBER_PASSWORD)]);
    assert_eq!(inactive.status, 403, "{}", inactive.body);
    assert!(inactive.body.contains("from Inactive to Active"), "{}", inactive.body);

    let target = [("user_login", t.manager_login.as_str()), ("password", "not the password")];
    let wrong = browser.post(&login_url, &login_url, &target);
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Invalid credentials") && wrong.body.contains("Caps Lock"));
    let throttled = (0..5)
        .map(|_| browser.post(&login_url, &login_url, &target))
        .find(|answer| answer.status == 429)
        .expect("the service's throttle reaches the page");
    assert!(throttled.body.contains("Too many attempts"), "{}", throttled.body);
    assert!(throttled.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)));
}

async fn a_generated_password_is_shown_once_and_ends_every_session(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    let gw = gateway_server(backend);
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
            email: "gen@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
        }),
    };
    common::users_client(gw).await.create_subscription(common::bearer(request, &operator)).await.expect("created");
    let welcome = latest_link(gw, &manager, "welcome").await;
    let redeemed = common::reset_client(gw)
        .await
        .redeem_activation(pb::RedeemActivationRequest { token: welcome, new_password: String::new(), captcha: None })
        .await
        .expect("activated")
        .into_inner();
    let first = redeemed.generated_password;

    let (browser, login_url) = (CurlBrowser::new(), gw.url("/login"));
    let signed_in = browser.post(&login_url, &login_url, &[("user_login", &manager), ("password", &first)]);
    assert_eq!((signed_in.status, signed_in.header("location")), (303, Some("/account")), "{}", signed_in.body);
    // The legacy API keeps taking Basic credentials only: a signed-in browser's cookie is not a caller.
    let jar = browser.jar.to_str().unwrap();
    let legacy_url = gw.url(&format!("/msp/password_change.php?user_logins={manager}"));
    let legacy = curl(&["-b", jar, "-H", "X-Requested-With: page", &legacy_url]);
    assert_eq!(legacy.status, 401, "{}", legacy.body);
    let form_url = gw.url("/account/password");
    let form = browser.get(&form_url);
    assert!(form.body.contains("automatically generated") && !form.body.contains("name=\"new_password\""));
    let challenge = hidden(&form.body, "challenge");
    let bits: u32 = form.body.split("data-bits=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().parse().unwrap();
    let nonce = identity::crypto::captcha::solve(&challenge, bits).to_string();
    let session_before = std::fs::read_to_string(&browser.jar).unwrap();
    let fields = [("current_password", first.as_str()), ("challenge", &challenge), ("nonce", &nonce)];
    let changed = browser.post(&form_url, &form_url, &fields);
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(changed.header("clear-site-data").is_some_and(|v| v.contains("cache") && !v.contains("cookies")));
    let cleared: Vec<&str> =
        changed.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert!(cleared.iter().any(|c| c.starts_with("identity-session=;") && c.contains("Max-Age=0")), "{cleared:?}");
    let generated = common::http::shown_password(&changed.body);
    assert!(generated.len() >= 16 && generated != first, "{generated:?}");
    common::login(gw, &manager, &generated).await;
    // The session of before is over at the service: its cookie no longer opens the account.
    let cookie = session_before.lines().find(|l| l.contains("identity-session")).expect("a session cookie");
    let value = cookie.split('\t').next_back().unwrap();
    let replay = curl(&["-H", &format!("Cookie: identity-session={value}"), &gw.url("/account")]);
    assert_eq!((replay.status, replay.header("location")), (303, Some("/login?m=ended")));
}
