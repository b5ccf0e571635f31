//! Configuration shared by every binary: flags and environment through clap, defaults that
//! work for the embedded mesh, secrets that never print, and one clear line on a bad setting.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

/// A secret value: `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// A bad setting, named.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(name: &'static str, problem: impl Into<String>) -> Self {
        Self {
            name,
            problem: problem.into(),
        }
    }
}

/// The JWT secret must be long enough for HS256 to mean something.
pub fn check_jwt_secret(name: &'static str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose().len() < 32 {
        return Err(ConfigError::new(name, "must be at least 32 characters"));
    }
    Ok(())
}

/// The service-token secret: long enough, and not the web secret (one key per kind of
/// token, so a leaked web key cannot mint service tokens).
pub fn check_service_jwt_secret(web: &Secret, service: &Secret) -> Result<(), ConfigError> {
    check_jwt_secret("SERVICE_JWT_SECRET", service)?;
    if web == service {
        return Err(ConfigError::new(
            "SERVICE_JWT_SECRET",
            "must differ from JWT_SECRET",
        ));
    }
    Ok(())
}

/// Which storage backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub fn backend_of(name: &'static str, url: &str) -> Result<Backend, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(ConfigError::new(name, "must start with postgres:// or sqlite:"))
    }
}

pub fn parse_addr(name: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(name, format!("{s:?} is not HOST:PORT")))
}

/// Durations as `90s`, `15m`, `2h`, `7d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 2h, 7d"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("{s:?} has an unknown unit (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// Log format: pretty for people, JSON for collectors (k8s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }

    #[test]
    fn backends_by_scheme() {
        assert_eq!(backend_of("X", "postgres://h/db").unwrap(), Backend::Postgres);
        assert_eq!(backend_of("X", "sqlite:data/a.db").unwrap(), Backend::Sqlite);
        let e = backend_of("INVITE_DATABASE_URL", "mysql://x").unwrap_err();
        assert!(e.to_string().contains("INVITE_DATABASE_URL"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("1w").is_err());
    }
}
