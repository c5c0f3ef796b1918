//! The federation listener's TLS certificate: the configured PEM pair, or (for experiments) a
//! self-signed one generated with `rcgen` on first start and kept in the data dir.
use std::path::PathBuf;

use anyhow::Context;

use crate::config::FederationConfig;

/// Paths of the certificate chain and private key to serve, generating a self-signed pair for
/// `host` when none is configured.
pub fn cert_paths(cfg: &FederationConfig, host: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    match (&cfg.tls_cert_path, &cfg.tls_key_path) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        (None, None) => {
            let cert = cfg.data_dir.join("tls.crt");
            let key = cfg.data_dir.join("tls.key");
            if !(cert.exists() && key.exists()) {
                generate_self_signed(host, &cert, &key)?;
            }
            Ok((cert, key))
        }
        _ => anyhow::bail!("federation.tls_cert_path and federation.tls_key_path go together"),
    }
}

fn generate_self_signed(host: &str, cert_path: &std::path::Path, key_path: &std::path::Path) -> anyhow::Result<()> {
    let mut names = vec![host.to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()];
    names.dedup();
    let certified = rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
    if let Some(dir) = cert_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(key_path);
    super::signing_key::write_private(key_path, certified.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    tracing::warn!(cert = %cert_path.display(), "generated a self-signed federation certificate (peers must accept invalid certificates)");
    Ok(())
}

/// rustls needs one process-wide crypto provider; we build with `ring` only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
