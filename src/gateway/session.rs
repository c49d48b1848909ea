//! The pages' cookies: the browser session, the second-factor step between
//! the password and the session, and the anti-forgery token of every form.
//!
//! Each is sealed (AES-256-GCM, the `cookie` crate's private jar) under keys
//! every replica shares, so the gateway keeps no state: any replica serves any
//! request. The session cookie carries the service's own access and refresh
//! tokens; what a session is, and whether it still stands, stays the service's
//! business (`Auth.Refresh`, `Auth.Logout`, `ValidateToken`).

use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, CookieJar, Key, SameSite};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use subtle::ConstantTimeEq;

use crate::{config::GatewayConfig, crypto::random};

pub const SESSION: &str = "identity-session";
pub const CHALLENGE: &str = "identity-challenge";
pub const CSRF: &str = "identity-csrf";

/// How long a person has between the password and the second factor: the
/// service's challenge lives 5 minutes and says so itself; this only bounds
/// the cookie.
const CHALLENGE_COOKIE_SECS: i64 = 10 * 60;
/// The session cookie is rewritten at most this often to move its idle clock.
const SEEN_GRANULARITY_SECS: i64 = 60;

/// A signed-in browser: the service's tokens and the two clocks of its lifetime.
#[derive(Clone, Serialize, Deserialize)]
pub struct BrowserSession {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds.
    pub access_expires_at: i64,
    pub signed_in_at: i64,
    pub seen_at: i64,
    pub user_login: String,
    /// What the navigation offers (`Users.GetCapabilities`), asked once per
    /// access token: a changed role shows in the menu by the next refresh,
    /// and the pages themselves follow the service at every call.
    #[serde(default)]
    pub nav: Option<Nav>,
}

/// The sections of the navigation beyond the person's own account.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
pub struct Nav {
    pub users: bool,
    pub audit: bool,
}

impl BrowserSession {
    /// Why this session may no longer be used at `now`, if it may not.
    pub fn ended(&self, now: i64, config: &GatewayConfig) -> bool {
        now - self.seen_at > to_i64(config.session_idle_secs)
            || now - self.signed_in_at > to_i64(config.session_absolute_secs)
    }

    /// The access token is about to expire: refresh it before using it.
    pub fn needs_refresh(&self, now: i64) -> bool {
        self.access_expires_at - now < 30
    }

    /// Whether the idle clock should be written back.
    pub fn stale_seen(&self, now: i64) -> bool {
        now - self.seen_at >= SEEN_GRANULARITY_SECS
    }
}

/// Between the password and the session: the service's challenge.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingChallenge {
    pub challenge_id: String,
    /// True when the service asks for a new PIN (`SetNewPin`), false for a passcode.
    pub new_pin: bool,
    /// A passcode step of a user without a PIN yet: the tokencode alone.
    pub tokencode_only: bool,
    pub user_login: String,
}

/// The keys and attributes of every cookie the pages set.
pub struct Cookies {
    keys: Vec<Key>,
    /// `Secure` and a `__Host-` name: the pages are served over https.
    secure: bool,
}

