//! Reading a new password for `postlog user add|passwd`: from standard input
//! (`--password-stdin`), or typed twice on the terminal without echo.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};

use postlog_protocol::secret::Secret;

use crate::util::CmdError;

/// Longest password taken from standard input.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// The whole of standard input, without one final line end (`printf 'secret'` and
/// `echo secret` give the same password).
pub fn from_stdin() -> Result<Secret<String>, CmdError> {
    let mut bytes = Vec::new();
    io::stdin()
        .take(MAX_PASSWORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CmdError::new(format!("cannot read the password from standard input: {e}")))?;
    if bytes.len() as u64 > MAX_PASSWORD_BYTES {
        return Err(CmdError::new(format!("the password on standard input is longer than {MAX_PASSWORD_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| CmdError::new("the password on standard input is not UTF-8"))?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_string();
    if text.is_empty() {
        return Err(CmdError::new("the password on standard input is empty"));
    }
    Ok(Secret::new(text))
}

/// Asks for the password twice on the controlling terminal, with echo off.
pub fn from_terminal(address: &str) -> Result<Secret<String>, CmdError> {
    let tty = File::options().read(true).write(true).open("/dev/tty").map_err(|_| {
        CmdError::new(
            "there is no terminal to ask for the password on; pass it on standard input with --password-stdin",
        )
    })?;
    let io_err = |e: io::Error| CmdError::new(format!("cannot read the password from the terminal: {e}"));
    let mut out = tty.try_clone().map_err(io_err)?;
    let mut input = BufReader::new(tty.try_clone().map_err(io_err)?);
    let first = {
        let _quiet = echo::Off::new(&tty).map_err(io_err)?;
        write!(out, "Password for {address}: ").map_err(io_err)?;
        out.flush().map_err(io_err)?;
        let first = read_line(&mut input).map_err(io_err)?;
        write!(out, "\nRetype the password: ").map_err(io_err)?;
        out.flush().map_err(io_err)?;
        let second = read_line(&mut input).map_err(io_err)?;
        writeln!(out).map_err(io_err)?;
        if first.expose_secret() != second.expose_secret() {
            return Err(CmdError::new("the two passwords differ; nothing was changed"));
        }
        first
    };
    if first.expose_secret().is_empty() {
        return Err(CmdError::new("the password is empty; nothing was changed"));
    }
    Ok(first)
}

fn read_line(input: &mut impl BufRead) -> io::Result<Secret<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
    }
    let len = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(len);
    Ok(Secret::new(line))
}

/// Terminal echo, switched off for as long as an [`echo::Off`] lives.
#[allow(unsafe_code)]
mod echo {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    pub struct Off {
        fd: i32,
        saved: libc::termios,
    }

    impl Off {
        pub fn new(tty: &File) -> io::Result<Off> {
            let fd = tty.as_raw_fd();
            // SAFETY: `termios` is plain data; tcgetattr fills the one we own from a file
            // descriptor that `tty` keeps open for this call.
            let mut saved: libc::termios = unsafe { std::mem::zeroed() };
            if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: as above; tcsetattr only reads `quiet`.
            if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Off { fd, saved })
        }
    }

    impl Drop for Off {
        fn drop(&mut self) {
            // SAFETY: restores the settings read in `new` on the same descriptor, which the
            // caller's `File` keeps open while this guard lives.
            unsafe {
                libc::tcsetattr(self.fd, libc::TCSAFLUSH, &self.saved);
            }
        }
    }
}
