//! Pull a local model into the model folder: `cargo run -p shopfloor-local --example pull -- smollm2`.

use shopfloor_local::{model_dir, pull, PullProgress};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "smollm2".to_owned());
    println!("pulling {name} into {}", model_dir().display());
    let mut last_percent = None;
    let path = pull(&name, &mut |progress| match progress {
        PullProgress::Extracting { done, total } if total > 0 => {
            let percent = done * 100 / total;
            if last_percent != Some(percent / 10) {
                last_percent = Some(percent / 10);
                println!("extracting {percent}%");
            }
        }
        other => println!("{other:?}"),
    })?;
    println!("ready: {}", path.display());
    Ok(())
}
