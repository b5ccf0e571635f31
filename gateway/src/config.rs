//! The gateway's settings: clap flags and environment, defaults that work for the embedded
//! mesh, and validation that stops start-up with one line naming the bad setting.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ipnet::IpNet;
use referral_common::{
    auth::{WebTokenArgs, WebTokenSettings},
    click_id::ClickKeys,
    config::{ConfigError, LogFormat, Secret, check_service_jwt_secret, parse_addr, parse_duration},
    landing::LandingHosts,
    tls::{ClientAuth, FileSetting, GrpcTlsArgs, TlsFiles},
};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_INVITE_ADDR: &str = "127.0.0.1:50051";
pub const DEFAULT_FRAUD_ADDR: &str = "127.0.0.1:50052";
pub const DEFAULT_INCENTIVE_ADDR: &str = "127.0.0.1:50053";
pub const DEFAULT_ANALYTICS_ADDR: &str = "127.0.0.1:50054";
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_API_RATE_LIMIT: u32 = 600;
pub const DEFAULT_REDIRECT_RATE_LIMIT: u32 = 300;
pub const DEFAULT_SERVICE_RATE_LIMIT: u32 = 60_000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
pub const DEFAULT_CLICK_PARAM: &str = "rm_click";
/// The redirect and the invitation API live on invite-svc: without it the gateway is of no
/// use, while any other service being down only degrades its own routes.
pub const DEFAULT_READY_REQUIRES: &str = "invite-svc";
/// The services behind the gateway, by the names `/readyz` reports.
pub const SERVICES: [&str; 4] = ["invite-svc", "fraud-svc", "incentive-svc", "analytics-svc"];

