//! Quoting names and values for SQL: the one implementation every pgwarp crate uses.
//!
//! It lives in the sink, the lowest crate that writes SQL; the engine re-exports it
//! (`pgwarp::citus::names`, `pgwarp::source::quote`). Identifiers are always double-quoted:
//! that is valid for every name, including mixed case, reserved words, spaces and multibyte
//! characters, and needs no keyword list. Literals assume `standard_conforming_strings = on`
//! (the default since PostgreSQL 9.1, and always on in the walsender's grammar).

/// Quotes an identifier: always double-quoted, inner `"` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `"schema"."name"`, each part quoted.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes a string literal: single-quoted, inner `'` doubled; backslashes are literal.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// An identifier as a person would type it in a message: bare when it is a plain lowercase
/// name, quoted otherwise.
pub fn display_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        quote_ident(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_double_quoted() {
        assert_eq!(quote_ident("orders"), r#""orders""#);
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_ident("Größe 表"), "\"Größe 表\"");
        assert_eq!(quote_qualified("s", "T"), r#""s"."T""#);
    }

    #[test]
    fn literals_double_single_quotes_and_keep_backslashes() {
        assert_eq!(quote_literal(r"it's \n"), r"'it''s \n'");
    }

    #[test]
    fn display_ident_quotes_only_when_needed() {
        assert_eq!(display_ident("orders_2"), "orders_2");
        assert_eq!(display_ident("Orders"), r#""Orders""#);
        assert_eq!(display_ident("2x"), r#""2x""#);
    }
}
