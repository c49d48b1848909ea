//! The Users section, driven in real headless Chromium as a Manager, a Unit
//! Manager and a Reader would: finding a forgotten username, resetting a
//! password by email (the email reaches a real SMTP server and its link
//! works), unlocking a locked account, assigning a token the user then
//! enrols with; a Unit Manager's unit and nothing else; no Users section for
//! a Reader; a forged post for someone out of reach refused by the service.
//! Every page is checked by axe-core at 1280 and 360 px (`pages::Looker`).

use crate::common;
use crate::pages::{Looker, await_path, browse, fill, press, sign_in, tools};

use std::time::Duration;

use common::{
    Backend, MEMBER_PASSWORD, bearer,
    http::{Browser, gateway_server, start_gateway},
    login_session, member,
    second_factor::token_from_uri,
    smtp::SmtpSink,
    tenant, try_login, users_client,
};
use identity::pb::{self, Role};

on_both_backends!(
    a_manager_finds_resets_unlocks_and_enrols_users,
    a_unit_manager_sees_and_resets_only_their_unit_and_forged_posts_change_nothing,
    a_reader_sees_no_users_section,
    a_manager_creates_units_and_users_deletes_and_reads_the_audit_log,
);

/// The `/activate/<token>` link of a raw message (quoted-printable soft breaks undone).
fn link_in(raw: &str) -> Option<String> {
    let body = raw.replace("=\r\n", "").replace("=\n", "");
    body.contains("/activate/").then(|| common::link_token(&body))
}

async fn status_of(gw: &common::TestServer, manager: &str, login: &str) -> pb::UserStatus {
    let request = bearer(pb::GetUserRequest { user_login: login.to_owned(), ..Default::default() }, manager);
    users_client(gw).await.get_user(request).await.unwrap().into_inner().user.unwrap().status()
}

