//! The command line: `postlog serve | dump | check | repair | import | export | account |
//! domain | user | alias`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::util::CmdError;

#[derive(Debug, Parser)]
#[command(name = "postlog", version, about = "Postlog mail server and its operator tools")]
pub struct Cli {
    /// Configuration file (TOML). Without it, the embedded defaults (data_dir = "./postlog-data").
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the store; overrides data_dir of the configuration.
    #[arg(long = "data", global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open (and recover) the store and hold it until SIGTERM or SIGINT.
    Serve,
    /// Print segments, records, blobs, accounts and mailboxes (read-only; works while a server runs).
    Dump(DumpArgs),
    /// Verify checksums, replay, snapshot, reference counts and every message (read-only).
    Check,
    /// Repair what check finds: stale or corrupt snapshot, torn tail, leftover files, damaged log.
    Repair(RepairArgs),
    /// Import mail from a Maildir, an mbox file or a directory of .eml files into an account.
    Import(ImportArgs),
    /// Export every mailbox of an account as a Maildir++ tree.
    Export(ExportArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage the domains this server receives mail for (works whether or not the server runs).
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Manage users: an account with its mailboxes and a password (works whether or not the server runs).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases: addresses that deliver to users or remote addresses (works whether or not the server runs).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Inspect and steer the outbound queue (works whether or not the server runs).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// DKIM keys that sign outgoing mail, one per domain (works whether or not the server runs).
    #[command(subcommand)]
    Dkim(DkimCommand),
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Make (or replace) the key of a local domain and print the DNS TXT record to publish.
    Generate {
        domain: String,
        /// The selector: the record is SELECTOR._domainkey.DOMAIN.
        #[arg(long, default_value = "postlog")]
        selector: String,
        /// rsa (2048 bits; made with the openssl command) or ed25519 (RFC 8463).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
    },
    /// Print a domain's TXT record again.
    Show { domain: String },
    /// Every domain's key and record.
    List,
    /// Delete a domain's key: its mail goes unsigned.
    Del { domain: String },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// One line per queued message: id, size, arrival, sender, pending recipients, next attempt.
    List,
    /// Everything about one queued message, with each recipient's last answer.
    Show { id: String },
    /// Attempt one queued message now.
    Retry { id: String },
    /// Remove a queued message without sending a bounce.
    Delete { id: String },
    /// Attempt every queued message now.
    Flush,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// One JSON document instead of text (shape in docs/operations.md).
    #[arg(long)]
    pub json: bool,
    /// Only this segment (records and the blobs stored in it).
    #[arg(long, value_name = "N")]
    pub segment: Option<u64>,
    /// Only this mailbox: ACCOUNT/NAME, e.g. alice@example.org/INBOX.
    #[arg(long, value_name = "ACCOUNT/NAME", conflicts_with = "account")]
    pub mailbox: Option<String>,
    /// Only this account.
    #[arg(long, value_name = "ADDRESS")]
    pub account: Option<String>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Do the repairs (without it: only say what would be done).
    #[arg(long)]
    pub apply: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["maildir", "mbox", "eml_dir"])))]
