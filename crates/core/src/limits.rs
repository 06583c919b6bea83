//! Rate limits and budgets of an API key: what a key may use per minute (requests, tokens)
//! and per day or month (US dollars), the windows they are counted in (UTC, aligned to the
//! minute, day and month), and the check made before a call. Pure: the store counts, the
//! engine asks.

use serde::{Deserialize, Serialize};

/// The limits of one key; all `None` (the default) is a key without limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt and completion) per minute.
    pub tpm: Option<u64>,
    pub budget: Option<Budget>,
}

impl KeyLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.budget.is_some()
    }

    /// The limits in words (`60 requests/min, 10000 tokens/min, $5.00/day`), or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(rpm) = self.rpm {
            parts.push(format!("{rpm} requests/min"));
        }
        if let Some(tpm) = self.tpm {
            parts.push(format!("{tpm} tokens/min"));
        }
        if let Some(budget) = self.budget {
            parts.push(format!(
                "${}/{}",
                dollars(budget.usd),
                budget.period.as_str()
            ));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Spend allowed per period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub usd: f64,
    pub period: BudgetPeriod,
}

/// The period a budget is counted over: a UTC day or a UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }

    /// The window this period counts in.
    pub fn window(self) -> Window {
        match self {
            BudgetPeriod::Day => Window::Day,
            BudgetPeriod::Month => Window::Month,
        }
    }
}

/// A window use is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Minute,
    Day,
    Month,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

impl Window {
    /// Every window, in the order the store keeps them.
    pub const ALL: [Window; 3] = [Window::Minute, Window::Day, Window::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Window::ALL.into_iter().find(|w| w.as_str() == text)
    }

    /// The first instant (Unix ms, UTC) of the window that holds `ms`.
    pub fn start(self, ms: i64) -> i64 {
        match self {
            Window::Minute => ms - ms.rem_euclid(MINUTE_MS),
            Window::Day => ms - ms.rem_euclid(DAY_MS),
            Window::Month => {
                let date = crate::calendar::utc_date(ms);
                crate::calendar::parse_date(&format!("{}-01", &date[..7])).unwrap_or(0)
            }
        }
    }

    /// The first instant of the window after the one that holds `ms`.
    pub fn end(self, ms: i64) -> i64 {
        match self {
            Window::Minute => self.start(ms) + MINUTE_MS,
            Window::Day => self.start(ms) + DAY_MS,
            // 32 days past the month's first day is always in the next month.
            Window::Month => Window::Month.start(self.start(ms) + 32 * DAY_MS),
        }
    }
}

/// What a key has used in the windows that hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyUsage {
    /// Requests admitted this minute (counted only for keys with `rpm`).
    pub minute_requests: u64,
    pub minute_tokens: u64,
    pub day_cost_usd: f64,
    pub month_cost_usd: f64,
}

impl KeyUsage {
    /// The spend counted against a budget of `period`.
    pub fn spent(&self, period: BudgetPeriod) -> f64 {
        match period {
            BudgetPeriod::Day => self.day_cost_usd,
            BudgetPeriod::Month => self.month_cost_usd,
        }
    }
}

/// A limit a request ran into, with when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitReached {
    /// `requests`, `tokens` or `budget`.
    pub limit: &'static str,
    pub message: String,
    /// Whole seconds until the window ends (at least 1).
    pub retry_after_s: u64,
}

/// US dollars as people read them: cents from a cent up, else the digits that matter
/// (`5.00`, `0.000026`).
pub fn dollars(usd: f64) -> String {
    if usd.abs() >= 0.01 || usd == 0.0 {
        return format!("{usd:.2}");
    }
    let text = format!("{usd:.6}");
    text.trim_end_matches('0').to_string()
}

fn retry_after(window: Window, now_ms: i64) -> u64 {
    let ms = (window.end(now_ms) - now_ms).max(1);
    u64::try_from((ms + 999) / 1000).unwrap_or(1)
}

