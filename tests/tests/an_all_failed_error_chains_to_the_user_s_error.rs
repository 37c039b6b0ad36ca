//! `AllFailedError` is a standard error whose `source()` is the last attempt's error, so an
//! `anyhow` (or `eyre`) report walks from opero's summary into the user's own chain.

use std::error::Error;
use std::fmt;

use opero::{Fallbacks, NoCache, Opero};

/// A user's error with a cause of its own, as thiserror would write it.
#[derive(Debug)]
struct ApiError {
    key: usize,
    cause: std::io::Error,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request with key #{} failed", self.key)
    }
}

impl Error for ApiError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

fn fetch(key: usize) -> anyhow::Result<String> {
    let opero = Opero::<NoCache>::builder().retries(0).build()?;
    let keys = Fallbacks::new(vec![0usize, 1])?;
    let body = opero.run_fallback(&keys, |k: &usize| {
        Err::<String, _>(ApiError {
            key: *k + key,
            cause: std::io::Error::other(format!("connection reset ({k})")),
        })
    })?;
    Ok(body)
}

#[test]
fn anyhow_walks_from_the_summary_into_the_last_error_s_chain() {
    let report = fetch(0).unwrap_err();
    let chain: Vec<String> = report.chain().map(|e| e.to_string()).collect();
    assert_eq!(chain.len(), 3, "{chain:#?}");
    assert!(chain[0].starts_with("all 2 attempts failed across 2 fallback values"));
    assert_eq!(
        chain[1], "request with key #1 failed",
        "the last attempt's error"
    );
    assert_eq!(chain[2], "connection reset (1)");
    // The user's own type is reachable by downcasting the report.
    let api: &ApiError = report.chain().find_map(|e| e.downcast_ref()).unwrap();
    assert_eq!(api.key, 1);
}

#[test]
fn source_is_the_last_user_error() {
    let opero = Opero::<NoCache>::builder()
        .retries(1)
        .min_delay(std::time::Duration::ZERO);
    let err = opero
        .build()
        .unwrap()
        .run(|| Err::<(), _>(std::io::Error::other("disk on fire")))
        .unwrap_err();
    assert_eq!(err.source().unwrap().to_string(), "disk on fire");
}
