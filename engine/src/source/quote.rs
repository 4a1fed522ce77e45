//! Quoting names and values for SQL and for replication commands, and checking slot names.
//!
//! Replication commands (`CREATE_REPLICATION_SLOT`, `START_REPLICATION`, ...) go through the
//! walsender's own grammar (`repl_gram.y`), which accepts double-quoted identifiers and
//! single-quoted literals with doubled quotes, like SQL with `standard_conforming_strings` on.
//! pgoutput's `publication_names` option is itself a list of identifiers inside a literal
//! (parsed with `SplitIdentifierString`), so it is quoted twice.

use super::SourceError;

pub use pgwarp_sink::quote::{display_ident, quote_ident, quote_literal, quote_qualified};

/// The value of pgoutput's `publication_names` option: `"a","b"` as a literal.
pub fn publication_names_literal<S: AsRef<str>>(names: &[S]) -> String {
    let list: Vec<String> = names.iter().map(|n| quote_ident(n.as_ref())).collect();
    quote_literal(&list.join(","))
}

/// Checks a slot name the way the server does (`ReplicationSlotValidateName`): 1 to 63
/// characters of lowercase letters, digits and underscores. Checking upfront gives a clear
/// message before any connection is made.
pub fn validate_slot_name(name: &str) -> Result<(), SourceError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("only lowercase letters, digits and underscores are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(SourceError::InvalidName {
            what: "replication slot",
            name: name.to_owned(),
            reason: reason.to_owned(),
        }),
    }
}

/// Checks a publication name: non-empty, at most 63 bytes (longer names would be truncated
/// by the server and then not match).
pub fn validate_publication_name(name: &str) -> Result<(), SourceError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 bytes")
    } else if name.contains('\0') {
        Some("it contains a NUL character")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(SourceError::InvalidName {
            what: "publication",
            name: name.to_owned(),
            reason: reason.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("abc"), "\"abc\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"back\slash"), r"'back\slash'");
        assert_eq!(quote_qualified("Sch", "t"), "\"Sch\".\"t\"");
        assert_eq!(display_ident("app_user1"), "app_user1");
        assert_eq!(display_ident("App"), "\"App\"");
        assert_eq!(display_ident("1a"), "\"1a\"");
    }

    #[test]
    fn publication_names_are_quoted_twice() {
        assert_eq!(publication_names_literal(&["a", "b"]), r#"'"a","b"'"#);
        assert_eq!(
            publication_names_literal(&["it's", "x\"y"]),
            r#"'"it''s","x""y"'"#
        );
    }

    #[test]
    fn slot_names() {
        assert!(validate_slot_name("pgwarp_slot_1").is_ok());
        assert_eq!(
            validate_slot_name("Bad-Name").unwrap_err().to_string(),
            "invalid replication slot name \"Bad-Name\": only lowercase letters, digits and \
             underscores are allowed"
        );
        assert!(validate_slot_name("").is_err());
        assert!(validate_slot_name(&"a".repeat(64)).is_err());
        assert!(validate_slot_name(&"a".repeat(63)).is_ok());
        assert!(validate_publication_name("Pub \"x\"").is_ok());
        assert!(validate_publication_name("").is_err());
    }
}
