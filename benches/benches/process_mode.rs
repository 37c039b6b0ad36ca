//! The per-item round trip of opmap's `process` mode, beside `thread` mode and beside starting a
//! fresh process per item (`procspawn::spawn`, which re-executes this binary each time):
//!
//! - each opmap side maps 200 trivial items with one worker, so the figure is the cost of one
//!   item's trip through the pipeline (and, for `process`, to a worker process and back);
//! - `procspawn_pool_call_per_item` makes one procspawn pool call per item (what opmap did
//!   before each worker kept one channel open);
//! - the fresh-process side starts one process per item and joins it.
//!
//! Criterion reports time per item (throughput in elements). The workers are started once,
//! outside the timed part, as an opmap keeps them across calls.

use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use opero::{opmap, Mode};

fn trivial(x: &u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 7)
}

fn trivial_owned(x: u64) -> Result<u64, String> {
    trivial(&x)
}

fn round_trip(c: &mut Criterion) {
    const N: u64 = 200;
    let thread = opmap()
        .mode(Mode::Thread)
        .workers(1)
        .progress(false)
        .wrap(trivial)
        .unwrap();
    let process = opmap()
        .mode(Mode::Process)
        .workers(1)
        .progress(false)
        .wrap_process(trivial)
        .unwrap();
    let process_2 = opmap()
        .mode(Mode::Process)
        .workers(2)
        .progress(false)
        .wrap_process(trivial)
        .unwrap();

    let mut group = c.benchmark_group("opmap_process_round_trip");
    group.throughput(Throughput::Elements(N));
    group.bench_function("thread_mode_1_worker", |b| b.iter(|| thread.call(0..N)));
    group.bench_function("process_mode_1_worker", |b| b.iter(|| process.call(0..N)));
    group.bench_function("process_mode_2_workers", |b| {
        b.iter(|| process_2.call(0..N))
    });
    group.finish();

    // What each attempt would cost as a procspawn pool call of its own (two fresh channels and a
    // descriptor pass per call) instead of a message on the worker's open channel.
    let pool = procspawn::Pool::new(1).unwrap();
    let mut group = c.benchmark_group("opmap_process_round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("procspawn_pool_call_per_item", |b| {
        b.iter(|| pool.spawn(7u64, trivial_owned).join().unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("opmap_process_round_trip");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("fresh_process_per_item", |b| {
        b.iter(|| procspawn::spawn(7u64, trivial_owned).join().unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = round_trip
}

fn main() {
    // First: the worker processes re-execute this binary and stop here.
    opero::init_workers();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
