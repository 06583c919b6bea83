//! `shopfloor dashboard link`: a one-time sign-in link to the dashboard that `shopfloor serve`
//! serves, as Jupyter prints one. The link signs in as an API key: the live key of that name,
//! or one made with the role asked for.

use std::process::ExitCode;

use anyhow::anyhow;
use shopfloor_core::access::Role;
use shopfloor_engine::LOGIN_LINK_MINUTES;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print a one-time sign-in URL (valid 10 minutes, used once).
    #[command(
        long_about = "Print a one-time sign-in URL for the dashboard (`/login?token=…`). \
Opening it starts a session in that browser as the API key named --name: the live key of that \
name when there is one (it must have --role), else a key made now with --role. Revoking the key \
(`shopfloor keys revoke NAME`) ends its sessions.

Examples:
  shopfloor dashboard link
  shopfloor dashboard link --role reviewer --name ana
  shopfloor dashboard link --url https://shopfloor.internal.example"
    )]
    Link {
        /// admin, builder, reviewer, operator or viewer: what the session may see and do.
        #[arg(long, default_value = "admin", value_parser = super::role())]
        role: Role,
        /// The key the session acts as (a person's name; shown on every decision they take).
        /// Default: your user name.
        #[arg(long)]
        name: Option<String>,
        /// Where the dashboard is served: the address `shopfloor serve` printed. Default:
        /// `[server] public_url` of shopfloor.toml, else http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Link { role, name, url } => {
            if let Some(url) = &url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(anyhow!(
                        "--url {url}: expected the server's address as http://HOST:PORT or https://HOST"
                    ));
                }
            }
            let actor = super::actor();
            let name = name.unwrap_or_else(|| actor.clone());
            let engine = global.open_engine().await?;
            let url = url
                .or_else(|| engine.project.config.server.public_url.clone())
                .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
            let link = engine.login_link(&name, role, &actor).await;
            engine.close().await;
            let link = link?;
            println!("{}/login?token={}", url.trim_end_matches('/'), link.token);
            eprintln!(
                "signs in once within {LOGIN_LINK_MINUTES} minutes as {name} ({role}{})",
                if link.created_key {
                    ", a key made for it"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
