//! `shopfloor audit list|verify`: the hash-chained record of who changed what.

use std::process::ExitCode;

use shopfloor_engine::store_types::AuditAnchor;
use shopfloor_engine::Records;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Audit entries, oldest first: versions seen, promotions, baselines, keys, refusals.
    List {
        /// Start after this entry number.
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        after: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
        /// Print entries as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Walk the whole chain; exit 1 naming the first entry that was altered, removed or
    /// reordered. Prints the head (SEQ:HASH): keep it somewhere else and pass it back with
    /// --anchor, so that entries removed from the end are caught too.
    Verify {
        /// An entry noted earlier, as SEQ:HASH (a hash prefix of 12 or more hex digits will
        /// do): the chain must still reach it, unchanged.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<AuditAnchor>,
    },
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { after, limit, json } => {
            let records = Records::open(&global.project, global.database_url.as_deref()).await?;
            let entries = records.audit_entries(after, limit).await?;
            if entries.is_empty() {
                println!("no audit entries after {after}");
            }
            for e in entries {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    println!(
                        "{:>5}  {}  {:<16} {:<24} {:<20} {}",
                        e.seq,
                        super::format_time(e.at_ms),
                        e.actor,
                        e.action,
                        e.subject,
                        e.detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { anchor } => {
            // Through the engine: opening audits any new workflow version first, so the
            // verified chain includes what this checkout changed.
            let engine = global.open_engine().await?;
            let verdict = engine.verify_audit(anchor.as_ref()).await;
            engine.close().await;
            match verdict? {
                Ok(None) => {
                    println!("audit log intact: 0 entries");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(Some(head)) => {
                    println!(
                        "audit log intact: {} entries, every link verified{}",
                        head.seq,
                        match &anchor {
                            Some(anchor) => format!(", anchor {} reached", anchor.seq),
                            None => String::new(),
                        }
                    );
                    println!("head: {head}");
                    println!(
                        "(keep the head outside this database; `shopfloor audit verify --anchor \
                         {head}` then also catches entries removed from the end)"
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("error: the audit log was tampered with: {broken}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
