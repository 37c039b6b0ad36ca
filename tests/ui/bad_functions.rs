use opero::{opero, opmap};

#[opero(arg_fallback = api_key)]
fn no_such_parameter(city: &str, key: &str) -> Result<String, String> {
    Ok(format!("{city}{key}"))
}

#[opero(retries = 1)]
fn not_a_result(id: u32) -> u32 {
    id
}

#[opero(retries = 1)]
fn generic<T: Clone>(value: T) -> Result<T, String> {
    Ok(value)
}

struct Counter;

impl Counter {
    #[opero(retries = 1)]
    fn bump(&mut self) -> Result<u32, String> {
        Ok(1)
    }
}

#[opmap(mode = "async")]
fn blocking_in_async_mode(id: &u32) -> Result<u32, String> {
    Ok(*id)
}

#[opmap(arg_fallback = key, cache = true)]
fn fallback_map_with_a_cache(id: &u32, key: &str) -> Result<u32, String> {
    let _ = key;
    Ok(*id)
}

#[opero(attempt_timeout = "1s")]
fn blocking_with_an_attempt_timeout(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(hedge_delay = "100ms")]
fn blocking_hedged(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opmap(mode = "thread", max_hedges = 2)]
fn blocking_hedged_map(id: &u32) -> Result<u32, String> {
    Ok(*id)
}

fn main() {}
