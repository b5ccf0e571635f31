//! How web tokens are verified, one set of settings for the gateway and every service
//! (services accept web tokens from direct gRPC callers too, under the same rules):
//! `JWT_SECRET` (HS256) and/or a JWKS (`JWT_JWKS_URL` or `JWT_JWKS_FILE`, refreshed every
//! `JWT_JWKS_REFRESH`), and the policy `JWT_MAX_LIFETIME`, `JWT_ISSUER`, `JWT_AUDIENCE`.

use std::{path::PathBuf, time::Duration};

use super::{
    JwtKeys, TokenPolicy,
    jwks::{Jwks, JwksOptions, Source},
    tokens::DEFAULT_MAX_LIFETIME,
};
use crate::config::{ConfigError, Secret, check_jwt_secret, parse_duration};

#[derive(Debug, Clone, clap::Args)]
pub struct WebTokenArgs {
    /// HS256 secret of web tokens (at least 32 characters); may be left empty when a JWKS
    /// is set. Never printed.
    #[arg(
        long,
        env = "JWT_SECRET",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub jwt_secret: Secret,
    /// Longest life of a web token (`exp - iat`, or `exp - now` without `iat`).
    #[arg(long, env = "JWT_MAX_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub jwt_max_lifetime: Duration,
    /// Required `iss` of web tokens, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of web tokens, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// An identity provider's JWK Set (https, or http to loopback) whose RS256, ES256 and
    /// EdDSA keys verify web tokens, by the token's `kid`.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// The same from a file (re-read when it changes); not with JWT_JWKS_URL.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// How often the JWKS is fetched again (also on an unknown `kid`, at most every 30s).
    #[arg(long, env = "JWT_JWKS_REFRESH", default_value = "5m", value_parser = parse_duration)]
    pub jwt_jwks_refresh: Duration,
}

impl Default for WebTokenArgs {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            jwt_max_lifetime: DEFAULT_MAX_LIFETIME,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_jwks_url: None,
            jwt_jwks_file: None,
            jwt_jwks_refresh: crate::auth::jwks::DEFAULT_REFRESH,
        }
    }
}

impl WebTokenArgs {
    /// With an HS256 secret only (tests, the mesh).
    pub fn secret(secret: &Secret) -> Self {
        Self {
            jwt_secret: secret.clone(),
            ..Self::default()
        }
    }

    /// Every setting checked, nothing read yet.
    pub fn validate(&self) -> Result<WebTokenSettings, ConfigError> {
        let jwks = match (&self.jwt_jwks_url, &self.jwt_jwks_file) {
            (Some(url), Some(file)) if !url.trim().is_empty() && !file.as_os_str().is_empty() => {
                return Err(ConfigError::new(
                    "JWT_JWKS_FILE",
                    "set JWT_JWKS_URL or JWT_JWKS_FILE, not both",
                ));
            }
            (Some(url), _) if !url.trim().is_empty() => {
                Some(Source::url(url).map_err(|e| ConfigError::new("JWT_JWKS_URL", e))?)
            }
            (_, Some(file)) if !file.as_os_str().is_empty() => Some(Source::File(file.clone())),
            _ => None,
        };
        let secret = if self.jwt_secret.is_empty() {
            if jwks.is_none() {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "must be at least 32 characters (or set JWT_JWKS_URL or JWT_JWKS_FILE)",
                ));
            }
            None
        } else {
            check_jwt_secret("JWT_SECRET", &self.jwt_secret)?;
            Some(self.jwt_secret.clone())
        };
        if !(Duration::from_secs(10)..=Duration::from_secs(86400)).contains(&self.jwt_jwks_refresh) {
            return Err(ConfigError::new(
                "JWT_JWKS_REFRESH",
                "must be between 10s and 24h",
            ));
        }
        Ok(WebTokenSettings {
            secret,
            jwks,
            refresh: self.jwt_jwks_refresh,
            policy: self.policy()?,
        })
    }

    /// `JWT_MAX_LIFETIME` between a minute and 30 days; issuer and audience non-blank when set.
    fn policy(&self) -> Result<TokenPolicy, ConfigError> {
        if !(Duration::from_secs(60)..=Duration::from_secs(30 * 86400)).contains(&self.jwt_max_lifetime) {
            return Err(ConfigError::new("JWT_MAX_LIFETIME", "must be between 1m and 30d"));
        }
        let named = |name: &'static str, v: &Option<String>| match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) if t.len() > 512 || t.chars().any(char::is_control) => {
                Err(ConfigError::new(name, "must be at most 512 printable characters"))
            }
            Some(t) => Ok(Some(t.to_string())),
        };
        Ok(TokenPolicy {
            max_lifetime: self.jwt_max_lifetime,
            issuer: named("JWT_ISSUER", &self.jwt_issuer)?,
            audience: named("JWT_AUDIENCE", &self.jwt_audience)?,
        })
    }
}

