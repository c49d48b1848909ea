//! Where outbox emails go: an SMTP relay (lettre), or `.eml` files in a folder
//! when no relay is configured (the embedded default). Failures say whether a
//! retry can help.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::{
        self,
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use tokio::io::AsyncWriteExt;

use crate::{config::Config, store::entities::email_outbox};

/// Longest wait for any one step of an SMTP conversation (connect, each reply).
const SMTP_STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a whole delivery may take. It must stay well under the dispatcher's
/// claim lease, or another replica could take the row while it is being sent.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `<outbox row id>.eml` file per message in this folder.
    Files(PathBuf),
}

/// The configuration names a transport that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// What went wrong, with the server's reply when there is one; kept in the outbox row.
    pub detail: String,
    /// Short enough for a log line: never the server's reply text, which may quote the recipient.
    pub summary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Refused for good (a 5xx reply, an address that cannot be written): a retry gets the same answer.
    Permanent,
    /// The server said "later" (4xx), or something went wrong with this one message.
    Transient,
    /// The relay cannot be reached, timed out, or refuses us as a client: every
    /// other message would fail the same way right now.
    Unreachable,
}

impl Failure {
    fn new(kind: FailureKind, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind, summary: summary.into(), detail: detail.into() }
    }

    pub fn is_permanent(&self) -> bool {
        self.kind == FailureKind::Permanent
    }

    fn from_smtp(error: &smtp::Error) -> Self {
        let detail = error.to_string();
        match error.status().map(|code| code.to_string()) {
            // Authentication refused or required (RFC 4954): the relay's settings are
            // wrong, not the message; retry until an operator fixes them.
            Some(code) if matches!(code.as_str(), "530" | "534" | "535" | "538") => {
                Self::new(FailureKind::Unreachable, format!("SMTP {code} (authentication)"), detail)
            }
            Some(code) if error.is_permanent() => Self::new(FailureKind::Permanent, format!("SMTP {code}"), detail),
            Some(code) => Self::new(FailureKind::Transient, format!("SMTP {code}"), detail),
            None if error.is_response() || error.is_client() => {
                Self::new(FailureKind::Transient, detail.clone(), detail)
            }
            // Connection refused or cut, timeouts, TLS handshakes: no reply text to hide.
            None => Self::new(FailureKind::Unreachable, detail.clone(), detail),
        }
    }
}

/// How an `smtp_url` asks to talk to the relay.
///
/// Read here rather than by lettre's `AsyncSmtpTransport::from_url`, which
/// spells STARTTLS `?tls=required`, ignores unknown or repeated parameters (a
/// typo would silently mean plain text), sends credentials over plain
/// `smtp://`, and hands an IPv6 host to the resolver with its brackets, so it
/// can never connect to one (docs/decisions.md; the test
/// `lettre_from_url_still_cannot_read_our_urls` says when that changes).
#[derive(Clone, PartialEq, Eq)]
struct SmtpSettings {
    host: String,
    port: u16,
    tls: TlsMode,
    credentials: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsMode {
    /// `smtp://`: plain text, for a relay on the same host or network.
    None,
    /// `smtp://…?tls=starttls`: upgrade with STARTTLS, and refuse to go on without it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

impl SmtpSettings {
    fn parse(raw: &str) -> Result<Self, SetupError> {
        let bad = |what: &str| SetupError(format!("`smtp_url` {what}"));
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        let mut tls_param = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls_param.is_none() => tls_param = Some(value.into_owned()),
                _ => return Err(bad(&format!("has an unknown or repeated parameter `{key}`"))),
            }
        }
        let tls = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None) => TlsMode::None,
            ("smtp", Some("starttls")) => TlsMode::StartTls,
            ("smtps", None) => TlsMode::Implicit,
            _ => return Err(bad("must be smtp://host:port, smtp://host:port?tls=starttls or smtps://host:port")),
        };
        // host_str keeps IPv6 brackets; the socket address wants the bare address.
        let host = url.host_str().ok_or_else(|| bad("has no host"))?.trim_start_matches('[').trim_end_matches(']');
        let default_port = match tls {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Implicit => 465,
        };
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| bad("has a user or password that is not UTF-8"))
        };
        let credentials = if url.username().is_empty() {
            None
        } else {
            Some((decode(url.username())?, decode(url.password().unwrap_or_default())?))
        };
        if credentials.is_some() && tls == TlsMode::None {
            // lettre would send AUTH in clear text over plain smtp://.
            return Err(bad("carries credentials without TLS: add `?tls=starttls` or use smtps://"));
        }
        Ok(Self { host: host.to_owned(), port: url.port().unwrap_or(default_port), tls, credentials })
    }

    fn build(self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SetupError> {
        let tls_parameters = || {
            TlsParameters::new(self.host.clone())
                .map_err(|e| SetupError(format!("cannot set up TLS for `smtp_url`: {e}")))
        };
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(tls_parameters()?),
            TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .tls(tls)
            .timeout(Some(SMTP_STEP_TIMEOUT));
        if let Some((user, password)) = self.credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(builder.build())
    }
}