impl Cookies {
    /// `keys` newest first (at least one); `secure` when browsers reach the pages over https.
    pub fn new(keys: &[Vec<u8>], secure: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "gateway.session_keys: no key");
        // `derive_from` panics below 256 bits: refuse such a key instead.
        anyhow::ensure!(keys.iter().all(|k| k.len() >= 32), "gateway.session_keys: each key needs 32 bytes or more");
        let keys = keys.iter().map(|master| Key::derive_from(master)).collect();
        Ok(Self { keys, secure })
    }

    /// From the configuration, or one random key for this process.
    pub fn from_config(config: &GatewayConfig, secure: bool) -> anyhow::Result<Self> {
        match config.session_key_bytes() {
            Some(keys) => Self::new(&keys, secure),
            None => {
                tracing::warn!(
                    "gateway.session_keys is unset: browser sessions end at a restart and fail on other replicas"
                );
                Self::new(&[random::bytes::<64>().to_vec()], secure)
            }
        }
    }

    fn name(&self, base: &str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_owned() }
    }

    /// The value of cookie `base`, opened with any of the keys.
    pub fn read<T: DeserializeOwned>(&self, headers: &HeaderMap, base: &str) -> Option<T> {
        let name = self.name(base);
        let mut jar = CookieJar::new();
        for line in headers.get_all(header::COOKIE) {
            let Ok(line) = line.to_str() else { continue };
            for cookie in Cookie::split_parse_encoded(line.to_owned()).flatten() {
                if cookie.name() == name {
                    jar.add_original(cookie);
                }
            }
        }
        self.keys.iter().find_map(|key| jar.private(key).get(&name)).and_then(|c| serde_json::from_str(c.value()).ok())
    }

    /// A `Set-Cookie` header for `value`; a session cookie when `max_age_secs` is None.
    pub fn write<T: Serialize>(&self, base: &str, value: &T, max_age_secs: Option<i64>) -> HeaderValue {
        let json = serde_json::to_string(value).expect("cookie values serialize");
        let mut builder = Cookie::build((self.name(base), json))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax);
        if let Some(secs) = max_age_secs {
            builder = builder.max_age(cookie::time::Duration::seconds(secs));
        }
        let mut jar = CookieJar::new();
        jar.private_mut(&self.keys[0]).add(builder.build());
        let sealed = jar.delta().next().expect("the cookie just added");
        HeaderValue::from_str(&sealed.encoded().to_string()).expect("an encoded cookie is a header value")
    }

    /// A `Set-Cookie` header that removes cookie `base`.
    pub fn clear(&self, base: &str) -> HeaderValue {
        let cookie = Cookie::build((self.name(base), ""))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::ZERO)
            .build();
        HeaderValue::from_str(&cookie.encoded().to_string()).expect("an encoded cookie is a header value")
    }

    pub fn write_challenge(&self, challenge: &PendingChallenge) -> HeaderValue {
        self.write(CHALLENGE, challenge, Some(CHALLENGE_COOKIE_SECS))
    }

    /// The anti-forgery token of this browser, and the cookie to set when it is new.
    pub fn csrf_token(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        match self.read::<String>(headers, CSRF) {
            Some(token) => (token, None),
            None => self.new_csrf_token(),
        }
    }

    /// A fresh anti-forgery token (at sign-in and sign-out, so none outlives a session).
    pub fn new_csrf_token(&self) -> (String, Option<HeaderValue>) {
        let token = random::token().into_exposed();
        let cookie = self.write(CSRF, &token, None);
        (token, Some(cookie))
    }

    /// Whether a form's `csrf` field matches this browser's cookie.
    pub fn check_csrf(&self, headers: &HeaderMap, submitted: &str) -> Csrf {
        match self.read::<String>(headers, CSRF) {
            None => Csrf::NoCookie,
            Some(token) if bool::from(token.as_bytes().ct_eq(submitted.as_bytes())) => Csrf::Valid,
            Some(_) => Csrf::Mismatch,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Csrf {
    Valid,
    /// The browser sent no token cookie: it refuses cookies (or the form is old).
    NoCookie,
    Mismatch,
}

fn to_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::tests::headers;

    fn cookie_header(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut map = HeaderMap::new();
        map.insert(header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        map
    }

    #[test]
    fn cookies_round_trip_sealed_and_open_with_older_keys() {
        let old = Cookies::new(&[vec![1; 32]], true).unwrap();
        let set = old.write(CSRF, &"token".to_owned(), None);
        let text = set.to_str().unwrap();
        assert!(text.starts_with("__Host-identity-csrf=") && !text.contains("token"), "sealed: {text}");
        assert!(text.contains("HttpOnly") && text.contains("Secure") && text.contains("SameSite=Lax"), "{text}");
        let rotated = Cookies::new(&[vec![2; 32], vec![1; 32]], true).unwrap();
        assert_eq!(rotated.read::<String>(&cookie_header(&set), CSRF).as_deref(), Some("token"));
        let other = Cookies::new(&[vec![3; 32]], true).unwrap();
        assert_eq!(other.read::<String>(&cookie_header(&set), CSRF), None, "another deployment's cookie");
    }

    #[test]
    fn plain_http_cookies_have_no_host_prefix() {
        let cookies = Cookies::new(&[vec![1; 32]], false).unwrap();
        let text = cookies.write(SESSION, &1, Some(5)).to_str().unwrap().to_owned();
        assert!(text.starts_with("identity-session=") && !text.contains("Secure") && text.contains("Max-Age=5"));
        assert!(cookies.clear(SESSION).to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn forms_are_checked_against_the_browsers_token() {
        let cookies = Cookies::new(&[vec![1; 32]], false).unwrap();
        let (token, set) = cookies.new_csrf_token();
        let browser = cookie_header(&set.unwrap());
        assert_eq!(cookies.check_csrf(&browser, &token), Csrf::Valid);
        assert_eq!(cookies.check_csrf(&browser, "forged"), Csrf::Mismatch);
        assert_eq!(cookies.check_csrf(&headers(&[]), &token), Csrf::NoCookie);
        let (same, none) = cookies.csrf_token(&browser);
        assert_eq!((same, none), (token, None), "an existing token is kept");
    }

    #[test]
    fn sessions_end_when_idle_or_old() {
        let config = GatewayConfig { session_idle_secs: 600, session_absolute_secs: 3600, ..GatewayConfig::default() };
        let session = BrowserSession {
            access_token: String::new(),
            refresh_token: String::new(),
            access_expires_at: 1000,
            signed_in_at: 0,
            seen_at: 0,
            user_login: String::new(),
            nav: None,
        };
        assert!(!session.ended(600, &config));
        assert!(session.ended(601, &config), "idle");
        let busy = BrowserSession { seen_at: 3590, ..session.clone() };
        assert!(!busy.ended(3600, &config) && busy.ended(3601, &config), "absolute");
        assert!(session.needs_refresh(971) && !session.needs_refresh(969));
        assert!(session.stale_seen(60) && !session.stale_seen(59));
    }
}
