//! The IMAP front end's server-side pieces.
//!
//! So far [`render`]: the FETCH data items built from a message's stored metadata and bytes
//! (`ENVELOPE`, `BODY`/`BODYSTRUCTURE`, `BODY[section]<partial>`, `BINARY[part]` and
//! `BINARY.SIZE`), as pure functions without IO, for the session driver to call. Commands
//! are parsed by the protocol crate (`postlog_protocol::imap`); the driver maps them onto
//! [`render::SectionSpec`] and [`render::Partial`].

pub mod render;
pub mod session;
pub mod view;
