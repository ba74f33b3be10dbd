//! The command line: `postlog serve | dump | check | repair | import | export | account`.

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
    };
    init_logging(if matches!(cli.command, Command::Serve) { "info" } else { "warn" });
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
    }
}
