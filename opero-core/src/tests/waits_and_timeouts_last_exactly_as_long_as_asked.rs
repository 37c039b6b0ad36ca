//! `Acquire::after` and `timeout` on tokio's paused clock: a wait lasts exactly as long as
//! asked, however long; a timeout gives the output or says which deadline elapsed.

use std::time::Duration;

use tokio::time::Instant;

use crate::{timeout, Acquire, Elapsed};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(start_paused = true)]
async fn a_wait_of_twenty_years_lasts_twenty_years() {
    // (opero caps waits at a hundred years, tokio at thirty.)
    let start = Instant::now();
    Acquire::after(DAY * 365 * 20).await;
    assert_eq!(start.elapsed(), DAY * 365 * 20);
    let start = Instant::now();
    Acquire::after(Duration::ZERO).await;
    Acquire::after(Duration::from_millis(3)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(3));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_gives_the_output_in_time_and_names_its_deadline_otherwise() {
    let on_time = timeout(Duration::from_millis(100), async {
        tokio::time::sleep(Duration::from_millis(99)).await;
        7
    })
    .await;
    assert_eq!(on_time, Ok(7));
    let start = Instant::now();
    let late = timeout(Duration::from_millis(100), std::future::pending::<()>()).await;
    assert_eq!(late, Err(Elapsed(Duration::from_millis(100))));
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(late.unwrap_err().to_string(), "deadline of 100ms elapsed");
}
