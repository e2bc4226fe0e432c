//! How often to poll, decided without I/O: fast while something is deploying, slow when idle,
//! slower still when the request budget runs low. DigitalOcean allows 5,000 requests an hour and
//! 250 a minute per token; deploywatch uses at most `budget_share` of both.

use std::time::Duration;

pub const HOURLY_LIMIT: f64 = 5000.0;
pub const MINUTE_LIMIT: f64 = 250.0;

#[derive(Debug, Clone, Copy)]
pub struct ScheduleInput {
    pub base: Duration,
    pub fast: Duration,
    pub budget_share: f64,
    pub any_in_progress: bool,
    /// Requests the last cycles took, on average.
    pub requests_per_cycle: f64,
    /// Requests sent in the last hour and the last minute.
    pub requests_last_hour: usize,
    pub requests_last_minute: usize,
    /// As DigitalOcean last reported, if it did.
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
}

/// The delay before the next poll.
pub fn next_interval(i: ScheduleInput) -> Duration {
    let wanted = if i.any_in_progress { i.fast } else { i.base };
    let per_cycle = i.requests_per_cycle.max(1.0);
    // Cycles an hour (and a minute) the budget affords at the current cost per cycle.
    let hourly_budget = HOURLY_LIMIT * i.budget_share;
    let minute_budget = MINUTE_LIMIT * i.budget_share;
    let min_for_hour = Duration::from_secs_f64(3600.0 * per_cycle / hourly_budget);
    let min_for_minute = Duration::from_secs_f64(60.0 * per_cycle / minute_budget);
    let mut interval = wanted.max(min_for_hour).max(min_for_minute);
    // The next cycle would overrun this minute's share: let the minute window slide.
    if i.requests_last_minute as f64 + per_cycle > minute_budget {
        interval = interval.max(Duration::from_secs(60));
    }
    // Already spent most of our share this hour: stretch until the window slides.
    let used = i.requests_last_hour as f64 / hourly_budget;
    if used >= 0.9 {
        interval = interval.max(Duration::from_secs(300));
    }
    // The token may be shared with other tools; DigitalOcean's own figure is the truth.
    if let (Some(rem), Some(limit)) = (i.remaining, i.limit)
        && limit > 0
        && (rem as f64) < 0.1 * limit as f64
    {
        interval = interval.max(i.base * 4);
    }
    interval.min(Duration::from_secs(900))
}

/// The typical cost of a cycle: the median of the recent ones. A median, not an average, so one
/// expensive cycle (a burst of changes, the full read at start) does not slow polling for long.
pub fn typical_cost(recent: &[usize]) -> f64 {
    if recent.is_empty() {
        return 1.0;
    }
    let mut v = recent.to_vec();
    v.sort_unstable();
    v[v.len() / 2] as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ScheduleInput {
        ScheduleInput {
            base: Duration::from_secs(30),
            fast: Duration::from_secs(10),
            budget_share: 0.5,
            any_in_progress: false,
            requests_per_cycle: 1.0,
            requests_last_hour: 0,
            requests_last_minute: 0,
            remaining: None,
            limit: None,
        }
    }

    #[test]
    fn intervals_follow_activity_and_budget() {
        let cases: Vec<(&str, ScheduleInput, Duration)> = vec![
            ("idle", input(), Duration::from_secs(30)),
            (
                "deploying",
                ScheduleInput {
                    any_in_progress: true,
                    ..input()
                },
                Duration::from_secs(10),
            ),
            // 10 requests a cycle at a 2,500/h budget: at least 14.4 s apart.
            (
                "deploying, costly cycles",
                ScheduleInput {
                    any_in_progress: true,
                    requests_per_cycle: 10.0,
                    ..input()
                },
                Duration::from_secs_f64(14.4),
            ),
            // 200 apps listed in one page but 50 detail calls: 72 s.
            (
                "idle, very costly",
                ScheduleInput {
                    requests_per_cycle: 50.0,
                    ..input()
                },
                Duration::from_secs(72),
            ),
            (
                "minute share spent",
                ScheduleInput {
                    requests_last_minute: 125,
                    ..input()
                },
                Duration::from_secs(60),
            ),
            (
                "hour nearly spent",
                ScheduleInput {
                    requests_last_hour: 2300,
                    ..input()
                },
                Duration::from_secs(300),
            ),
            (
                "token shared and low",
                ScheduleInput {
                    remaining: Some(300),
                    limit: Some(5000),
                    ..input()
                },
                Duration::from_secs(120),
            ),
            (
                "never more than 15 minutes",
                ScheduleInput {
                    requests_per_cycle: 10_000.0,
                    ..input()
                },
                Duration::from_secs(900),
            ),
        ];
        for (name, i, want) in cases {
            let got = next_interval(i);
            assert!(
                (got.as_secs_f64() - want.as_secs_f64()).abs() < 0.01,
                "{name}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn default_settings_stay_within_half_the_budget() {
        // One list call a cycle, polling fast all the time, is the worst case for a small account.
        let i = ScheduleInput {
            any_in_progress: true,
            ..input()
        };
        let per_hour = 3600.0 / next_interval(i).as_secs_f64();
        assert!(per_hour <= HOURLY_LIMIT * 0.5, "{per_hour}");
    }

    #[test]
    fn typical_cost_ignores_one_expensive_cycle() {
        assert_eq!(typical_cost(&[]), 1.0);
        assert_eq!(typical_cost(&[201]), 201.0);
        assert_eq!(typical_cost(&[201, 1, 1]), 1.0);
        assert_eq!(typical_cost(&[3, 1, 9, 2, 5]), 3.0);
    }
}
