//! TLS for the network connectors: the `tls:` options every client connection takes, checked
//! and turned into one rustls client configuration (aws-lc-rs) when the pipeline is planned, so a
//! missing or unreadable certificate fails `weir validate`, not the first connection.
//!
//! ```yaml
//! tls:
//!   ca_file: certs/ca.pem        # authorities to trust (PEM); default: the system's
//!   cert_file: certs/client.pem  # client certificate chain for mutual TLS (PEM) ...
//!   key_file: certs/client.key   # ... and its private key (PEM)
//! ```
//!
//! A connector uses TLS when its URL says so (`mqtts://`, `amqps://`, `rediss://`, `tls://`,
//! PostgreSQL's `sslmode=require`) or a `tls:` block is given (`tls: {}` for the defaults). The
//! server's certificate is always verified, against the URL's host name or IP address: there is
//! no switch to turn verification off (trust a private authority with `ca_file` instead).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::PlanContext;

/// The `tls:` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Authorities to trust, in a PEM file (relative to the pipeline file); default: the system's.
    pub ca_file: Option<String>,
    /// Client certificate chain (PEM), for servers that authenticate clients by certificate.
    pub cert_file: Option<String>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<String>,
}

/// A checked TLS setting: the rustls configuration, and the PEM material for client libraries
/// that build their own.
#[derive(Clone)]
pub struct Tls {
    /// The client configuration (aws-lc-rs, TLS 1.2 and 1.3, certificates verified).
    pub config: Arc<rustls::ClientConfig>,
    /// `ca_file`, resolved against the pipeline's directory.
    pub ca_file: Option<PathBuf>,
    /// The contents of `ca_file`.
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate chain and key, PEM, with their resolved paths.
    pub identity: Option<Identity>,
}

/// A client certificate and its key.
#[derive(Clone)]
pub struct Identity {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
    /// Where the chain was read from.
    pub cert_file: PathBuf,
    /// Where the key was read from.
    pub key_file: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.identity.as_ref().map(|identity| &identity.cert_file))
            .finish_non_exhaustive()
    }
}

/// The TLS setting of a connection: `None` when neither the URL (`secure_scheme`) nor a `tls:`
/// block asks for TLS.
///
/// # Errors
/// Unreadable or malformed PEM files, a certificate without its key, no trusted authority.
pub fn plan_tls(
    secure_scheme: bool,
    options: Option<&Spanned<TlsOptions>>,
    ctx: &PlanContext,
) -> Result<Option<Tls>, SpecIssue> {
    if !secure_scheme && options.is_none() {
        return Ok(None);
    }
    let defaults = TlsOptions::default();
    let (tls, at) = match options {
        Some(spanned) => (&spanned.value, Some(spanned)),
        None => (&defaults, None),
    };
    let issue = |message: String| match at {
        Some(spanned) => SpecIssue::at(&spanned.referenced, message),
        None => SpecIssue::new(message),
    };
    let read = |path: &str| {
        let resolved = ctx.resolve(path);
        std::fs::read(&resolved)
            .map(|bytes| (resolved.clone(), bytes))
            .map_err(|err| issue(format!("cannot read {}: {err}", resolved.display())))
    };

    let mut roots = rustls::RootCertStore::empty();
    let (ca_file, ca_pem) = match &tls.ca_file {
        Some(path) => {
            let (resolved, pem) = read(path)?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| issue(format!("{}: not a PEM certificate file: {err}", resolved.display())))?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(issue(format!("{} holds no usable certificate", resolved.display())));
            }
            (Some(resolved), Some(pem))
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(issue(
                    "TLS needs trusted authorities: the system has none installed; name them with `tls: { ca_file: ... }`"
                        .to_owned(),
                ));
            }
            (None, None)
        }
    };

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| issue(format!("TLS: {err}")))?
        .with_root_certificates(roots);
    let (config, identity) = match (&tls.cert_file, &tls.key_file) {
        (None, None) => (builder.with_no_client_auth(), None),
        (Some(cert_file), Some(key_file)) => {
            let (cert_file, cert_pem) = read(cert_file)?;
            let (key_file, key_pem) = read(key_file)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| issue(format!("{}: not a PEM certificate file: {err}", cert_file.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|err| issue(format!("{}: not a PEM private key: {err}", key_file.display())))?;
            let config = builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| issue(format!("the client certificate and key do not go together: {err}")))?;
            (config, Some(Identity { cert_pem, key_pem, cert_file, key_file }))
        }
        _ => return Err(issue("a client certificate needs both `cert_file` and `key_file`".to_owned())),
    };
    Ok(Some(Tls { config: Arc::new(config), ca_file, ca_pem, identity }))
}
