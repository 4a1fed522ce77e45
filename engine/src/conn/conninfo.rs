//! The two spellings of a libpq connection string, parsed into raw `keyword = value` pairs.
//!
//! Operators paste the connection strings they already use with `psql`, so pgwarp accepts both
//! forms libpq does (PostgreSQL docs, "Connection Strings"):
//!
//! * `host=db1 port=5432 dbname='my db' password='it\'s'`: keyword/value pairs separated by
//!   whitespace; a value may be single-quoted; a backslash escapes the next character, quoted
//!   or not.
//! * `postgresql://user:secret@host1:5432,host2/dbname?sslmode=require`: a URI whose every
//!   component is percent-decoded; `[...]` brackets an IPv6 address; a host that decodes to a
//!   path starting with `/` is a Unix socket directory.
//!
//! Both produce the same raw pairs (a multi-host URI becomes `host=h1,h2 port=p1,p2`, as in
//! libpq); `config.rs` then applies environment variables, defaults and validation.

use percent_encoding::percent_decode_str;

use super::ConnError;

/// Keywords pgwarp understands.
const KNOWN: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "passfile",
    "dbname",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "fallback_application_name",
    "options",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "client_encoding",
    "sslsni",
];

/// libpq keywords that pgwarp recognizes but cannot honour; refusing them is safer than
/// silently connecting differently from what the operator asked.
const UNSUPPORTED: &[&str] = &[
    "service",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcompression",
    "requirepeer",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "require_auth",
    "channel_binding",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "target_session_attrs",
    "load_balance_hosts",
    "replication",
    "sslnegotiation",
    "sslcertmode",
];

/// Parsed `keyword = value` pairs, in the order written (a later repeat wins).
pub type RawOptions = Vec<(String, String)>;

/// Parses either a URI (`postgres://`, `postgresql://`) or a keyword/value string.
pub fn parse(input: &str) -> Result<RawOptions, ConnError> {
    let trimmed = input.trim_start();
    let options = if let Some(rest) = strip_uri_prefix(trimmed) {
        parse_uri(rest)?
    } else {
        parse_keyword_value(input)?
    };
    for (key, _) in &options {
        check_keyword(key)?;
    }
    Ok(options)
}

fn strip_uri_prefix(s: &str) -> Option<&str> {
    s.strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
}

fn check_keyword(key: &str) -> Result<(), ConnError> {
    if KNOWN.contains(&key) {
        Ok(())
    } else if UNSUPPORTED.contains(&key) {
        Err(invalid(format!(
            "connection option \"{key}\" is not supported by pgwarp"
        )))
    } else {
        Err(invalid(format!("invalid connection option \"{key}\"")))
    }
}

fn invalid(reason: String) -> ConnError {
    ConnError::InvalidConnInfo(reason)
}

