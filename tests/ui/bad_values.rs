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

#[opero(attempt_timeout = 0)]
async fn zero_attempt_timeout(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(deadline = "1s", attempt_timeout = "2s")]
async fn attempt_timeout_above_the_deadline(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_failure_threshold = 0)]
fn zero_breaker_threshold(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_failure_ratio = 1.5)]
fn breaker_ratio_above_one(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_window = "0s")]
fn zero_breaker_window(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_min_throughput = 0)]
fn zero_breaker_min_throughput(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_open_duration = 0)]
fn zero_breaker_open_duration(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker_half_open_probes = 0)]
fn zero_breaker_probes(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(breaker = false, breaker_open_duration = "5s")]
fn breaker_off_with_settings(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(bulkhead_max_concurrent = 0)]
fn empty_bulkhead(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(bulkhead_max_queue = -1)]
fn negative_queue(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(hedge_delay = 0)]
async fn zero_hedge_delay(id: u32) -> Result<u32, String> {
    Ok(id)
}

#[opero(max_hedges = 0)]
async fn zero_hedges(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
