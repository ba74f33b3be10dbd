//! Domains, users and aliases: who receives mail here, and who may log in.
//!
//! Everything lives in the engine's key-value directory, so it has the same durability as
//! mail (a change is acknowledged only once it is fsynced) and a running server sees what
//! `postlog user add` wrote the moment it is durable. Values are JSON.
//!
//! ```text
//!  key                         value
//!  domain/<domain>             DomainRecord  {created, users, aliases}
//!  user/<local>@<domain>       UserRecord    {address, account, password, scram_sha256, quota_bytes, created}
//!  alias/<local>@<domain>      AliasRecord   {targets, created}
//!  alias/@<domain>             AliasRecord   (the domain's catch-all)
//!  server/sasl-secret          hex of 32 random bytes (SCRAM's fake salts for unknown users)
//! ```
//!
//! Case: a domain is ASCII (an internationalized one in its `xn--` form) and kept in lower
//! case. A local part is matched without regard to case (keys hold it in lower case, so
//! `Alice@` and `alice@` are the same user and cannot both exist) but kept as typed in the
//! record, for display. The engine account of a user is named by the lower-case address.
//!
//! Invariants kept by every change (each is one atomic, compare-and-set `kv_write`):
//! - a user or alias exists only under an existing domain, whose record counts them; so
//!   deleting a domain that still has users or aliases is refused without a race;
//! - an address is a user or an alias, never both;
//! - a user record names an engine account; `user add` creates the account first and the
//!   record second, and adopts an account that a crash left without its record; `user del`
//!   deletes the account first, so a crash never leaves old mail for a future namesake. A
//!   record whose account is gone is treated as absent (and replaced by the next `user add`).
//! - the plain password is never stored: only its Argon2id PHC string and its SCRAM-SHA-256
//!   keys (RFC 5803 form).

use std::collections::HashSet;
use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{ARGON2ID_IDENT, Argon2, PasswordHash};
use postlog_engine::{AccountId, CommitError, Store};
use postlog_protocol::sasl::ScramCredentials;
use postlog_protocol::sasl::saslprep;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::account::DEFAULT_MAILBOXES;
use crate::util::now_unix;

/// How deep alias expansion goes (alias to alias to ...) before giving up.
pub const MAX_ALIAS_DEPTH: usize = 10;
/// Most recipients one address may expand to.
pub const MAX_EXPANDED_RECIPIENTS: usize = 1000;
/// Most targets one alias may have.
pub const MAX_ALIAS_TARGETS: usize = 1000;
/// Compare-and-set attempts of one change before reporting contention.
const MAX_ATTEMPTS: usize = 8;

const SASL_SECRET_KEY: &str = "server/sasl-secret";

// ---------------------------------------------------------------------------------------------
// Names

