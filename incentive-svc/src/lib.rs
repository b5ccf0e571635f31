//! incentive-svc. Its contract (API.md, referral.incentive.v1) is served over gRPC with health,
//! reflection and auth; the RPCs answer UNIMPLEMENTED until the incentive-svc issue lands.

pub mod domain;

use referral_common::{
    auth::{AuthInterceptor, JwtKeys},
    config::{self, ConfigError, LogFormat, Secret},
    server::{self, Shutdown},
};
use referral_proto::incentive::v1::incentive_service_server::{IncentiveService, IncentiveServiceServer};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

#[derive(Debug, Clone, clap::Args)]
pub struct IncentiveConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "INCENTIVE_LISTEN", default_value = "127.0.0.1:50053")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(
        long,
        env = "INCENTIVE_DATABASE_URL",
        default_value = "sqlite:data/incentive.db"
    )]
    pub database_url: String,
    /// HS256 secret shared with the gateway (at least 32 characters).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

pub fn check(config: &IncentiveConfig) -> Result<(), ConfigError> {
    config::check_jwt_secret("JWT_SECRET", &config.jwt_secret)?;
    config::backend_of("INCENTIVE_DATABASE_URL", &config.database_url)?;
    Ok(())
}

struct IncentiveApi;

impl IncentiveService for IncentiveApi {}

/// Runs incentive-svc on `listener` until `shutdown`.
pub async fn serve(config: IncentiveConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    check(&config)?;
    let (health, health_server) = server::health().await;
    let (reflection_v1, reflection_v1alpha) =
        server::reflection(&["referral.incentive.v1.IncentiveService"])?;
    let interceptor = AuthInterceptor::new(JwtKeys::new(&config.jwt_secret));
    health
        .set_service_status(server::READINESS, ServingStatus::Serving)
        .await;
    tracing::info!(addr = %listener.local_addr()?, "incentive-svc serving");
    tonic::transport::Server::builder()
        .add_service(health_server)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(IncentiveServiceServer::with_interceptor(
            IncentiveApi,
            interceptor,
        ))
        .serve_with_incoming_shutdown(server::incoming(listener), shutdown.wait())
        .await?;
    Ok(())
}
