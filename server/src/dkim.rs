//! DKIM signing of outgoing mail (RFC 6376, relaxed/relaxed), with keys per domain kept in
//! the store's key-value directory under `dkim/<domain>` (same durability as mail).
//!
//! `postlog dkim generate DOMAIN` makes a key (RSA 2048 by default, through the `openssl`
//! command, which Debian's `ca-certificates` brings; or Ed25519, RFC 8463, with ring) and
//! prints the DNS TXT record to publish. Messages queued for remote recipients are signed
//! once, when they are queued, with the key of the envelope sender's domain (on submission,
//! the authenticated user's own address); without a key for that domain, they go unsigned.
//! Signatures are made with mail-auth.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postlog_engine::Store;
use serde::{Deserialize, Serialize};

pub const KEY_PREFIX: &str = "dkim/";

/// Header fields signed, when present (RFC 6376 section 5.4.1's list of those that matter).
const SIGNED_HEADERS: [&str; 14] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Id",
];

/// One domain's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// The `p=` value of the DNS record (base64).
    pub public_key: String,
    pub created: i64,
}

impl DkimKey {
    /// The record to publish, in zone-file form (long values split into 250-octet strings).
    pub fn txt_record(&self) -> String {
        let k = if self.algorithm.starts_with("ed25519") { "ed25519" } else { "rsa" };
        let value = format!("v=DKIM1; k={k}; p={}", self.public_key);
        let chunks: Vec<String> =
            value.as_bytes().chunks(250).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
        format!("{}._domainkey.{}. IN TXT ( {} )", self.selector, self.domain, chunks.join(" "))
    }
}

/// The key of `domain`, if one was generated.
pub fn key(store: &Store, domain: &str) -> Option<DkimKey> {
    let raw = store.kv_get(&format!("{KEY_PREFIX}{}", domain.to_ascii_lowercase()))?;
    serde_json::from_slice(&raw).ok()
}

pub fn keys(store: &Store) -> Vec<DkimKey> {
    store.kv_scan(KEY_PREFIX).into_iter().filter_map(|(_, v)| serde_json::from_slice(&v).ok()).collect()
}

/// Makes a key for `domain` (replacing any: the old record must then be replaced in DNS).
pub fn generate(domain: &str, selector: &str, algorithm: &str, now: i64) -> Result<DkimKey, String> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    crate::config::validate_hostname(&domain)?;
    if selector.is_empty() || !selector.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(format!("{selector:?} is not a selector (letters, digits, '-' and '.')"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let (algorithm, private_key, public_key) = match algorithm {
        "rsa" | "rsa-sha256" => {
            let pem = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], b"")?;
            let spki = openssl(&["pkey", "-pubout", "-outform", "DER"], &pem)?;
            ("rsa-sha256", String::from_utf8(pem).map_err(|e| e.to_string())?, b64.encode(spki))
        }
        "ed25519" | "ed25519-sha256" => {
            let der = Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())?;
            let key = Ed25519Key::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
            let body: Vec<String> =
                b64.encode(&der).as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"));
            ("ed25519-sha256", pem, b64.encode(key.public_key()))
        }
        other => return Err(format!("{other:?} is not an algorithm (rsa or ed25519)")),
    };
    Ok(DkimKey {
        domain,
        selector: selector.to_string(),
        algorithm: algorithm.into(),
        private_key,
        public_key,
        created: now,
    })
}

fn openssl(args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run openssl (Debian package openssl) to make an RSA key: {e}"))?;
    child.stdin.take().expect("piped").write_all(input).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(out.stdout)
}

/// Saves `key` (replacing the domain's old one).
pub fn save(store: &Store, key: &DkimKey) -> Result<(), String> {
    let value = serde_json::to_vec(key).map_err(|e| e.to_string())?;
    store.kv_write(vec![(format!("{KEY_PREFIX}{}", key.domain), Some(value))], vec![]).map_err(|e| e.to_string())
}

pub fn delete(store: &Store, domain: &str) -> Result<bool, String> {
    let k = format!("{KEY_PREFIX}{}", domain.trim_end_matches('.').to_ascii_lowercase());
    if store.kv_get(&k).is_none() {
        return Ok(false);
    }
    store.kv_write(vec![(k, None)], vec![]).map(|()| true).map_err(|e| e.to_string())
}

/// The `DKIM-Signature:` field (CRLF-terminated) for `message` with `key`.
pub fn sign_with(key: &DkimKey, message: &[u8]) -> Result<String, String> {
    let signature = if key.algorithm.starts_with("ed25519") {
        let der = pem_body(&key.private_key)?;
        let k = Ed25519Key::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
        signer(DkimSigner::from_key(k), key).sign(message)
    } else {
        let der = pem_body(&key.private_key)?;
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(der.into());
        let k = RsaKey::<Sha256>::from_key_der(der).map_err(|e| e.to_string())?;
        signer(DkimSigner::from_key(k), key).sign(message)
    }
    .map_err(|e| e.to_string())?;
    Ok(signature.to_header())
}

fn signer<T: mail_auth::common::crypto::SigningKey>(
    s: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    key: &DkimKey,
) -> DkimSigner<T, mail_auth::dkim::Done> {
    s.domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(SIGNED_HEADERS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

fn pem_body(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| e.to_string())
}

/// Signs `message` for the sender's domain if it has a key; `None` when it has none (or the
/// key does not work, which is logged).
pub fn sign(store: &Store, sender: &str, message: &[u8]) -> Option<String> {
    let domain = sender.rsplit_once('@')?.1;
    let key = key(store, domain)?;
    match sign_with(&key, message) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(domain = %key.domain, error = %e, "dkim: signing failed; the message goes unsigned");
            None
        }
    }
}