/// A domain: `sub-domain *("." sub-domain)`, `sub-domain = Let-dig [Ldh-str]` (RFC 5321
/// section 4.1.2), ASCII only (an internationalized name in its A-label form, `xn--...`),
/// labels of at most 63 and a name of at most 253 characters. Kept in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn parse(input: &str) -> Result<Domain, DirectoryError> {
        let bad = |reason: &str| Err(DirectoryError::InvalidDomain { input: shorten(input), reason: reason.into() });
        if input.is_empty() || input.len() > 253 {
            return bad("a domain has 1 to 253 characters");
        }
        if !input.is_ascii() {
            return bad("write an internationalized domain in its ASCII form (xn--...)");
        }
        for label in input.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each dot-separated label has 1 to 63 characters");
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return bad("labels consist of letters, digits and '-'");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label neither starts nor ends with '-'");
            }
        }
        Ok(Domain(input.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox address `local@domain`. The local part is a dot-atom (RFC 5322 `atext` plus
/// UTF-8 as RFC 6531 allows, dots only between atoms, at most 64 bytes); quoted local parts
/// are not taken. The domain is a [`Domain`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: Domain,
}

impl Address {
    pub fn parse(input: &str) -> Result<Address, DirectoryError> {
        let bad = |reason: &str| Err(DirectoryError::InvalidAddress { input: shorten(input), reason: reason.into() });
        let Some((local, domain)) = input.rsplit_once('@') else { return bad("it has no '@'") };
        if local.is_empty() {
            return bad("it has no local part before the '@'");
        }
        if local.len() > 64 {
            return bad("its local part is longer than 64 bytes");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return bad("dots in its local part must stand between other characters");
        }
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
        if !local.chars().all(|c| atext(c) || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())) {
            return bad("its local part has a space, a control character or one of \"(),:;<>@[\\]");
        }
        let domain = Domain::parse(domain).map_err(|e| match e {
            DirectoryError::InvalidDomain { reason, .. } => DirectoryError::InvalidAddress {
                input: shorten(input),
                reason: format!("its domain is invalid: {reason}"),
            },
            e => e,
        })?;
        Ok(Address { local: local.to_string(), domain })
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The form lookups use: the local part in lower case.
    pub fn canonical(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for Address {
    /// The local part as typed, the domain in lower case.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// What an alias is for: one address, or every otherwise unknown address of a domain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AliasSource {
    Address(Address),
    /// Written `@example.test`.
    CatchAll(Domain),
}

impl AliasSource {
    pub fn parse(input: &str) -> Result<AliasSource, DirectoryError> {
        match input.strip_prefix('@') {
            Some(domain) => Ok(AliasSource::CatchAll(Domain::parse(domain)?)),
            None => Ok(AliasSource::Address(Address::parse(input)?)),
        }
    }

    pub fn domain(&self) -> &Domain {
        match self {
            AliasSource::Address(a) => a.domain(),
            AliasSource::CatchAll(d) => d,
        }
    }

    fn node(&self) -> String {
        match self {
            AliasSource::Address(a) => a.canonical(),
            AliasSource::CatchAll(d) => format!("@{d}"),
        }
    }

    fn key(&self) -> String {
        format!("alias/{}", self.node())
    }
}

impl fmt::Display for AliasSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasSource::Address(a) => a.fmt(f),
            AliasSource::CatchAll(d) => write!(f, "@{d}"),
        }
    }
}

fn domain_key(domain: &Domain) -> String {
    format!("domain/{domain}")
}

fn user_key(address: &Address) -> String {
    format!("user/{}", address.canonical())
}

/// Input echoed in messages, cut so that a huge argument does not flood a terminal or log.
fn shorten(input: &str) -> String {
    if input.chars().count() <= 100 { input.to_string() } else { input.chars().take(100).collect::<String>() + "…" }
}

// ---------------------------------------------------------------------------------------------
// Stored records

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DomainRecord {
    created: i64,
    /// Users and aliases (including the catch-all) under the domain.
    users: u64,
    aliases: u64,
}

#[derive(Clone, Serialize, Deserialize)]
struct UserRecord {
    /// As typed (local part) with the domain in lower case.
    address: String,
    account: AccountId,
    /// Argon2id PHC string.
    password: String,
    /// RFC 5803 form of the SCRAM-SHA-256 keys.
    scram_sha256: String,
    /// `None`: the configured default; `Some(0)`: unlimited.
    #[serde(default)]
    quota_bytes: Option<u64>,
    created: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AliasRecord {
    targets: Vec<String>,
    created: i64,
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("directory records serialize")
}

// ---------------------------------------------------------------------------------------------
// Credentials

/// What is stored for a password: its Argon2id PHC string and its SCRAM-SHA-256 keys. Derived
/// where the password is typed (so it never crosses the control socket); `Debug` redacts both.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub password_phc: String,
    pub scram_sha256: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl Credentials {
    /// Hashes `password` (after SASLprep, RFC 4013, as SCRAM requires, so that every
    /// mechanism checks the same string) with Argon2id's default parameters and a random
    /// salt, and derives SCRAM-SHA-256 keys with another random salt and 4096 iterations.
    /// CPU-heavy (tens of milliseconds).
    pub fn derive(password: &str) -> Result<Credentials, DirectoryError> {
        let prepared = saslprep::prepare(password).map_err(|_| {
            DirectoryError::InvalidPassword(
                "it contains a character SASLprep prohibits (a control or unassigned character)".into(),
            )
        })?;
        if prepared.is_empty() {
            return Err(DirectoryError::InvalidPassword("it is empty".into()));
        }
        if prepared.len() > 1024 {
            return Err(DirectoryError::InvalidPassword("it is longer than 1024 bytes".into()));
        }
        let phc = Argon2::default()
            .hash_password(prepared.as_bytes())
            .map_err(|e| DirectoryError::Internal(format!("hashing the password failed: {e}")))?
            .to_string();
        let mut salt = [0u8; ScramCredentials::SALT_BYTES];
        getrandom::fill(&mut salt)
            .map_err(|e| DirectoryError::Internal(format!("the system's random number generator failed: {e}")))?;
        let scram = ScramCredentials::derive(&prepared, &salt, ScramCredentials::DEFAULT_ITERATIONS)
            .map_err(|e| DirectoryError::InvalidPassword(e.to_string()))?;
        Ok(Credentials { password_phc: phc, scram_sha256: scram.encode() })
    }

    /// Checks credentials that arrived from elsewhere (the control socket): an Argon2id PHC
    /// string and SCRAM keys with at least 4096 iterations.
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let bad = |what: String| Err(DirectoryError::InvalidPassword(what));
        match PasswordHash::new(&self.password_phc) {
            Ok(h) if h.algorithm == ARGON2ID_IDENT && h.hash.is_some() => {}
            Ok(_) => return bad("the password hash is not an Argon2id hash".into()),
            Err(e) => return bad(format!("the password hash is not a PHC string: {e}")),
        }
        match ScramCredentials::decode(&self.scram_sha256) {
            Ok(c) if c.iterations() >= ScramCredentials::MIN_ITERATIONS => Ok(()),
            Ok(c) => bad(format!("the SCRAM credentials have {} iterations, fewer than 4096", c.iterations())),
            Err(e) => bad(format!("the SCRAM credentials are malformed: {e}")),
        }
    }
}

/// A PHC string of a password nobody has, checked when the user is unknown so that an
/// unknown user costs as much time as a wrong password.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = [0x5a; 16];
        Argon2::default()
            .hash_password_with_salt(b"postlog: no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

fn argon2_matches(phc: &str, password: &str) -> bool {
    let matches = match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    };
    release_freed_memory();
    matches
}

/// Gives memory freed by the allocator back to the system. An Argon2 check allocates and frees
/// 19 MiB; glibc keeps such blocks in the calling thread's arena, so without this the server's
/// resident memory grows by that much per thread that ever checked a password.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and answers

/// A directory operation failed; nothing was changed unless the message says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryError {
    InvalidDomain {
        input: String,
        reason: String,
    },
    InvalidAddress {
        input: String,
        reason: String,
    },
    InvalidPassword(String),
    NoSuchDomain(String),
    DomainExists(String),
    DomainInUse {
        domain: String,
        users: u64,
        aliases: u64,
    },
    NoSuchUser(String),
    UserExists(String),
    NoSuchAlias(String),
    NoSuchTarget {
        alias: String,
        target: String,
    },
    /// `user add` for an address that is an alias, or `alias add` for one that is a user.
    AddressTaken {
        address: String,
        by: &'static str,
    },
    /// An alias target in a local domain that resolves to nobody.
    UnknownLocalTarget {
        alias: String,
        target: String,
    },
    /// The change would make alias expansion loop or go too deep.
    AliasLoop {
        chain: Vec<String>,
    },
    AliasTooDeep {
        alias: String,
    },
    TooManyTargets {
        alias: String,
    },
    /// A stored value does not decode.
    Corrupt {
        key: String,
        reason: String,
    },
    /// Every compare-and-set attempt met a concurrent change.
    Contended(String),
    Store(CommitError),
    Internal(String),
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::InvalidDomain { input, reason } => write!(f, "{input:?} is not a valid domain: {reason}"),
            DirectoryError::InvalidAddress { input, reason } => {
                write!(f, "{input:?} is not a valid address: {reason}")
            }
            DirectoryError::InvalidPassword(why) => write!(f, "the password is not usable: {why}"),
            DirectoryError::NoSuchDomain(d) => {
                write!(f, "the domain {d} is not a local domain; add it first with `postlog domain add {d}`")
            }
            DirectoryError::DomainExists(d) => write!(f, "the domain {d} already exists"),
            DirectoryError::DomainInUse { domain, users, aliases } => write!(
                f,
                "the domain {domain} still has {users} user(s) and {aliases} alias(es); delete them first, or \
                 pass --force to delete them (and the users' mail) with the domain"
            ),
            DirectoryError::NoSuchUser(a) => write!(f, "there is no user {a}"),
            DirectoryError::UserExists(a) => write!(f, "the user {a} already exists"),
            DirectoryError::NoSuchAlias(a) => write!(f, "there is no alias {a}"),
            DirectoryError::NoSuchTarget { alias, target } => write!(f, "the alias {alias} has no target {target}"),
            DirectoryError::AddressTaken { address, by } => write!(f, "{address} is already {by}"),
            DirectoryError::UnknownLocalTarget { alias, target } => write!(
                f,
                "the target {target} of {alias} is in a local domain but is neither a user nor an alias; add it first"
            ),
            DirectoryError::AliasLoop { chain } => {
                write!(f, "this would make aliases loop: {}", chain.join(" -> "))
            }
            DirectoryError::AliasTooDeep { alias } => {
                write!(f, "expanding {alias} would go through more than {MAX_ALIAS_DEPTH} aliases")
            }
            DirectoryError::TooManyTargets { alias } => {
                write!(f, "{alias} would expand to more than {MAX_EXPANDED_RECIPIENTS} recipients")
            }
            DirectoryError::Corrupt { key, reason } => write!(f, "the stored value of {key} is damaged: {reason}"),
            DirectoryError::Contended(what) => {
                write!(f, "{what} kept meeting concurrent changes; nothing was changed, try again")
            }
            DirectoryError::Store(e) => write!(f, "the store refused the change: {e}"),
            DirectoryError::Internal(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DirectoryError {}

impl From<CommitError> for DirectoryError {
    fn from(e: CommitError) -> Self {
        DirectoryError::Store(e)
    }
}

/// A user of this server, as mail delivery and login need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    /// The address as the user was added (local part as typed, domain in lower case).
    pub address: String,
    pub account: AccountId,
}

/// Who gets mail sent to an address (SMTP `RCPT TO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A user of this server, named directly.
    User(LocalUser),
    /// An alias or the domain's catch-all, expanded through aliases: local users and remote
    /// addresses, each once, in the order found.
    Expanded { users: Vec<LocalUser>, remote: Vec<String>, catch_all: bool },
    /// The domain is local, but nobody receives mail at this address (`550 5.1.1`).
    Unknown,
    /// The domain is not one of ours (relaying is the caller's decision).
    NotLocal,
}

