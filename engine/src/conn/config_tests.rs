//! Resolution of connection settings: precedence, defaults, multiple hosts, password sources
//! and redaction, each against a fixed environment.

use std::path::PathBuf;
use std::time::Duration;

use super::env::FixedEnv;
use super::*;

fn tcp(name: &str) -> Host {
    Host::Tcp(name.to_owned())
}

fn parse(s: &str, env: &FixedEnv) -> ConnConfig {
    ConnConfig::parse_with_env(s, env).unwrap()
}

#[test]
fn defaults_without_socket_dir() {
    let cfg = parse("", &FixedEnv::with_user("alice"));
    assert_eq!(cfg.hosts.len(), 1);
    assert_eq!(cfg.hosts[0].host, tcp("localhost"));
    assert_eq!(cfg.hosts[0].port, 5432);
    assert_eq!(cfg.hosts[0].password, None);
    assert_eq!(cfg.user, "alice");
    assert_eq!(cfg.dbname, "alice");
    assert_eq!(cfg.sslmode, SslMode::Prefer);
    assert_eq!(cfg.sslrootcert, None);
    assert_eq!(cfg.connect_timeout, None);
    assert_eq!(cfg.application_name(), "pgwarp");
    assert!(cfg.keepalives.enabled);
}

#[test]
fn default_host_is_the_socket_dir_when_present() {
    let mut env = FixedEnv::with_user("alice");
    env.dirs.push(PathBuf::from(DEFAULT_SOCKET_DIR));
    let cfg = parse("port=5433", &env);
    assert_eq!(
        cfg.hosts[0].host,
        Host::Unix(PathBuf::from("/var/run/postgresql"))
    );
    assert_eq!(
        cfg.hosts[0].socket_path().unwrap(),
        PathBuf::from("/var/run/postgresql/.s.PGSQL.5433")
    );
    assert_eq!(cfg.hosts[0].describe(), "/var/run/postgresql/.s.PGSQL.5433");
}

