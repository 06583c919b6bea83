//! `[review] hold_below_confidence` with the real embedded model: its constrained choice over
//! the labels gives each run a confidence, and a run below the threshold waits for review.

use crate::common;
use common::engine;

use serde_json::json;
use shopfloor_core::review::ReviewReason;
use shopfloor_store::RunStatus;
use shopfloor_testkit::{self as testkit, WorkflowToml};

fn write_project(dir: &std::path::Path, threshold: f64) {
    if std::env::var_os("SHOPFLOOR_THREADS").is_none() {
        std::env::set_var("SHOPFLOOR_THREADS", "1");
    }
    let config = "[models.local]\nprovider = \"local\"\nmodel = \"smollm2\"\n\
                  data_classes = [\"public\", \"internal\"]\n";
    let triage = WorkflowToml::new(
        &["text"],
        "Route this support ticket to a queue: billing, bug, account or other.\n\n{{ text }}",
    )
    .line("risk = \"low\"")
    .then(&format!(
        "[output]\nlabels = [\"billing\", \"bug\", \"account\", \"other\"]\n\
         [route]\nmodels = [\"local\"]\n[review]\nhold_below_confidence = {threshold}\n"
    ));
    testkit::write_project(dir, config, &[("triage", &triage)]);
}

#[tokio::test]
async fn a_run_below_the_confidence_threshold_is_held_with_its_confidence() {
    let input = json!({"text": "I was charged twice for my subscription this month."});
    for (threshold, held) in [(0.999, true), (0.001, false)] {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), threshold);
        let engine = engine(dir.path()).await;
        let run = engine.run_one("triage", input.clone(), None).await.unwrap();
        let confidence = run
            .confidence
            .expect("the embedded model's choice has a probability");
        assert!((0.25..1.0).contains(&confidence), "{confidence}");
        if held {
            assert_eq!(run.status, RunStatus::Held, "{run:#?}");
            let ticket = run.review.expect("queued for review");
            assert_eq!(ticket.reason, ReviewReason::LowConfidence);
            engine.flush().await;
            let item = engine.review_show(&run.id).await.unwrap();
            assert_eq!(item.run.confidence, Some(confidence));
        } else {
            assert_eq!(run.status, RunStatus::Ok, "{run:#?}");
            assert!(run.review.is_none());
        }
        engine.close().await;
    }
}