/// Why an address could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Not an address (`501 5.1.3`).
    InvalidAddress(String),
    /// Aliases form a loop (`550 5.4.6`); the chain ends where it started over.
    Loop { chain: Vec<String> },
    /// More than [`MAX_ALIAS_DEPTH`] aliases deep (`550 5.4.6`).
    TooDeep,
    /// More than [`MAX_EXPANDED_RECIPIENTS`] recipients (`550 5.5.3`).
    TooManyRecipients,
    /// A stored value is damaged (`451 4.3.0`).
    Corrupt(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::InvalidAddress(why) => f.write_str(why),
            ResolveError::Loop { chain } => write!(f, "aliases loop: {}", chain.join(" -> ")),
            ResolveError::TooDeep => write!(f, "aliases nest more than {MAX_ALIAS_DEPTH} deep"),
            ResolveError::TooManyRecipients => {
                write!(f, "the address expands to more than {MAX_EXPANDED_RECIPIENTS} recipients")
            }
            ResolveError::Corrupt(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ResolveError {}

/// A domain, as `domain list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEntry {
    pub domain: String,
    pub users: u64,
    pub aliases: u64,
}

/// A user, as `user list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub address: String,
    /// `None`: the record's account is gone (a `user del` was interrupted); `user del` again
    /// removes the record, `user add` replaces it.
    pub account: Option<AccountId>,
    pub quota: Quota,
}

