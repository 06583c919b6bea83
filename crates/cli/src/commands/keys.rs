//! `shopfloor keys create|list|revoke`: API keys for the server. Only a hash is stored.

use std::process::ExitCode;

use anyhow::anyhow;
use shopfloor_core::access::Role;
use shopfloor_engine::{open_store, Engine};

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a key and print it once; it cannot be shown again.
    Create {
        /// Who or what holds the key: a person or a service. Unique among live keys.
        #[arg(long)]
        name: String,
        /// admin (everything), builder (workflows, evals, baselines), reviewer, operator (calls
        /// models and workflows) or viewer (reads).
        #[arg(long, value_parser = ["admin", "builder", "reviewer", "operator", "viewer"])]
        role: String,
        /// The team the key's use is counted for.
        #[arg(long)]
        team: Option<String>,
    },
    /// Every key, live and revoked (never the keys themselves).
    List,
    /// Revoke a live key by name or id; requests with it are refused from then on.
    Revoke {
        /// The key's name or id.
        key: String,
    },
}

async fn engine(global: &Global) -> anyhow::Result<Engine> {
    Ok(global.open_engine().await?)
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create { name, role, team } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow!(
                    "unknown role \"{role}\"; expected admin, builder, reviewer, operator or viewer"
                )
            })?;
            let engine = engine(global).await?;
            let created = engine
                .create_key(&name, role, team.as_deref(), &super::actor())
                .await;
            engine.close().await;
            let created = created?;
            println!("{}", created.secret);
            eprintln!(
                "created key {} for {name} (role {role}); store it now: it is not shown again",
                created.record.id
            );
        }
        Command::List => {
            let store = open_store(&global.project, global.database_url.as_deref()).await?;
            let keys = store.list_api_keys().await?;
            if keys.is_empty() {
                println!(
                    "no keys; create one with `shopfloor keys create --name NAME --role ROLE`"
                );
            }
            for k in keys {
                let state = match k.revoked_at_ms {
                    Some(at) => format!("revoked {}", super::format_time(at)),
                    None => "live".to_string(),
                };
                println!(
                    "{}  {:<20} {:<9} {:<12} {}…  created {}  {state}",
                    k.id,
                    k.name,
                    k.role,
                    k.team.as_deref().unwrap_or("-"),
                    k.prefix,
                    super::format_time(k.created_at_ms),
                );
            }
        }
        Command::Revoke { key } => {
            let engine = engine(global).await?;
            let revoked = engine.revoke_key(&key, &super::actor()).await;
            engine.close().await;
            let revoked = revoked?;
            println!("revoked key {} ({})", revoked.id, revoked.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
