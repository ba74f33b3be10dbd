//! Values that must never reach a log: passwords, SCRAM keys, server secrets.

use std::fmt;

/// A value whose `Debug` output is redacted.
///
/// Deliberately missing: `Display` (nothing should print it), `PartialEq` (comparing a
/// secret with `==` is not constant-time; compare with `subtle` where it matters) and serde
/// support. Reading the value is explicit: [`Secret::expose_secret`].
///
/// The value is not zeroed on drop: that would need the `zeroize` crate, which this crate
/// does not depend on.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself; every call site is a place where it can leak, so keep them few.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret = Secret::new(String::from("pencil"));
        let debug = format!("{secret:?} {secret:#?}");
        assert!(!debug.contains("pencil"), "{debug}");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(secret.expose_secret(), "pencil");
        assert_eq!(secret.into_exposed(), "pencil");
    }
}