/// Flags and environment of the gateway. Every field but the JWT secret has a default that
/// works for the embedded mesh; [`GatewayConfig::validate`] checks them all.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Address the HTTP server listens on.
    #[arg(long = "listen", env = "GATEWAY_ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// invite-svc gRPC address (host:port or http://host:port).
    #[arg(long, env = "INVITE_ADDR", default_value = DEFAULT_INVITE_ADDR)]
    pub invite_addr: String,
    #[arg(long, env = "FRAUD_ADDR", default_value = DEFAULT_FRAUD_ADDR)]
    pub fraud_addr: String,
    #[arg(long, env = "INCENTIVE_ADDR", default_value = DEFAULT_INCENTIVE_ADDR)]
    pub incentive_addr: String,
    #[arg(long, env = "ANALYTICS_ADDR", default_value = DEFAULT_ANALYTICS_ADDR)]
    pub analytics_addr: String,
    /// How web tokens are verified (JWT_SECRET and/or a JWKS, and the policy), as at every
    /// service.
    #[command(flatten)]
    pub web_tokens: WebTokenArgs,
    /// HS256 secret of service tokens only (at least 32 characters, not JWT_SECRET): signs
    /// the gateway's own short-lived token to the services.
    #[arg(
        long,
        env = "SERVICE_JWT_SECRET",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub service_jwt_secret: Secret,
    /// Keys that sign click ids, `kid:secret,...` (secrets of at least 32 characters): the
    /// first signs, all verify, a removed key's ids stop attributing. invite-svc needs the
    /// same list. Never printed.
    #[arg(
        long,
        env = "CLICK_SIGNING_KEYS",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub click_signing_keys: Secret,
    /// The query parameter `/r/{code}` adds to the landing URL with the click id.
    #[arg(long, env = "CLICK_PARAM", default_value = DEFAULT_CLICK_PARAM)]
    pub click_param: String,
    /// Comma-separated hosts a code's landing URL may point at (the default landing URL's
    /// host is always allowed); `/r/{code}` sends any other to the default landing URL.
    #[arg(long, env = "LANDING_HOSTS", default_value = "")]
    pub landing_hosts: String,
    /// Comma-separated origins (`https://www.example.com`) whose pages may call the API from
    /// a browser, with credentials; empty: no cross-origin access.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "")]
    pub cors_allowed_origins: String,
    /// Redis for rate limits and the referral-code cache shared across replicas.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM CA(s) a rediss:// REDIS_URL's certificate must chain to (instead of the web roots).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// The gateway's public base URL (OpenAPI server, secure cookies when https).
    #[arg(long, env = "PUBLIC_URL", default_value = DEFAULT_PUBLIC_URL)]
    pub public_url: String,
    /// Comma-separated IPs or CIDRs whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Where /r/{code} sends visitors when the code has no landing URL; PUBLIC_URL/ when unset.
    #[arg(long, env = "DEFAULT_LANDING_URL")]
    pub default_landing_url: Option<String>,
    /// API requests per minute per caller (token subject, or client IP when anonymous).
    #[arg(long, env = "API_RATE_LIMIT_PER_MINUTE", default_value_t = DEFAULT_API_RATE_LIMIT)]
    pub api_rate_limit_per_minute: u32,
    /// /r/{code} redirects per minute per client IP.
    #[arg(long, env = "REDIRECT_RATE_LIMIT_PER_MINUTE", default_value_t = DEFAULT_REDIRECT_RATE_LIMIT)]
    pub redirect_rate_limit_per_minute: u32,
    /// API requests per minute per service token (internal callers, imports).
    #[arg(long, env = "SERVICE_RATE_LIMIT_PER_MINUTE", default_value_t = DEFAULT_SERVICE_RATE_LIMIT)]
    pub service_rate_limit_per_minute: u32,
    /// Largest request body accepted; bigger ones get 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Deadline of each unary call to a service (e.g. 15s).
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// How long a resolved referral code is cached for the redirect (e.g. 5m).
    #[arg(long, env = "CODE_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub code_cache_ttl: Duration,
    /// Services that must be SERVING for `/readyz` to answer 200: a comma-separated list of
    /// invite-svc, fraud-svc, incentive-svc, analytics-svc, or `all`, or empty for none.
    /// The others are still reported; when one is down only its routes answer 503.
    #[arg(long, env = "READY_REQUIRES", default_value = DEFAULT_READY_REQUIRES)]
    pub ready_requires: String,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// HTTPS: PEM certificate (chain) the gateway serves; with GATEWAY_TLS_KEY it serves
    /// HTTPS only (HTTP/2 and HTTP/1.1). Reloaded when the file changes.
    #[arg(long = "tls-cert", env = "GATEWAY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of GATEWAY_TLS_CERT.
    #[arg(long = "tls-key", env = "GATEWAY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The gateway's TLS to the services (GRPC_TLS_*; see `referral_common::tls`).
    #[command(flatten)]
    pub grpc_tls: GrpcTlsArgs,
    /// Open connections this process accepts; more are closed at once. Lowered to what the
    /// open-files limit leaves room for.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Open connections per client IP (the socket's address, not X-Forwarded-For).
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// A client must send a request's headers within this (also the idle keep-alive timeout).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            invite_addr: DEFAULT_INVITE_ADDR.into(),
            fraud_addr: DEFAULT_FRAUD_ADDR.into(),
            incentive_addr: DEFAULT_INCENTIVE_ADDR.into(),
            analytics_addr: DEFAULT_ANALYTICS_ADDR.into(),
            web_tokens: WebTokenArgs::default(),
            service_jwt_secret: Secret::default(),
            click_signing_keys: Secret::default(),
            click_param: DEFAULT_CLICK_PARAM.into(),
            landing_hosts: String::new(),
            cors_allowed_origins: String::new(),
            redis_url: None,
            redis_ca_file: None,
            public_url: DEFAULT_PUBLIC_URL.into(),
            trusted_proxies: String::new(),
            default_landing_url: None,
            api_rate_limit_per_minute: DEFAULT_API_RATE_LIMIT,
            redirect_rate_limit_per_minute: DEFAULT_REDIRECT_RATE_LIMIT,
            service_rate_limit_per_minute: DEFAULT_SERVICE_RATE_LIMIT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            upstream_timeout: Duration::from_secs(15),
            code_cache_ttl: Duration::from_secs(300),
            ready_requires: DEFAULT_READY_REQUIRES.into(),
            log_format: LogFormat::Pretty,
            tls_cert: None,
            tls_key: None,
            grpc_tls: GrpcTlsArgs::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// The configuration after validation ([`GatewayConfig::validate`]), in the types the gateway
