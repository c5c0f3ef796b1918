//! The server's ed25519 signing key (spec "Server-Server API", "Retrieving server keys"):
//! generated on first start, kept in a file, the same across restarts.
//!
//! The file uses Synapse's format, one line `ed25519 <version> <unpadded base64 seed>`, so a
//! key can move between the two servers.
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use ruma::signatures::Ed25519KeyPair;

/// PKCS#8 v1 header of an Ed25519 private key (RFC 8410 §7) before the 32-byte seed: how
/// the seed from the key file is handed to `Ed25519KeyPair::from_der`.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// Lenient base64 for seeds: padding optional, and non-zero trailing bits accepted (the
/// spec's own example seed `YJDBA9…XA1` has them).
const SEED_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The key pair from a 32-byte seed, with its version (the part after `ed25519:`).
pub fn key_pair_from_seed(seed: &[u8], version: &str) -> anyhow::Result<Ed25519KeyPair> {
    anyhow::ensure!(seed.len() == 32, "an ed25519 seed has 32 bytes, not {}", seed.len());
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(seed);
    Ed25519KeyPair::from_der(&der, version.to_owned()).map_err(|e| anyhow::anyhow!("bad ed25519 key: {e}"))
}

/// Parse one key line `ed25519 <version> <base64 seed>`.
pub fn parse_key_line(line: &str) -> anyhow::Result<Ed25519KeyPair> {
    let mut parts = line.split_whitespace();
    let (Some("ed25519"), Some(version), Some(seed), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("expected `ed25519 <version> <base64 seed>`");
    };
    anyhow::ensure!(
        !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "key version must be [a-zA-Z0-9_]"
    );
    let seed = SEED_BASE64.decode(seed).context("key seed is not base64")?;
    key_pair_from_seed(&seed, version)
}

/// Load the signing key at `path`, or create it (mode 0600) when the file does not exist.
pub fn load_or_generate(path: &Path) -> anyhow::Result<Ed25519KeyPair> {
    if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        return parse_key_line(line).with_context(|| format!("signing key {}", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let line = new_key_line();
    write_private(path, format!("{line}\n").as_bytes())?;
    let key = parse_key_line(&line)?;
    tracing::info!(path = %path.display(), key = %format!("ed25519:{}", key.version()), "generated the signing key");
    Ok(key)
}

/// A new key as its key line `ed25519 <version> <base64 seed>`.
fn new_key_line() -> String {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let version = format!("a_{}", crate::rooms::event::random_string(4));
    format!("ed25519 {version} {}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed))
}

/// The key every room event is signed with, federation on or off, so that events written
/// before federation was switched on stay valid once it is:
/// - a configured `signing_key_path`, or federation on: the key file (created if missing);
///   a server that ran with federation off and no key file writes the key it kept in the
///   database to that file, so it keeps signing with the same key;
/// - federation off and no `signing_key_path`: the key kept in the database (generated on
///   first start).
pub async fn load_event_key(
    cfg: &crate::config::FederationConfig,
    store: &crate::store::Store,
) -> anyhow::Result<Ed25519KeyPair> {
    let stored = store.server_signing_key().await.context("reading the signing key from the database")?;
    if cfg.enabled || cfg.signing_key_path.is_some() {
        let path = cfg.signing_key_path.clone().unwrap_or_else(|| cfg.data_dir.join("signing.key"));
        if let (false, Some(line)) = (path.exists(), &stored) {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            write_private(&path, format!("{line}\n").as_bytes())?;
            tracing::info!(path = %path.display(), "signing key moved from the database to its file");
        }
        return load_or_generate(&path);
    }
    let line = match stored {
        Some(line) => line,
        None => {
            let line = new_key_line();
            store.put_server_signing_key(&line).await?;
            // Two servers starting on one database at once: the first insert wins.
            store.server_signing_key().await?.unwrap_or(line)
        }
    };
    parse_key_line(&line).context("signing key in the database")
}

/// Write a secret file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::signatures::KeyPair;

    #[test]
    fn key_file_round_trip_keeps_the_key() {
        let dir = std::env::temp_dir().join(format!("seed-key-{}", crate::rooms::event::random_string(8)));
        let path = dir.join("signing.key");
        let a = load_or_generate(&path).unwrap();
        let b = load_or_generate(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.version(), b.version());
        assert_eq!(a.sign(b"x").as_bytes(), b.sign(b"x").as_bytes());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_key_lines_are_refused() {
        assert!(parse_key_line("").is_err());
        assert!(parse_key_line("ed25519 a_1 AAAA").is_err());
        assert!(parse_key_line("rsa a_1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").is_err());
        assert!(parse_key_line("ed25519 a_1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").is_ok());
    }
}
