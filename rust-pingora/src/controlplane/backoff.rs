//! Reconnect backoff of the control-plane client (docs/spec.md section 6).

use rand::Rng;
use std::time::Duration;

/// Backoff before the n-th consecutive failed attempt's retry (n = 0, 1, ...): uniform in
/// `[d/2, d]` with `d = min(initial * 2^n, max)`, in milliseconds.
pub fn backoff_delay(n: u32, initial_ms: u64, max_ms: u64, rng: &mut impl Rng) -> Duration {
    let d = initial_ms.saturating_mul(1u64.checked_shl(n.min(63)).unwrap_or(u64::MAX)).min(max_ms);
    let lo = d / 2;
    let ms = if d > lo { rng.random_range(lo..=d) } else { d };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bounds() {
        let mut rng = rand::rng();
        for n in 0..40 {
            let d = (100u64.saturating_mul(1u64 << n.min(62))).min(5000);
            for _ in 0..200 {
                let got = backoff_delay(n, 100, 5000, &mut rng).as_millis() as u64;
                assert!(got >= d / 2 && got <= d, "n={n} got={got} d={d}");
            }
        }
        assert!(backoff_delay(0, 100, 5000, &mut rng) <= Duration::from_millis(100));
        assert!(backoff_delay(30, 100, 5000, &mut rng) >= Duration::from_millis(2500));
    }
}
