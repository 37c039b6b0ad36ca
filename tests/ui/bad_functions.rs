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

fn main() {}
