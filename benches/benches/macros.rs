//! `#[opero]` beside the builder form it expands to, and a memory-cache hit beside a `#[cached]`
//! function (the `cached` crate): the attribute should add nothing measurable (target ≤ 1.05×
//! the builder).

use std::hint::black_box;

use cached::proc_macro::cached;
use criterion::{criterion_group, criterion_main, Criterion};
use opero::opero;

fn raw(x: u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(31))
}

#[opero(retries = 3)]
fn no_fault(x: u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(31))
}

#[opero(retries = 3, cache = true)]
fn memory_hit(x: u64) -> Result<u64, String> {
    Ok(x.wrapping_mul(31))
}

#[cached]
fn cached_hit(x: u64) -> u64 {
    x.wrapping_mul(31)
}

fn no_fault_call(c: &mut Criterion) {
    let builder = opero::opero()
        .retries(3)
        .wrap(|x: &u64| Ok::<_, String>(x.wrapping_mul(31)))
        .unwrap();
    let mut g = c.benchmark_group("macro_no_fault");
    g.bench_function("raw", |b| b.iter(|| raw(black_box(42))));
    g.bench_function("builder", |b| b.iter(|| builder.call(black_box(&42))));
    g.bench_function("macro", |b| b.iter(|| no_fault(black_box(42))));
    g.finish();
}

fn memory_cache_hit(c: &mut Criterion) {
    let builder = opero::opero()
        .retries(3)
        .cache(true)
        .name("builder_hit")
        .wrap(|x: &u64| Ok::<_, String>(x.wrapping_mul(31)))
        .unwrap();
    builder.call(&42).unwrap();
    memory_hit(42).unwrap();
    cached_hit(42);
    let mut g = c.benchmark_group("macro_memory_hit");
    g.bench_function("cached", |b| b.iter(|| cached_hit(black_box(42))));
    g.bench_function("builder", |b| b.iter(|| builder.call(black_box(&42))));
    g.bench_function("macro", |b| b.iter(|| memory_hit(black_box(42))));
    g.finish();
}

criterion_group!(benches, no_fault_call, memory_cache_hit);
criterion_main!(benches);
