//! `pbx-host vendor`: what a plugin vendor runs to sign a release. Offline:
//! no host is involved; the host only verifies (`runtime::signature`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use sha2::{Digest, Sha256};

use crate::runtime::signature;

use super::out::outln;

#[derive(Subcommand)]
pub enum VendorCommand {
    /// Make a signing key: the private key goes to --out (keep it secret;
    /// the file is readable by its owner only), the public key is printed
    /// for operators to trust.
    Keygen {
        /// Where to write the private key (PEM); an existing file is kept.
        #[arg(long)]
        out: PathBuf,
        /// The key id operators will see and trust, e.g. acme-2026.
        #[arg(long)]
        key_id: String,
    },
    /// Sign a finished plugin file, replacing any earlier signature.
    Sign {
        /// The component (.wasm).
        file: PathBuf,
        /// The private key file (from `vendor keygen`, or an Ed25519 PKCS#8
        /// PEM from openssl).
        #[arg(long)]
        key: PathBuf,
        /// The key id operators trust it under.
        #[arg(long)]
        key_id: String,
        /// Where to write the signed file (default: sign FILE in place).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(command: VendorCommand) -> anyhow::Result<()> {
    match command {
        VendorCommand::Keygen { out, key_id } => keygen(&out, &key_id),
        VendorCommand::Sign {
            file,
            key,
            key_id,
            out,
        } => sign(&file, &key, &key_id, out.as_deref()),
    }
}

fn keygen(out: &Path, key_id: &str) -> anyhow::Result<()> {
    signature::check_key_id(key_id)?;
    let (pem, public) = signature::generate_key()?;
    let mut file = private_file(out)?;
    if let Err(e) = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // No half-written key is left behind to be mistaken for a good one.
        let _ = std::fs::remove_file(out);
        anyhow::bail!("cannot write the key to {}: {e}", out.display());
    }
    outln!("Private key written to {} (keep it secret).", out.display());
    outln!("Public key: {public}");
    outln!("Operators trust it with: --trusted-key {key_id}={public}");
    Ok(())
}

/// A new file only its owner can read; an existing file is never replaced,
/// so a key cannot be lost to a repeated command.
fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists; choose another --out, or remove the old key if you mean to replace it",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot create {}: {e}", path.display()),
    })
}

fn sign(file: &Path, key: &Path, key_id: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let pem =
        std::fs::read(key).with_context(|| format!("cannot read the key {}", key.display()))?;
    let key_pair = signature::key_from_pem(&pem)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let signed = signature::sign_file(&bytes, key_id, &key_pair)?;
    let out = out.unwrap_or(file);
    crate::files::write_atomically(out, &signed)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    outln!("Signed {} with key {key_id}.", out.display());
    outln!("SHA-256: {}", hex::encode(Sha256::digest(&signed)));
    outln!(
        "Operators trust the key with: --trusted-key {key_id}={}",
        signature::public_key(&key_pair)
    );
    Ok(())
}
