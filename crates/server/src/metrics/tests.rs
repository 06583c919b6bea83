use super::*;

fn facts(status: RunStatus) -> RunFacts {
    RunFacts {
        id: "r".into(),
        workflow: "gateway".into(),
        status,
        model: Some("fast".into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_usd: 0.000_015,
        failed_attempts: 1,
        fallbacks: 1,
        upstream: Duration::from_millis(2),
    }
}

#[test]
fn histograms_are_cumulative() {
    let m = Metrics::new();
    for took in [
        Duration::from_micros(30),
        Duration::from_micros(700),
        Duration::from_secs(120),
    ] {
        m.request("/x", 200, took);
    }
    let out = m.render();
    let name = "shopfloor_http_request_duration_seconds";
    // Bounds are written as Go's clients write them (`strconv.FormatFloat(v, 'g', -1)`).
    for line in [
        format!("{name}_bucket{{route=\"/x\",le=\"2.5e-05\"}} 0\n"),
        format!("{name}_bucket{{route=\"/x\",le=\"5e-05\"}} 1\n"),
        format!("{name}_bucket{{route=\"/x\",le=\"0.001\"}} 2\n"),
        format!("{name}_bucket{{route=\"/x\",le=\"60\"}} 2\n"),
        format!("{name}_bucket{{route=\"/x\",le=\"+Inf\"}} 3\n"),
        format!("{name}_count{{route=\"/x\"}} 3\n"),
    ] {
        assert!(out.contains(&line), "missing {line} in\n{out}");
    }
}

#[test]
fn runs_add_up_by_workflow_and_model() {
    let m = Metrics::new();
    m.run(&facts(RunStatus::Ok), Duration::from_millis(3));
    m.run(&facts(RunStatus::Failed), Duration::from_millis(3));
    m.request("/v1/chat/completions", 200, Duration::from_millis(3));
    let text = m.render();
    let labels = "workflow=\"gateway\",model=\"fast\"";
    for line in [
        format!("shopfloor_runs_total{{{labels},status=\"ok\"}} 1"),
        format!("shopfloor_runs_total{{{labels},status=\"failed\"}} 1"),
        format!("shopfloor_tokens_total{{{labels},kind=\"prompt\"}} 20"),
        format!("shopfloor_cost_usd_total{{{labels}}} 0.00003"),
        format!("shopfloor_fallbacks_total{{{labels}}} 2"),
        format!("shopfloor_provider_errors_total{{{labels}}} 2"),
        // 3 ms wall, 2 ms upstream: 1 ms overhead, in the 1 ms bucket.
        format!("shopfloor_gateway_overhead_seconds_bucket{{{labels},le=\"0.001\"}} 2"),
        "shopfloor_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"
            .to_string(),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "missing {line} in\n{text}"
        );
    }
    // Only statuses that happened are exported.
    assert!(!text.contains("status=\"invalid\""), "{text}");
    assert!(text
        .lines()
        .all(|l| l.starts_with('#') || l.starts_with("shopfloor_")));
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    let mut f = facts(RunStatus::Ok);
    f.workflow = "a\"b\\c\nd".into();
    m.run(&f, Duration::from_millis(1));
    let text = m.render();
    assert!(
        text.contains("shopfloor_fallbacks_total{workflow=\"a\\\"b\\\\c\\nd\",model=\"fast\"} 1\n"),
        "{text}"
    );
}

#[test]
fn the_review_queue_is_what_the_last_scrape_counted() {
    let m = Metrics::new();
    let count = |workflow: &str, status, items, overdue| ReviewCount {
        workflow: workflow.into(),
        status,
        items,
        overdue,
        oldest_created_at_ms: 40_000,
    };
    m.review_queue(
        &[
            count("a", ReviewStatus::Pending, 3, 1),
            count("a", ReviewStatus::Approved, 2, 0),
            count("b", ReviewStatus::Pending, 1, 0),
        ],
        &[(DeliveryState::Delivered, 4), (DeliveryState::Failed, 1)],
        100_000,
    );
    let text = m.render();
    for line in [
        "shopfloor_review_items{workflow=\"a\",status=\"pending\"} 3\n",
        "shopfloor_review_items{workflow=\"a\",status=\"approved\"} 2\n",
        "shopfloor_review_overdue{workflow=\"a\"} 1\n",
        "shopfloor_review_oldest_pending_seconds{workflow=\"a\"} 60\n",
        "shopfloor_webhook_events{state=\"failed\"} 1\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // b's item was decided: the next scrape no longer reports it pending.
    m.review_queue(&[count("a", ReviewStatus::Pending, 3, 1)], &[], 100_000);
    let text = m.render();
    assert!(!text.contains("workflow=\"b\""), "{text}");
    m.deliveries(&DeliveryPass {
        delivered: 2,
        retrying: 1,
        given_up: 0,
    });
    m.sla_actions(&SweepReport {
        escalated: 1,
        rejected: 0,
    });
    let text = m.render();
    assert!(
        text.contains("shopfloor_webhook_deliveries_total{state=\"delivered\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("shopfloor_review_sla_actions_total{state=\"escalated\"} 1\n"),
        "{text}"
    );
    m.drift_verdicts(&[("a".into(), true), ("b".into(), false)]);
    let text = m.render();
    assert!(
        text.contains("shopfloor_drift_alert{workflow=\"a\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("shopfloor_drift_alert{workflow=\"b\"} 0\n"),
        "{text}"
    );
}

#[test]
fn in_flight_requests_are_counted_out() {
    let m = Metrics::new();
    let guard = m.request_started();
    assert!(m.render().contains("shopfloor_http_requests_in_flight 1\n"));
    drop(guard);
    assert!(m.render().contains("shopfloor_http_requests_in_flight 0\n"));
}

#[test]
fn each_job_reports_its_passes_and_its_last_one() {
    let m = Metrics::new();
    m.job_pass("drift", Duration::from_millis(250), true);
    m.job_pass("drift", Duration::from_millis(40), false);
    m.job_pass("webhooks", Duration::from_millis(3), true);
    let text = m.render();
    for line in [
        "shopfloor_job_passes_total{job=\"drift\",outcome=\"ok\"} 1\n",
        "shopfloor_job_passes_total{job=\"drift\",outcome=\"failed\"} 1\n",
        "shopfloor_job_passes_total{job=\"webhooks\",outcome=\"ok\"} 1\n",
        "shopfloor_job_last_duration_seconds{job=\"drift\"} 0.04\n",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let ended: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("shopfloor_job_last_end_timestamp_seconds{job=\"webhooks\"} "))
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ended).abs() < 60.0, "{ended} against {now}");
}
