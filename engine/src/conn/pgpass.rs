//! The password file (`~/.pgpass`, `PGPASSFILE`, or the `passfile` option), read as libpq does.
//!
//! Each line is `hostname:port:database:username:password`. A field of exactly `*` matches
//! anything; `\:` and `\\` stand for a literal colon and backslash; lines starting with `#` are
//! comments; the first matching line wins. libpq refuses a file readable by group or others
//! (and anything that is not a plain file) with a warning, and so do we: a password file that
//! leaks is worse than a connection that asks for a password.
//!
//! For a Unix-socket connection the host matched is the socket directory, except the default
//! directory, which matches `localhost` (libpq's `passwordFromFile`).

use std::fs;
use std::path::{Path, PathBuf};

use super::Password;

/// What a lookup is matched against.
#[derive(Debug, Clone, Copy)]
pub struct PgpassKey<'a> {
    /// Host name, or the Unix socket directory (`localhost` for the default directory).
    pub host: &'a str,
    /// Port as written in the file.
    pub port: u16,
    /// Database name.
    pub dbname: &'a str,
    /// Role name.
    pub user: &'a str,
}

/// Why a password file was not used (logged as a warning, as libpq does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgpassIssue {
    /// The path exists but is not a plain file.
    #[error("password file \"{}\" is not a plain file", .0.display())]
    NotPlainFile(PathBuf),
    /// Readable or writable by group or others.
    #[error(
        "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
        .0.display()
    )]
    TooOpen(PathBuf),
    /// The file could not be read.
    #[error("could not read password file \"{}\": {}", .0.display(), .1)]
    Unreadable(PathBuf, String),
}

/// Looks up a password in the file at `path`.
///
/// Returns `Ok(None)` when the file does not exist or no line matches, and `Err` when the file
/// exists but must be ignored; callers log the issue and continue without a password.
pub fn lookup(path: &Path, key: PgpassKey<'_>) -> Result<Option<Password>, PgpassIssue> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(_) => return Ok(None),
    };
    if !meta.is_file() {
        return Err(PgpassIssue::NotPlainFile(path.to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(PgpassIssue::TooOpen(path.to_owned()));
        }
    }
    let text =
        fs::read(path).map_err(|e| PgpassIssue::Unreadable(path.to_owned(), e.to_string()))?;
    Ok(find_in(&String::from_utf8_lossy(&text), key))
}

/// Finds the first line of `text` matching `key`.
pub fn find_in(text: &str, key: PgpassKey<'_>) -> Option<Password> {
    let port = key.port.to_string();
    let wanted = [key.host, port.as_str(), key.dbname, key.user];
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_fields(line)?;
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field.wildcard || field.text == value);
            matches.then(|| Password::new(fields[4].text.clone()))
        })
}

struct Field {
    text: String,
    /// The raw field was exactly `*` (an escaped `\*` is a literal star).
    wildcard: bool,
}

/// Splits a line into five unescaped fields; `None` if it has fewer.
fn split_fields(line: &str) -> Option<Vec<Field>> {
    let mut fields = Vec::with_capacity(5);
    let mut text = String::new();
    let mut raw_len = 0usize;
    let mut raw_star = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if fields.len() == 4 {
            // the password: everything to the end of the line, escapes removed
            match c {
                '\\' => text.extend(chars.next()),
                c => text.push(c),
            }
            continue;
        }
        match c {
            '\\' => {
                text.extend(chars.next());
                raw_len += 2;
            }
            ':' => {
                fields.push(Field {
                    text: std::mem::take(&mut text),
                    wildcard: raw_len == 1 && raw_star,
                });
                raw_len = 0;
                raw_star = false;
            }
            c => {
                raw_star = raw_len == 0 && c == '*';
                raw_len += 1;
                text.push(c);
            }
        }
    }
    if fields.len() < 4 {
        return None;
    }
    fields.push(Field {
        text,
        wildcard: false,
    });
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: u16, dbname: &'a str, user: &'a str) -> PgpassKey<'a> {
        PgpassKey {
            host,
            port,
            dbname,
            user,
        }
    }

    fn pw(found: Option<Password>) -> Option<String> {
        found.map(|p| p.expose().to_owned())
    }

    #[test]
    fn first_match_wins_with_wildcards_and_escapes() {
        let file = "\
# comment line
db1:5432:app:alice:first
*:5432:*:alice:second
db\\:2:*:*:bob:co\\:lon\\\\pw
/tmp/sock:5433:*:*:socketpw
\\*:*:*:*:literal-star
short:line
*:*:*:*:fallback
";
        let cases = [
            (key("db1", 5432, "app", "alice"), "first"),
            (key("db9", 5432, "app", "alice"), "second"),
            (key("db:2", 7, "x", "bob"), "co:lon\\pw"),
            (key("/tmp/sock", 5433, "d", "u"), "socketpw"),
            (key("*", 1, "d", "u"), "literal-star"),
            (key("db1", 5432, "app", "carol"), "fallback"),
        ];
        for (k, want) in cases {
            assert_eq!(pw(find_in(file, k)).as_deref(), Some(want), "{k:?}");
        }
        assert_eq!(
            pw(find_in(
                "db1:5432:app:alice:x\n",
                key("db1", 5433, "app", "alice")
            )),
            None
        );
    }

    #[test]
    fn password_may_contain_colons_and_crlf_is_trimmed() {
        let file = "h:1:d:u:a:b:c\r\n";
        assert_eq!(pw(find_in(file, key("h", 1, "d", "u"))).unwrap(), "a:b:c");
    }

    #[cfg(unix)]
    #[test]
    fn file_with_group_access_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        fs::write(&path, "*:*:*:*:secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = lookup(&path, key("h", 1, "d", "u")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "password file \"{}\" has group or world access; permissions should be u=rw \
                 (0600) or less",
                path.display()
            )
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            pw(lookup(&path, key("h", 1, "d", "u")).unwrap()).unwrap(),
            "secret"
        );
        assert_eq!(
            lookup(&dir.path().join("missing"), key("h", 1, "d", "u")).unwrap(),
            None
        );
        assert!(matches!(
            lookup(dir.path(), key("h", 1, "d", "u")).unwrap_err(),
            PgpassIssue::NotPlainFile(_)
        ));
    }
}
