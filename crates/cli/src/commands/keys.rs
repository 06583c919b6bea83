//! `shopfloor keys create|list|revoke`: API keys for the server. Only a hash is stored.

use std::process::ExitCode;

use shopfloor_core::access::Role;
use shopfloor_core::limits::{Budget, BudgetPeriod, KeyLimits};
use shopfloor_engine::{Engine, Records};

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
        #[arg(long, value_parser = super::role())]
        role: Role,
        /// The team the key's use is counted for.
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Every key, live and revoked (never the keys themselves), with its limits and what it
    /// spent this UTC day and month.
    List {
        /// One JSON object per key instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Set a live key's limits to exactly those given (none given: no limits). Servers apply
    /// them when they next read the key (within 5 s by default).
    Limit {
        /// The key's name or id.
        key: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Revoke a live key by name or id; requests with it are refused from then on.
    Revoke {
        /// The key's name or id.
        key: String,
    },
}

/// A key's limits, checked by the server before each request that will call a model (the
/// gateway's APIs, workflow runs and batch submissions; a batch's queued cases against tokens
/// and budget, one by one); a request past one is answered 429 with `Retry-After`.
#[derive(clap::Args)]
pub struct LimitArgs {
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    rpm: Option<u64>,
    /// Tokens (prompt and completion) per minute.
    #[arg(long, value_name = "N")]
    tpm: Option<u64>,
    /// Spend allowed per --budget-period, in US dollars at the configured prices.
    #[arg(long, value_name = "USD", requires = "budget_period")]
    budget_usd: Option<f64>,
    /// The period the budget renews: a UTC day or calendar month.
    #[arg(long, value_name = "PERIOD", value_parser = ["day", "month"], requires = "budget_usd")]
    budget_period: Option<String>,
}

impl LimitArgs {
    fn limits(&self) -> KeyLimits {
        KeyLimits {
            rpm: self.rpm,
            tpm: self.tpm,
            budget: self
                .budget_usd
                .zip(self.budget_period.as_deref())
                .map(|(usd, period)| Budget {
                    usd,
                    period: BudgetPeriod::parse(period).unwrap_or(BudgetPeriod::Month),
                }),
        }
    }
}

async fn engine(global: &Global) -> anyhow::Result<Engine> {
    Ok(global.open_engine().await?)
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create {
            name,
            role,
            team,
            limits,
        } => {
            let engine = engine(global).await?;
            let limits = limits.limits();
            let created = engine
                .create_key_limited(&name, role, team.as_deref(), limits, &super::actor())
                .await;
            engine.close().await;
            let created = created?;
            println!("{}", created.secret);
            eprintln!(
                "created key {} for {name} (role {role}, limits: {}); store it now: it is not shown again",
                created.record.id,
                limits.describe()
            );
        }
        Command::List { json } => {
            // Read from the store alone, like before limits: listing keys needs no valid project.
            let records = Records::open(&global.project, global.database_url.as_deref()).await?;
            let keys = records.keys_with_usage().await?;
            if json {
                for (k, usage) in &keys {
                    let line = serde_json::json!({
                        "id": k.id, "name": k.name, "role": k.role, "team": k.team,
                        "prefix": k.prefix, "created_at_ms": k.created_at_ms,
                        "revoked_at_ms": k.revoked_at_ms, "limits": k.limits,
                        "usage": usage,
                    });
                    println!("{line}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if keys.is_empty() {
                println!(
                    "no keys; create one with `shopfloor keys create --name NAME --role ROLE`"
                );
            }
            for (k, usage) in keys {
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
                println!(
                    "    limits: {}; spent today ${:.4}, this month ${:.4}; {} tokens this minute",
                    k.limits.describe(),
                    usage.day_cost_usd,
                    usage.month_cost_usd,
                    usage.minute_tokens
                );
            }
        }
        Command::Limit { key, limits } => {
            let engine = engine(global).await?;
            let changed = engine
                .set_key_limits(&key, limits.limits(), &super::actor())
                .await;
            engine.close().await;
            let changed = changed?;
            println!(
                "key {} ({}): limits {}",
                changed.id,
                changed.name,
                changed.limits.describe()
            );
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
