//! Tests never sleep and hope: they wait, with generous [`patience`], for an observable
//! condition, and fail showing what they saw instead.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long any wait may take before a test fails: generous, because correctness is asserted,
/// never speed (2 cores, a debug host, components compiled at upload).
/// `WAYMARK_TEST_PATIENCE_SECS` overrides it.
pub fn patience() -> Duration {
    let secs = std::env::var("WAYMARK_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// Polls `check` until it is true; panics naming `what` after [`patience`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `get` until it returns `Some`; returns the value; panics naming `what` after
/// [`patience`].
pub async fn wait_for_some<T, F, Fut>(what: &str, mut get: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let timeout = patience();
    let start = Instant::now();
    loop {
        if let Some(value) = get().await {
            return value;
        }
        if start.elapsed() > timeout {
            panic!("waited {timeout:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `get` until it returns `expected`; fails after [`patience`] showing, as `assert_eq!`
/// does, the last value it returned beside `expected`.
pub async fn wait_for_eq<T, F, Fut>(what: &str, expected: &T, mut get: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let timeout = patience();
    let start = Instant::now();
    loop {
        let got = get().await;
        if got == *expected {
            return;
        }
        if start.elapsed() > timeout {
            assert_eq!(&got, expected, "waited {timeout:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