#[test]
fn environment_fills_what_the_string_leaves_out() {
    let env = FixedEnv::with_user("alice")
        .var("PGHOST", "envhost")
        .var("PGPORT", "6000")
        .var("PGUSER", "bob")
        .var("PGPASSWORD", "envpw")
        .var("PGDATABASE", "envdb")
        .var("PGSSLMODE", "require")
        .var("PGSSLROOTCERT", "/etc/ca.pem")
        .var("PGAPPNAME", "envapp")
        .var("PGCONNECT_TIMEOUT", "1");
    let cfg = parse("", &env);
    assert_eq!(cfg.hosts[0].host, tcp("envhost"));
    assert_eq!(cfg.hosts[0].port, 6000);
    assert_eq!(cfg.hosts[0].password.as_ref().unwrap().expose(), "envpw");
    assert_eq!(cfg.user, "bob");
    assert_eq!(cfg.dbname, "envdb");
    assert_eq!(cfg.sslmode, SslMode::Require);
    assert_eq!(
        cfg.sslrootcert,
        Some(SslRootCert::File(PathBuf::from("/etc/ca.pem")))
    );
    assert_eq!(cfg.application_name(), "envapp");
    // libpq raises timeouts below two seconds to two
    assert_eq!(cfg.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(tls::verification(&cfg), tls::Verification::Chain);

    let cfg = parse(
        "host=h port=1 user=u password=p dbname=d sslmode=disable application_name=a",
        &env,
    );
    assert_eq!(cfg.hosts[0].host, tcp("h"));
    assert_eq!(cfg.hosts[0].port, 1);
    assert_eq!(cfg.hosts[0].password.as_ref().unwrap().expose(), "p");
    assert_eq!((cfg.user.as_str(), cfg.dbname.as_str()), ("u", "d"));
    assert_eq!(cfg.sslmode, SslMode::Disable);
    assert_eq!(cfg.application_name(), "a");
}

#[test]
fn multiple_hosts_and_ports() {
    let env = FixedEnv::with_user("u");
    let cfg = parse("postgresql://a:1,[::1]:2,/tmp/s/db", &env);
    let got: Vec<(Host, u16)> = cfg.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
    // "/tmp/s/db": the first '/' ends the host list, so the third host is empty (default)
    assert_eq!(got[0], (tcp("a"), 1));
    assert_eq!(got[1], (tcp("::1"), 2));
    assert_eq!(cfg.hosts[1].describe(), "[::1]:2");
    assert_eq!(cfg.dbname, "tmp/s/db");

    let cfg = parse("host=a,/run/pg,c port=7", &env);
    let got: Vec<(Host, u16)> = cfg.hosts.iter().map(|h| (h.host.clone(), h.port)).collect();
    assert_eq!(
        got,
        vec![
            (tcp("a"), 7),
            (Host::Unix(PathBuf::from("/run/pg")), 7),
            (tcp("c"), 7)
        ]
    );

    let cfg = parse("host=a,b port=7,", &env);
    assert_eq!(cfg.hosts[1].port, 5432);

    let err = ConnConfig::parse_with_env("host=a,b,c port=1,2", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: could not match 2 port numbers to 3 hosts"
    );
    let err = ConnConfig::parse_with_env("port=99999", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: invalid port number: \"99999\""
    );
}

#[test]
fn hostaddr_is_used_for_the_socket_but_host_for_names() {
    let cfg = parse(
        "host=db.example hostaddr=127.0.0.1 port=5",
        &FixedEnv::with_user("u"),
    );
    assert_eq!(cfg.hosts[0].host, tcp("db.example"));
    assert_eq!(cfg.hosts[0].hostaddr, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(cfg.hosts[0].describe(), "127.0.0.1:5");
}

#[test]
fn invalid_values_are_refused() {
    let env = FixedEnv::with_user("u");
    let err = ConnConfig::parse_with_env("sslmode=verify", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: invalid sslmode value: \"verify\""
    );
    assert!(ConnConfig::parse_with_env("connect_timeout=abc", &env).is_err());
    assert!(ConnConfig::parse_with_env("client_encoding=LATIN1", &env).is_err());
    let err = ConnConfig::parse_with_env("sslrootcert=system sslmode=require", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid connection string: weak sslmode \"require\" may not be used with \
         sslrootcert=system (use \"verify-full\")"
    );
    let cfg = parse("sslrootcert=system", &env);
    assert_eq!(cfg.sslmode, SslMode::VerifyFull);
}

#[test]
fn password_never_printed() {
    let cfg = parse(
        "host=h user=u password='s3cr3t pw' dbname=d application_name='my app'",
        &FixedEnv::with_user("u"),
    );
    let shown = cfg.to_string();
    let debug = format!("{cfg:?}");
    let pretty = format!("{cfg:#?}");
    for text in [&shown, &debug, &pretty] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    assert_eq!(
        shown,
        "host=h port=5432 user=u dbname=d password=******** sslmode=prefer application_name='my app'"
    );
    assert!(debug.contains("password: Some(********)"));
}

#[test]
fn display_round_trips_through_the_parser() {
    let env = FixedEnv::with_user("u");
    let cfg = parse(
        r"host=a,b port=1,2 user='x y' dbname='it\'s' sslmode=verify-ca sslrootcert=/ca.pem options='-c a=b'",
        &env,
    );
    let again = parse(&cfg.to_string(), &env);
    assert_eq!(again, cfg);
}

#[cfg(unix)]
#[test]
fn password_file_is_consulted_per_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        "a:5432:db:u:pw-a\nlocalhost:5432:db:u:pw-local\n/other/dir:5432:*:*:pw-dir\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut env = FixedEnv::with_user("u").var("PGPASSFILE", file.to_str().unwrap());
    env.real_root = Some(dir.path().to_owned());
    let cfg = parse("host=a,b,/var/run/postgresql,/other/dir dbname=db", &env);
    let pws: Vec<Option<&str>> = cfg
        .hosts
        .iter()
        .map(|h| h.password.as_ref().map(Password::expose))
        .collect();
    assert_eq!(
        pws,
        vec![Some("pw-a"), None, Some("pw-local"), Some("pw-dir")]
    );

    // an explicit password wins over the file
    let cfg = parse("host=a dbname=db password=explicit", &env);
    assert_eq!(cfg.hosts[0].password.as_ref().unwrap().expose(), "explicit");

    // the passfile option wins over PGPASSFILE; HOME/.pgpass is the default
    let cfg = parse("host=a dbname=db passfile=/nonexistent", &env);
    assert_eq!(cfg.hosts[0].password, None);
    std::fs::copy(&file, dir.path().join(".pgpass")).unwrap();
    let mut env = FixedEnv::with_user("u").var("HOME", dir.path().to_str().unwrap());
    env.real_root = Some(dir.path().to_owned());
    let cfg = parse("host=a dbname=db", &env);
    assert_eq!(cfg.hosts[0].password.as_ref().unwrap().expose(), "pw-a");

    // group-readable: ignored, as libpq does
    std::fs::set_permissions(
        dir.path().join(".pgpass"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cfg = parse("host=a dbname=db", &env);
    assert_eq!(cfg.hosts[0].password, None);
}

#[cfg(unix)]
#[test]
fn default_root_certificate_turns_require_into_verify_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = FixedEnv::with_user("u").var("HOME", dir.path().to_str().unwrap());
    env.real_root = Some(dir.path().to_owned());
    let cfg = parse("sslmode=require", &env);
    assert_eq!(cfg.sslrootcert, None);
    assert_eq!(tls::verification(&cfg), tls::Verification::None);
    std::fs::create_dir(dir.path().join(".postgresql")).unwrap();
    let root = dir.path().join(".postgresql/root.crt");
    std::fs::write(&root, "").unwrap();
    let cfg = parse("sslmode=require", &env);
    assert_eq!(cfg.sslrootcert, Some(SslRootCert::File(root)));
    assert_eq!(tls::verification(&cfg), tls::Verification::Chain);
    let cfg = parse("sslmode=verify-full", &env);
    assert_eq!(tls::verification(&cfg), tls::Verification::Full);
}

#[test]
fn verify_modes_need_a_root_certificate() {
    let cfg = parse("sslmode=verify-ca", &FixedEnv::with_user("u"));
    let err = tls::client_config(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid TLS settings: sslmode \"verify-ca\" needs a root certificate: set sslrootcert \
         to a CA file, use sslrootcert=system, or change sslmode to disable server certificate \
         verification"
    );
    let cfg = parse("sslmode=require", &FixedEnv::with_user("u"));
    assert!(tls::client_config(&cfg).unwrap().is_some());
    let cfg = parse("sslmode=disable", &FixedEnv::with_user("u"));
    assert!(tls::client_config(&cfg).unwrap().is_none());
}
