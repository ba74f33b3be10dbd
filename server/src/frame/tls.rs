//! The server's TLS configuration: the certificate and key from `[tls]`, or a self-signed
//! certificate generated on first start in `<data_dir>/tls/` and kept across restarts.
//!
//! rustls with the ring provider, TLS 1.2 and 1.3 (rustls' safe defaults). The same
//! [`TlsAcceptor`] serves implicit TLS (submissions, imaps, pop3s) and STARTTLS/STLS.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The directory under `data_dir` with the generated certificate.
pub const GENERATED_DIR: &str = "tls";
pub const GENERATED_CERT: &str = "cert.pem";
pub const GENERATED_KEY: &str = "key.pem";

/// Where the certificate came from (for the start-up log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertOrigin {
    /// `tls.cert` and `tls.key`.
    Configured { cert: PathBuf },
    /// The self-signed certificate in `<data_dir>/tls/`; `created` on this start.
    Generated { cert: PathBuf, created: bool },
}

impl std::fmt::Display for CertOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertOrigin::Configured { cert } => write!(f, "certificate {} (tls.cert)", cert.display()),
            CertOrigin::Generated { cert, created: true } => {
                write!(f, "self-signed certificate generated now in {} (kept for later starts)", cert.display())
            }
            CertOrigin::Generated { cert, created: false } => {
                write!(f, "self-signed certificate {} (generated on first start)", cert.display())
            }
        }
    }
}

/// The TLS side of the server.
#[derive(Clone)]
pub struct TlsSetup {
    pub acceptor: TlsAcceptor,
    pub server_config: Arc<ServerConfig>,
    pub origin: CertOrigin,
}

/// Why TLS could not be set up. Names the config key where one is at fault.
#[derive(Debug)]
pub enum TlsError {
    /// A configured or generated file could not be read or holds no usable PEM.
    Read {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refuses them.
    Unusable {
        cert: PathBuf,
        reason: String,
    },
    /// `<data_dir>/tls/cert.pem` exists without its key.
    KeyMissing {
        cert: PathBuf,
        key: PathBuf,
    },
    Generate {
        reason: String,
    },
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Read { key, path, reason } => write!(f, "key `{key}`: cannot use {}: {reason}", path.display()),
            TlsError::Unusable { cert, reason } => {
                write!(f, "the certificate {} and its key cannot be used: {reason}", cert.display())
            }
            TlsError::KeyMissing { cert, key } => write!(
                f,
                "the generated certificate {} is there but its key {} is missing; remove the certificate to \
                 generate a new pair, or set tls.cert and tls.key",
                cert.display(),
                key.display()
            ),
            TlsError::Generate { reason } => write!(f, "cannot generate a self-signed certificate: {reason}"),
            TlsError::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for TlsError {}

/// Paths of the generated certificate and key.
pub fn generated_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join(GENERATED_DIR);
    (dir.join(GENERATED_CERT), dir.join(GENERATED_KEY))
}

/// Loads the configured certificate, or loads (generating on first start) the self-signed one.
pub fn setup(config: &Config) -> Result<TlsSetup, TlsError> {
    let (cert_path, key_path, origin, cert_key, key_key) = match &config.tls {
        Some(files) => (
            files.cert.clone(),
            files.key.clone(),
            CertOrigin::Configured { cert: files.cert.clone() },
            "tls.cert",
            "tls.key",
        ),
        None => {
            let (cert, key) = generated_paths(&config.data_dir);
            let created = ensure_generated(&config.hostname, &cert, &key)?;
            (cert.clone(), key, CertOrigin::Generated { cert, created }, "data_dir", "data_dir")
        }
    };
    let read_err =
        |key: &'static str, path: &Path, reason: String| TlsError::Read { key, path: path.to_path_buf(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| read_err(cert_key, &cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(cert_key, &cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err(cert_key, &cert_path, "no CERTIFICATE in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(key_key, &key_path, e.to_string()))?;
    let server_config = server_config(certs, key).map_err(|reason| TlsError::Unusable { cert: cert_path, reason })?;
    Ok(TlsSetup { acceptor: TlsAcceptor::from(server_config.clone()), server_config, origin })
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Generates the certificate and key unless both exist. Returns whether it generated them.
/// The key is written first and the certificate last, each by rename, so a crash leaves
/// either nothing, a lone key (generated again) or both.
fn ensure_generated(hostname: &str, cert: &Path, key: &Path) -> Result<bool, TlsError> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (true, false) => return Err(TlsError::KeyMissing { cert: cert.to_path_buf(), key: key.to_path_buf() }),
        _ => {}
    }
    let gen_err = |e: rcgen::Error| TlsError::Generate { reason: e.to_string() };
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if hostname != "localhost" {
        names.insert(0, hostname.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(gen_err)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Postlog (self-signed)");
    let key_pair = rcgen::KeyPair::generate().map_err(gen_err)?;
    let certificate = params.self_signed(&key_pair).map_err(gen_err)?;
    let dir = cert.parent().expect("generated paths have a parent");
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    write_atomically(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(cert, certificate.pem().as_bytes(), 0o644)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.tmp");
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| TlsError::Write { path: p, source }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(werr(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(werr(&tmp))?;
    std::fs::rename(&tmp, path).map_err(werr(path))
}

/// TLS details of a connection, for logs and `Received:` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The IANA name, e.g. `TLS_AES_256_GCM_SHA384` or `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
    pub cipher: String,
    /// The name the client asked for (SNI), if any.
    pub server_name: Option<String>,
}

impl TlsInfo {
    pub(crate) fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            Some(v) => v.as_str().unwrap_or("TLS"),
            None => "TLS",
        };
        let cipher = match conn.negotiated_cipher_suite().and_then(|s| s.suite().as_str()) {
            // rustls spells TLS 1.3 suites TLS13_*; the IANA (and OpenSSL) name is TLS_*.
            Some(name) => match name.strip_prefix("TLS13_") {
                Some(rest) => format!("TLS_{rest}"),
                None => name.to_string(),
            },
            None => "unknown".to_string(),
        };
        TlsInfo { version, cipher, server_name: conn.server_name().map(str::to_string) }
    }

    /// The clause for a `Received:` header (RFC 8314 §4.3 asks that the TLS use be recorded):
    /// `using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384`.
    pub fn received_clause(&self) -> String {
        format!("using {} with cipher {}", self.version, self.cipher)
    }
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.cipher)
    }
}
