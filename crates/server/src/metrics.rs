//! Counters and histograms kept in atomics, rendered as Prometheus text at `GET /metrics`.
//! Every name starts with `shopfloor_`.
//!
//! Hand-rolled rather than a metrics crate: a handful of series, no registry to configure, and
//! recording a request costs a few atomic adds.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shopfloor_engine::RunFacts;
use shopfloor_store::RunStatus;

/// Upper bounds of the histogram buckets, in microseconds: fine at the low end, where the
/// gateway's own overhead lives, and up to a minute for slow models.
const BUCKETS_US: [u64; 20] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// A latency histogram.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let us = value.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(i) = BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Everything measured about the runs of one (workflow, model) pair.
#[derive(Default)]
struct RunSeries {
    by_status: [AtomicU64; RunStatus::ALL.len()],
    duration: Histogram,
    overhead: Histogram,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    /// US dollars × 10⁹, so that cost adds up in an integer.
    cost_nano_usd: AtomicU64,
    provider_errors: AtomicU64,
    fallbacks: AtomicU64,
}

/// HTTP requests of one route.
#[derive(Default)]
struct RouteSeries {
    duration: Histogram,
    by_status: RwLock<HashMap<u16, Arc<AtomicU64>>>,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<&'static str, Arc<RouteSeries>>>,
    runs: RwLock<HashMap<String, HashMap<String, Arc<RunSeries>>>>,
    in_flight: AtomicI64,
    started_at_s: AtomicU64,
}

