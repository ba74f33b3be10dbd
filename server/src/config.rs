//! The configuration file (TOML) and its embedded defaults.
//!
//! Every key is optional in a file: what a file leaves out keeps its default. Unknown keys
//! and bad values are errors that name the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The defaults used without `--config`, and for every key a file leaves out.
pub const DEFAULT_CONFIG: &str = r#"# Postlog's embedded defaults.
hostname = "localhost"
data_dir = "./postlog-data"

[listen]
smtp = "0.0.0.0:25"
submission = "0.0.0.0:587"
submissions = "0.0.0.0:465"
lmtp = "127.0.0.1:24"
imap = "0.0.0.0:143"
imaps = "0.0.0.0:993"
pop3 = "0.0.0.0:110"
pop3s = "0.0.0.0:995"
http = "127.0.0.1:8080"
"#;

/// The keys of the `[listen]` table, in the order they are documented.
pub const LISTENERS: [&str; 9] =
    ["smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<toml::Value>,
    data_dir: Option<toml::Value>,
    listen: Option<RawListen>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    smtp: Option<toml::Value>,
    submission: Option<toml::Value>,
    submissions: Option<toml::Value>,
    lmtp: Option<toml::Value>,
    imap: Option<toml::Value>,
    imaps: Option<toml::Value>,
    pop3: Option<toml::Value>,
    pop3s: Option<toml::Value>,
    http: Option<toml::Value>,
}

impl RawListen {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        match key {
            "smtp" => self.smtp.as_ref(),
            "submission" => self.submission.as_ref(),
            "submissions" => self.submissions.as_ref(),
            "lmtp" => self.lmtp.as_ref(),
            "imap" => self.imap.as_ref(),
            "imaps" => self.imaps.as_ref(),
            "pop3" => self.pop3.as_ref(),
            "pop3s" => self.pop3s.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }
    }
}

/// Where each front end listens; `None`: that listener is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub smtp: Option<SocketAddr>,
    pub submission: Option<SocketAddr>,
    pub submissions: Option<SocketAddr>,
    pub lmtp: Option<SocketAddr>,
    pub imap: Option<SocketAddr>,
    pub imaps: Option<SocketAddr>,
    pub pop3: Option<SocketAddr>,
    pub pop3s: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl Listen {
    fn slot(&mut self, key: &str) -> &mut Option<SocketAddr> {
        match key {
            "smtp" => &mut self.smtp,
            "submission" => &mut self.submission,
            "submissions" => &mut self.submissions,
            "lmtp" => &mut self.lmtp,
            "imap" => &mut self.imap,
            "imaps" => &mut self.imaps,
            "pop3" => &mut self.pop3,
            "pop3s" => &mut self.pop3s,
            _ => &mut self.http,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server's host name (SMTP greeting, Received headers).
    pub hostname: String,
    /// The store's directory.
    pub data_dir: PathBuf,
    pub listen: Listen,
}

/// A configuration problem; the message names the file and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The embedded defaults.
    pub fn defaults() -> Config {
        let mut cfg = Config {
            hostname: String::new(),
            data_dir: PathBuf::new(),
            listen: Listen {
                smtp: None,
                submission: None,
                submissions: None,
                lmtp: None,
                imap: None,
                imaps: None,
                pop3: None,
                pop3s: None,
                http: None,
            },
        };
        cfg.merge_str(DEFAULT_CONFIG, "the embedded defaults").expect("the embedded defaults are valid");
        cfg
    }

    /// The defaults overridden by the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read the config file {}: {e}", path.display())))?;
        let mut cfg = Config::defaults();
        cfg.merge_str(&text, &format!("config file {}", path.display()))?;
        Ok(cfg)
    }

    /// `--config` if given, else the defaults.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::defaults()),
        }
    }

    /// Overrides what `text` sets. `origin` names the text in messages.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            // toml's message names the unknown or mistyped key; add where it is.
            let place = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            ConfigError(format!("{origin}{place}: {msg}"))
        })?;
        let err = |key: &str, what: String| ConfigError(format!("{origin}: key `{key}`: {what}"));
        if let Some(v) = &raw.hostname {
            let s = v.as_str().ok_or_else(|| err("hostname", format!("must be a string, not {}", v.type_str())))?;
            validate_hostname(s).map_err(|w| err("hostname", w))?;
            self.hostname = s.to_string();
        }
        if let Some(v) = &raw.data_dir {
            let s = v.as_str().ok_or_else(|| err("data_dir", format!("must be a string, not {}", v.type_str())))?;
            if s.is_empty() {
                return Err(err("data_dir", "must not be empty".into()));
            }
            self.data_dir = PathBuf::from(s);
        }
        if let Some(listen) = &raw.listen {
            for key in LISTENERS {
                let Some(v) = listen.get(key) else { continue };
                let full = format!("listen.{key}");
                let s = v.as_str().ok_or_else(|| {
                    err(&full, format!("must be a string such as \"0.0.0.0:25\" or \"off\", not {}", v.type_str()))
                })?;
                *self.listen.slot(key) = parse_listen(s).map_err(|w| err(&full, w))?;
            }
        }
        Ok(())
    }
}

/// An address to listen on ("IP:PORT", "[IPv6]:PORT"), or "off".
fn parse_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("{s:?} has port 0")),
        Ok(a) => Ok(Some(a)),
        Err(_) => Err(format!("{s:?} is not an address such as \"0.0.0.0:25\" or \"[::]:25\" (or \"off\")")),
    }
}

fn validate_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{s:?} is not a host name (1 to 253 characters)"));
    }
    for label in s.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{s:?} is not a host name (letters, digits and '-' in dot-separated labels)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::defaults();
        assert_eq!(c.data_dir, PathBuf::from("./postlog-data"));
        assert_eq!(c.hostname, "localhost");
        assert_eq!(c.listen.smtp, Some("0.0.0.0:25".parse().unwrap()));
        assert_eq!(c.listen.http, Some("127.0.0.1:8080".parse().unwrap()));
    }

    #[test]
    fn file_overrides_some_keys() {
        let mut c = Config::defaults();
        c.merge_str("data_dir = \"/srv/mail\"\n[listen]\nimap = \"[::]:1143\"\npop3 = \"off\"\n", "t").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/mail"));
        assert_eq!(c.listen.imap, Some("[::]:1143".parse().unwrap()));
        assert_eq!(c.listen.pop3, None);
        assert_eq!(c.listen.smtp, Some("0.0.0.0:25".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("datadir = \"x\"\n", "datadir"),
            ("[listen]\nsmtpp = \"0.0.0.0:25\"\n", "smtpp"),
            ("[listen]\nimap = \"localhost:143\"\n", "listen.imap"),
            ("[listen]\nsmtp = 25\n", "listen.smtp"),
            ("hostname = \"bad host\"\n", "hostname"),
            ("data_dir = 3\n", "data_dir"),
            ("[other]\n", "other"),
        ];
        for (text, key) in cases {
            let e = Config::defaults().merge_str(text, "t").unwrap_err().0;
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