async fn a_manager_finds_resets_unlocks_and_enrols_users(backend: Backend) {
    if !tools() {
        return;
    }
    let sink = SmtpSink::start();
    let smtp = sink.url();
    let gw = start_gateway(backend, move |mut config| {
        config.smtp_url = Some(smtp);
        config.mail.poll_interval_ms = 100;
        config
    });
    let t = tenant(&gw);
    let manager = login_session(&gw, &t.manager_login, &t.manager_password).await;
    let forgetful = format!("{}_forgetful", t.prefix);
    let locked = format!("{}_locked", t.prefix);
    let enrolee = format!("{}_enrolee", t.prefix);
    for login in [&forgetful, &locked, &enrolee] {
        member(&gw, &manager, login, Role::Reader, "").await;
    }
    for _ in 0..5 {
        assert!(try_login(&gw, &locked, "not the password").await.is_err());
    }
    assert_eq!(status_of(&gw, &manager, &locked).await, pb::UserStatus::Inactive, "locked out");
    let base = gw.url("");
    let (mgr, pw, who) = (t.manager_login.clone(), t.manager_password.clone(), forgetful.clone());
    // The person remembers only their email address.
    browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "user-pages-manager");
        sign_in(&b, &base, &mgr, &pw);
        await_path(&b, "/account");
        press(&b, "#nav-users");
        await_path(&b, "/users");
        looker.look("users");
        fill(&b, "#q", &format!("{who}@example"));
        press(&b, "#search");
        await_path(&b, "/users");
        let table = b.text(&b.find("#users"));
        assert!(table.contains(&who) && !table.contains(&mgr), "{table}");
        press(&b, "#users td.login a");
        await_path(&b, &format!("/users/u/{who}"));
        assert_eq!(b.text(&b.find("#user-login")), who, "the username, prominent");
        assert!(b.text(&b.find("#trail")).contains("user.create"), "the user's audit trail");
        looker.look("user");
        press(&b, "#change-password");
        await_path(&b, "/reset");
        looker.look("reset-confirm");
        press(&b, "#confirm");
        await_path(&b, "/users/reset");
        assert!(b.text(&b.find("#outcome")).starts_with("SUCCESS"), "{}", b.text(&b.find("#outcome")));
        assert!(b.text(&b.find("#results")).contains("emailed"));
        looker.look("reset-results");
    })
    .await;
    // The email reaches the SMTP server; its link shows the new password once.
    // The first link to the address was the welcome; the reset's comes next.
    let to = format!("{forgetful}@example.com");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let link = loop {
        let links: Vec<String> =
            sink.messages().iter().filter(|m| m.contains(&to)).filter_map(|m| link_in(m)).collect();
        if links.len() >= 2 {
            break links.last().cloned().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no reset email reached the SMTP server: {links:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let base = gw.url("");
    let (mgr, pw, who, lk, en) =
        (t.manager_login.clone(), t.manager_password.clone(), forgetful.clone(), locked.clone(), enrolee.clone());
    let (revealed, otpauth) = browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "user-pages-manager-2");
        b.goto(&format!("{base}/activate/{link}"));
        assert!(b.source().contains(&who));
        press(&b, "#redeem");
        let revealed = b.text(&b.find("#password"));

        sign_in(&b, &base, &mgr, &pw);
        await_path(&b, "/account");
        b.goto(&format!("{base}/users?status=USER_STATUS_INACTIVE"));
        assert!(b.text(&b.find("#users")).contains(&lk), "the locked user is listed as Inactive");
        b.goto(&format!("{base}/users/u/{lk}"));
        assert_eq!(b.text(&b.find("#user-status")), "Inactive");
        fill(&b, "#reason", "called the help desk");
        press(&b, "#activate");
        await_path(&b, &format!("/users/u/{lk}"));
        assert!(b.text(&b.find("#notice")).contains("Active"));
        assert_eq!(b.text(&b.find("#user-status")), "Active");
        looker.look("user-activated");

        b.goto(&format!("{base}/users/u/{en}"));
        press(&b, "#assign-token");
        await_path(&b, "/token");
        looker.look("token-confirm");
        press(&b, "#confirm");
        let otpauth = b.text(&b.find("#otpauth"));
        assert!(b.source().contains("<svg"), "the QR code");
        looker.look("token-assigned");
        b.goto(&format!("{base}/users/u/{en}"));
        assert!(!b.source().contains("otpauth://"), "shown once, never again");
        press(&b, "#sign-out");

        // The unlocked user signs in.
        sign_in(&b, &base, &lk, MEMBER_PASSWORD);
        await_path(&b, "/account");
        press(&b, "#sign-out");
        (revealed, otpauth)
    })
    .await;
    common::login(&gw, &forgetful, &revealed).await;
    // The user enrols with the token the Manager was shown: tokencode, then a new PIN.
    let token = token_from_uri(&otpauth);
    let base = gw.url("");
    browse(move || {
        let b = Browser::start();
        sign_in(&b, &base, &enrolee, MEMBER_PASSWORD);
        await_path(&b, "/login/securid");
        fill(&b, "#passcode", &token.code(0));
        press(&b, "#submit-passcode");
        await_path(&b, "/login/securid");
        fill(&b, "#pin", "4826");
        fill(&b, "#confirm_pin", "4826");
        press(&b, "#set-pin");
        await_path(&b, "/account");
        assert!(b.text(&b.find("#who")).contains("Assigned"));
    })
    .await;
}

