//! Capped exponential backoff with jitter, shared by broker reconnects and
//! webhook retries.

use std::time::Duration;

use chrono::Utc;

/// The delay before retry number `attempt` (1 for the first retry): the
/// initial delay doubled per attempt, capped at `max_ms`, spread by up to a
/// quarter so that many clients do not retry in step.
pub fn delay(attempt: u32, initial_ms: u64, max_ms: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let capped = initial_ms.saturating_mul(1 << exponent).min(max_ms);
    let jitter_range = (capped / 4).max(1);
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % jitter_range;
    Duration::from_millis(capped - jitter_range / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_stays_under_the_cap() {
        let within = |d: Duration, ms: u64| {
            let (low, high) = (ms - ms / 8, ms + ms / 8);
            (low..=high).contains(&(d.as_millis() as u64))
        };
        assert!(within(delay(1, 400, 10_000), 400));
        assert!(within(delay(2, 400, 10_000), 800));
        assert!(within(delay(4, 400, 10_000), 3_200));
        assert!(within(delay(9, 400, 10_000), 10_000));
        assert!(within(delay(u32::MAX, 400, 10_000), 10_000));
    }
}