impl Transport {
    /// SMTP when `smtp_url` is set, else `.eml` files in `outbox_dir` (created now,
    /// so that a folder that cannot be written stops the start).
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        match &config.smtp_url {
            Some(url) => Ok(Self::Smtp(SmtpSettings::parse(url)?.build()?)),
            None => {
                crate::store::create_private_dir_all(&config.outbox_dir).map_err(|e| {
                    SetupError(format!("cannot create `outbox_dir` {}: {e}", config.outbox_dir.display()))
                })?;
                Ok(Self::Files(config.outbox_dir.clone()))
            }
        }
    }

    /// Sends one outbox row as it was stored, with its own Message-ID.
    pub async fn deliver(&self, from: &Mailbox, email: &email_outbox::Model) -> Result<(), Failure> {
        let message = compose(from, email)?;
        match self {
            Self::Smtp(smtp) => match tokio::time::timeout(DELIVERY_TIMEOUT, smtp.send(message)).await {
                Ok(Ok(_response)) => Ok(()),
                Ok(Err(error)) => Err(Failure::from_smtp(&error)),
                Err(_) => Err(Failure::new(FailureKind::Unreachable, "timed out", "the SMTP conversation timed out")),
            },
            Self::Files(dir) => write_eml(dir, &email.id, &message.formatted()).await.map_err(|e| {
                let detail = format!("cannot write to {}: {e}", dir.display());
                Failure::new(FailureKind::Unreachable, detail.clone(), detail)
            }),
        }
    }
}

/// The message exactly as stored: From, To, Subject, Message-ID, and the text
/// and HTML bodies as alternatives.
pub fn compose(from: &Mailbox, email: &email_outbox::Model) -> Result<Message, Failure> {
    let to: Mailbox = email.recipient.parse().map_err(|e| {
        Failure::new(FailureKind::Permanent, "bad recipient address", format!("bad recipient address: {e}"))
    })?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.as_str())
        .message_id(Some(email.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(email.body_text.clone(), email.body_html.clone()))
        .map_err(|e| {
            Failure::new(FailureKind::Permanent, "message cannot be built", format!("message cannot be built: {e}"))
        })
}