/// uses; handlers read it as `state.settings`.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub listen: SocketAddr,
    pub invite_addr: String,
    pub fraud_addr: String,
    pub incentive_addr: String,
    pub analytics_addr: String,
    /// Which keys sign web tokens, and what a web token must satisfy.
    pub web_tokens: WebTokenSettings,
    pub service_jwt_secret: Secret,
    pub click_keys: ClickKeys,
    pub click_param: String,
    /// Lower-case hosts landing URLs may use, the default landing URL's included.
    pub landing_hosts: LandingHosts,
    /// Origins allowed to call the API from a browser, as `scheme://host[:port]`.
    pub cors_allowed_origins: Vec<http::HeaderValue>,
    pub redis_url: Option<String>,
    pub redis_ca_file: Option<PathBuf>,
    /// Without a trailing slash.
    pub public_url: String,
    pub trusted_proxies: Vec<IpNet>,
    pub default_landing_url: String,
    pub api_rate_limit_per_minute: u32,
    pub redirect_rate_limit_per_minute: u32,
    pub service_rate_limit_per_minute: u32,
    pub max_body_bytes: usize,
    pub upstream_timeout: Duration,
    pub code_cache_ttl: Duration,
    /// Cookies get `Secure` when the public URL is https.
    pub secure_cookies: bool,
    /// The services `/readyz` requires (names from [`SERVICES`]).
    pub ready_requires: Vec<&'static str>,
    /// HTTPS files, when set (else plain HTTP, e.g. behind a TLS-terminating ingress).
    pub https: Option<TlsFiles>,
    /// TLS to the services.
    pub grpc_tls: GrpcTlsArgs,
    /// After lowering to the open-files limit.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
}

