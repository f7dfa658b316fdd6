//! Per-client request rates: one token bucket per client of the table in force (plus one for the
//! legacy or anonymous caller), so the number of buckets is bounded by the table, never by
//! what clients send.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A sustained rate and the burst above it that a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second (at least 1).
    pub per_second: u32,
    /// The bucket's size: requests a client may make at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` 0 means no limit (`None`); otherwise `burst` must be at least 1.
    pub fn limit(per_second: u32, burst: u32) -> Result<Option<Self>, &'static str> {
        match (per_second, burst) {
            (0, _) => Ok(None),
            (_, 0) => Err("the burst must be at least 1 when the rate is not 0"),
            (per_second, burst) => Ok(Some(Self { per_second, burst })),
        }
    }
}

/// A token bucket: full at first, refilled continuously at the rate, one token per request.
#[derive(Debug)]
pub struct Bucket {
    rate: Option<Rate>,
    fill: Mutex<Fill>,
}

#[derive(Debug)]
struct Fill {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket; `None` never refuses.
    pub fn new(rate: Option<Rate>) -> Self {
        Self {
            rate,
            fill: Mutex::new(Fill {
                tokens: rate.map_or(0.0, |r| f64::from(r.burst)),
                at: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Takes a token now: `Err(wait)` when none is left, `wait` being how long until one is.
    pub fn take(&self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    /// [`Bucket::take`] at a given instant (an instant before the last one counts as the last).
    pub fn take_at(&self, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate else {
            return Ok(());
        };
        let per_second = f64::from(rate.per_second);
        let mut fill = self
            .fill
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(fill.at).as_secs_f64();
        fill.tokens = elapsed
            .mul_add(per_second, fill.tokens)
            .min(f64::from(rate.burst));
        fill.at = fill.at.max(now);
        if fill.tokens >= 1.0 {
            fill.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - fill.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_of_zero_is_no_limit_and_a_limit_needs_a_burst() {
        // (per_second, burst, expected, what the case proves)
        for (per_second, burst, expected, proves) in [
            (0, 0, Ok(None), "0/s is off, whatever the burst"),
            (0, 5, Ok(None), "0/s is off even with a burst"),
            (
                10,
                20,
                Ok(Some(Rate {
                    per_second: 10,
                    burst: 20,
                })),
                "a limit",
            ),
            (
                10,
                0,
                Err(()),
                "a limit without a burst would refuse everything",
            ),
        ] {
            assert_eq!(
                Rate::limit(per_second, burst).map_err(|_| ()),
                expected,
                "{proves}"
            );
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let bucket = Bucket::new(Some(Rate {
            per_second: 2,
            burst: 3,
        }));
        let start = Instant::now();
        for n in 0..3 {
            assert!(bucket.take_at(start).is_ok(), "request {n} of the burst");
        }
        let wait = bucket.take_at(start).expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_millis(500), "one token per 1/2 s");
        assert!(
            bucket.take_at(start + Duration::from_millis(499)).is_err(),
            "not refilled yet"
        );
        assert!(
            bucket.take_at(start + Duration::from_millis(500)).is_ok(),
            "one token back after 1/rate"
        );
        assert!(
            bucket
                .take_at(start + Duration::from_secs(3600))
                .and_then(|()| bucket.take_at(start + Duration::from_secs(3600)))
                .and_then(|()| bucket.take_at(start + Duration::from_secs(3600)))
                .is_ok(),
            "a long quiet spell refills to the burst"
        );
        assert!(
            bucket.take_at(start + Duration::from_secs(3600)).is_err(),
            "and no further"
        );
        assert!(
            bucket.take_at(start).is_err(),
            "an earlier instant adds no tokens"
        );
    }

    #[test]
    fn without_a_rate_a_bucket_never_refuses() {
        let bucket = Bucket::new(None);
        let now = Instant::now();
        assert!((0..10_000).all(|_| bucket.take_at(now).is_ok()));
    }
}