/// Writes `<id>.eml` whole or not at all: a temporary name, flushed to disk,
/// then renamed, so a reader never sees half a message and a redelivery
/// replaces the file instead of adding one.
async fn write_eml(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    // Row ids are UUIDs; anything else must not become a path.
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "outbox id is not a file name"));
    }
    let folder = dir.to_owned();
    tokio::task::spawn_blocking(move || crate::store::create_private_dir_all(&folder)).await??;
    let temporary = dir.join(format!(".{id}.eml.tmp"));
    // Messages carry live one-time links: readable by the service's user only.
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&temporary).await?;
    #[cfg(unix)]
    {
        // A leftover of an earlier version keeps its mode when reopened.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).await?;
    }
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temporary, dir.join(format!("{id}.eml"))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> SmtpSettings {
        SmtpSettings::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn smtp_urls_choose_tls_port_and_credentials() {
        let plain = settings("smtp://127.0.0.1:2525");
        assert_eq!((plain.host.as_str(), plain.port, plain.tls), ("127.0.0.1", 2525, TlsMode::None));
        assert!(plain.credentials.is_none());

        let starttls = settings("smtp://mail.example.com?tls=starttls");
        assert_eq!((starttls.port, starttls.tls), (587, TlsMode::StartTls));

        let implicit = settings("smtps://apikey:p%40ss%2Fw0rd@mail.example.com");
        assert_eq!((implicit.port, implicit.tls), (465, TlsMode::Implicit));
        assert_eq!(implicit.credentials, Some(("apikey".to_owned(), "p@ss/w0rd".to_owned())));

        assert_eq!(settings("smtp://[::1]:25").host, "::1");
    }

    #[test]
    fn unknown_smtp_url_forms_are_refused_by_key() {
        for url in [
            "http://mail.example.com",
            "smtp://h?tls=required",
            "smtps://h?tls=starttls",
            "smtp://h?x=1",
            "smtp://user:pw@h:587",
        ] {
            let error = SmtpSettings::parse(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("`smtp_url`"), "{url}: {error}");
        }
    }

    #[test]
    fn credentials_that_are_not_utf8_are_refused() {
        let error = SmtpSettings::parse("smtps://user:%FF@mail.example.com").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("`smtp_url`") && e.contains("not UTF-8")));
        let decoded = settings("smtps://%C3%A9l%C3%A8ve:a%25b@mail.example.com").credentials;
        assert_eq!(decoded, Some(("élève".to_owned(), "a%b".to_owned())));
    }

    /// Why `SmtpSettings` reads the URL and not lettre: when this fails,
    /// lettre's `from_url` may have learnt what it lacked.
    #[test]
    fn lettre_from_url_still_cannot_read_our_urls() {
        let lettre = |url: &str| {
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map(|b| format!("{:?}", b.build::<Tokio1Executor>()))
        };
        assert!(lettre("smtp://mail.example.com?tls=starttls").is_err(), "our spelling of STARTTLS");
        for ipv6 in ["smtp://[::1]:25", "smtps://[::1]:465"] {
            let transport = lettre(ipv6).unwrap_or_default();
            assert!(transport.contains("server: \"[::1]\""), "the resolver is given the brackets: {transport}");
        }
        let clear_text = lettre("smtp://user:pw@mail.example.com:25").unwrap_or_default();
        assert!(clear_text.contains("Some(Credentials)") && clear_text.contains("tls: None"), "{clear_text}");
    }

    #[test]
    fn smtp_transports_build_for_every_mode() {
        for url in ["smtp://127.0.0.1:2525", "smtp://u:p@mail.example.com?tls=starttls", "smtps://mail.example.com"] {
            assert!(settings(url).build().is_ok(), "{url}");
        }
    }

    fn row() -> email_outbox::Model {
        email_outbox::Model {
            id: "0190a0a0-0000-7000-8000-000000000001".to_owned(),
            message_id: "<0190a0a0-0000-7000-8000-000000000001@id.example.com>".to_owned(),
            kind: "account_locked".to_owned(),
            user_id: None,
            recipient: "someone@example.com".to_owned(),
            subject: "Your account was locked".to_owned(),
            body_text: "Text body".to_owned(),
            body_html: "<p>HTML body</p>".to_owned(),
            created_at: 0,
            next_attempt_at: 0,
            attempts: 0,
            sent_at: None,
            failed_at: None,
            last_error: None,
            data_key_id: None,
        }
    }

    #[test]
    fn messages_keep_the_stored_message_id_and_both_bodies() {
        let from: Mailbox = "Identity <identity@id.example.com>".parse().unwrap();
        let raw = String::from_utf8(compose(&from, &row()).unwrap().formatted()).unwrap();
        for expected in [
            "Message-ID: <0190a0a0-0000-7000-8000-000000000001@id.example.com>",
            "To: someone@example.com",
            "Subject: Your account was locked",
            "multipart/alternative",
            "text/plain",
            "text/html",
        ] {
            assert!(raw.contains(expected), "{expected} missing from\n{raw}");
        }
    }

    #[test]
    fn a_recipient_that_is_not_an_address_fails_for_good() {
        let from: Mailbox = "identity@id.example.com".parse().unwrap();
        let failure = compose(&from, &email_outbox::Model { recipient: "not an address".to_owned(), ..row() });
        assert!(failure.err().is_some_and(|f| f.is_permanent()));
    }

    #[tokio::test]
    async fn files_are_named_after_the_row_and_replaced_on_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let transport = Transport::Files(dir.path().join("outbox"));
        let from: Mailbox = "identity@id.example.com".parse().unwrap();
        transport.deliver(&from, &row()).await.unwrap();
        transport.deliver(&from, &row()).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["0190a0a0-0000-7000-8000-000000000001.eml"]);
    }
}