/// Parses `key=value key2='quoted value'` the way libpq's `conninfo_parse` does.
pub fn parse_keyword_value(input: &str) -> Result<RawOptions, ConnError> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(invalid(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(invalid("unterminated quoted string".to_owned())),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(invalid("unterminated quoted string".to_owned())),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

fn decode(component: &str, what: &str) -> Result<String, ConnError> {
    percent_decode_str(component)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid(format!("invalid percent-encoded {what} in URI")))
}

/// Parses what follows `postgresql://`.
fn parse_uri(rest: &str) -> Result<RawOptions, ConnError> {
    let mut out = Vec::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], Some(&before_query[i + 1..])),
        None => (before_query, None),
    };
    // userinfo ends at the last '@' of the authority; an '@' in a password must be encoded,
    // but being lenient here matches what users expect.
    let hostlist = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_owned(), decode(user, "user name")?));
            }
            if let Some(password) = password {
                out.push(("password".to_owned(), decode(password, "password")?));
            }
            &authority[at + 1..]
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostlist.split(',') {
            let (host, port) = split_host_port(spec)?;
            hosts.push(decode(host, "host")?);
            ports.push(decode(port, "port")?);
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            out.push(("host".to_owned(), hosts.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.push(("port".to_owned(), ports.join(",")));
        }
    }
    if let Some(path) = path
        && !path.is_empty()
    {
        out.push(("dbname".to_owned(), decode(path, "database name")?));
    }
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(invalid(format!(
                    "missing key/value separator \"=\" in URI query \"{pair}\""
                )));
            };
            let key = decode(key, "query parameter")?;
            let value = decode(value, "query parameter")?;
            // libpq's JDBC-compatibility alias
            if key == "ssl" {
                if value == "true" {
                    out.push(("sslmode".to_owned(), "require".to_owned()));
                    continue;
                }
                return Err(invalid(format!(
                    "invalid value \"{value}\" for URI parameter \"ssl\""
                )));
            }
            out.push((key, value));
        }
    }
    Ok(out)
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` (still percent-encoded).
fn split_host_port(spec: &str) -> Result<(&str, &str), ConnError> {
    if let Some(rest) = spec.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(invalid(format!(
                "missing \"]\" in IPv6 host address \"{spec}\""
            )));
        };
        let host = &rest[..end];
        if host.is_empty() {
            return Err(invalid(
                "IPv6 host address may not be empty in URI".to_owned(),
            ));
        }
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None if after.is_empty() => Ok((host, "")),
            None => Err(invalid(format!(
                "unexpected character after IPv6 host address \"{spec}\""
            ))),
        };
    }
    Ok(spec.split_once(':').unwrap_or((spec, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> RawOptions {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn keyword_value_with_quotes_and_escapes() {
        let got =
            parse(r"host=db1  port = 5433 dbname='my db' password='it\'s \\x' user=a\ b").unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("host", "db1"),
                ("port", "5433"),
                ("dbname", "my db"),
                ("password", r"it's \x"),
                ("user", "a b"),
            ])
        );
        assert_eq!(parse("  ").unwrap(), pairs(&[]));
        assert_eq!(parse("dbname=''").unwrap(), pairs(&[("dbname", "")]));
    }

    #[test]
    fn keyword_value_errors() {
        assert_eq!(
            parse("host").unwrap_err().to_string(),
            "invalid connection string: missing \"=\" after \"host\""
        );
        assert_eq!(
            parse("password='abc").unwrap_err().to_string(),
            "invalid connection string: unterminated quoted string"
        );
        assert_eq!(
            parse("hots=x").unwrap_err().to_string(),
            "invalid connection string: invalid connection option \"hots\""
        );
        assert_eq!(
            parse("sslcert=/x").unwrap_err().to_string(),
            "invalid connection string: connection option \"sslcert\" is not supported by pgwarp"
        );
    }

    #[test]
    fn uri_full() {
        let got = parse(
            "postgresql://us%40er:p%3Ass@host1:5433,[::1]:5434,host3/my%20db?sslmode=verify-full&application_name=a%26b",
        )
        .unwrap();
        assert_eq!(
            got,
            pairs(&[
                ("user", "us@er"),
                ("password", "p:ss"),
                ("host", "host1,::1,host3"),
                ("port", "5433,5434,"),
                ("dbname", "my db"),
                ("sslmode", "verify-full"),
                ("application_name", "a&b"),
            ])
        );
    }

    #[test]
    fn uri_minimal_and_socket_paths() {
        assert_eq!(parse("postgres://").unwrap(), pairs(&[]));
        assert_eq!(
            parse("postgresql:///mydb").unwrap(),
            pairs(&[("dbname", "mydb")])
        );
        assert_eq!(
            parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db?ssl=true").unwrap(),
            pairs(&[
                ("host", "/var/run/postgresql"),
                ("dbname", "db"),
                ("sslmode", "require")
            ])
        );
        assert_eq!(
            parse("postgresql://u@:5999?host=/tmp").unwrap(),
            pairs(&[("user", "u"), ("port", "5999"), ("host", "/tmp")])
        );
    }

    #[test]
    fn uri_errors() {
        assert!(parse("postgresql://h/db?bogus=1").is_err());
        assert!(parse("postgresql://[::1/db").is_err());
        assert!(parse("postgresql://h/db?sslmode").is_err());
        assert!(parse("postgresql://h/%ZZ%FF").is_err());
    }
}
