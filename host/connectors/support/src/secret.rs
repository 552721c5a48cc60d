//! Secrets a pipeline names by where to read them, never by value: `{ env: MQTT_PASSWORD }` or
//! `{ file: /run/secrets/mqtt }` (relative paths resolve against the pipeline file). They are read
//! when the pipeline is planned, so a missing one fails `weir validate`, and a [`Secret`] prints
//! as `***` in every `Debug` output and log.

use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::PlanContext;

/// Where a secret comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (a trailing line break is dropped).
    File(String),
}

/// A secret's value; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    /// A secret a URL carried (`scheme://user:password@host`).
    pub fn from_url(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// The value, for the client library that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Reads a secret.
///
/// # Errors
/// An unset variable or an unreadable file, named (the value never is).
pub fn read_secret(source: &Spanned<SecretSource>, ctx: &PlanContext) -> Result<Secret, SpecIssue> {
    match &source.value {
        SecretSource::Env(name) => std::env::var(name)
            .map(Secret)
            .map_err(|_| SpecIssue::at(&source.referenced, format!("the environment variable `{name}` is not set"))),
        SecretSource::File(path) => {
            let path = ctx.resolve(path);
            std::fs::read_to_string(&path)
                .map(|text| Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
                .map_err(|err| SpecIssue::at(&source.referenced, format!("cannot read {}: {err}", path.display())))
        }
    }
}

/// The `username`, `password` and `tls` options of a connection (flattened into its options;
/// flat itself, because serde does not see through a flattened struct inside a flattened one).
/// The user name and password win over those in the URL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Access {
    /// User name (or in the URL: `scheme://user@host`).
    pub username: Option<String>,
    /// Password: `{ env: NAME }` or `{ file: path }`, never the value itself.
    pub password: Option<Spanned<SecretSource>>,
    /// TLS options (`connectors::support::tls`).
    pub tls: Option<Spanned<crate::tls::TlsOptions>>,
}

impl Access {
    /// The user name and password these options name or, failing them, the URL carries
    /// (percent-decoded).
    ///
    /// # Errors
    /// An unreadable secret.
    pub fn resolve(&self, url: &url::Url, ctx: &PlanContext) -> Result<(Option<String>, Option<Secret>), SpecIssue> {
        let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
        let (username, password) = self.read(ctx)?;
        let username = username.or_else(|| (!url.username().is_empty()).then(|| decode(url.username())));
        let password = password.or_else(|| url.password().map(|password| Secret(decode(password))));
        Ok((username, password))
    }

    /// The user name and password these options name.
    ///
    /// # Errors
    /// An unreadable secret.
    pub fn read(&self, ctx: &PlanContext) -> Result<(Option<String>, Option<Secret>), SpecIssue> {
        let password = self.password.as_ref().map(|source| read_secret(source, ctx)).transpose()?;
        Ok((self.username.clone(), password))
    }
}
