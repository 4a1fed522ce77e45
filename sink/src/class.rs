//! Error classes shared by every pgwarp crate that talks to servers, and the one place
//! SQLSTATEs are mapped. The engine re-exports this module as `pgwarp::error`.
//!
//! Every error the engine reports falls into one of two classes (see `../shared/STYLE.md`, rule 3):
//!
//! * **transient**: the operation may succeed if retried after a reconnect (connection lost,
//!   admin shutdown, serialization failure, too many connections). Retry loops use
//!   [`ErrorClass::Transient`] to decide whether to back off and try again.
//! * **definite**: retrying cannot help (permission denied, missing table, schema mismatch,
//!   invalid configuration). The engine stops and tells the operator what to fix.
//!
//! Error enums (`SinkError` here; `SourceError`, `CitusError`, ... in the engine) classify
//! through [`classify_sqlstate`], [`classify_io`] and [`classify_pg`], so the class of a server
//! error never depends on which module saw it.

use std::io;

/// Whether retrying an operation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Reconnect and retry with backoff.
    Transient,
    /// Stop and report; retrying cannot help.
    Definite,
}

/// Implemented by every error type of the engine.
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// Shorthand for `self.class() == ErrorClass::Transient`.
    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

/// Classifies a five-character SQLSTATE code.
///
/// Transient: class 08 (connection exception) except 08P01, 40001 (serialization failure),
/// 40P01 (deadlock), 53300 (too many connections), 55P03 (lock not available), 57P01 / 57P02 /
/// 57P03 (admin shutdown, crash shutdown, cannot connect now), 58030 (io error). Everything
/// else, including privileges (42501), undefined objects (42P01, 42704) and invalid parameters,
/// is definite.
///
/// `08P01` (protocol violation) is definite: the server raises it for malformed binary values
/// ("insufficient data left in message"), which a replay would send again.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "40001" | "40P01" | "53300" | "55P03" | "57P01" | "57P02" | "57P03" | "58030" => {
            ErrorClass::Transient
        }
        "08P01" => ErrorClass::Definite,
        c if c.starts_with("08") => ErrorClass::Transient,
        _ => ErrorClass::Definite,
    }
}

/// Classifies an I/O error seen on a connection to a server.
///
/// Connection-level failures (refused, reset, aborted, timed out, broken pipe, unexpected EOF)
/// are transient: the server may be restarting. Anything else is definite.
pub fn classify_io(err: &io::Error) -> ErrorClass {
    use io::ErrorKind::*;
    match err.kind() {
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe
        | TimedOut | UnexpectedEof | Interrupted | WouldBlock | HostUnreachable
        | NetworkUnreachable => ErrorClass::Transient,
        _ => ErrorClass::Definite,
    }
}

/// Classifies an error from `tokio_postgres`.
///
/// Server errors go through [`classify_sqlstate`]; a closed connection or an I/O failure
/// underneath is transient; anything else (protocol misuse, conversion errors) is definite.
pub fn classify_pg(err: &tokio_postgres::Error) -> ErrorClass {
    if let Some(db) = err.as_db_error() {
        return classify_sqlstate(db.code().code());
    }
    if err.is_closed() {
        return ErrorClass::Transient;
    }
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return classify_io(io);
        }
        source = s.source();
    }
    ErrorClass::Definite
}

impl Classify for tokio_postgres::Error {
    fn class(&self) -> ErrorClass {
        classify_pg(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_table() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "40001", "40P01", "53300",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Transient, "{code}");
        }
        for code in [
            "23505", "42P01", "42804", "22P02", "42501", "57014", "55000", "08P01",
        ] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Definite, "{code}");
        }
    }

    #[test]
    fn sqlstates_are_classified() {
        assert_eq!(classify_sqlstate("08006"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("08P01"), ErrorClass::Definite);
        assert_eq!(classify_sqlstate("57P01"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("40001"), ErrorClass::Transient);
        assert_eq!(classify_sqlstate("42501"), ErrorClass::Definite);
        assert_eq!(classify_sqlstate("42P01"), ErrorClass::Definite);
        assert_eq!(classify_sqlstate("55000"), ErrorClass::Definite);
    }

    #[test]
    fn io_errors_are_classified() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&reset), ErrorClass::Transient);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(classify_io(&denied), ErrorClass::Definite);
    }
}