impl GatewayConfig {
    pub fn validate(&self) -> Result<RuntimeConfig, ConfigError> {
        let web_tokens = self.web_tokens.validate()?;
        check_service_jwt_secret(&self.web_tokens.jwt_secret, &self.service_jwt_secret)?;
        let click_keys = ClickKeys::parse("CLICK_SIGNING_KEYS", &self.click_signing_keys)?;
        let click_param = check_click_param(&self.click_param)?;
        let cors_allowed_origins = parse_origins(&self.cors_allowed_origins)?;
        let listen = parse_addr("GATEWAY_ADDR", &self.listen)?;
        for (name, addr) in [
            ("INVITE_ADDR", &self.invite_addr),
            ("FRAUD_ADDR", &self.fraud_addr),
            ("INCENTIVE_ADDR", &self.incentive_addr),
            ("ANALYTICS_ADDR", &self.analytics_addr),
        ] {
            check_service_addr(name, addr)?;
        }
        let public_url = check_http_url("PUBLIC_URL", &self.public_url)?
            .trim_end_matches('/')
            .to_string();
        let default_landing_url = match &self.default_landing_url {
            Some(url) if !url.trim().is_empty() => check_http_url("DEFAULT_LANDING_URL", url)?,
            _ => format!("{public_url}/"),
        };
        let landing_hosts = LandingHosts::parse(&self.landing_hosts, &default_landing_url)
            .map_err(|e| ConfigError::new("LANDING_HOSTS", e))?;
        let redis_url = match &self.redis_url {
            Some(url) if !url.trim().is_empty() => {
                referral_common::redis_client::client(url, self.redis_ca_file.as_deref())?;
                Some(url.clone())
            }
            _ => None,
        };
        let trusted_proxies = parse_trusted_proxies(&self.trusted_proxies)?;
        let https = https_files(&self.tls_cert, &self.tls_key)?;
        // A half-configured gRPC TLS is refused here, before anything starts.
        self.grpc_tls.files()?;
        let ready_requires = parse_ready_requires(&self.ready_requires)?;
        if self.api_rate_limit_per_minute == 0 {
            return Err(ConfigError::new(
                "API_RATE_LIMIT_PER_MINUTE",
                "must be at least 1",
            ));
        }
        if self.service_rate_limit_per_minute == 0 {
            return Err(ConfigError::new(
                "SERVICE_RATE_LIMIT_PER_MINUTE",
                "must be at least 1",
            ));
        }
        if self.redirect_rate_limit_per_minute == 0 {
            return Err(ConfigError::new(
                "REDIRECT_RATE_LIMIT_PER_MINUTE",
                "must be at least 1",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("MAX_BODY_BYTES", "must be at least 1"));
        }
        if self.upstream_timeout.is_zero() {
            return Err(ConfigError::new("UPSTREAM_TIMEOUT", "must be more than 0s"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.max_connections_per_ip == 0 {
            return Err(ConfigError::new("MAX_CONNECTIONS_PER_IP", "must be at least 1"));
        }
        if self.header_read_timeout.is_zero() {
            return Err(ConfigError::new("HEADER_READ_TIMEOUT", "must be more than 0s"));
        }
        Ok(RuntimeConfig {
            listen,
            invite_addr: self.invite_addr.clone(),
            fraud_addr: self.fraud_addr.clone(),
            incentive_addr: self.incentive_addr.clone(),
            analytics_addr: self.analytics_addr.clone(),
            web_tokens,
            service_jwt_secret: self.service_jwt_secret.clone(),
            click_keys,
            click_param,
            landing_hosts,
            cors_allowed_origins,
            redis_url,
            redis_ca_file: self.redis_ca_file.clone(),
            secure_cookies: public_url.starts_with("https://"),
            public_url,
            trusted_proxies,
            default_landing_url,
            api_rate_limit_per_minute: self.api_rate_limit_per_minute,
            redirect_rate_limit_per_minute: self.redirect_rate_limit_per_minute,
            service_rate_limit_per_minute: self.service_rate_limit_per_minute,
            max_body_bytes: self.max_body_bytes,
            upstream_timeout: self.upstream_timeout,
            code_cache_ttl: self.code_cache_ttl,
            ready_requires,
            https,
            grpc_tls: self.grpc_tls.clone(),
            max_connections: fit_to_fd_limit(self.max_connections),
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout,
        })
    }
}

/// Descriptors kept back from the connection cap for the process's own use (service
/// channels, Redis, database files, logs).
const FD_RESERVE: u64 = 512;

/// `MAX_CONNECTIONS`, lowered to what the open-files limit leaves after [`FD_RESERVE`]
/// (raising the soft limit to the hard one first): past that, accept would fail with EMFILE
/// and `/healthz` would stop answering, which is what the cap is there to prevent.
fn fit_to_fd_limit(max_connections: usize) -> usize {
    let Some(nofile) = crate::serve::raise_fd_limit() else {
        return max_connections; // unlimited
    };
    let room = usize::try_from(nofile.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if room < max_connections {
        tracing::warn!(
            max_connections,
            nofile,
            "MAX_CONNECTIONS lowered to {room}: the open-files limit leaves no room for more"
        );
    }
    max_connections.min(room)
}

/// `CLICK_PARAM`: a plain query parameter name, so it needs no escaping anywhere.
fn check_click_param(raw: &str) -> Result<String, ConfigError> {
    let name = raw.trim();
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(ConfigError::new(
            "CLICK_PARAM",
            "must be 1-32 letters, digits, _ or -",
        ));
    }
    Ok(name.to_string())
}

/// `CORS_ALLOWED_ORIGINS`: exact origins, `http(s)://host[:port]` without a path. No
/// wildcard: credentials (the attribution cookie) are allowed only for listed origins.
fn parse_origins(raw: &str) -> Result<Vec<http::HeaderValue>, ConfigError> {
    let mut origins = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let origin = item.trim_end_matches('/');
        let valid = url::Url::parse(origin).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none()
                // The URL's own serialisation of the origin, so the browser's Origin header
                // (always in that form) matches byte for byte.
                && u.origin().ascii_serialization() == origin
        });
        let value = valid.then(|| http::HeaderValue::from_str(origin).ok()).flatten();
        match value {
            Some(v) if !origins.contains(&v) => origins.push(v),
            Some(_) => {}
            None => {
                return Err(ConfigError::new(
                    "CORS_ALLOWED_ORIGINS",
                    format!(
                        "{item:?} is not an origin like https://www.example.com (lower case, no path, no wildcard)"
                    ),
                ));
            }
        }
    }
    Ok(origins)
}

/// `READY_REQUIRES`: service names (with or without `-svc`), `all`, or empty.
fn parse_ready_requires(raw: &str) -> Result<Vec<&'static str>, ConfigError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.eq_ignore_ascii_case("all") {
            return Ok(SERVICES.to_vec());
        }
        let name = item.to_ascii_lowercase();
        let name = name.strip_suffix("-svc").unwrap_or(&name);
        let service = SERVICES
            .iter()
            .find(|s| s.strip_suffix("-svc") == Some(name))
            .ok_or_else(|| {
                ConfigError::new(
                    "READY_REQUIRES",
                    format!(
                        "unknown service {item:?} (expected {}, or all)",
                        SERVICES.join(", ")
                    ),
                )
            })?;
        if !out.contains(service) {
            out.push(*service);
        }
    }
    Ok(out)
}