/// Check the limits that are counted after calls (tokens per minute, budget) against what
/// has been recorded. The requests-per-minute limit is taken atomically by the store as the
/// request is admitted, so that replicas cannot both take the last one; [`requests_reached`]
/// says it in words when the store refuses.
pub fn check(
    limits: &KeyLimits,
    usage: &KeyUsage,
    key_name: &str,
    now_ms: i64,
) -> Result<(), LimitReached> {
    if let Some(tpm) = limits.tpm {
        if usage.minute_tokens >= tpm {
            return Err(LimitReached {
                limit: "tokens",
                message: format!(
                    "key {key_name} has used {} of its {tpm} tokens per minute; try again when the minute ends",
                    usage.minute_tokens
                ),
                retry_after_s: retry_after(Window::Minute, now_ms),
            });
        }
    }
    if let Some(budget) = limits.budget {
        let spent = usage.spent(budget.period);
        if spent >= budget.usd {
            return Err(LimitReached {
                limit: "budget",
                message: format!(
                    "key {key_name} has spent ${} of its ${} budget for this {} (UTC); it renews when the {} ends",
                    dollars(spent),
                    dollars(budget.usd),
                    budget.period.as_str(),
                    budget.period.as_str()
                ),
                retry_after_s: retry_after(budget.period.window(), now_ms),
            });
        }
    }
    Ok(())
}

/// The refusal when the store found this minute's requests all taken.
pub fn requests_reached(rpm: u64, key_name: &str, now_ms: i64) -> LimitReached {
    LimitReached {
        limit: "requests",
        message: format!(
            "key {key_name} has made its {rpm} requests for this minute; try again when the minute ends"
        ),
        retry_after_s: retry_after(Window::Minute, now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_minutes_days_and_calendar_months() {
        let t = crate::calendar::parse_date("2026-12-31").unwrap()
            + 23 * 3_600_000
            + 59 * 60_000
            + 30_500;
        assert_eq!(Window::Minute.start(t), t - 30_500);
        assert_eq!(Window::Minute.end(t), t - 30_500 + 60_000);
        assert_eq!(
            Window::Day.start(t),
            crate::calendar::parse_date("2026-12-31").unwrap()
        );
        assert_eq!(
            Window::Day.end(t),
            crate::calendar::parse_date("2027-01-01").unwrap()
        );
        assert_eq!(
            Window::Month.start(t),
            crate::calendar::parse_date("2026-12-01").unwrap()
        );
        assert_eq!(
            Window::Month.end(t),
            crate::calendar::parse_date("2027-01-01").unwrap()
        );
        let feb = crate::calendar::parse_date("2028-02-29").unwrap();
        assert_eq!(
            Window::Month.end(feb),
            crate::calendar::parse_date("2028-03-01").unwrap()
        );
        assert_eq!(
            Window::Month.start(feb),
            crate::calendar::parse_date("2028-02-01").unwrap()
        );
        // 29.5 s left in the minute: 30 s to wait, rounded up.
        assert_eq!(retry_after(Window::Minute, t), 30);
    }

    #[test]
    fn tokens_and_budget_stop_at_their_limits_and_say_which() {
        let now = crate::calendar::parse_date("2026-12-07").unwrap() + 12 * 3_600_000;
        let limits = KeyLimits {
            rpm: Some(10),
            tpm: Some(1000),
            budget: Some(Budget {
                usd: 5.0,
                period: BudgetPeriod::Day,
            }),
        };
        let mut usage = KeyUsage {
            minute_requests: 10,
            minute_tokens: 999,
            day_cost_usd: 4.99,
            month_cost_usd: 50.0,
        };
        assert_eq!(
            check(&limits, &usage, "svc", now),
            Ok(()),
            "requests are the store's"
        );
        usage.minute_tokens = 1000;
        let hit = check(&limits, &usage, "svc", now).unwrap_err();
        assert_eq!(hit.limit, "tokens");
        assert_eq!(hit.retry_after_s, 60);
        assert!(
            hit.message.contains("1000 of its 1000 tokens per minute"),
            "{}",
            hit.message
        );
        usage.minute_tokens = 0;
        usage.day_cost_usd = 5.0;
        let hit = check(&limits, &usage, "svc", now).unwrap_err();
        assert_eq!(hit.limit, "budget");
        assert_eq!(hit.retry_after_s, 12 * 3600, "until midnight UTC");
        assert!(
            hit.message
                .contains("$5.00 of its $5.00 budget for this day"),
            "{}",
            hit.message
        );
        assert_eq!(dollars(0.000_026), "0.000026");
        assert_eq!(dollars(0.000_02), "0.00002");
        assert_eq!(dollars(12.5), "12.50");
        assert!(check(&KeyLimits::default(), &usage, "svc", now).is_ok());
        assert_eq!(
            limits.describe(),
            "10 requests/min, 1000 tokens/min, $5.00/day"
        );
        assert_eq!(KeyLimits::default().describe(), "none");
    }
}