pub struct ImportArgs {
    /// The account (an email address).
    #[arg(long, value_name = "ADDRESS")]
    pub account: String,
    /// A Maildir (Maildir++ or fs layout); its folders are kept.
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,
    /// An mbox file.
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,
    /// A directory of .eml files.
    #[arg(long = "eml-dir", value_name = "DIR")]
    pub eml_dir: Option<PathBuf>,
    /// Destination mailbox for mbox and eml (default INBOX); for a Maildir, the mailbox its
    /// folders go under (its INBOX becomes this mailbox).
    #[arg(long, value_name = "NAME")]
    pub mailbox: Option<String>,
    /// Create the account (with Drafts, Sent, Junk, Trash, Archive) if it does not exist.
    #[arg(long)]
    pub create_account: bool,
    /// Appending threads (the store's group commit batches their appends).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The account to export.
    #[arg(long, value_name = "ADDRESS")]
    pub account: String,
    /// Target Maildir++ directory (created if needed; existing mail there is kept).
    #[arg(long, value_name = "DIR")]
    pub maildir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account with INBOX, Drafts, Sent, Junk, Trash and Archive.
    Add {
        /// The account's address.
        address: String,
    },
    /// List accounts with their message counts and sizes (read-only).
    List,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a local domain.
    Add {
        /// The domain, e.g. example.test (an internationalized one in its xn-- form).
        domain: String,
    },
    /// Delete a local domain; refused while it has users or aliases, unless --force.
    Del {
        domain: String,
        /// Also delete its users, WITH ALL THEIR MAIL, and its aliases.
        #[arg(long)]
        force: bool,
    },
    /// List local domains with their numbers of users and aliases.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user: an account with INBOX, Drafts, Sent, Junk, Trash and Archive, and a password.
    ///
    /// The address's domain must be a local domain. Addresses are matched without regard to
    /// case; the local part is kept as typed for display. Without --password-stdin, the
    /// password is asked for twice on the terminal.
    Add {
        /// The user's address, e.g. alice@example.test.
        address: String,
        /// Read the password from standard input (all of it, without a final line end).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user AND ALL ITS MAIL (every mailbox and message of its account).
    Del { address: String },
    /// Change a user's password.
    Passwd {
        address: String,
        /// Read the password from standard input (all of it, without a final line end).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (of one domain, or all) with their mail use and quota.
    List {
        /// Only users of this domain.
        domain: Option<String>,
    },
    /// Set a user's storage quota: a size such as 500M or 2G (powers of 1024), "unlimited",
    /// or "default" to follow [quota] default of the configuration.
    Quota {
        address: String,
        #[arg(value_name = "SIZE|unlimited|default")]
        size: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Make an address deliver to one or more targets (local users or aliases, or remote
    /// addresses); adds targets to an existing alias. "@example.test" is the domain's
    /// catch-all: it takes mail for every address of the domain that is no user or alias.
    Add {
        /// The alias address, or @DOMAIN for the catch-all.
        source: String,
        /// Where its mail goes.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove targets from an alias; without targets (or when none is left), the whole alias.
    Del { source: String, targets: Vec<String> },
    /// List aliases (of one domain, or all).
    List {
        /// Only aliases of this domain.
        domain: Option<String>,
    },
}

/// Sets up logging on stderr: `RUST_LOG` if set, else `default`.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Serve => "serve",
        Command::Dump(_) => "dump",
        Command::Check => "check",
        Command::Repair(_) => "repair",
        Command::Import(_) => "import",
        Command::Export(_) => "export",
        Command::Account(_) => "account",
        Command::Domain(_) => "domain",
        Command::User(_) => "user",
        Command::Alias(_) => "alias",
        Command::Queue(_) => "queue",
        Command::Dkim(_) => "dkim",
    };
    // `serve` sets its logs up from the configuration's [log] table (frame::logging).
    if !matches!(cli.command, Command::Serve) {
        init_logging("warn");
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postlog {name}: error: {e}");
            e.code
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<i32, CmdError> {
    let mut config = Config::load_or_default(cli.config.as_deref())?;
    if let Some(d) = cli.data {
        config.data_dir = d;
    }
    match cli.command {
        Command::Serve => crate::serve::run(&config),
        Command::Dump(a) => crate::dump::run(&config, &a),
        Command::Check => crate::check::run(&config),
        Command::Repair(a) => crate::repair::run(&config, a.apply),
        Command::Import(a) => crate::import::run(&config, &a),
        Command::Export(a) => crate::export::run(&config, &a),
        Command::Account(AccountCommand::Add { address }) => crate::account::add(&config, &address),
        Command::Account(AccountCommand::List) => crate::account::list(&config),
        Command::Domain(c) => run_directory(&config, domain_request(c)),
        Command::User(c) => run_directory(&config, user_request(c)?),
        Command::Alias(c) => run_directory(&config, alias_request(c)),
        Command::Queue(c) => run_directory(&config, queue_request(c)),
        Command::Dkim(c) => run_directory(&config, dkim_request(c)),
    }
}

fn run_directory(config: &Config, request: crate::control::Request) -> Result<i32, CmdError> {
    let response = crate::control::run_request(config, config.quota.default_bytes, request)?;
    crate::control::print_response(&response)
}

fn domain_request(c: DomainCommand) -> crate::control::Request {
    use crate::control::Request;
    match c {
        DomainCommand::Add { domain } => Request::DomainAdd { domain },
        DomainCommand::Del { domain, force } => Request::DomainDel { domain, force },
        DomainCommand::List => Request::DomainList,
    }
}

fn user_request(c: UserCommand) -> Result<crate::control::Request, CmdError> {
    use crate::control::Request;
    let credentials = |address: &str, from_stdin: bool| -> Result<crate::directory::Credentials, CmdError> {
        // Check the address before asking for a password.
        crate::directory::Address::parse(address).map_err(|e| CmdError::new(e.to_string()))?;
        let password =
            if from_stdin { crate::password::from_stdin()? } else { crate::password::from_terminal(address)? };
        crate::directory::Credentials::derive(password.expose_secret()).map_err(|e| CmdError::new(e.to_string()))
    };
    Ok(match c {
        UserCommand::Add { address, password_stdin } => {
            let credentials = credentials(&address, password_stdin)?;
            Request::UserAdd { address, credentials }
        }
        UserCommand::Del { address } => Request::UserDel { address },
        UserCommand::Passwd { address, password_stdin } => {
            let credentials = credentials(&address, password_stdin)?;
            Request::UserPasswd { address, credentials }
        }
        UserCommand::List { domain } => Request::UserList { domain },
        UserCommand::Quota { address, size } => {
            let quota_bytes = match size.trim().to_ascii_lowercase().as_str() {
                "default" => None,
                "unlimited" => Some(0),
                _ => Some(
                    crate::config::parse_size(&size)
                        .map_err(|e| CmdError::new(format!("the quota {e}; or give \"unlimited\" or \"default\"")))?,
                ),
            };
            Request::UserQuota { address, quota_bytes }
        }
    })
}

fn dkim_request(c: DkimCommand) -> crate::control::Request {
    use crate::control::Request;
    match c {
        DkimCommand::Generate { domain, selector, algorithm } => Request::DkimGenerate { domain, selector, algorithm },
        DkimCommand::Show { domain } => Request::DkimShow { domain },
        DkimCommand::List => Request::DkimList,
        DkimCommand::Del { domain } => Request::DkimDelete { domain },
    }
}

fn queue_request(c: QueueCommand) -> crate::control::Request {
    use crate::control::Request;
    match c {
        QueueCommand::List => Request::QueueList,
        QueueCommand::Show { id } => Request::QueueShow { id },
        QueueCommand::Retry { id } => Request::QueueRetry { id: Some(id) },
        QueueCommand::Delete { id } => Request::QueueDelete { id },
        QueueCommand::Flush => Request::QueueRetry { id: None },
    }
}

fn alias_request(c: AliasCommand) -> crate::control::Request {
    use crate::control::Request;
    match c {
        AliasCommand::Add { source, targets } => Request::AliasAdd { source, targets },
        AliasCommand::Del { source, targets } => Request::AliasDel { source, targets },
        AliasCommand::List { domain } => Request::AliasList { domain },
    }
}