async fn a_unit_manager_sees_and_resets_only_their_unit_and_forged_posts_change_nothing(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let manager = login_session(gw, &t.manager_login, &t.manager_password).await;
    let (north, south) = (format!("{} North", t.prefix), format!("{} South", t.prefix));
    for name in [&north, &south] {
        let request = bearer(pb::CreateBusinessUnitRequest { name: name.clone() }, &manager);
        users_client(gw).await.create_business_unit(request).await.expect("a unit");
    }
    let boss = format!("{}_north_um", t.prefix);
    let mine = format!("{}_north_reader", t.prefix);
    let theirs = format!("{}_south_reader", t.prefix);
    member(gw, &manager, &boss, Role::UnitManager, &north).await;
    member(gw, &manager, &mine, Role::Reader, &north).await;
    member(gw, &manager, &theirs, Role::Reader, &south).await;
    let base = gw.url("");
    let (b_login, m_login, t_login, mgr) = (boss.clone(), mine.clone(), theirs.clone(), t.manager_login.clone());
    let revealed = browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "user-pages-unit-manager");
        sign_in(&b, &base, &b_login, MEMBER_PASSWORD);
        await_path(&b, "/account");
        b.find("#nav-users");
        assert!(!b.source().contains("id=\"nav-audit\""), "a Unit Manager does not read the audit log");
        press(&b, "#nav-users");
        await_path(&b, "/users");
        let table = b.text(&b.find("#users"));
        assert!(table.contains(&m_login), "{table}");
        assert!(!table.contains(&t_login) && !table.contains(&mgr), "only the unit: {table}");
        assert!(!b.source().contains("id=\"new-unit\""));
        looker.look("unit-users");
        b.goto(&format!("{base}/users/u/{b_login}"));
        assert!(!b.source().contains("id=\"change-password\""), "no action on oneself is offered");
        b.goto(&format!("{base}/users"));
        let pick = b.find(&format!("input[value=\"{m_login}\"]"));
        b.click(&pick);
        press(&b, "#reset-selected");
        await_path(&b, "/users/reset");
        assert!(b.text(&b.find("#question")).contains(&m_login));
        press(&b, "#delivery-show");
        press(&b, "#confirm");
        assert!(b.text(&b.find("#outcome")).starts_with("SUCCESS"));
        let revealed = b.text(&b.find("#results output.secret"));
        looker.look("unit-reset-shown");

        // Forged: the Unit Manager's own session and token, posted for a user of another unit.
        let forge = |action: &str, fields: &[(&str, &str)]| {
            b.goto(&format!("{base}/users"));
            let script = format!(
                "const f = document.createElement('form'); f.method = 'post'; f.action = {action:?};
                 const add = (n, v) => {{ const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); }};
                 add('csrf', document.querySelector('input[name=csrf]').value);
                 {} document.body.appendChild(f); f.submit(); return true;",
                fields.iter().map(|(n, v)| format!("add({n:?}, {v:?});")).collect::<String>()
            );
            b.execute(&script, serde_json::json!([]));
            std::thread::sleep(Duration::from_millis(300));
            b.find("h1");
        };
        forge(&format!("/users/u/{t_login}/status"), &[("status", "USER_STATUS_INACTIVE")]);
        let said = b.text(&b.find("#message"));
        assert!(said.contains("refused") && said.contains(&t_login), "{said}");
        looker.look("forged-refused");
        forge(&format!("/users/u/{t_login}/delete"), &[]);
        assert!(b.text(&b.find("#message")).contains("refused"));
        forge(&format!("/users/u/{t_login}"), &[("email", "forged@example.com"), ("role", "ROLE_READER")]);
        assert!(b.text(&b.find("#message")).contains("refused"));
        forge("/users/reset", &[("login", &t_login), ("scope", "selected"), ("step", "do"), ("delivery", "show")]);
        let outcome = b.text(&b.find("#outcome"));
        assert!(outcome.starts_with("WARNING"), "{outcome}");
        assert!(b.text(&b.find("#results")).contains("You may not reset this user's password"));
        assert!(!b.source().contains("class=\"secret\""), "no password for the forged target");
        revealed
    })
    .await;
    common::login(gw, &mine, &revealed).await;
    let request = bearer(pb::GetUserRequest { user_login: theirs.clone(), ..Default::default() }, &manager);
    let user = users_client(gw).await.get_user(request).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.status(), pb::UserStatus::Active, "the forged posts changed nothing");
    assert_eq!(user.email, format!("{theirs}@example.com"));
    common::login(gw, &theirs, MEMBER_PASSWORD).await;
}

