//! `#[opero]` on `&self` methods, sync and async: `self` is part of the cache key unless
//! `key = (..)` names the parameters that make it.

use std::sync::atomic::{AtomicU32, Ordering};

use opero::opero;
use serde::Serialize;

#[derive(Serialize)]
struct Client {
    base: String,
    #[serde(skip)]
    calls: AtomicU32,
}

impl Client {
    fn new(base: &str) -> Self {
        Client {
            base: base.into(),
            calls: AtomicU32::new(0),
        }
    }

    #[opero(cache = true, retries = 0)]
    fn get(&self, id: u32) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{}/{id}", self.base))
    }

    #[opero(cache = true, retries = 0, key = (id))]
    fn get_by_id(&self, id: u32) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{}/{id}", self.base))
    }

    #[opero(retries = 2, min_delay = "10ms", jitter = "none", arg_fallback = mirror)]
    async fn download(&self, file: &str, mirror: &str) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        if mirror == "down" {
            Err(format!("{mirror} is down"))
        } else {
            Ok(format!("{}{mirror}/{file}", self.base))
        }
    }

    #[opero(cache = true, retries = 0)]
    async fn get_async(&self, id: u32) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(format!("{}/{id}", self.base))
    }
}

#[test]
fn a_method_is_cached_per_receiver_and_arguments() {
    let a = Client::new("a");
    let b = Client::new("b");
    assert_eq!(a.get(1).unwrap(), "a/1");
    assert_eq!(a.get(1).unwrap(), "a/1");
    assert_eq!(b.get(1).unwrap(), "b/1", "another receiver is another key");
    assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.calls.load(Ordering::SeqCst), 1);
    assert_eq!(Client::get_opero().metrics().cache_hits, 1);
}

#[test]
fn key_names_the_parameters_that_make_the_key() {
    let a = Client::new("a");
    let b = Client::new("b");
    assert_eq!(a.get_by_id(7).unwrap(), "a/7");
    assert_eq!(
        b.get_by_id(7).unwrap(),
        "a/7",
        "self is not part of this key"
    );
    assert_eq!(b.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn an_async_method_retries_and_falls_back() {
    let c = Client::new("https://");
    let start = tokio::time::Instant::now();
    let got = c.download("x.tar", &["down", "mirror.example"]).await;
    assert_eq!(got.unwrap(), "https://mirror.example/x.tar");
    assert_eq!(c.calls.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), std::time::Duration::from_millis(25));
}

#[tokio::test]
async fn an_async_method_is_cached_per_receiver_and_arguments() {
    let c = Client::new("c");
    assert_eq!(c.get_async(3).await.unwrap(), "c/3");
    assert_eq!(c.get_async(3).await.unwrap(), "c/3");
    assert_eq!(c.calls.load(Ordering::SeqCst), 1);
}

#[derive(Serialize)]
struct Other {
    base: String,
}

impl Other {
    #[opero(cache = true, retries = 0)]
    fn get(&self, id: u32) -> Result<String, String> {
        Ok(format!("other {}/{id}", self.base))
    }
}

#[test]
fn two_types_methods_of_one_name_never_share_a_cache_entry() {
    let client = Client::new("x");
    let other = Other { base: "x".into() };
    assert_eq!(client.get(9).unwrap(), "x/9");
    assert_eq!(other.get(9).unwrap(), "other x/9");
    assert_ne!(Client::get_opero().name(), Other::get_opero().name());
    assert!(Other::get_opero().name().unwrap().ends_with("Other::get"));
}
