//! opmap's progress bar: 300 items that each take 20 ms, 4 at a time, one in ten failing for
//! good. Run it in a terminal to see the bar (position, rate, ETA, failures so far); with stderr
//! redirected no bar is drawn.
//!
//! `cargo run -p opero --example opmap_progress`
#![allow(clippy::print_stdout)] // an example talks to its reader

use std::time::Duration;

fn main() -> Result<(), opero::OperoError> {
    let work = opero::opmap()
        .workers(4)
        .retries(1)
        .min_delay(Duration::from_millis(5))
        .wrap(|n: &u32| {
            std::thread::sleep(Duration::from_millis(20));
            if n % 10 == 7 {
                Err(format!("item {n} is broken"))
            } else {
                Ok(n * 2)
            }
        })?;
    let results = work.call(0..300u32);
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "{} items: {} done, {} failed",
        results.len(),
        results.len() - failed,
        failed
    );
    Ok(())
}
