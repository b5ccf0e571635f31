//! analytics-svc binary: `serve` (default), `migrate` or `rebuild` (see
//! [`referral_common::service`]).

use analytics_svc::{AnalyticsConfig, rebuild::Replayed};

fn main() {
    referral_common::service::Service::<AnalyticsConfig>::new()
        .command(
            "rebuild",
            "Empty every rollup and recompute it from the event logs (offset 0 of each), then exit.",
            |config| Box::pin(rebuild(config)),
        )
        .main()
}

async fn rebuild(config: AnalyticsConfig) -> anyhow::Result<()> {
    let report = analytics_svc::rebuild(&config).await?;
    for (source, done) in report.logs {
        match done {
            Replayed::Events(n) => println!("{source}: {n} events replayed"),
            Replayed::NotServed => println!("{source}: serves no event log yet; skipped"),
        }
    }
    Ok(())
}
