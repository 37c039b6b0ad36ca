//! opmap in worker processes from a plain binary: `cargo run -p opero --example opmap_in_worker_processes`.
//!
//! One item aborts its worker; the others come back, and the aborting one fails alone.

// An example program prints what it shows.
#![allow(clippy::print_stdout)]

use opero::{opmap, AttemptError};

fn square_or_abort(x: &u64) -> Result<u64, String> {
    if *x == 3 {
        std::process::abort();
    }
    Ok(x * x)
}

async fn cube(x: u64) -> Result<u64, String> {
    Ok(x * x * x)
}

fn main() {
    opero::init_workers(); // first line: worker processes stop here

    let squares = opmap()
        .workers(2)
        .retries(1)
        .min_delay(std::time::Duration::ZERO)
        .progress(false)
        .wrap_process(square_or_abort)
        .expect("worker processes start");
    let out = squares.call(0..6u64);
    for (i, result) in out.iter().enumerate() {
        match result {
            Ok(v) => println!("item {i}: {v}"),
            Err(e) => {
                assert!(matches!(
                    e.last().map(|a| &a.error),
                    Some(AttemptError::Crashed(_))
                ));
                println!("item {i} failed alone: {e}");
            }
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cubes = opmap()
        .workers(2)
        .progress(false)
        .wrap_process_async(cube)
        .expect("worker processes start");
    let out = rt.block_on(cubes.call(0..5u64));
    println!("cubes: {out:?}");
}