/// [`WebTokenArgs`] after validation.
#[derive(Debug, Clone)]
pub struct WebTokenSettings {
    /// `JWT_SECRET`, when set.
    pub secret: Option<Secret>,
    pub jwks: Option<Source>,
    pub refresh: Duration,
    pub policy: TokenPolicy,
}

impl WebTokenSettings {
    /// The keys, with the JWKS read (an unreadable one fails here, naming its setting) and
    /// its refresher started.
    pub async fn keys(&self) -> Result<JwtKeys, ConfigError> {
        let jwks = match &self.jwks {
            Some(source) => Some(
                Jwks::load(
                    source.clone(),
                    JwksOptions {
                        refresh: self.refresh,
                        ..JwksOptions::default()
                    },
                )
                .await?,
            ),
            None => None,
        };
        Ok(JwtKeys::from_sources(
            self.secret.as_ref(),
            jwks,
            self.policy.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_secret_or_a_jwks_is_required() {
        let e = WebTokenArgs::default().validate().unwrap_err();
        assert!(e.to_string().contains("JWT_SECRET"), "{e}");
        let s = WebTokenArgs::secret(&secret()).validate().unwrap();
        assert!(s.secret.is_some() && s.jwks.is_none());
        let s = WebTokenArgs {
            jwt_jwks_file: Some("/etc/jwks.json".into()),
            ..WebTokenArgs::default()
        }
        .validate()
        .unwrap();
        assert!(s.secret.is_none());
        assert_eq!(s.jwks, Some(Source::File("/etc/jwks.json".into())));
    }

    #[test]
    fn bad_settings_are_named() {
        let with = |edit: &dyn Fn(&mut WebTokenArgs)| {
            let mut a = WebTokenArgs::secret(&secret());
            edit(&mut a);
            a.validate().unwrap_err().to_string()
        };
        type Edit = Box<dyn Fn(&mut WebTokenArgs)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("JWT_SECRET", Box::new(|a| a.jwt_secret = Secret::new("short"))),
            (
                "JWT_MAX_LIFETIME",
                Box::new(|a| a.jwt_max_lifetime = Duration::ZERO),
            ),
            (
                "JWT_MAX_LIFETIME",
                Box::new(|a| a.jwt_max_lifetime = Duration::from_secs(365 * 86400)),
            ),
            ("JWT_ISSUER", Box::new(|a| a.jwt_issuer = Some("a\nb".into()))),
            (
                "JWT_AUDIENCE",
                Box::new(|a| a.jwt_audience = Some("x".repeat(513))),
            ),
            (
                "JWT_JWKS_URL",
                Box::new(|a| a.jwt_jwks_url = Some("http://idp.example.com/jwks".into())),
            ),
            (
                "JWT_JWKS_URL",
                Box::new(|a| a.jwt_jwks_url = Some("ftp://x/jwks".into())),
            ),
            (
                "JWT_JWKS_URL",
                Box::new(|a| a.jwt_jwks_url = Some("https://u:p@idp.example.com/jwks".into())),
            ),
            (
                "JWT_JWKS_FILE",
                Box::new(|a| {
                    a.jwt_jwks_url = Some("https://idp.example.com/jwks".into());
                    a.jwt_jwks_file = Some("/etc/jwks.json".into());
                }),
            ),
            (
                "JWT_JWKS_REFRESH",
                Box::new(|a| a.jwt_jwks_refresh = Duration::from_secs(1)),
            ),
        ];
        for (name, edit) in cases {
            let e = with(&*edit);
            assert!(e.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn jwks_urls_are_https_or_loopback_http() {
        for ok in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8081/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(Source::url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/jwks",
            "http://idp/jwks",
            "file:///etc/jwks",
            "nope",
        ] {
            assert!(Source::url(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_unreadable_jwks_stops_start_up_naming_the_setting() {
        let s = WebTokenArgs {
            jwt_jwks_file: Some("/nonexistent/jwks.json".into()),
            ..WebTokenArgs::default()
        }
        .validate()
        .unwrap();
        let e = s.keys().await.err().unwrap().to_string();
        assert!(
            e.contains("JWT_JWKS_FILE") && e.contains("/nonexistent/jwks.json"),
            "{e}"
        );
        // Nothing listens on port 9 of loopback.
        let s = WebTokenArgs {
            jwt_jwks_url: Some("http://127.0.0.1:9/jwks".into()),
            ..WebTokenArgs::default()
        }
        .validate()
        .unwrap();
        let e = s.keys().await.err().unwrap().to_string();
        assert!(e.contains("JWT_JWKS_URL"), "{e}");
    }
}
