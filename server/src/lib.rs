pub mod mailfmt;

pub mod account;
pub mod check;
pub mod cli;
pub mod config;
pub mod dump;
pub mod export;
pub mod import;
pub mod inspect;
pub mod logscan;
pub mod reader;
pub mod repair;
pub mod serve;
pub mod util;
