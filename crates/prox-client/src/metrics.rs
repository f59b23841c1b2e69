//! Cumulative counters and a latency histogram, updated lock-free by every request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// A snapshot of what a [`Client`](crate::Client) has done since it connected.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// Requests finished, successfully or not.
    pub requests: u64,
    pub succeeded: u64,
    /// Requests that ended in an error (after their retries).
    pub failed: u64,
    /// Attempts sent again after a retryable failure.
    pub retries: u64,
    /// Requests started and not finished (on the wire or waiting to retry).
    pub in_flight: u64,
    /// From the servers' `usage` (requests without it count nothing).
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    /// Latency of successful requests, retries included; `None` before the first.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    pub prompt_tokens_per_s: f64,
    pub generated_tokens_per_s: f64,
}

/// Latencies in buckets growing by 4%: quantiles within 4% of the truth, in constant memory
/// however many requests a run makes.
const BUCKET_GROWTH: f64 = 1.04;
/// 1 µs to about 1,000 s.
const BUCKETS: usize = 540;

pub(crate) struct Recorder {
    started: Instant,
    succeeded: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    latency_buckets: Box<[AtomicU64]>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            started: Instant::now(),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            latency_buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn failure(&self) {
        self.failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn success(&self, latency: Duration, prompt: Option<u64>, generated: Option<u64>) {
        self.succeeded.fetch_add(1, Relaxed);
        self.prompt_tokens.fetch_add(prompt.unwrap_or(0), Relaxed);
        self.generated_tokens
            .fetch_add(generated.unwrap_or(0), Relaxed);
        self.latency_buckets[bucket_of(latency)].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, in_flight: u64) -> Metrics {
        let succeeded = self.succeeded.load(Relaxed);
        let failed = self.failed.load(Relaxed);
        let prompt_tokens = self.prompt_tokens.load(Relaxed);
        let generated_tokens = self.generated_tokens.load(Relaxed);
        let counts: Vec<u64> = self
            .latency_buckets
            .iter()
            .map(|b| b.load(Relaxed))
            .collect();
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let per_s = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        Metrics {
            requests: succeeded + failed,
            succeeded,
            failed,
            retries: self.retries.load(Relaxed),
            in_flight,
            prompt_tokens,
            generated_tokens,
            latency_p50_ms: quantile_ms(&counts, 0.50),
            latency_p95_ms: quantile_ms(&counts, 0.95),
            elapsed_s,
            requests_per_s: per_s(succeeded + failed),
            prompt_tokens_per_s: per_s(prompt_tokens),
            generated_tokens_per_s: per_s(generated_tokens),
        }
    }
}

fn bucket_of(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    ((micros.ln() / BUCKET_GROWTH.ln()) as usize).min(BUCKETS - 1)
}

/// The upper edge of the bucket holding the `q`-quantile, in milliseconds.
fn quantile_ms(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(BUCKET_GROWTH.powi(bucket as i32 + 1) / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_resolution() {
        let recorder = Recorder::new();
        for ms in 1..=100u64 {
            recorder.success(Duration::from_millis(ms), Some(10), Some(2));
        }
        let metrics = recorder.snapshot(0);
        let p50 = metrics.latency_p50_ms.unwrap();
        let p95 = metrics.latency_p95_ms.unwrap();
        assert!((50.0..=50.0 * 1.05).contains(&p50), "{p50}");
        assert!((95.0..=95.0 * 1.05).contains(&p95), "{p95}");
        assert_eq!(metrics.requests, 100);
        assert_eq!(metrics.prompt_tokens, 1000);
        assert_eq!(metrics.generated_tokens, 200);
    }

    #[test]
    fn no_latency_before_the_first_success() {
        let recorder = Recorder::new();
        recorder.failure();
        let metrics = recorder.snapshot(3);
        assert_eq!(metrics.latency_p50_ms, None);
        assert_eq!(
            (metrics.requests, metrics.failed, metrics.in_flight),
            (1, 1, 3)
        );
    }
}