/// A user's storage quota and use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// `None`: unlimited.
    pub limit_bytes: Option<u64>,
    /// Whether the limit is the user's own rather than the configured default.
    pub overridden: bool,
    pub used_bytes: u64,
    pub messages: u64,
}

impl Quota {
    /// Whether `more_bytes` more would fit.
    pub fn allows(&self, more_bytes: u64) -> bool {
        self.limit_bytes.is_none_or(|limit| self.used_bytes.saturating_add(more_bytes) <= limit)
    }
}

/// An alias, as `alias list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEntry {
    pub source: String,
    pub targets: Vec<String>,
}

/// What `domain del --force` removed with the domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainDeletion {
    pub users: Vec<String>,
    pub aliases: Vec<String>,
}

/// What `alias del` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasDeletion {
    /// The whole alias is gone.
    Deleted,
    /// These targets remain.
    Remaining(Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// The directory

/// Domains, users and aliases over a [`Store`]. Cheap to clone.
///
/// Reads are lookups in the store's in-memory state (no disk IO). Changes are compare-and-set
/// writes, retried a few times when a concurrent change got there first. Password checks
/// ([`Directory::verify_password`]) and [`Credentials::derive`] run Argon2, which takes tens of
/// milliseconds of CPU: async callers run them with `tokio::task::spawn_blocking`.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    quota_default_bytes: u64,
}

