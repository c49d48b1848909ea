//! The look and words of the pages: templates, stylesheet, script and the
//! message catalogue, built in and overridable from a theme directory (the way
//! Keycloak themes work). The Content-Security-Policy names the hashes of the
//! stylesheet and script actually served, so a theme keeps the policy strict.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use axum::http::HeaderValue;
use base64::Engine;
use figment::{
    Figment,
    providers::{Format, Toml},
};
use minijinja::{Environment, Value};
use sha2::{Digest, Sha256};

/// Every template, by the name pages render it under.
const TEMPLATES: [(&str, &str); 21] = [
    ("base.html", include_str!("templates/base.html")),
    ("forms.html", include_str!("templates/forms.html")),
    ("activate.html", include_str!("templates/activate.html")),
    ("forgot.html", include_str!("templates/forgot.html")),
    ("status.html", include_str!("templates/status.html")),
    ("message.html", include_str!("templates/message.html")),
    ("login.html", include_str!("templates/login.html")),
    ("securid.html", include_str!("templates/securid.html")),
    ("account.html", include_str!("templates/account.html")),
    ("change_password.html", include_str!("templates/change_password.html")),
    ("change_login.html", include_str!("templates/change_login.html")),
    ("platform.html", include_str!("templates/platform.html")),
    ("signed_out.html", include_str!("templates/signed_out.html")),
    ("users.html", include_str!("templates/users.html")),
    ("user.html", include_str!("templates/user.html")),
    ("confirm.html", include_str!("templates/confirm.html")),
    ("reset_results.html", include_str!("templates/reset_results.html")),
    ("token_assigned.html", include_str!("templates/token_assigned.html")),
    ("user_new.html", include_str!("templates/user_new.html")),
    ("units.html", include_str!("templates/units.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

const CSS: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/page.js");
/// Every sentence a person reads, in English: a translation is a copy of this file.
const MESSAGES: &str = include_str!("messages.toml");

pub struct Theme {
    env: Environment<'static>,
    messages: BTreeMap<String, String>,
    csp: HeaderValue,
}

impl Theme {
    /// The built-in theme, with whatever `dir` overrides.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let read = |name: &str| -> anyhow::Result<Option<String>> {
            let Some(dir) = dir else { return Ok(None) };
            let path: PathBuf = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error).with_context(|| format!("cannot read the theme file {}", path.display())),
            }
        };
        let mut env = Environment::new();
        for (name, builtin) in TEMPLATES {
            let source = read(&format!("templates/{name}"))?.unwrap_or_else(|| builtin.to_owned());
            env.add_template_owned(name, source).with_context(|| format!("template {name}"))?;
        }
        let css = read("style.css")?.unwrap_or_else(|| CSS.to_owned());
        let mut messages = Figment::from(Toml::string(MESSAGES));
        if let Some(dir) = dir {
            messages = messages.merge(Toml::file(dir.join("messages.toml")));
        }
        let messages: BTreeMap<String, String> = messages.extract().context("the message catalogue (messages.toml)")?;
        let csp = HeaderValue::from_str(&format!(
            "default-src 'none'; script-src '{}'; style-src '{}'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
            csp_hash(SCRIPT),
            csp_hash(&css)
        ))
        .context("the Content-Security-Policy")?;
        // Inserted verbatim: the Content-Security-Policy names their hashes.
        env.add_global("css", Value::from_safe_string(css));
        env.add_global("script", Value::from_safe_string(SCRIPT.to_owned()));
        env.add_global("t", Value::from_serialize(&messages));
        Ok(Self { env, messages, csp })
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }

    /// The catalogue's sentence under `key`; the key itself if a theme lost it,
    /// so that a gap shows instead of failing the page.
    pub fn text(&self, key: &str) -> String {
        self.messages.get(key).cloned().unwrap_or_else(|| key.to_owned())
    }

    /// `text` with each `{name}` replaced by its value.
    pub fn text_with(&self, key: &str, values: &[(&str, &str)]) -> String {
        values.iter().fold(self.text(key), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
    }

    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }
}

fn csp_hash(source: &str) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(source.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_served_stylesheet_and_script() {
        let theme = Theme::load(None).unwrap();
        let csp = theme.csp().to_str().unwrap();
        assert!(csp.contains(&csp_hash(CSS)) && csp.contains(&csp_hash(SCRIPT)), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }

    #[test]
    fn a_theme_overrides_templates_styles_and_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/message.html"), "<p>{{ t.signin_title }}: {{ message }}</p>")
            .unwrap();
        std::fs::write(dir.path().join("style.css"), "body{color:red}").unwrap();
        std::fs::write(dir.path().join("messages.toml"), "signin_title = \"Anmelden\"\n").unwrap();
        let theme = Theme::load(Some(dir.path())).unwrap();
        let html = theme.render("message.html", minijinja::context! { message => "x" }).unwrap();
        assert_eq!(html, "<p>Anmelden: x</p>");
        assert_eq!(theme.text("signin_title"), "Anmelden");
        assert_eq!(theme.text("invalid_credentials"), "Invalid credentials", "untranslated keys keep English");
        assert!(theme.csp().to_str().unwrap().contains(&csp_hash("body{color:red}")));
    }

    #[test]
    fn every_message_the_templates_and_pages_name_exists() {
        let theme = Theme::load(None).unwrap();
        let named = |source: &str, marker: &str, end: &[char]| -> Vec<String> {
            source
                .match_indices(marker)
                .filter(|(at, _)| !source[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
                .map(|(at, _)| source[at + marker.len()..].chars().take_while(|c| !end.contains(c)).collect())
                .collect()
        };
        let mut keys: Vec<String> = Vec::new();
        for (_, source) in TEMPLATES {
            keys.extend(named(source, "t.", &[' ', '}', ')', '|', ',', '\n']));
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gateway");
        for file in [
            "pages/mod.rs",
            "pages/links.rs",
            "pages/forgot.rs",
            "pages/signin.rs",
            "pages/account.rs",
            "pages/info.rs",
            "pages/users.rs",
            "pages/users_actions.rs",
        ] {
            let source = std::fs::read_to_string(dir.join(file)).unwrap();
            for marker in ["text(\"", "text_with(\"", "message(state, StatusCode::NOT_FOUND, \"", "_key: &str"] {
                keys.extend(named(&source, marker, &['"']).into_iter().filter(|k| !k.contains(' ')));
            }
        }
        keys.retain(|key| {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        });
        assert!(keys.len() > 100, "the scan finds the keys: {}", keys.len());
        let missing: Vec<&String> = keys.iter().filter(|key| !theme.messages.contains_key(*key)).collect();
        assert!(missing.is_empty(), "keys missing from messages.toml: {missing:?}");
    }
}