/// `host:port`, `http(s)://host:port` or `dns:///host:port`: k8s names are hosts, not
/// socket addresses (a host name is balanced over its DNS answers, see
/// `referral_common::balance`).
fn check_service_addr(name: &'static str, addr: &str) -> Result<(), ConfigError> {
    referral_common::balance::Target::parse(addr)
        .map(|_| ())
        .map_err(|e| ConfigError::new(name, e.to_string()))
}

fn check_http_url(name: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ConfigError::new(name, format!("{url:?} is not a URL")))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.authority().is_none() {
        return Err(ConfigError::new(
            name,
            format!("{url:?} must be an absolute http(s) URL"),
        ));
    }
    Ok(url.to_string())
}

/// `10.0.0.0/8, 192.168.1.7, ::1` -> networks; a plain address is a single-host network.
pub fn parse_trusted_proxies(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new("TRUSTED_PROXIES", format!("{s:?} is not an IP address or CIDR"))
                })
        })
        .collect()
}

/// GATEWAY_TLS_CERT and GATEWAY_TLS_KEY: both (HTTPS) or neither (HTTP).
fn https_files(cert: &Option<PathBuf>, key: &Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: FileSetting {
                name: "GATEWAY_TLS_CERT",
                path: cert.clone(),
            },
            key: FileSetting {
                name: "GATEWAY_TLS_KEY",
                path: key.clone(),
            },
            // Browsers and apps: no client certificates.
            ca: None,
            client_auth: ClientAuth::None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        })),
        (None, Some(_)) => Err(ConfigError::new(
            "GATEWAY_TLS_CERT",
            "must be set with GATEWAY_TLS_KEY",
        )),
        (Some(_), None) => Err(ConfigError::new(
            "GATEWAY_TLS_KEY",
            "must be set with GATEWAY_TLS_CERT",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> GatewayConfig {
        GatewayConfig {
            web_tokens: WebTokenArgs::secret(&Secret::new("0123456789abcdef0123456789abcdef")),
            service_jwt_secret: Secret::new("service-0123456789abcdef0123456789"),
            click_signing_keys: Secret::new("k1:click-0123456789abcdef0123456789"),
            ..GatewayConfig::default()
        }
    }

    #[test]
    fn defaults_validate_once_the_secret_is_set() {
        let s = valid().validate().unwrap();
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.default_landing_url, "http://127.0.0.1:8080/");
        assert!(!s.secure_cookies);
        let e = GatewayConfig::default().validate().unwrap_err();
        assert!(e.to_string().contains("JWT_SECRET"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: Vec<(&str, GatewayConfig)> = vec![
            (
                "INVITE_ADDR",
                GatewayConfig {
                    invite_addr: "nope".into(),
                    ..valid()
                },
            ),
            (
                "GATEWAY_ADDR",
                GatewayConfig {
                    listen: "x:y".into(),
                    ..valid()
                },
            ),
            (
                "PUBLIC_URL",
                GatewayConfig {
                    public_url: "ftp://x".into(),
                    ..valid()
                },
            ),
            (
                "TRUSTED_PROXIES",
                GatewayConfig {
                    trusted_proxies: "10.0.0.0/8, bogus".into(),
                    ..valid()
                },
            ),
            (
                "REDIS_URL",
                GatewayConfig {
                    redis_url: Some("mysql://x".into()),
                    ..valid()
                },
            ),
            (
                "CLICK_SIGNING_KEYS",
                GatewayConfig {
                    click_signing_keys: Secret::default(),
                    ..valid()
                },
            ),
            (
                "CLICK_PARAM",
                GatewayConfig {
                    click_param: "rm click".into(),
                    ..valid()
                },
            ),
            (
                "LANDING_HOSTS",
                GatewayConfig {
                    landing_hosts: "www.example.com, https://evil.example/".into(),
                    ..valid()
                },
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                GatewayConfig {
                    cors_allowed_origins: "https://www.example.com, *".into(),
                    ..valid()
                },
            ),
            (
                "CORS_ALLOWED_ORIGINS",
                GatewayConfig {
                    cors_allowed_origins: "https://www.example.com/signup".into(),
                    ..valid()
                },
            ),
            (
                "MAX_BODY_BYTES",
                GatewayConfig {
                    max_body_bytes: 0,
                    ..valid()
                },
            ),
            (
                "SERVICE_JWT_SECRET",
                GatewayConfig {
                    service_jwt_secret: Secret::new("short"),
                    ..valid()
                },
            ),
            (
                "SERVICE_JWT_SECRET",
                GatewayConfig {
                    service_jwt_secret: Secret::new("0123456789abcdef0123456789abcdef"),
                    ..valid()
                },
            ),
            (
                "JWT_MAX_LIFETIME",
                GatewayConfig {
                    web_tokens: WebTokenArgs {
                        jwt_max_lifetime: Duration::from_secs(365 * 86400),
                        ..valid().web_tokens
                    },
                    ..valid()
                },
            ),
            (
                "JWT_MAX_LIFETIME",
                GatewayConfig {
                    web_tokens: WebTokenArgs {
                        jwt_max_lifetime: Duration::ZERO,
                        ..valid().web_tokens
                    },
                    ..valid()
                },
            ),
            (
                "JWT_ISSUER",
                GatewayConfig {
                    web_tokens: WebTokenArgs {
                        jwt_issuer: Some("a\nb".into()),
                        ..valid().web_tokens
                    },
                    ..valid()
                },
            ),
            (
                "READY_REQUIRES",
                GatewayConfig {
                    ready_requires: "invite-svc, billing".into(),
                    ..valid()
                },
            ),
        ];
        for (name, config) in cases {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn service_addresses_may_be_host_names() {
        let c = GatewayConfig {
            invite_addr: "invite-svc:50051".into(),
            fraud_addr: "http://fraud:1".into(),
            analytics_addr: "dns:///analytics-svc:50054".into(),
            ..valid()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn readiness_requires_invite_svc_unless_told_otherwise() {
        assert_eq!(valid().validate().unwrap().ready_requires, ["invite-svc"]);
        assert_eq!(parse_ready_requires("all").unwrap(), SERVICES);
        assert_eq!(
            parse_ready_requires(" Fraud, invite-svc,fraud-svc ").unwrap(),
            ["fraud-svc", "invite-svc"]
        );
        assert!(parse_ready_requires("").unwrap().is_empty());
    }

    #[test]
    fn trusted_proxies_take_ips_and_cidrs() {
        let nets = parse_trusted_proxies(" 10.0.0.0/8,192.168.1.7 , ::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[1].contains(&"192.168.1.7".parse::<std::net::IpAddr>().unwrap()));
    }

    #[test]
    fn landing_hosts_and_origins_are_exact() {
        let s = GatewayConfig {
            landing_hosts: " WWW.Example.com ,shop.example.com".into(),
            cors_allowed_origins: "https://www.example.com, http://localhost:3000/".into(),
            default_landing_url: Some("https://join.example.com/start".into()),
            ..valid()
        }
        .validate()
        .unwrap();
        for (url, allowed) in [
            ("https://join.example.com/x", true),
            ("https://www.example.com/x", true),
            ("https://shop.example.com/x", true),
            ("https://evil.example.com/x", false),
        ] {
            assert_eq!(
                s.landing_hosts.allows(&url::Url::parse(url).unwrap()),
                allowed,
                "{url}"
            );
        }
        assert_eq!(
            s.cors_allowed_origins,
            ["https://www.example.com", "http://localhost:3000"]
        );
        assert_eq!(s.click_param, "rm_click");
        assert_eq!(s.click_keys.signing_kid(), "k1");
    }

    #[test]
    fn the_secret_never_prints() {
        let c = valid();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!format!("{:?}", c.validate().unwrap()).contains("0123456789abcdef"));
        assert!(!format!("{:?}", c.validate().unwrap()).contains("click-0123"));
    }
}
