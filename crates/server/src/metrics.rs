//! The server's metrics, in a `prometheus-client` registry rendered as Prometheus text at
//! `GET /metrics`. Every name starts with `shopfloor_`. A new metric is one field, registered
//! once in [`Metrics::new`], and updated where it happens.
//!
//! The request path stays cheap: a run's series are looked up once per (workflow, model) and
//! kept as handles, so recording a run is a map lookup by `&str` and a few atomic adds — no
//! label set is built per request.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use shopfloor_core::limits::{BudgetPeriod, KeyUsage};
use shopfloor_core::review::ReviewStatus;
use shopfloor_engine::store_types::{ApiKeyRecord, DeliveryState, ReviewCount, RunStatus};
use shopfloor_engine::{DeliveryPass, RunFacts, SweepReport};

mod process;

/// Upper bounds of the histogram buckets, in seconds: fine at the low end, where the
/// gateway's own overhead lives, and up to a minute for slow models.
const BUCKETS: [f64; 20] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Makes the latency histograms of a family, all with [`BUCKETS`].
#[derive(Clone, Copy, Default)]
struct Latency;

impl MetricConstructor<Histogram> for Latency {
    fn new_metric(&self) -> Histogram {
        Histogram::new(BUCKETS)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatusLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    workflow: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunStatusLabels {
    workflow: String,
    model: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    workflow: String,
    model: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    workflow: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkflowLabels {
    workflow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobOutcomeLabels {
    job: &'static str,
    outcome: &'static str,
}

/// A gauge of seconds.
type SecondsGauge = Gauge<f64, AtomicU64>;

/// The background jobs (`jobs.rs`) of this replica, per job.
struct JobFamilies {
    passes: Family<JobOutcomeLabels, Counter>,
    last_duration: Family<JobLabels, SecondsGauge>,
    last_end: Family<JobLabels, SecondsGauge>,
}

/// The review queue and its webhook outbox: gauges read from the store at each scrape (so
/// every replica reports the one shared queue), counters of what this replica did.
struct ReviewFamilies {
    items: Family<ReviewLabels, Gauge>,
    overdue: Family<WorkflowLabels, Gauge>,
    oldest_pending: Family<WorkflowLabels, Gauge>,
    events: Family<StateLabels, Gauge>,
    deliveries: Family<StateLabels, Counter>,
    sla_actions: Family<StateLabels, Counter>,
    /// 1 while a workflow's last scheduled drift check alerts.
    drift_alert: Family<WorkflowLabels, Gauge>,
    /// Runs this process could not record at all.
    not_recorded: Gauge,
}

/// Cost adds up in a float counter (US dollars).
type CostCounter = Counter<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeySpendLabels {
    key: String,
    period: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLimitLabels {
    key: String,
    limit: &'static str,
}

/// API keys' spend and budgets, read from the store at each scrape (one count for every
/// replica).
struct KeyFamilies {
    spend: Family<KeySpendLabels, Gauge<f64, AtomicU64>>,
    tokens_this_minute: Family<KeyLabels, Gauge>,
    limits: Family<KeyLimitLabels, Gauge<f64, AtomicU64>>,
}

/// The families of the runs' metrics, labelled by workflow and model.
struct RunFamilies {
    runs: Family<RunStatusLabels, Counter>,
    duration: Family<RunLabels, Histogram, Latency>,
    overhead: Family<RunLabels, Histogram, Latency>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<RunLabels, CostCounter>,
    provider_errors: Family<RunLabels, Counter>,
    fallbacks: Family<RunLabels, Counter>,
}

/// The handles of one (workflow, model) pair's series, looked up once.
struct RunSeries {
    labels: RunLabels,
    /// Created on the first run of each status, so that only statuses seen are exported.
    by_status: [OnceLock<Counter>; RunStatus::ALL.len()],
    duration: Histogram,
    overhead: Histogram,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    cost: CostCounter,
    provider_errors: Counter,
    fallbacks: Counter,
}

impl RunSeries {
    fn new(families: &RunFamilies, workflow: &str, model: &str) -> Self {
        let labels = RunLabels {
            workflow: workflow.to_string(),
            model: model.to_string(),
        };
        let tokens = |kind| {
            families.tokens.get_or_create_owned(&TokenLabels {
                workflow: labels.workflow.clone(),
                model: labels.model.clone(),
                kind,
            })
        };
        Self {
            by_status: Default::default(),
            duration: families.duration.get_or_create_owned(&labels),
            overhead: families.overhead.get_or_create_owned(&labels),
            prompt_tokens: tokens("prompt"),
            completion_tokens: tokens("completion"),
            cost: families.cost.get_or_create_owned(&labels),
            provider_errors: families.provider_errors.get_or_create_owned(&labels),
            fallbacks: families.fallbacks.get_or_create_owned(&labels),
            labels,
        }
    }

    fn status(&self, families: &RunFamilies, status: RunStatus) -> &Counter {
        let i = RunStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or(0);
        self.by_status[i].get_or_init(|| {
            families.runs.get_or_create_owned(&RunStatusLabels {
                workflow: self.labels.workflow.clone(),
                model: self.labels.model.clone(),
                status: status.as_str(),
            })
        })
    }
}

/// A new metric, registered under `name`; the registry keeps a handle to the same series.
/// prometheus-client ends every help text with a full stop and counters' names with `_total`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A family of latency histograms.
fn latency<S: Clone + std::hash::Hash + Eq>() -> Family<S, Histogram, Latency> {
    Family::new_with_constructor(Latency)
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatusLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, Latency>,
    in_flight: Gauge,
    run_families: RunFamilies,
    review: ReviewFamilies,
    keys: KeyFamilies,
    jobs: JobFamilies,
    /// workflow → model → handles.
    runs: RwLock<HashMap<String, HashMap<String, Arc<RunSeries>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let requests = registered(
            r,
            "shopfloor_http_requests",
            "HTTP requests by route and status",
            Default::default(),
        );
        let request_duration = registered(
            r,
            "shopfloor_http_request_duration_seconds",
            "Time from request to response head (a stream counts until its first byte)",
            latency(),
        );
        let run_families = RunFamilies {
            runs: registered(
                r,
                "shopfloor_runs",
                "Runs (workflow runs, batch cases and gateway calls) by workflow, model and status",
                Default::default(),
            ),
            duration: registered(
                r,
                "shopfloor_run_duration_seconds",
                "Wall time of each run, provider time included",
                latency(),
            ),
            overhead: registered(
                r,
                "shopfloor_gateway_overhead_seconds",
                "Time the server itself added to each run: wall time minus time waiting on providers (calls and retry waits)",
                latency(),
            ),
            tokens: registered(
                r,
                "shopfloor_tokens",
                "Tokens by workflow, model and kind",
                Default::default(),
            ),
            cost: registered(
                r,
                "shopfloor_cost_usd",
                "Cost in US dollars at the configured prices",
                Default::default(),
            ),
            provider_errors: registered(
                r,
                "shopfloor_provider_errors",
                "Attempts that ended in an error (timeouts, HTTP errors, broken connections, refusals)",
                Default::default(),
            ),
            fallbacks: registered(
                r,
                "shopfloor_fallbacks",
                "Times a run moved on to the next model of its route",
                Default::default(),
            ),
        };
        let in_flight = registered(
            r,
            "shopfloor_http_requests_in_flight",
            "Requests being served now",
            Default::default(),
        );
        let started: Gauge = registered(
            r,
            "shopfloor_start_time_seconds",
            "When the server started, in Unix seconds",
            Default::default(),
        );
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let review = ReviewFamilies {
            items: registered(
                r,
                "shopfloor_review_items",
                "Review queue items by workflow and status (pending, approved, edited, rejected)",
                Default::default(),
            ),
            overdue: registered(
                r,
                "shopfloor_review_overdue",
                "Pending review items past their workflow's sla_minutes",
                Default::default(),
            ),
            oldest_pending: registered(
                r,
                "shopfloor_review_oldest_pending_seconds",
                "Age of the oldest pending review item",
                Default::default(),
            ),
            events: registered(
                r,
                "shopfloor_webhook_events",
                "Webhook events in the outbox by delivery state (pending, delivered, failed)",
                Default::default(),
            ),
            deliveries: registered(
                r,
                "shopfloor_webhook_deliveries",
                "Webhook delivery tries by this server, by outcome (delivered, retrying, given_up)",
                Default::default(),
            ),
            sla_actions: registered(
                r,
                "shopfloor_review_sla_actions",
                "Review items past their SLA acted on by this server (escalated, rejected)",
                Default::default(),
            ),
            drift_alert: registered(
                r,
                "shopfloor_drift_alert",
                "1 while the last scheduled drift check of a workflow alerts, else 0",
                Default::default(),
            ),
            not_recorded: registered(
                r,
                "shopfloor_runs_not_recorded",
                "Runs this server gave up writing to the store after every retry (a run the store cannot take as it is is recorded as failed instead)",
                Default::default(),
            ),
        };
        let keys = KeyFamilies {
            spend: registered(
                r,
                "shopfloor_key_spend_usd",
                "What each live API key's runs cost this UTC day and month, in US dollars",
                Default::default(),
            ),
            tokens_this_minute: registered(
                r,
                "shopfloor_key_tokens_this_minute",
                "Tokens each live API key's runs used this UTC minute",
                Default::default(),
            ),
            limits: registered(
                r,
                "shopfloor_key_limit",
                "Each live API key's limits: rpm, tpm, budget_usd_day or budget_usd_month",
                Default::default(),
            ),
        };
        let jobs = JobFamilies {
            passes: registered(
                r,
                "shopfloor_job_passes",
                "Passes of each background job of this server, by outcome (ok, failed)",
                Default::default(),
            ),
            last_duration: registered(
                r,
                "shopfloor_job_last_duration_seconds",
                "How long each background job's last pass took",
                Default::default(),
            ),
            last_end: registered(
                r,
                "shopfloor_job_last_end_timestamp_seconds",
                "When each background job's last pass ended (Unix time)",
                Default::default(),
            ),
        };
        registry.register_collector(Box::new(process::Process));
        Self {
            registry,
            requests,
            request_duration,
            in_flight,
            run_families,
            review,
            keys,
            jobs,
            runs: RwLock::default(),
        }
    }

    /// A request started; the guard counts it out when dropped.
    pub fn request_started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(self)
    }

    /// An HTTP request to `route` ended with `status` after `took`.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RouteStatusLabels { route, status })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// A run ended. `took` is the wall time of the request (or case) that made it; the
    /// gateway's own overhead is that minus the time spent waiting on providers.
    pub fn run(&self, facts: &RunFacts, took: Duration) {
        let model = facts.model.as_deref().unwrap_or("none");
        let series = self.series(&facts.workflow, model);
        series.status(&self.run_families, facts.status).inc();
        series.duration.observe(took.as_secs_f64());
        series
            .overhead
            .observe(took.saturating_sub(facts.upstream).as_secs_f64());
        series.prompt_tokens.inc_by(facts.prompt_tokens);
        series.completion_tokens.inc_by(facts.completion_tokens);
        series.cost.inc_by(facts.cost_usd);
        series
            .provider_errors
            .inc_by(u64::from(facts.failed_attempts));
        series.fallbacks.inc_by(u64::from(facts.fallbacks));
    }

    /// The review queue and the outbox as the store counts them at `now_ms`: replaces what the
    /// last scrape set, so a workflow whose items are all gone reads 0 no more.
    pub fn review_queue(
        &self,
        counts: &[ReviewCount],
        events: &[(DeliveryState, u64)],
        now_ms: i64,
    ) {
        let r = &self.review;
        r.items.clear();
        r.overdue.clear();
        r.oldest_pending.clear();
        r.events.clear();
        r.not_recorded
            .set(gauge_value(shopfloor_engine::not_recorded()));
        for count in counts {
            let workflow = count.workflow.clone();
            r.items
                .get_or_create(&ReviewLabels {
                    workflow: workflow.clone(),
                    status: count.status.as_str(),
                })
                .set(gauge_value(count.items));
            if count.status == ReviewStatus::Pending {
                let labels = WorkflowLabels { workflow };
                r.overdue
                    .get_or_create(&labels)
                    .set(gauge_value(count.overdue));
                r.oldest_pending
                    .get_or_create(&labels)
                    .set(((now_ms - count.oldest_created_at_ms) / 1000).max(0));
            }
        }
        for (state, n) in events {
            r.events
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(gauge_value(*n));
        }
    }

    /// Live keys' spend, tokens this minute and limits, as the store counts them now:
    /// replaces what the last scrape set, so a revoked key's series go.
    pub fn keys(&self, keys: &[(ApiKeyRecord, KeyUsage)]) {
        let k = &self.keys;
        k.spend.clear();
        k.tokens_this_minute.clear();
        k.limits.clear();
        for (key, usage) in keys.iter().filter(|(key, _)| key.revoked_at_ms.is_none()) {
            for (period, spent) in [("day", usage.day_cost_usd), ("month", usage.month_cost_usd)] {
                k.spend
                    .get_or_create(&KeySpendLabels {
                        key: key.name.clone(),
                        period,
                    })
                    .set(spent);
            }
            k.tokens_this_minute
                .get_or_create(&KeyLabels {
                    key: key.name.clone(),
                })
                .set(gauge_value(usage.minute_tokens));
            let limits = &key.limits;
            let budget = limits.budget.map(|b| match b.period {
                BudgetPeriod::Day => ("budget_usd_day", b.usd),
                BudgetPeriod::Month => ("budget_usd_month", b.usd),
            });
            let set = [
                limits.rpm.map(|n| ("rpm", n as f64)),
                limits.tpm.map(|n| ("tpm", n as f64)),
                budget,
            ];
            for (limit, value) in set.into_iter().flatten() {
                k.limits
                    .get_or_create(&KeyLimitLabels {
                        key: key.name.clone(),
                        limit,
                    })
                    .set(value);
            }
        }
    }

    /// What one webhook delivery pass of this server did.
    pub fn deliveries(&self, pass: &DeliveryPass) {
        for (state, n) in [
            ("delivered", pass.delivered),
            ("retrying", pass.retrying),
            ("given_up", pass.given_up),
        ] {
            self.review
                .deliveries
                .get_or_create(&StateLabels { state })
                .inc_by(u64::from(n));
        }
    }

    /// What one review SLA sweep of this server did.
    pub fn sla_actions(&self, sweep: &SweepReport) {
        for (state, n) in [("escalated", sweep.escalated), ("rejected", sweep.rejected)] {
            self.review
                .sla_actions
                .get_or_create(&StateLabels { state })
                .inc_by(u64::from(n));
        }
    }

    /// One pass of background job `job`: how long it took and whether it succeeded.
    pub fn job_pass(&self, job: &'static str, took: Duration, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.jobs
            .passes
            .get_or_create(&JobOutcomeLabels { job, outcome })
            .inc();
        let labels = JobLabels { job };
        self.jobs
            .last_duration
            .get_or_create(&labels)
            .set(took.as_secs_f64());
        let now_s = shopfloor_engine::now_ms() as f64 / 1000.0;
        self.jobs.last_end.get_or_create(&labels).set(now_s);
    }

    /// The verdicts of a scheduled drift check.
    pub fn drift_verdicts(&self, verdicts: &[(String, bool)]) {
        for (workflow, alert) in verdicts {
            self.review
                .drift_alert
                .get_or_create(&WorkflowLabels {
                    workflow: workflow.clone(),
                })
                .set(i64::from(*alert));
        }
    }

    /// The handles of a (workflow, model) pair: looked up under a read lock, created once.
    fn series(&self, workflow: &str, model: &str) -> Arc<RunSeries> {
        let found = self
            .runs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(workflow)
            .and_then(|models| models.get(model))
            .cloned();
        if let Some(series) = found {
            return series;
        }
        self.runs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(workflow.to_string())
            .or_default()
            .entry(model.to_string())
            .or_insert_with(|| Arc::new(RunSeries::new(&self.run_families, workflow, model)))
            .clone()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests;
