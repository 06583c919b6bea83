//! `shopfloor serve`: the OpenAI-compatible gateway and the workflow API, until SIGINT or
//! SIGTERM; then requests in flight finish and every run is written before the process exits.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use shopfloor_engine::{Engine, EngineOptions};
use shopfloor_server::{Server, ServerConfig, WorkerConfig};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the line printed at start-up names it).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// Batch cases this replica runs at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    batch_concurrency: usize,
    /// Run no batch worker here (batches queued here are run by other replicas).
    #[arg(long)]
    no_worker: bool,
    /// Seconds a replica holds a claimed batch case before another may take it over (renewed
    /// while the case runs).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    lease_secs: u64,
    /// Larger request bodies are refused with 413.
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Seconds requests in flight get to finish on shutdown.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    shutdown_grace_secs: u64,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let engine = Engine::open(EngineOptions {
        project_dir: global.project.clone(),
        database_url: global.database_url.clone(),
        ..EngineOptions::default()
    })
    .await?;
    warn_unpulled(&engine);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let defaults = WorkerConfig::default();
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        worker: (!args.no_worker).then(|| WorkerConfig {
            concurrency: args.batch_concurrency.max(1),
            lease: Duration::from_secs(args.lease_secs.max(1)),
            ..defaults
        }),
        ..ServerConfig::default()
    };
    let server = Server::build(engine, listener, config);
    println!(
        "shopfloor serve: listening on http://{addr} (ready in {} ms)",
        started.elapsed().as_millis()
    );
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, "listening");
    server.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The embedded model is loaded on first use, not at start-up; say so now if its weights are
/// missing, rather than on the first request that reaches it.
fn warn_unpulled(engine: &Engine) {
    #[cfg(feature = "local")]
    for model in engine.project.config.models.values() {
        if model.provider == shopfloor_core::spec::ProviderKind::Local
            && shopfloor_local::pulled_path(&model.model).is_none()
        {
            tracing::warn!(
                model = %model.name,
                "the embedded model is not pulled: runs that reach it fail until `shopfloor models pull {}`",
                model.model
            );
        }
    }
    #[cfg(not(feature = "local"))]
    let _ = engine;
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}

/// JSON log lines on stderr (one object per line, with the request id of the request that
/// logged it), filtered by `SHOPFLOOR_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHOPFLOOR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
