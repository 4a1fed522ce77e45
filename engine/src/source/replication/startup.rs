//! Opening a replication connection: socket, TLS, startup packet and authentication.
//!
//! The startup packet carries `replication=database` (a walsender that also accepts SQL) and
//! fixes the session settings whose values change how data is rendered, so that anything
//! read on this connection does not depend on the role's or database's defaults:
//! `DateStyle=ISO, MDY`, `TimeZone=UTC`, `IntervalStyle=postgres`, `extra_float_digits=3`,
//! `bytea_output=hex`, `client_encoding=UTF8`, plus `application_name` (default `pgwarp`).
//!
//! Authentication methods: trust, cleartext `password`, `md5` and `scram-sha-256` (without
//! channel binding: the client announces it does not support it, which servers accept).

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use crate::conn::socket::{self, TlsAttempt};
use crate::conn::{ConnConfig, ConnError, HostTarget, ServerError};

use super::wire::{Backend, Wire, log_notice, server_error};

/// Session settings sent in the startup packet.
pub const SESSION_PARAMETERS: &[(&str, &str)] = &[
    ("DateStyle", "ISO, MDY"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("client_encoding", "UTF8"),
];

/// What the server told us during startup.
#[derive(Debug, Default)]
pub(crate) struct Startup {
    /// `ParameterStatus` values (`server_version`, `integer_datetimes`, ...).
    pub params: Vec<(String, String)>,
    /// The walsender's PID.
    pub backend_pid: i32,
}

/// Connects to one host with one TLS choice and authenticates.
pub(crate) async fn connect_one(
    cfg: &ConnConfig,
    target: &HostTarget,
    tls: TlsAttempt,
) -> Result<(Wire, Startup), ConnError> {
    let tls_config = crate::conn::tls::client_config(cfg)?;
    let socket = socket::open(cfg, target, tls, tls_config.as_ref()).await?;
    let described = target.describe();
    let mut wire = Wire::new(socket, described.clone());
    let protocol = |reason: String| ConnError::Protocol {
        target: described.clone(),
        reason,
    };
    let io = |e: crate::source::SourceError| match e {
        crate::source::SourceError::Io { source, .. } => ConnError::Unreachable {
            target: described.clone(),
            source,
        },
        crate::source::SourceError::Closed { .. } => ConnError::Unreachable {
            target: described.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection unexpectedly",
            ),
        },
        other => protocol(other.to_string()),
    };

    let mut params: Vec<(&str, &str)> = vec![
        ("user", cfg.user.as_str()),
        ("database", cfg.dbname.as_str()),
        ("replication", "database"),
        ("application_name", cfg.application_name()),
    ];
    if let Some(options) = &cfg.options {
        params.push(("options", options.as_str()));
    }
    params.extend_from_slice(SESSION_PARAMETERS);
    frontend::startup_message(params.iter().copied(), wire.out())
        .map_err(|e| protocol(format!("could not encode startup message: {e}")))?;
    wire.flush().await.map_err(io)?;

    authenticate(&mut wire, cfg, target).await?;

    let mut startup = Startup::default();
    loop {
        match wire.next().await.map_err(io)? {
            Backend::Other(Message::ParameterStatus(body)) => {
                let name = body.name().map_err(|e| protocol(e.to_string()))?.to_owned();
                let value = body
                    .value()
                    .map_err(|e| protocol(e.to_string()))?
                    .to_owned();
                startup.params.push((name, value));
            }
            Backend::Other(Message::BackendKeyData(body)) => {
                startup.backend_pid = body.process_id()
            }
            Backend::Other(Message::NoticeResponse(body)) => log_notice(&body, wire.target()),
            Backend::Other(Message::ReadyForQuery(_)) => return Ok((wire, startup)),
            Backend::Other(Message::ErrorResponse(body)) => {
                return Err(ConnError::from_startup(
                    &described,
                    &cfg.user,
                    server_error(&body),
                ));
            }
            other => {
                return Err(protocol(format!(
                    "unexpected {} during startup",
                    other.name()
                )));
            }
        }
    }
}

async fn authenticate(
    wire: &mut Wire,
    cfg: &ConnConfig,
    target: &HostTarget,
) -> Result<(), ConnError> {
    let described = target.describe();
    let protocol = |reason: String| ConnError::Protocol {
        target: described.clone(),
        reason,
    };
    let io = |e: crate::source::SourceError| match e {
        crate::source::SourceError::Io { source, .. } => ConnError::Unreachable {
            target: described.clone(),
            source,
        },
        other => protocol(other.to_string()),
    };
    let password = || {
        target
            .password
            .as_ref()
            .map(|p| p.expose().as_bytes().to_vec())
            .ok_or_else(|| ConnError::PasswordRequired {
                user: cfg.user.clone(),
                target: described.clone(),
            })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let message = match wire.next().await.map_err(io)? {
            Backend::Other(m) => m,
            other => {
                return Err(protocol(format!(
                    "unexpected {} during authentication",
                    other.name()
                )));
            }
        };
        match message {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let pw = password()?;
                frontend::password_message(&pw, wire.out()).map_err(|e| protocol(e.to_string()))?;
            }
            Message::AuthenticationMd5Password(body) => {
                let pw = password()?;
                let hashed = md5_hash(cfg.user.as_bytes(), &pw, body.salt());
                frontend::password_message(hashed.as_bytes(), wire.out())
                    .map_err(|e| protocol(e.to_string()))?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut has_scram = false;
                while let Some(mechanism) =
                    fallible_iterator::FallibleIterator::next(&mut mechanisms)
                        .map_err(|e| protocol(e.to_string()))?
                {
                    has_scram |= mechanism == SCRAM_SHA_256;
                }
                if !has_scram {
                    return Err(protocol("server offered no supported SASL mechanism (pgwarp supports SCRAM-SHA-256)".to_owned()));
                }
                let state = ScramSha256::new(&password()?, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), wire.out())
                    .map_err(|e| protocol(e.to_string()))?;
                scram = Some(state);
            }
            Message::AuthenticationSaslContinue(body) => {
                let state = scram
                    .as_mut()
                    .ok_or_else(|| protocol("unexpected SASL continue".to_owned()))?;
                state
                    .update(body.data())
                    .map_err(|e| protocol(format!("SCRAM exchange failed: {e}")))?;
                let reply = state.message().to_vec();
                frontend::sasl_response(&reply, wire.out()).map_err(|e| protocol(e.to_string()))?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let state = scram
                    .as_mut()
                    .ok_or_else(|| protocol("unexpected SASL final".to_owned()))?;
                state
                    .finish(body.data())
                    .map_err(|e| protocol(format!("server failed SCRAM verification: {e}")))?;
                continue;
            }
            Message::ErrorResponse(body) => {
                let error: ServerError = server_error(&body);
                return Err(ConnError::from_startup(&described, &cfg.user, error));
            }
            Message::NoticeResponse(body) => {
                log_notice(&body, &described);
                continue;
            }
            Message::AuthenticationGss
            | Message::AuthenticationSspi
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGssContinue(_) => {
                return Err(protocol(
                    "the server asks for an authentication method pgwarp does not support \
                     (GSSAPI/SSPI/Kerberos); use password, md5 or scram-sha-256"
                        .to_owned(),
                ));
            }
            other => {
                let name = Backend::Other(other).name();
                return Err(protocol(format!("unexpected {name} during authentication")));
            }
        }
        wire.flush().await.map_err(io)?;
    }
}
