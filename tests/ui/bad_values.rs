use opero::opero;

#[opero(retries = "three")]
fn mistyped(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(cache_ttl = "ten minutes")]
fn unparseable_duration(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(rate_limit = -1.0)]
fn negative_rate(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(cache = true, cache_backend = "memcached")]
fn unknown_backend(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(min_delay = "2s", max_delay = "1s")]
fn delays_out_of_order(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
