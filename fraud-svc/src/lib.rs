//! fraud-svc. Its contract (API.md, referral.fraud.v1) is served over gRPC with health,
//! reflection and auth; the RPCs answer UNIMPLEMENTED until the fraud-svc issue lands.

use referral_common::{
    auth::{AuthInterceptor, JwtKeys},
    config::{self, ConfigError, LogFormat, Secret},
    server::{self, Shutdown},
};
use referral_proto::fraud::v1::fraud_service_server::{FraudService, FraudServiceServer};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

#[derive(Debug, Clone, clap::Args)]
pub struct FraudConfig {
    /// gRPC listen address.
    #[arg(long = "listen", env = "FRAUD_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: String,
    /// postgres://… or sqlite:…
    #[arg(long, env = "FRAUD_DATABASE_URL", default_value = "sqlite:data/fraud.db")]
    pub database_url: String,
    /// HS256 secret shared with the gateway (at least 32 characters).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

pub fn check(config: &FraudConfig) -> Result<(), ConfigError> {
    config::check_jwt_secret("JWT_SECRET", &config.jwt_secret)?;
    config::backend_of("FRAUD_DATABASE_URL", &config.database_url)?;
    Ok(())
}

struct FraudApi;

impl FraudService for FraudApi {}

/// Runs fraud-svc on `listener` until `shutdown`.
pub async fn serve(config: FraudConfig, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    check(&config)?;
    let (health, health_server) = server::health().await;
    let (reflection_v1, reflection_v1alpha) = server::reflection(&["referral.fraud.v1.FraudService"])?;
    let interceptor = AuthInterceptor::new(JwtKeys::new(&config.jwt_secret));
    health
        .set_service_status(server::READINESS, ServingStatus::Serving)
        .await;
    tracing::info!(addr = %listener.local_addr()?, "fraud-svc serving");
    tonic::transport::Server::builder()
        .add_service(health_server)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(FraudServiceServer::with_interceptor(FraudApi, interceptor))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.wait(),
        )
        .await?;
    Ok(())
}
