//! analytics-svc. Its contract (API.md, referral.analytics.v1) is served over gRPC with health,
//! reflection and auth; the RPCs answer UNIMPLEMENTED until the analytics-svc issue lands.

pub mod webhooks;

use referral_common::{
    auth::{AuthInterceptor, JwtKeys},
    config::{self, ConfigError, LogFormat, Secret},
    server::{self, Shutdown},
};
use referral_proto::analytics::v1::analytics_service_server::{AnalyticsService, AnalyticsServiceServer};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "ANALYTICS_LISTEN", default_value = "127.0.0.1:50054")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(
        long,
        env = "ANALYTICS_DATABASE_URL",
        default_value = "sqlite:data/analytics.db"
    )]
    pub database_url: String,
    /// HS256 secret shared with the gateway (at least 32 characters).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

pub fn check(config: &AnalyticsConfig) -> Result<(), ConfigError> {
    config::check_jwt_secret("JWT_SECRET", &config.jwt_secret)?;
    config::backend_of("ANALYTICS_DATABASE_URL", &config.database_url)?;
    Ok(())
}

struct AnalyticsApi;

impl AnalyticsService for AnalyticsApi {}

/// Runs analytics-svc on `listener` until `shutdown`.
pub async fn serve(config: AnalyticsConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    check(&config)?;
    let (health, health_server) = server::health().await;
    let (reflection_v1, reflection_v1alpha) =
        server::reflection(&["referral.analytics.v1.AnalyticsService"])?;
    let interceptor = AuthInterceptor::new(JwtKeys::new(&config.jwt_secret));
    health
        .set_service_status(server::READINESS, ServingStatus::Serving)
        .await;
    tracing::info!(addr = %listener.local_addr()?, "analytics-svc serving");
    tonic::transport::Server::builder()
        .add_service(health_server)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AnalyticsServiceServer::with_interceptor(
            AnalyticsApi,
            interceptor,
        ))
        .serve_with_incoming_shutdown(server::incoming(listener), shutdown.wait())
        .await?;
    Ok(())
}