impl Directory {
    /// `quota_default_bytes` is `[quota] default` of the configuration: the storage limit of
    /// users without their own, 0 for unlimited.
    pub fn new(store: Store, quota_default_bytes: u64) -> Directory {
        Directory { store, quota_default_bytes }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(Vec<u8>, T)>, DirectoryError> {
        match self.store.kv_get(key) {
            None => Ok(None),
            Some(raw) => {
                let value = serde_json::from_slice(&raw)
                    .map_err(|e| DirectoryError::Corrupt { key: key.to_string(), reason: e.to_string() })?;
                Ok(Some((raw, value)))
            }
        }
    }

    /// Runs a compare-and-set change until it does not conflict.
    fn retrying<T>(
        &self,
        what: impl Fn() -> String,
        mut attempt: impl FnMut() -> Result<T, DirectoryError>,
    ) -> Result<T, DirectoryError> {
        for _ in 0..MAX_ATTEMPTS {
            match attempt() {
                Err(DirectoryError::Store(CommitError::Conflict(key))) => {
                    tracing::debug!("{}: {key} changed concurrently, trying again", what());
                }
                result => return result,
            }
        }
        Err(DirectoryError::Contended(what()))
    }

    fn domain_record(&self, domain: &Domain) -> Result<(Vec<u8>, DomainRecord), DirectoryError> {
        self.read(&domain_key(domain))?.ok_or_else(|| DirectoryError::NoSuchDomain(domain.to_string()))
    }

    /// The user record and whether it is live (its account still exists under this name).
    fn user_record(&self, address: &Address) -> Result<Option<(Vec<u8>, UserRecord, bool)>, DirectoryError> {
        Ok(self.read::<UserRecord>(&user_key(address))?.map(|(raw, rec)| {
            let live = self.store.account_id(&address.canonical()) == Some(rec.account);
            (raw, rec, live)
        }))
    }

    // ----- domains ------------------------------------------------------------------

    pub fn is_local_domain(&self, domain: &str) -> bool {
        Domain::parse(domain).is_ok_and(|d| self.store.kv_get(&domain_key(&d)).is_some())
    }

    pub fn add_domain(&self, name: &str) -> Result<Domain, DirectoryError> {
        let domain = Domain::parse(name)?;
        let record = DomainRecord { created: now_unix(), users: 0, aliases: 0 };
        let key = domain_key(&domain);
        match self.store.kv_write(vec![(key.clone(), Some(to_json(&record)))], vec![(key, None)]) {
            Ok(()) => Ok(domain),
            Err(CommitError::Conflict(_)) => Err(DirectoryError::DomainExists(domain.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a domain. With users or aliases under it, refused unless `force`, which deletes
    /// them first: the users' accounts with all their mail, and the aliases (aliases of other
    /// domains that point into it are left alone; their targets there become remote).
    pub fn delete_domain(&self, name: &str, force: bool) -> Result<DomainDeletion, DirectoryError> {
        let domain = Domain::parse(name)?;
        let mut deleted = DomainDeletion::default();
        if force {
            for user in self.users(Some(domain.as_str()))? {
                self.delete_user(&user.address)?;
                deleted.users.push(user.address);
            }
            for alias in self.aliases(Some(domain.as_str()))? {
                self.delete_alias(&alias.source, &[])?;
                deleted.aliases.push(alias.source);
            }
        }
        self.retrying(
            || format!("deleting the domain {domain}"),
            || {
                let (raw, record) = self.domain_record(&domain)?;
                if record.users > 0 || record.aliases > 0 {
                    return Err(DirectoryError::DomainInUse {
                        domain: domain.to_string(),
                        users: record.users,
                        aliases: record.aliases,
                    });
                }
                let key = domain_key(&domain);
                self.store.kv_write(vec![(key.clone(), None)], vec![(key, Some(raw))])?;
                Ok(())
            },
        )?;
        Ok(deleted)
    }

    pub fn domains(&self) -> Result<Vec<DomainEntry>, DirectoryError> {
        let mut out = Vec::new();
        for (key, raw) in self.store.kv_scan("domain/") {
            let record: DomainRecord = serde_json::from_slice(&raw)
                .map_err(|e| DirectoryError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            let domain = key["domain/".len()..].to_string();
            out.push(DomainEntry { domain, users: record.users, aliases: record.aliases });
        }
        Ok(out)
    }

    // ----- users --------------------------------------------------------------------

    /// Adds a user: an engine account (INBOX, Drafts, Sent, Junk, Trash, Archive with their
    /// special-use attributes) and its record. If a crash left the account without its record
    /// (or the account was made with `postlog account add`), the account is adopted as it is.
    pub fn add_user(&self, address: &str, credentials: &Credentials) -> Result<LocalUser, DirectoryError> {
        let address = Address::parse(address)?;
        credentials.validate()?;
        let canonical = address.canonical();
        let alias_key = AliasSource::Address(address.clone()).key();
        self.retrying(
            || format!("adding the user {address}"),
            || {
                let (domain_raw, mut domain) = self.domain_record(address.domain())?;
                let existing = self.user_record(&address)?;
                if let Some((_, rec, true)) = &existing {
                    return Err(DirectoryError::UserExists(rec.address.clone()));
                }
                if self.store.kv_get(&alias_key).is_some() {
                    return Err(DirectoryError::AddressTaken { address: address.to_string(), by: "an alias" });
                }
                let account = match self.store.account_id(&canonical) {
                    Some(id) => {
                        tracing::info!("adding user {address}: adopting the existing account {canonical} (id {id})");
                        id
                    }
                    None => match self.store.create_account(&canonical, &DEFAULT_MAILBOXES) {
                        Ok(id) => {
                            // Subscribed, so clients that show subscribed folders only see them.
                            for name in std::iter::once("INBOX").chain(DEFAULT_MAILBOXES.iter().map(|(n, _)| *n)) {
                                if let Err(e) = self.store.subscribe(id, name, true) {
                                    tracing::warn!("subscribing {canonical} to {name}: {e}");
                                }
                            }
                            id
                        }
                        Err(CommitError::AccountExists(_)) => self
                            .store
                            .account_id(&canonical)
                            .ok_or_else(|| DirectoryError::Store(CommitError::Conflict(canonical.clone())))?,
                        Err(e) => return Err(e.into()),
                    },
                };
                let record = UserRecord {
                    address: address.to_string(),
                    account,
                    password: credentials.password_phc.clone(),
                    scram_sha256: credentials.scram_sha256.clone(),
                    quota_bytes: None,
                    created: now_unix(),
                };
                let key = user_key(&address);
                let mut writes = vec![(key.clone(), Some(to_json(&record)))];
                // A stale record (its account gone) is replaced; the domain already counts it.
                let expect_user = match existing {
                    Some((raw, _, false)) => Some(raw),
                    _ => {
                        domain.users += 1;
                        writes.push((domain_key(address.domain()), Some(to_json(&domain))));
                        None
                    }
                };
                self.store.kv_write(
                    writes,
                    vec![
                        (key, expect_user),
                        (domain_key(address.domain()), Some(domain_raw)),
                        (alias_key.clone(), None),
                    ],
                )?;
                Ok(LocalUser { address: record.address, account })
            },
        )
    }

    /// Deletes a user: its engine account with every mailbox and message, then its record.
    pub fn delete_user(&self, address: &str) -> Result<(), DirectoryError> {
        let address = Address::parse(address)?;
        self.retrying(
            || format!("deleting the user {address}"),
            || {
                let Some((raw, record, live)) = self.user_record(&address)? else {
                    return Err(DirectoryError::NoSuchUser(address.to_string()));
                };
                if live {
                    match self.store.delete_account(record.account) {
                        Ok(()) | Err(CommitError::NoSuchAccount(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                let (domain_raw, mut domain) = self.domain_record(address.domain())?;
                domain.users = domain.users.saturating_sub(1);
                let dkey = domain_key(address.domain());
                let key = user_key(&address);
                self.store.kv_write(
                    vec![(key.clone(), None), (dkey.clone(), Some(to_json(&domain)))],
                    vec![(key, Some(raw)), (dkey, Some(domain_raw))],
                )?;
                Ok(())
            },
        )
    }

    /// Replaces a user's password (both its Argon2id hash and its SCRAM keys).
    pub fn set_credentials(&self, address: &str, credentials: &Credentials) -> Result<(), DirectoryError> {
        credentials.validate()?;
        self.update_user(address, "changing the password of", |record| {
            record.password = credentials.password_phc.clone();
            record.scram_sha256 = credentials.scram_sha256.clone();
        })
    }

    /// Sets a user's own storage limit in bytes (0: unlimited), or `None` to follow the
    /// configured default.
    pub fn set_quota(&self, address: &str, quota_bytes: Option<u64>) -> Result<(), DirectoryError> {
        self.update_user(address, "setting the quota of", |record| record.quota_bytes = quota_bytes)
    }

    fn update_user(&self, address: &str, what: &str, change: impl Fn(&mut UserRecord)) -> Result<(), DirectoryError> {
        let address = Address::parse(address)?;
        self.retrying(
            || format!("{what} {address}"),
            || {
                let Some((raw, mut record, true)) = self.user_record(&address)? else {
                    return Err(DirectoryError::NoSuchUser(address.to_string()));
                };
                change(&mut record);
                let key = user_key(&address);
                self.store.kv_write(vec![(key.clone(), Some(to_json(&record)))], vec![(key, Some(raw))])?;
                Ok(())
            },
        )
    }

    /// Users, of one domain or of all, in address order.
    pub fn users(&self, domain: Option<&str>) -> Result<Vec<UserEntry>, DirectoryError> {
        let suffix = domain.map(Domain::parse).transpose()?.map(|d| format!("@{d}"));
        let mut out = Vec::new();
        for (key, raw) in self.store.kv_scan("user/") {
            if suffix.as_ref().is_some_and(|s| !key.ends_with(s.as_str())) {
                continue;
            }
            let record: UserRecord = serde_json::from_slice(&raw)
                .map_err(|e| DirectoryError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            let live = self.store.account_id(&key["user/".len()..]) == Some(record.account);
            let quota = self.quota_of(&record, live);
            out.push(UserEntry { address: record.address, account: live.then_some(record.account), quota });
        }
        Ok(out)
    }

    fn quota_of(&self, record: &UserRecord, live: bool) -> Quota {
        let usage = if live { self.store.usage(record.account).unwrap_or_default() } else { Default::default() };
        let limit = record.quota_bytes.unwrap_or(self.quota_default_bytes);
        Quota {
            limit_bytes: (limit > 0).then_some(limit),
            overridden: record.quota_bytes.is_some(),
            used_bytes: usage.bytes,
            messages: usage.messages,
        }
    }

    /// A live user by address (any case), for delivery and login.
    pub fn local_user(&self, address: &str) -> Option<LocalUser> {
        let address = Address::parse(address).ok()?;
        match self.user_record(&address) {
            Ok(Some((_, record, true))) => Some(LocalUser { address: record.address, account: record.account }),
            Ok(_) => None,
            Err(e) => {
                tracing::error!("looking up the user {address}: {e}");
                None
            }
        }
    }

    /// A user's effective quota (own limit or the configured default) and current use.
    pub fn quota(&self, address: &str) -> Option<Quota> {
        let address = Address::parse(address).ok()?;
        match self.user_record(&address) {
            Ok(Some((_, record, true))) => Some(self.quota_of(&record, true)),
            Ok(_) => None,
            Err(e) => {
                tracing::error!("looking up the quota of {address}: {e}");
                None
            }
        }
    }

    /// Whether `password` is the user's password. `false` for an unknown user too, after the
    /// same Argon2 work, so that timing does not tell the two apart. CPU-heavy: async callers
    /// run it with `tokio::task::spawn_blocking`.
    pub fn verify_password(&self, address: &str, password: &str) -> bool {
        let record = Address::parse(address).ok().and_then(|a| match self.user_record(&a) {
            Ok(Some((_, record, true))) => Some(record),
            Ok(_) => None,
            Err(e) => {
                tracing::error!("looking up the user {a} to check a password: {e}");
                None
            }
        });
        let prepared = saslprep::prepare(password).ok().filter(|p| !p.is_empty());
        match (record, prepared) {
            (Some(record), Some(password)) => argon2_matches(&record.password, &password),
            (_, password) => {
                let _ = argon2_matches(dummy_phc(), password.as_deref().unwrap_or("-"));
                false
            }
        }
    }

    /// The user's SCRAM-SHA-256 credentials; `None` for an unknown user (the SASL session then
    /// fails the exchange as it would for a wrong password).
    pub fn scram_credentials(&self, address: &str) -> Option<ScramCredentials> {
        let address = Address::parse(address).ok()?;
        let record = match self.user_record(&address) {
            Ok(Some((_, record, true))) => record,
            Ok(_) => return None,
            Err(e) => {
                tracing::error!("looking up the SCRAM credentials of {address}: {e}");
                return None;
            }
        };
        ScramCredentials::decode(&record.scram_sha256)
            .inspect_err(|e| tracing::error!("the SCRAM credentials of {address} are damaged: {e}"))
            .ok()
    }

    /// The server secret behind SCRAM's fake salts for unknown users: random, made on first
    /// use, stable across restarts (a salt that changed would give an unknown user away).
    pub fn sasl_secret(&self) -> Result<[u8; 32], DirectoryError> {
        let decode = |raw: &[u8]| -> Result<[u8; 32], DirectoryError> {
            let corrupt =
                || DirectoryError::Corrupt { key: SASL_SECRET_KEY.into(), reason: "not 64 hex digits".into() };
            let text = std::str::from_utf8(raw).map_err(|_| corrupt())?;
            if text.len() != 64 {
                return Err(corrupt());
            }
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| corrupt())?;
            }
            Ok(out)
        };
        if let Some(raw) = self.store.kv_get(SASL_SECRET_KEY) {
            return decode(&raw);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| DirectoryError::Internal(format!("the system's random number generator failed: {e}")))?;
        let value = crate::util::hex(&secret).into_bytes();
        match self.store.kv_write(vec![(SASL_SECRET_KEY.into(), Some(value))], vec![(SASL_SECRET_KEY.into(), None)]) {
            Ok(()) => Ok(secret),
            // Another process made it first: use theirs.
            Err(CommitError::Conflict(_)) => match self.store.kv_get(SASL_SECRET_KEY) {
                Some(raw) => decode(&raw),
                None => Err(DirectoryError::Contended("creating the SASL secret".into())),
            },
            Err(e) => Err(e.into()),
        }
    }

    // ----- aliases ------------------------------------------------------------------

    /// Adds targets to an alias (creating it): local users, local aliases or remote addresses.
    /// `source` is an address or `@domain` for the domain's catch-all. Refused if a target in
    /// a local domain resolves to nobody, or if the aliases would loop.
    pub fn add_alias(&self, source: &str, targets: &[String]) -> Result<AliasEntry, DirectoryError> {
        let source = AliasSource::parse(source)?;
        if targets.is_empty() {
            return Err(DirectoryError::InvalidAddress { input: source.to_string(), reason: "no target given".into() });
        }
        let mut parsed = Vec::new();
        for t in targets {
            if t.starts_with('@') {
                return Err(DirectoryError::InvalidAddress {
                    input: shorten(t),
                    reason: "a target is an address, not a whole domain".into(),
                });
            }
            parsed.push(Address::parse(t)?);
        }
        let key = source.key();
        self.retrying(
            || format!("adding the alias {source}"),
            || {
                let (domain_raw, mut domain) = self.domain_record(source.domain())?;
                let mut expect = vec![(domain_key(source.domain()), Some(domain_raw))];
                if let AliasSource::Address(a) = &source {
                    if let Some((_, _, true)) = self.user_record(a)? {
                        return Err(DirectoryError::AddressTaken { address: a.to_string(), by: "a user" });
                    }
                    expect.push((user_key(a), self.store.kv_get(&user_key(a))));
                }
                let existing = self.read::<AliasRecord>(&key)?;
                let mut record = existing
                    .as_ref()
                    .map(|(_, r)| r.clone())
                    .unwrap_or(AliasRecord { targets: Vec::new(), created: now_unix() });
                let mut seen: HashSet<String> =
                    record.targets.iter().filter_map(|t| Address::parse(t).ok()).map(|a| a.canonical()).collect();
                for t in &parsed {
                    if seen.insert(t.canonical()) {
                        record.targets.push(t.to_string());
                    }
                }
                if record.targets.len() > MAX_ALIAS_TARGETS {
                    return Err(DirectoryError::TooManyTargets { alias: source.to_string() });
                }
                // Check the aliases as they would be after the change.
                let view = View { directory: self, overlay: Some((source.node(), &record.targets)) };
                match view.expand_alias(source.node(), &record.targets) {
                    Ok(_) => {}
                    Err(ResolveError::Loop { chain }) => return Err(DirectoryError::AliasLoop { chain }),
                    Err(ResolveError::TooDeep) => {
                        return Err(DirectoryError::AliasTooDeep { alias: source.to_string() });
                    }
                    Err(ResolveError::TooManyRecipients) => {
                        return Err(DirectoryError::TooManyTargets { alias: source.to_string() });
                    }
                    Err(ResolveError::Corrupt(reason)) => {
                        return Err(DirectoryError::Corrupt { key: key.clone(), reason });
                    }
                    Err(ResolveError::InvalidAddress(reason)) => return Err(DirectoryError::Internal(reason)),
                }
                for t in &parsed {
                    if view.resolve(t) == Ok(Resolution::Unknown) {
                        return Err(DirectoryError::UnknownLocalTarget {
                            alias: source.to_string(),
                            target: t.to_string(),
                        });
                    }
                }
                let mut writes = vec![(key.clone(), Some(to_json(&record)))];
                match &existing {
                    Some((raw, _)) => expect.push((key.clone(), Some(raw.clone()))),
                    None => {
                        domain.aliases += 1;
                        writes.push((domain_key(source.domain()), Some(to_json(&domain))));
                        expect.push((key.clone(), None));
                    }
                }
                self.store.kv_write(writes, expect)?;
                Ok(AliasEntry { source: source.to_string(), targets: record.targets })
            },
        )
    }

    /// Removes targets from an alias; with no targets given, or none left, the whole alias.
    pub fn delete_alias(&self, source: &str, targets: &[String]) -> Result<AliasDeletion, DirectoryError> {
        let source = AliasSource::parse(source)?;
        let remove: Vec<String> =
            targets.iter().map(|t| Address::parse(t).map(|a| a.canonical())).collect::<Result<_, _>>()?;
        let key = source.key();
        self.retrying(
            || format!("deleting from the alias {source}"),
            || {
                let Some((raw, mut record)) = self.read::<AliasRecord>(&key)? else {
                    return Err(DirectoryError::NoSuchAlias(source.to_string()));
                };
                for target in &remove {
                    let before = record.targets.len();
                    record.targets.retain(|t| Address::parse(t).map(|a| a.canonical()).as_ref() != Ok(target));
                    if record.targets.len() == before {
                        return Err(DirectoryError::NoSuchTarget { alias: source.to_string(), target: target.clone() });
                    }
                }
                if !remove.is_empty() && !record.targets.is_empty() {
                    self.store.kv_write(vec![(key.clone(), Some(to_json(&record)))], vec![(key.clone(), Some(raw))])?;
                    return Ok(AliasDeletion::Remaining(record.targets));
                }
                let (domain_raw, mut domain) = self.domain_record(source.domain())?;
                domain.aliases = domain.aliases.saturating_sub(1);
                let dkey = domain_key(source.domain());
                self.store.kv_write(
                    vec![(key.clone(), None), (dkey.clone(), Some(to_json(&domain)))],
                    vec![(key.clone(), Some(raw)), (dkey, Some(domain_raw))],
                )?;
                Ok(AliasDeletion::Deleted)
            },
        )
    }

    /// Aliases, of one domain or of all, in key order (a domain's catch-all first).
    pub fn aliases(&self, domain: Option<&str>) -> Result<Vec<AliasEntry>, DirectoryError> {
        let suffix = domain.map(Domain::parse).transpose()?.map(|d| format!("@{d}"));
        let mut out = Vec::new();
        for (key, raw) in self.store.kv_scan("alias/") {
            if suffix.as_ref().is_some_and(|s| !key.ends_with(s.as_str())) {
                continue;
            }
            let record: AliasRecord = serde_json::from_slice(&raw)
                .map_err(|e| DirectoryError::Corrupt { key: key.clone(), reason: e.to_string() })?;
            // The key holds the local part in lower case; show the catch-all as its key does.
            out.push(AliasEntry { source: key["alias/".len()..].to_string(), targets: record.targets });
        }
        Ok(out)
    }

    // ----- resolution ---------------------------------------------------------------

    /// Who receives mail for `address`: a user, the expansion of an alias or of the domain's
    /// catch-all (recursively, each user and remote address once, loops and excessive depth
    /// refused), nobody, or not a local domain at all.
    pub fn resolve(&self, address: &str) -> Result<Resolution, ResolveError> {
        let address = Address::parse(address).map_err(|e| ResolveError::InvalidAddress(e.to_string()))?;
        View { directory: self, overlay: None }.resolve(&address)
    }
}

/// The directory as resolution sees it, with at most one alias replaced (to check a change
/// before making it).
struct View<'a> {
    directory: &'a Directory,
    /// (alias node, its targets).
    overlay: Option<(String, &'a [String])>,
}

#[derive(Default)]
struct Expansion {
    users: Vec<LocalUser>,
    remote: Vec<String>,
    seen: HashSet<String>,
    /// Aliases already expanded (reached again through another branch: nothing new).
    expanded: HashSet<String>,
}

impl View<'_> {
    fn alias_targets(&self, node: &str) -> Result<Option<Vec<String>>, ResolveError> {
        if let Some((n, targets)) = &self.overlay
            && n == node
        {
            return Ok(Some(targets.to_vec()));
        }
        match self.directory.read::<AliasRecord>(&format!("alias/{node}")) {
            Ok(r) => Ok(r.map(|(_, r)| r.targets)),
            Err(e) => Err(ResolveError::Corrupt(e.to_string())),
        }
    }

    fn user(&self, address: &Address) -> Result<Option<LocalUser>, ResolveError> {
        match self.directory.user_record(address) {
            Ok(Some((_, r, true))) => Ok(Some(LocalUser { address: r.address, account: r.account })),
            Ok(_) => Ok(None),
            Err(e) => Err(ResolveError::Corrupt(e.to_string())),
        }
    }

    /// The alias node that takes `address` (its own alias, else the catch-all), if any.
    fn alias_for(&self, address: &Address) -> Result<Option<(String, Vec<String>)>, ResolveError> {
        let node = address.canonical();
        if let Some(t) = self.alias_targets(&node)? {
            return Ok(Some((node, t)));
        }
        let catch_all = format!("@{}", address.domain());
        Ok(self.alias_targets(&catch_all)?.map(|t| (catch_all, t)))
    }

    fn resolve(&self, address: &Address) -> Result<Resolution, ResolveError> {
        if !self.directory.is_local_domain(address.domain().as_str()) {
            return Ok(Resolution::NotLocal);
        }
        if let Some(user) = self.user(address)? {
            return Ok(Resolution::User(user));
        }
        match self.alias_for(address)? {
            Some((node, targets)) => self.expand_alias(node, &targets),
            None => Ok(Resolution::Unknown),
        }
    }

    /// The expansion of the alias `node` (an address or `@domain`) with these targets.
    fn expand_alias(&self, node: String, targets: &[String]) -> Result<Resolution, ResolveError> {
        let catch_all = node.starts_with('@');
        let mut out = Expansion::default();
        out.expanded.insert(node.clone());
        let mut path = vec![node];
        self.expand(targets, &mut path, &mut out)?;
        if out.users.is_empty() && out.remote.is_empty() {
            return Ok(Resolution::Unknown);
        }
        Ok(Resolution::Expanded { users: out.users, remote: out.remote, catch_all })
    }

    fn expand(&self, targets: &[String], path: &mut Vec<String>, out: &mut Expansion) -> Result<(), ResolveError> {
        if path.len() > MAX_ALIAS_DEPTH {
            return Err(ResolveError::TooDeep);
        }
        for target in targets {
            let Ok(address) = Address::parse(target) else {
                tracing::warn!("alias {} has an invalid target {target:?}; skipping it", path[path.len() - 1]);
                continue;
            };
            let canonical = address.canonical();
            if !self.directory.is_local_domain(address.domain().as_str()) {
                if out.seen.insert(canonical) {
                    out.remote.push(address.to_string());
                }
            } else if let Some(user) = self.user(&address)? {
                if out.seen.insert(canonical) {
                    out.users.push(user);
                }
            } else if let Some((node, next)) = self.alias_for(&address)? {
                if path.contains(&node) {
                    let mut chain = path.clone();
                    chain.push(node);
                    return Err(ResolveError::Loop { chain });
                }
                if !out.expanded.insert(node.clone()) {
                    continue;
                }
                path.push(node);
                self.expand(&next, path, out)?;
                path.pop();
            } else {
                tracing::warn!("alias {} points to {target}, which is nobody; skipping it", path[path.len() - 1]);
            }
            if out.users.len() + out.remote.len() > MAX_EXPANDED_RECIPIENTS {
                return Err(ResolveError::TooManyRecipients);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
