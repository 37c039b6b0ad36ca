//! Many processes, one policy: every process running this example shares one rate limit of
//! 5 calls a second through Redis, whatever the number of processes or machines.
//!
//! Start a server (`redis-server`), then run in two terminals:
//!
//! ```text
//! cargo run -p opero --features redis --example shared_rate_limit -- A
//! cargo run -p opero --features redis --example shared_rate_limit -- B
//! ```
//!
//! Each prints the time of its calls: together, the two make 5 calls a second (plus a burst of 1),
//! each about half of them. `OPERO_REDIS_URL` overrides the default `redis://127.0.0.1:6379/0`.
#![allow(clippy::print_stdout)] // an example talks to its reader

use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let who = std::env::args().nth(1).unwrap_or_else(|| "A".to_owned());
    let url =
        std::env::var("OPERO_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let config = opero::OperoConfig::from_json(&format!(
        r#"{{"retry": {{"retries": 2}},
            "rate_limit": {{"rate": 5, "backend": "redis",
                "backend_options": {{"url": "{url}", "name": "shared-example"}}}}}}"#
    ))?;
    let call = opero::opero()
        .retries(config.retry.retries)
        .rate_limit_config(config.rate_limit)
        .wrap(|i: &u32| Ok::<_, String>(*i))?;
    for i in 0..20 {
        call.call(&i).map_err(|e| e.to_string())?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        println!(
            "{who} call {i:2} at {}.{:03}",
            now.as_secs(),
            now.subsec_millis()
        );
    }
    Ok(())
}
