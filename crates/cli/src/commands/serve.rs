//! `shopfloor serve`: the OpenAI-compatible gateway and the workflow API, until SIGINT or
//! SIGTERM; then requests in flight finish and every run is written before the process exits.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use shopfloor_engine::Engine;
use shopfloor_server::otlp::{self, OtlpConfig, OtlpExporter};
use shopfloor_server::{Server, ServerConfig, WorkerConfig};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on, HOST:PORT with an IP address or a host name such as localhost
    /// (port 0 picks a free port; the line printed at start-up names it).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT", value_parser = listen_address)]
    listen: String,
    /// Batch cases this replica runs at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = super::concurrency())]
    batch_concurrency: usize,
    /// Run no batch worker here (batches queued here are run by other replicas).
    #[arg(long)]
    no_worker: bool,
    /// Serve only the APIs: no dashboard pages at / (for a replica that only takes API
    /// traffic).
    #[arg(long)]
    no_dashboard: bool,
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
    /// Export traces over OTLP/HTTP (JSON) to this collector, e.g. http://127.0.0.1:4318
    /// (spans carry ids, names and figures, never prompt or answer text).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Headers for the OTLP collector, as key=value,key2=value2.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_HEADERS",
        value_name = "HEADERS",
        default_value = ""
    )]
    otlp_headers: String,
    /// The service name traces are exported under.
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        default_value = "shopfloor",
        value_name = "NAME"
    )]
    otlp_service_name: String,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let exporter = init_logging(&args)?.map(OtlpExporter::spawn);
    let engine = global.open_engine().await?;
    warn_unpulled(&engine);
    let listener = tokio::net::TcpListener::bind(args.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let defaults = WorkerConfig::default();
    let limits = &engine.project.config.server;
    let public_url = limits.public_url.clone();
    let config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        body_timeout: Duration::from_secs(limits.body_timeout_secs),
        body_budget_bytes: usize::try_from(limits.body_budget_mb << 20).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        worker: (!args.no_worker).then(|| WorkerConfig {
            concurrency: args.batch_concurrency,
            lease: Duration::from_secs(args.lease_secs.max(1)),
            ..defaults
        }),
        dashboard: !args.no_dashboard,
        secure_cookies: limits.https(),
        ..ServerConfig::default()
    };
    let server = Server::build(engine, listener, config);
    // `dashboard link` defaults to 127.0.0.1:8080; any other address must be passed to it.
    let link_url = if public_url.is_some() || addr.to_string() == "127.0.0.1:8080" {
        String::new()
    } else {
        format!(" --url http://{addr}")
    };
    // Written, not printed: whoever reads the address may close our stdout after the first
    // line, and a server must not stop for that.
    let mut stdout = std::io::stdout().lock();
    let dashboard = if args.no_dashboard {
        "dashboard: off (--no-dashboard)".to_string()
    } else {
        let at = public_url.unwrap_or_else(|| format!("http://{addr}"));
        format!(
            "dashboard: {at}/ (sign in with the link `shopfloor dashboard link{link_url}` prints)"
        )
    };
    let _ = writeln!(
        stdout,
        "shopfloor serve: listening on http://{addr} (ready in {} ms)\n{dashboard}",
        started.elapsed().as_millis()
    );
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!(%addr, "listening");
    server.run(shutdown_signal()).await?;
    if let Some(exporter) = exporter {
        exporter.shutdown(Duration::from_secs(5)).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `HOST:PORT`, where HOST is an IP address (IPv6 in brackets) or a host name; the name is
/// resolved when the server binds.
fn listen_address(text: &str) -> Result<String, String> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080";
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("\"{text}\" has no port; {expected}"))?;
    port.parse::<u16>()
        .map_err(|_| format!("\"{port}\" is not a port (0 to 65535); {expected}"))?;
    let name_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !name_ok {
        return Err(format!(
            "\"{host}\" is not an IP address or host name; {expected}"
        ));
    }
    Ok(text.to_string())
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
/// logged it), filtered by `SHOPFLOOR_LOG` (default `info`); and, with an OTLP endpoint, the
/// layer that exports spans, whose exporter is returned to be started.
fn init_logging(args: &Args) -> anyhow::Result<Option<OtlpExporter>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    // The engine's run and attempt spans are for traces: a log line names its request.
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOPFLOOR_LOG")
        .unwrap_or_else(|_| "info".into())
        .add_directive(format!("{}=off", shopfloor_engine::trace::TARGET).parse()?);
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (traces, exporter) = match &args.otlp_endpoint {
        Some(endpoint) => {
            let config = OtlpConfig {
                endpoint: endpoint.clone(),
                service_name: args.otlp_service_name.clone(),
                headers: OtlpConfig::parse_headers(&args.otlp_headers)
                    .map_err(anyhow::Error::msg)?,
            };
            let (layer, exporter) = otlp::pipeline(config).map_err(anyhow::Error::msg)?;
            let layer = layer.with_filter(tracing_subscriber::filter::filter_fn(otlp::exported));
            (Some(layer), Some(exporter))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(exporter)
}