async fn a_reader_sees_no_users_section(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let manager = login_session(gw, &t.manager_login, &t.manager_password).await;
    let reader = format!("{}_reader", t.prefix);
    let reader_token = member(gw, &manager, &reader, Role::Reader, "").await;
    // The service says so; the pages only follow.
    let allowed =
        users_client(gw).await.get_capabilities(bearer(pb::GetCapabilitiesRequest {}, &reader_token)).await.unwrap();
    let allowed = allowed.into_inner();
    assert!(!allowed.administers_users && !allowed.reads_audit_log && allowed.creatable_roles.is_empty());
    let request = bearer(pb::GetUserActionsRequest { user_login: reader.clone(), ..Default::default() }, &manager);
    let answer = users_client(gw).await.get_user_actions(request).await.unwrap().into_inner();
    let actions = answer.actions;
    let by_id = pb::GetUserActionsRequest { user_id: answer.user.unwrap().id, ..Default::default() };
    let same = users_client(gw).await.get_user_actions(bearer(by_id, &manager)).await.unwrap().into_inner();
    assert_eq!(same.actions, actions, "by id as by login");
    assert!(
        actions.contains(&(pb::UserAction::ResetPassword as i32)) && actions.contains(&(pb::UserAction::Delete as i32))
    );
    let request =
        bearer(pb::GetUserActionsRequest { user_login: t.manager_login.clone(), ..Default::default() }, &reader_token);
    let refused = users_client(gw).await.get_user_actions(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let base = gw.url("");
    browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "user-pages-reader");
        sign_in(&b, &base, &reader, MEMBER_PASSWORD);
        await_path(&b, "/account");
        let page = b.source();
        assert!(!page.contains("nav-users") && !page.contains("nav-audit"), "no Users section");
        b.goto(&format!("{base}/users"));
        assert!(b.text(&b.find("#message")).contains("does not administer"));
        assert!(!b.source().contains("id=\"users\""));
        looker.look("reader-refused");
        b.goto(&format!("{base}/audit"));
        assert!(b.text(&b.find("#message")).contains("refused"));
    })
    .await;
}

async fn a_manager_creates_units_and_users_deletes_and_reads_the_audit_log(backend: Backend) {
    if !tools() {
        return;
    }
    let gw = gateway_server(backend);
    let t = tenant(gw);
    let base = gw.url("");
    let unit = format!("{} West", t.prefix);
    let (mgr, pw, prefix) = (t.manager_login.clone(), t.manager_password.clone(), t.prefix.clone());
    let generated = browse(move || {
        let b = Browser::start();
        let looker = Looker::new(&b, "user-pages-create");
        sign_in(&b, &base, &mgr, &pw);
        await_path(&b, "/account");
        b.goto(&format!("{base}/users/units"));
        fill(&b, "#name", &unit);
        press(&b, "#create-unit");
        assert!(b.text(&b.find("#notice")).contains(&unit));
        assert!(b.text(&b.find("#unit-list")).contains(&unit));
        looker.look("units");

        b.goto(&format!("{base}/users/new"));
        looker.look("new-user");
        fill(&b, "#email", &format!("{prefix}.newcomer@example.com"));
        fill(&b, "#last_name", "Newcomer");
        let script = format!("document.querySelector('#business_unit').value = {unit:?}; return true;");
        b.execute(&script, serde_json::json!([]));
        press(&b, "#create");
        let said = b.text(&b.find("#message"));
        assert!(said.contains("The new user's login is"), "{said}");
        let generated = b.text(&b.find("#next")).trim_start_matches("Open ").to_owned();
        assert!(generated.starts_with(&prefix), "a generated login: {generated}");
        looker.look("user-created");
        press(&b, "#next");
        await_path(&b, &format!("/users/u/{generated}"));
        assert!(b.source().contains(&unit));

        press(&b, "#delete");
        await_path(&b, "/delete");
        assert!(b.text(&b.find("#question")).contains(&generated));
        looker.look("delete-confirm");
        press(&b, "#confirm");
        assert!(b.text(&b.find("#message")).contains("is deleted"));

        press(&b, "#nav-audit");
        await_path(&b, "/audit");
        fill(&b, "#user", &generated);
        fill(&b, "#event", "user.delete");
        press(&b, "#filter");
        await_path(&b, "/audit");
        let events = b.text(&b.find("#events-table"));
        assert!(events.contains("user.delete") && !events.contains("user.create"), "{events}");
        looker.look("audit");
        generated
    })
    .await;
    let manager = login_session(gw, &t.manager_login, &t.manager_password).await;
    let request = bearer(pb::GetUserRequest { user_login: generated.clone(), ..Default::default() }, &manager);
    let user = users_client(gw).await.get_user(request).await.unwrap().into_inner().user.unwrap();
    assert_eq!(user.status(), pb::UserStatus::Deleted, "{generated}");
}
