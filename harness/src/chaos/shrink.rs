//! Shrinking a failing schedule: a delta-debugging loop over its events (Zeller's
//! ddmin, complements only). It removes chunks of events, halving the chunk size down to
//! one event, and keeps a removal whenever the failure remains. Each try re-runs the
//! routers, so the loop stops after `budget` tries; what it has by then is the result.
use std::future::Future;

/// The events of `events` that still make `still_fails` true, after at most `budget`
/// calls of it; returns them and the number of tries made. `still_fails` is never called
/// with `events` itself (it is known to fail).
pub async fn shrink<T, F, Fut>(events: Vec<T>, budget: usize, mut still_fails: F) -> (Vec<T>, usize)
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut cur = events;
    let mut tries = 0;
    let mut chunk = cur.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < cur.len() {
            if tries >= budget {
                return (cur, tries);
            }
            let end = (i + chunk).min(cur.len());
            let cand: Vec<T> = cur[..i].iter().chain(cur[end..].iter()).cloned().collect();
            tries += 1;
            if still_fails(cand.clone()).await {
                cur = cand;
            } else {
                i = end;
            }
        }
        if chunk == 1 {
            return (cur, tries);
        }
        chunk = chunk.div_ceil(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinking_keeps_only_the_events_the_failure_needs() {
        // fails when events 3 and 7 are both present (e.g. a push, then a restart)
        let events: Vec<u32> = (0..12).collect();
        let (min, tries) = shrink(events, 100, |c| async move { c.contains(&3) && c.contains(&7) }).await;
        assert_eq!(min, vec![3, 7]);
        assert!(tries <= 40, "{tries} tries");
        // a failure needing nothing shrinks to no event at all
        let (min, _) = shrink((0..9).collect::<Vec<u32>>(), 100, |_| async { true }).await;
        assert!(min.is_empty());
    }

    #[tokio::test]
    async fn the_budget_bounds_the_tries() {
        let mut calls = 0;
        let (min, tries) = shrink((0..50).collect::<Vec<u32>>(), 5, |c| {
            calls += 1;
            async move { c.contains(&49) }
        })
        .await;
        assert_eq!((tries, calls), (5, 5));
        assert!(min.contains(&49));
        assert!(min.len() < 50);
    }
}