/// Get or create the value at `key` of a read-mostly map.
fn entry<K, V>(map: &RwLock<HashMap<K, Arc<V>>>, key: &K, make: impl FnOnce() -> K) -> Arc<V>
where
    K: std::hash::Hash + Eq,
    V: Default,
{
    if let Some(v) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return v.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(make())
        .or_default()
        .clone()
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        metrics.started_at_s.store(now, Ordering::Relaxed);
        metrics
    }

    /// A request started; the guard counts it out when dropped.
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// An HTTP request to `route` ended with `status` after `took`.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        let series = entry(&self.routes, &route, || route);
        series.duration.observe(took);
        entry(&series.by_status, &status, || status).fetch_add(1, Ordering::Relaxed);
    }

    /// A run ended. `took` is the wall time of the request (or case) that made it; the
    /// gateway's own overhead is that minus the time spent waiting on providers.
    pub fn run(&self, facts: &RunFacts, took: Duration) {
        let model = facts.model.as_deref().unwrap_or("none");
        let series = {
            let found = self
                .runs
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(facts.workflow.as_str())
                .and_then(|m| m.get(model))
                .cloned();
            match found {
                Some(series) => series,
                None => self
                    .runs
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(facts.workflow.clone())
                    .or_default()
                    .entry(model.to_string())
                    .or_default()
                    .clone(),
            }
        };
        let status = RunStatus::ALL
            .iter()
            .position(|s| *s == facts.status)
            .unwrap_or(0);
        series.by_status[status].fetch_add(1, Ordering::Relaxed);
        series.duration.observe(took);
        series.overhead.observe(took.saturating_sub(facts.upstream));
        series
            .prompt_tokens
            .fetch_add(facts.prompt_tokens, Ordering::Relaxed);
        series
            .completion_tokens
            .fetch_add(facts.completion_tokens, Ordering::Relaxed);
        series
            .cost_nano_usd
            .fetch_add((facts.cost_usd * 1e9).round() as u64, Ordering::Relaxed);
        series
            .provider_errors
            .fetch_add(u64::from(facts.failed_attempts), Ordering::Relaxed);
        series
            .fallbacks
            .fetch_add(u64::from(facts.fallbacks), Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_http(&mut out);
        self.render_runs(&mut out);
        let _ = writeln!(
            out,
            "# HELP shopfloor_http_requests_in_flight Requests being served now.\n# TYPE shopfloor_http_requests_in_flight gauge\nshopfloor_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP shopfloor_start_time_seconds When the server started, in Unix seconds.\n# TYPE shopfloor_start_time_seconds gauge\nshopfloor_start_time_seconds {}",
            self.started_at_s.load(Ordering::Relaxed)
        );
        out
    }

    fn render_http(&self, out: &mut String) {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&&'static str> = routes.keys().collect();
        names.sort();
        out.push_str("# HELP shopfloor_http_requests_total HTTP requests by route and status.\n# TYPE shopfloor_http_requests_total counter\n");
        for route in &names {
            let statuses = routes[**route]
                .by_status
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let mut codes: Vec<_> = statuses.iter().collect();
            codes.sort_by_key(|(code, _)| **code);
            for (code, count) in codes {
                let _ = writeln!(
                    out,
                    "shopfloor_http_requests_total{{route=\"{}\",status=\"{code}\"}} {}",
                    escape(route),
                    count.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP shopfloor_http_request_duration_seconds Time from request to response head (a stream counts until its first byte).\n# TYPE shopfloor_http_request_duration_seconds histogram\n");
        for route in &names {
            let labels = format!("route=\"{}\"", escape(route));
            routes[**route].duration.render(
                out,
                "shopfloor_http_request_duration_seconds",
                &labels,
            );
        }
    }

    fn render_runs(&self, out: &mut String) {
        let runs = self.runs.read().unwrap_or_else(|e| e.into_inner());
        let mut series: Vec<(String, &RunSeries)> = Vec::new();
        for (workflow, models) in runs.iter() {
            for (model, s) in models {
                series.push((
                    format!(
                        "workflow=\"{}\",model=\"{}\"",
                        escape(workflow),
                        escape(model)
                    ),
                    s,
                ));
            }
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP shopfloor_runs_total Runs (workflow runs, batch cases and gateway calls) by workflow, model and status.\n# TYPE shopfloor_runs_total counter\n");
        for (labels, s) in &series {
            for (i, status) in RunStatus::ALL.iter().enumerate() {
                let n = s.by_status[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "shopfloor_runs_total{{{labels},status=\"{}\"}} {n}",
                        status.as_str()
                    );
                }
            }
        }
        out.push_str("# HELP shopfloor_run_duration_seconds Wall time of each run, provider time included.\n# TYPE shopfloor_run_duration_seconds histogram\n");
        for (labels, s) in &series {
            s.duration
                .render(out, "shopfloor_run_duration_seconds", labels);
        }
        out.push_str("# HELP shopfloor_gateway_overhead_seconds Time the server itself added to each run: wall time minus time waiting on providers (calls and retry waits).\n# TYPE shopfloor_gateway_overhead_seconds histogram\n");
        for (labels, s) in &series {
            s.overhead
                .render(out, "shopfloor_gateway_overhead_seconds", labels);
        }
        out.push_str("# HELP shopfloor_tokens_total Tokens by workflow, model and kind.\n# TYPE shopfloor_tokens_total counter\n");
        for (labels, s) in &series {
            let _ = writeln!(
                out,
                "shopfloor_tokens_total{{{labels},kind=\"prompt\"}} {}\nshopfloor_tokens_total{{{labels},kind=\"completion\"}} {}",
                s.prompt_tokens.load(Ordering::Relaxed),
                s.completion_tokens.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "shopfloor_cost_usd_total",
                "Cost in US dollars at the configured prices.",
            ),
            (
                "shopfloor_provider_errors_total",
                "Attempts that ended in an error (timeouts, HTTP errors, broken connections, refusals).",
            ),
            (
                "shopfloor_fallbacks_total",
                "Times a run moved on to the next model of its route.",
            ),
        ];
        for (name, help) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, s) in &series {
                let value = match name {
                    "shopfloor_cost_usd_total" => {
                        (s.cost_nano_usd.load(Ordering::Relaxed) as f64 / 1e9).to_string()
                    }
                    "shopfloor_provider_errors_total" => {
                        s.provider_errors.load(Ordering::Relaxed).to_string()
                    }
                    _ => s.fallbacks.load(Ordering::Relaxed).to_string(),
                };
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
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
        let h = Histogram::default();
        h.observe(Duration::from_micros(30));
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(120));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(
            out.contains("x_bucket{a=\"b\",le=\"0.000025\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{a=\"b\",le=\"0.00005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"60\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
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
        assert!(text
            .lines()
            .all(|l| l.starts_with('#') || l.starts_with("shopfloor_")));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
