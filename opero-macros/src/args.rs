//! The attribute arguments of `#[opero]` and `#[opmap]`: parsed, typed and checked here, at
//! compile time, so that a bad value is an error pointing at it rather than a failure on first use.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprUnary, Ident, Lit, Meta, Path, Token, UnOp};

/// The keys both macros take, in the order the errors list them.
pub const OPERO_KEYS: &[&str] = &[
    "retries",
    "backoff_factor",
    "min_delay",
    "max_delay",
    "jitter",
    "retry_on",
    "deadline",
    "attempt_timeout",
    "arg_fallback",
    "cache",
    "cache_ttl",
    "cache_key",
    "cache_namespace",
    "cache_backend",
    "rate_limit",
    "burst",
    "breaker",
    "breaker_failure_threshold",
    "breaker_failure_ratio",
    "breaker_window",
    "breaker_min_throughput",
    "breaker_open_duration",
    "breaker_half_open_probes",
    "bulkhead_max_concurrent",
    "bulkhead_max_queue",
    "hedge_delay",
    "max_hedges",
    "name",
    "key",
];

/// The keys that turn a circuit breaker on, with `breaker` itself.
const BREAKER_KEYS: &[&str] = &[
    "breaker_failure_threshold",
    "breaker_failure_ratio",
    "breaker_window",
    "breaker_min_throughput",
    "breaker_open_duration",
    "breaker_half_open_probes",
];

/// The keys only `#[opmap]` takes.
pub const OPMAP_KEYS: &[&str] = &["mode", "workers", "ordered", "progress"];

/// Which macro the arguments belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Opero,
    Opmap,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Opero => "opero",
            Which::Opmap => "opmap",
        }
    }
}

/// A value with the span it was written at.
#[derive(Clone)]
pub struct At<T> {
    pub value: T,
    pub span: Span,
}

/// A duration checked at compile time, in nanoseconds.
pub type Nanos = u64;

/// Every argument, typed. `None` means "the default" (the seed's, as in `OperoConfig`).
#[derive(Default)]
pub struct Args {
    pub retries: Option<u32>,
    pub backoff_factor: Option<f64>,
    pub min_delay: Option<At<Nanos>>,
    pub max_delay: Option<At<Nanos>>,
    pub jitter: Option<At<String>>,
    pub retry_on: Option<Path>,
    pub deadline: Option<Nanos>,
    pub attempt_timeout: Option<At<Nanos>>,
    pub arg_fallback: Option<Ident>,
    pub cache: Option<bool>,
    pub cache_ttl: Option<Nanos>,
    pub cache_key: Option<Path>,
    pub cache_namespace: Option<String>,
    pub cache_backend: Option<At<String>>,
    pub rate_limit: Option<f64>,
    pub burst: Option<u32>,
    pub breaker: Option<At<bool>>,
    pub breaker_failure_threshold: Option<u32>,
    pub breaker_failure_ratio: Option<f64>,
    pub breaker_window: Option<Nanos>,
    pub breaker_min_throughput: Option<u32>,
    pub breaker_open_duration: Option<Nanos>,
    pub breaker_half_open_probes: Option<u32>,
    /// The first `breaker_*` key given, for the error of `breaker = false` beside it.
    pub breaker_key: Option<Span>,
    pub bulkhead_max_concurrent: Option<At<usize>>,
    pub bulkhead_max_queue: Option<usize>,
    pub hedge_delay: Option<At<Nanos>>,
    pub max_hedges: Option<At<u32>>,
    pub name: Option<String>,
    pub key: Option<At<Vec<Ident>>>,
    pub mode: Option<At<String>>,
    pub workers: Option<usize>,
    pub ordered: Option<bool>,
    pub progress: Option<bool>,
}

/// The seed's defaults, used to check `min_delay <= max_delay` when only one is given.
const DEFAULT_MIN_DELAY: Nanos = 100_000_000;
const DEFAULT_MAX_DELAY: Nanos = 30_000_000_000;

pub const BACKENDS: &[&str] = &["memory", "disk", "redis"];
pub const MODES: &[&str] = &["thread", "rayon", "async", "process", "async_process"];

impl Args {
    /// Parses the attribute's arguments; every problem is an error spanned at its key or value.
    pub fn parse(tokens: TokenStream, which: Which) -> syn::Result<Args> {
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
        let mut args = Args::default();
        let mut errors: Option<syn::Error> = None;
        let mut seen: Vec<String> = Vec::new();
        for meta in metas {
            if let Err(e) = args.one(&meta, which, &mut seen) {
                match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                }
            }
        }
        if let Some(e) = errors {
            return Err(e);
        }
        args.check_delays()?;
        args.check_limits()?;
        Ok(args)
    }

    fn one(&mut self, meta: &Meta, which: Which, seen: &mut Vec<String>) -> syn::Result<()> {
        let key_path = meta.path();
        let Some(key) = key_path.get_ident().map(Ident::to_string) else {
            return Err(syn::Error::new(key_path.span(), unknown_key("?", which)));
        };
        let valid = valid_keys(which).contains(&key.as_str());
        if !valid {
            return Err(syn::Error::new(key_path.span(), unknown_key(&key, which)));
        }
        if seen.contains(&key) {
            return Err(syn::Error::new(
                key_path.span(),
                format!("`{key}` is given twice"),
            ));
        }
        seen.push(key.clone());
        if BREAKER_KEYS.contains(&key.as_str()) && self.breaker_key.is_none() {
            self.breaker_key = Some(key_path.span());
        }
        // A bare flag (`#[opero(cache)]`) means `= true`; only flags may be bare.
        let value = match meta {
            Meta::NameValue(nv) => &nv.value,
            Meta::Path(_)
                if matches!(key.as_str(), "cache" | "ordered" | "progress" | "breaker") =>
            {
                self.set_bool(&key, true, meta.span());
                return Ok(());
            }
            _ => {
                return Err(syn::Error::new(
                    meta.span(),
                    format!("expected `{key} = <value>`"),
                ))
            }
        };
        match key.as_str() {
            "retries" => self.retries = Some(int(value, &key)?),
            "burst" => {
                let burst: u32 = int(value, &key)?;
                if burst == 0 {
                    return Err(syn::Error::new_spanned(value, "`burst` must be at least 1"));
                }
                self.burst = Some(burst);
            }
            "workers" => {
                let workers: usize = int(value, &key)?;
                if workers == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`workers` must be at least 1",
                    ));
                }
                self.workers = Some(workers);
            }
            "backoff_factor" => {
                let factor = number(value, &key)?;
                if !factor.is_finite() || factor < 1.0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!(
                            "`backoff_factor` must be a finite number of at least 1, not {factor}"
                        ),
                    ));
                }
                self.backoff_factor = Some(factor);
            }
            "rate_limit" => {
                let rate = number(value, &key)?;
                if !rate.is_finite() || rate <= 0.0 {
                    return Err(syn::Error::new_spanned(value,
                        format!("`rate_limit` must be a finite number of permits per second above 0, not {rate}"),
                    ));
                }
                self.rate_limit = Some(rate);
            }
            "min_delay" => {
                self.min_delay = Some(At {
                    value: duration(value, &key)?,
                    span: value.span(),
                })
            }
            "max_delay" => {
                self.max_delay = Some(At {
                    value: duration(value, &key)?,
                    span: value.span(),
                })
            }
            "deadline" => {
                let deadline = duration(value, &key)?;
                if deadline == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`deadline` must be above zero; leave it out for no deadline",
                    ));
                }
                self.deadline = Some(deadline);
            }
            "cache_ttl" => {
                let ttl = duration(value, &key)?;
                if ttl == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`cache_ttl` must be above zero",
                    ));
                }
                self.cache_ttl = Some(ttl);
            }
            "jitter" => {
                self.jitter = Some(one_of(value, &key, &["none", "full", "decorrelated"])?);
            }
            "cache_backend" => self.cache_backend = Some(one_of(value, &key, BACKENDS)?),
            "mode" => self.mode = Some(one_of(value, &key, MODES)?),
            "cache" | "ordered" | "progress" | "breaker" => {
                let b = boolean(value, &key)?;
                self.set_bool(&key, b, value.span());
            }
            "attempt_timeout" => {
                let timeout = duration(value, &key)?;
                if timeout == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`attempt_timeout` must be above zero; leave it out for no timeout",
                    ));
                }
                self.attempt_timeout = Some(At {
                    value: timeout,
                    span: value.span(),
                });
            }
            "breaker_failure_threshold" => {
                self.breaker_failure_threshold = Some(at_least_one(value, &key)?)
            }
            "breaker_min_throughput" => {
                self.breaker_min_throughput = Some(at_least_one(value, &key)?)
            }
            "breaker_half_open_probes" => {
                self.breaker_half_open_probes = Some(at_least_one(value, &key)?)
            }
            "breaker_failure_ratio" => {
                let ratio = number(value, &key)?;
                if !(ratio > 0.0 && ratio <= 1.0) {
                    return Err(syn::Error::new_spanned(
                        value,
                        format!("`breaker_failure_ratio` must be in (0, 1], not {ratio}"),
                    ));
                }
                self.breaker_failure_ratio = Some(ratio);
            }
            "breaker_window" => self.breaker_window = Some(positive_duration(value, &key)?),
            "breaker_open_duration" => {
                self.breaker_open_duration = Some(positive_duration(value, &key)?)
            }
            "bulkhead_max_concurrent" => {
                let n: usize = int(value, &key)?;
                if n == 0 {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`bulkhead_max_concurrent` must be at least 1",
                    ));
                }
                self.bulkhead_max_concurrent = Some(At {
                    value: n,
                    span: value.span(),
                });
            }
            "bulkhead_max_queue" => self.bulkhead_max_queue = Some(int(value, &key)?),
            "hedge_delay" => {
                self.hedge_delay = Some(At {
                    value: positive_duration(value, &key)?,
                    span: value.span(),
                })
            }
            "max_hedges" => {
                self.max_hedges = Some(At {
                    value: at_least_one(value, &key)?,
                    span: value.span(),
                })
            }
            "cache_namespace" => {
                let ns = string(value, &key)?;
                if ns.is_empty() {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`cache_namespace` must not be empty",
                    ));
                }
                self.cache_namespace = Some(ns);
            }
            "name" => {
                let name = string(value, &key)?;
                if name.is_empty() {
                    return Err(syn::Error::new_spanned(value, "`name` must not be empty"));
                }
                self.name = Some(name);
            }
            "retry_on" => {
                self.retry_on = Some(path(
                    value,
                    &key,
                    "a path to a `fn(&E) -> bool`, as `retry_on = is_transient`",
                )?)
            }
            "cache_key" => self.cache_key = Some(path(
                value,
                &key,
                "a path to a unit struct that implements `opero::KeyFn`, as `cache_key = MyKey`",
            )?),
            "arg_fallback" => self.arg_fallback = Some(ident(value, &key)?),
            "key" => {
                let idents = match value {
                    Expr::Tuple(t) => t
                        .elems
                        .iter()
                        .map(|e| ident(e, &key))
                        .collect::<syn::Result<Vec<_>>>()?,
                    Expr::Paren(p) => vec![ident(&p.expr, &key)?],
                    other => vec![ident(other, &key)?],
                };
                self.key = Some(At {
                    value: idents,
                    span: value.span(),
                });
            }
            _ => unreachable!("every valid key is matched"),
        }
        Ok(())
    }

    fn set_bool(&mut self, key: &str, value: bool, span: Span) {
        match key {
            "cache" => self.cache = Some(value),
            "ordered" => self.ordered = Some(value),
            "breaker" => self.breaker = Some(At { value, span }),
            _ => self.progress = Some(value),
        }
    }

    /// Whether a circuit breaker is on: `breaker` or any `breaker_*` key.
    fn breaker_on(&self) -> bool {
        self.breaker.as_ref().is_some_and(|b| b.value) || self.breaker_key.is_some()
    }

    /// Whether hedging is on: `hedge_delay` or `max_hedges`.
    fn hedged(&self) -> Option<Span> {
        self.hedge_delay
            .as_ref()
            .map(|d| d.span)
            .or(self.max_hedges.as_ref().map(|m| m.span))
    }

    /// The settings that need an async function: an attempt timeout (a blocking call cannot be
    /// preempted) and hedging (a blocking call cannot run two attempts side by side).
    pub fn check_async(&self, is_async: bool, what: &str) -> syn::Result<()> {
        if is_async {
            return Ok(());
        }
        if let Some(t) = &self.attempt_timeout {
            return Err(syn::Error::new(
                t.span,
                format!(
                    "`attempt_timeout` needs an `async fn`: a blocking call cannot be preempted \
                     ({what}); bound the whole call with `deadline` instead"
                ),
            ));
        }
        if let Some(span) = self.hedged() {
            return Err(syn::Error::new(
                span,
                format!(
                    "hedging needs an `async fn`: a blocking call cannot run two attempts side \
                     by side ({what})"
                ),
            ));
        }
        Ok(())
    }

    fn check_limits(&self) -> syn::Result<()> {
        if let (Some(timeout), Some(deadline)) = (&self.attempt_timeout, self.deadline) {
            if timeout.value > deadline {
                return Err(syn::Error::new(
                    timeout.span,
                    format!(
                        "`attempt_timeout` ({}) is above `deadline` ({}): the deadline would always cut the attempt first",
                        humantime::format_duration(std::time::Duration::from_nanos(timeout.value)),
                        humantime::format_duration(std::time::Duration::from_nanos(deadline)),
                    ),
                ));
            }
        }
        if let (Some(off), Some(_)) = (&self.breaker, self.breaker_key) {
            if !off.value {
                return Err(syn::Error::new(
                    off.span,
                    "`breaker = false` beside `breaker_*` settings: drop one or the other",
                ));
            }
        }
        Ok(())
    }

    fn check_delays(&self) -> syn::Result<()> {
        let min = self
            .min_delay
            .as_ref()
            .map_or(DEFAULT_MIN_DELAY, |d| d.value);
        let max = self
            .max_delay
            .as_ref()
            .map_or(DEFAULT_MAX_DELAY, |d| d.value);
        if min > max {
            let span = self
                .min_delay
                .as_ref()
                .or(self.max_delay.as_ref())
                .map_or_else(Span::call_site, |d| d.span);
            return Err(syn::Error::new(
                span,
                format!(
                    "`min_delay` ({}) is above `max_delay` ({}); the defaults are 100ms and 30s",
                    humantime::format_duration(std::time::Duration::from_nanos(min)),
                    humantime::format_duration(std::time::Duration::from_nanos(max)),
                ),
            ));
        }
        Ok(())
    }

    /// The builder calls shared by both macros, after the builder expression `builder`.
    /// `method`: the function is a `&self` method, whose name must also name its type.
    pub fn setters(&self, fn_name: &str, error_ty: &syn::Type, method: bool) -> TokenStream {
        let p = private();
        let name = self.name.clone().unwrap_or_else(|| fn_name.to_string());
        let mut calls = quote! {};
        if self.cache == Some(true) {
            // First: it switches the builder's type to the cache backend.
            calls.extend(quote! { .cache(true) });
        }
        let name_tokens = if self.name.is_some() {
            quote! { #name }
        } else if method {
            // Two types of one module may each have a `get`: the type's path tells them apart.
            quote! { ::std::format!("{}::{}", ::core::any::type_name::<Self>(), #name) }
        } else {
            // The function's path: unique per function, stable across edits around it.
            quote! { ::core::concat!(::core::module_path!(), "::", #name) }
        };
        calls.extend(quote! { .name(#name_tokens) });
        if let Some(r) = self.retries {
            calls.extend(quote! { .retries(#r) });
        }
        if let Some(f) = self.backoff_factor {
            calls.extend(quote! { .backoff_factor(#f) });
        }
        if let Some(d) = &self.min_delay {
            let n = d.value;
            calls.extend(quote! { .min_delay(::core::time::Duration::from_nanos(#n)) });
        }
        if let Some(d) = &self.max_delay {
            let n = d.value;
            calls.extend(quote! { .max_delay(::core::time::Duration::from_nanos(#n)) });
        }
        if let Some(n) = self.deadline {
            calls.extend(quote! { .deadline(::core::time::Duration::from_nanos(#n)) });
        }
        if let Some(j) = &self.jitter {
            let variant = match j.value.as_str() {
                "none" => quote!(None),
                "decorrelated" => quote!(Decorrelated),
                _ => quote!(Full),
            };
            calls.extend(quote! { .jitter(#p::Jitter::#variant) });
        }
        if let Some(r) = &self.retry_on {
            calls.extend(quote_spanned! {r.span()=>
                .retry_on(#r as fn(&#error_ty) -> bool)
            });
        }
        if let Some(k) = &self.cache_key {
            calls.extend(quote_spanned! {k.span()=> .key_fn(#k) });
        }
        if let Some(t) = self.cache_ttl {
            calls.extend(quote! { .cache_ttl(::core::time::Duration::from_nanos(#t)) });
        }
        if let Some(ns) = &self.cache_namespace {
            calls.extend(quote! { .cache_namespace(#ns) });
        }
        if let Some(b) = &self.cache_backend {
            let b = &b.value;
            calls.extend(quote! { .cache_backend_name(#b) });
        }
        if let Some(r) = self.rate_limit {
            calls.extend(quote! { .rate_limit(#r) });
        }
        if let Some(b) = self.burst {
            calls.extend(quote! { .burst(#b) });
        }
        if let Some(t) = &self.attempt_timeout {
            let n = t.value;
            calls.extend(quote! { .attempt_timeout(::core::time::Duration::from_nanos(#n)) });
        }
        if self.breaker_on() {
            let mut fields = quote! {};
            if let Some(n) = self.breaker_failure_threshold {
                fields.extend(quote! { failure_threshold: ::core::option::Option::Some(#n), });
            }
            if let Some(r) = self.breaker_failure_ratio {
                fields.extend(quote! { failure_ratio: ::core::option::Option::Some(#r), });
            }
            if let Some(n) = self.breaker_window {
                fields.extend(quote! { window: ::core::time::Duration::from_nanos(#n), });
            }
            if let Some(n) = self.breaker_min_throughput {
                fields.extend(quote! { min_throughput: #n, });
            }
            if let Some(n) = self.breaker_open_duration {
                fields.extend(quote! { open_duration: ::core::time::Duration::from_nanos(#n), });
            }
            if let Some(n) = self.breaker_half_open_probes {
                fields.extend(quote! { half_open_probes: #n, });
            }
            calls.extend(quote! {
                .circuit_breaker(#p::BreakerConfig { #fields ..::core::default::Default::default() })
            });
        }
        if self.bulkhead_max_concurrent.is_some() || self.bulkhead_max_queue.is_some() {
            let default = quote! { <#p::BulkheadConfig as ::core::default::Default>::default() };
            let max_concurrent = match &self.bulkhead_max_concurrent {
                Some(n) => {
                    let n = n.value;
                    quote! { #n }
                }
                None => quote! { #default.max_concurrent },
            };
            let max_queue = match self.bulkhead_max_queue {
                Some(n) => quote! { #n },
                None => quote! { #default.max_queue },
            };
            calls.extend(quote! { .bulkhead(#max_concurrent, #max_queue) });
        }
        if self.hedged().is_some() {
            let default = quote! { <#p::HedgeConfig as ::core::default::Default>::default() };
            let delay = match &self.hedge_delay {
                Some(d) => {
                    let n = d.value;
                    quote! { ::core::time::Duration::from_nanos(#n) }
                }
                None => quote! { #default.delay },
            };
            let max = match &self.max_hedges {
                Some(m) => {
                    let n = m.value;
                    quote! { #n }
                }
                None => quote! { #default.max_hedges },
            };
            calls.extend(quote! { .hedge(#delay, #max) });
        }
        calls
    }

    /// Wraps a builder expression so that the backend's options set in the environment
    /// (`OPERO_REDIS_URL`, `OPERO_DISK_DIR`) reach it: settings that belong outside the code.
    pub fn with_env_options(&self, builder: TokenStream) -> TokenStream {
        let p = private();
        match (&self.cache, &self.cache_backend) {
            (Some(true), Some(b)) if b.value != "memory" => {
                let b = &b.value;
                quote! {{
                    let mut __opero_builder = #builder;
                    for (__opero_option, __opero_value) in #p::env_cache_options(#b) {
                        __opero_builder = __opero_builder.cache_option(__opero_option, __opero_value);
                    }
                    __opero_builder
                }}
            }
            _ => builder,
        }
    }

    /// Items that fail to compile when the chosen backend's cargo feature of `opero` is off.
    /// With the checks that depend on the target: a bulkhead larger than its semaphore can
    /// count (`usize::MAX >> 3` permits, tokio's limit) fails to compile there.
    pub fn feature_checks(&self) -> TokenStream {
        let mut checks = quote! {};
        if let Some(n) = &self.bulkhead_max_concurrent {
            let (value, span) = (n.value, n.span);
            checks.extend(quote_spanned! {span=>
                const _: () = ::core::assert!(
                    #value <= ::core::primitive::usize::MAX >> 3,
                    "`bulkhead_max_concurrent` must be at most usize::MAX >> 3"
                );
            });
        }
        let Some(backend) = &self.cache_backend else {
            return checks;
        };
        let span = backend.span;
        checks.extend(match backend.value.as_str() {
            "disk" => quote_spanned! {span=> ::opero::__opero_require_disk!{} },
            "redis" => quote_spanned! {span=> ::opero::__opero_require_redis!{} },
            _ => quote! {},
        });
        checks
    }

    /// The pipeline's type parameters `C, K, P`.
    pub fn pipeline_types(&self, error_ty: &syn::Type) -> TokenStream {
        let p = private();
        let cache = if self.cache == Some(true) {
            quote! { #p::AnyCache }
        } else {
            quote! { #p::NoCache<#p::AnyCache> }
        };
        let key = match &self.cache_key {
            Some(k) => quote! { #k },
            None => quote! { #p::StableKey },
        };
        let policy = match &self.retry_on {
            Some(_) => quote! { #p::Backoff<fn(&#error_ty) -> bool> },
            None => quote! { #p::Backoff<#p::RetryOn> },
        };
        quote! { #cache, #key, #policy }
    }
}

/// The hidden path through which generated code reaches the facade.
pub fn private() -> TokenStream {
    quote! { ::opero::__private }
}

/// The keys a macro takes: `key` picks a method's key parameters, so only `#[opero]` has it.
fn valid_keys(which: Which) -> Vec<&'static str> {
    match which {
        Which::Opero => OPERO_KEYS.to_vec(),
        Which::Opmap => OPERO_KEYS
            .iter()
            .chain(OPMAP_KEYS)
            .copied()
            .filter(|k| *k != "key")
            .collect(),
    }
}

fn unknown_key(key: &str, which: Which) -> String {
    let keys = valid_keys(which);
    format!(
        "unknown `#[{}]` key `{key}`; the valid keys are: {}",
        which.name(),
        keys.join(", ")
    )
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

/// A number literal, possibly negated (so that `-1.0` is "must be above 0", not "expected a number").
fn number(value: &Expr, key: &str) -> syn::Result<f64> {
    if let Expr::Unary(ExprUnary {
        op: UnOp::Neg(_),
        expr,
        ..
    }) = value
    {
        return number(expr, key).map(|n| -n);
    }
    match lit(value) {
        Some(Lit::Float(f)) => f.base10_parse(),
        Some(Lit::Int(i)) => i.base10_parse::<u64>().map(|n| n as f64),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects a number, as `{key} = 1.5`"),
        )),
    }
}

fn int<N>(value: &Expr, key: &str) -> syn::Result<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    let expected = format!("`{key}` expects a non-negative integer, as `{key} = 3`");
    match lit(value) {
        // A negative or oversized literal: say what is expected, not only what the parser saw.
        Some(Lit::Int(i)) => i
            .base10_parse()
            .map_err(|e| syn::Error::new_spanned(value, format!("{expected} ({e})"))),
        _ => Err(syn::Error::new_spanned(value, expected)),
    }
}

/// An integer of at least 1.
fn at_least_one(value: &Expr, key: &str) -> syn::Result<u32> {
    let n: u32 = int(value, key)?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be at least 1"),
        ));
    }
    Ok(n)
}

/// A duration above zero.
fn positive_duration(value: &Expr, key: &str) -> syn::Result<Nanos> {
    let d = duration(value, key)?;
    if d == 0 {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{key}` must be above zero"),
        ));
    }
    Ok(d)
}

fn boolean(value: &Expr, key: &str) -> syn::Result<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects `true` or `false`"),
        )),
    }
}

fn string(value: &Expr, key: &str) -> syn::Result<String> {
    match lit(value) {
        Some(Lit::Str(s)) => Ok(s.value()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects a string, as `{key} = \"...\"`"),
        )),
    }
}

fn one_of(value: &Expr, key: &str, choices: &[&str]) -> syn::Result<At<String>> {
    let expected = choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let s = match lit(value) {
        Some(Lit::Str(s)) => s.value(),
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects one of {expected}"),
            ))
        }
    };
    if !choices.contains(&s.as_str()) {
        return Err(syn::Error::new_spanned(
            value,
            format!("unknown {key} \"{s}\"; expected one of {expected}"),
        ));
    }
    Ok(At {
        value: s,
        span: value.span(),
    })
}

/// A duration as a string humantime reads (`"250ms"`, `"1m 30s"`) or a number of seconds.
fn duration(value: &Expr, key: &str) -> syn::Result<Nanos> {
    let expected =
        format!("`{key}` expects a duration, as `{key} = \"250ms\"` or seconds, as `{key} = 0.25`");
    let nanos = match lit(value) {
        Some(Lit::Str(s)) => {
            let d = humantime::parse_duration(&s.value()).map_err(|e| {
                syn::Error::new_spanned(value,
                    format!("`{key}`: cannot read \"{}\" as a duration ({e}); write it as \"250ms\", \"10s\" or \"5m\"", s.value()),
                )
            })?;
            u64::try_from(d.as_nanos()).ok()
        }
        _ => {
            let seconds =
                number(value, key).map_err(|_| syn::Error::new_spanned(value, &expected))?;
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(syn::Error::new_spanned(
                    value,
                    format!("`{key}` must be a non-negative number of seconds, not {seconds}"),
                ));
            }
            let nanos = seconds * 1e9;
            (nanos < u64::MAX as f64).then_some(nanos as u64)
        }
    };
    nanos.ok_or_else(|| {
        syn::Error::new_spanned(value, format!("`{key}` is too long (at most ~584 years)"))
    })
}

fn path(value: &Expr, key: &str, expected: &str) -> syn::Result<Path> {
    match value {
        Expr::Path(p) if p.qself.is_none() => Ok(p.path.clone()),
        // The seed wrote names as strings; a string holding a path is read as that path.
        _ => match lit(value) {
            Some(Lit::Str(s)) => s
                .parse::<Path>()
                .map_err(|_| syn::Error::new_spanned(value, format!("`{key}` expects {expected}"))),
            _ => Err(syn::Error::new_spanned(
                value,
                format!("`{key}` expects {expected}"),
            )),
        },
    }
}

fn ident(value: &Expr, key: &str) -> syn::Result<Ident> {
    let expected = || {
        syn::Error::new_spanned(
            value,
            format!("`{key}` expects a parameter name, as `{key} = api_key`"),
        )
    };
    match value {
        Expr::Path(p) => p.path.get_ident().cloned().ok_or_else(expected),
        _ => match lit(value) {
            // `arg_fallback = "endpoint"`, as the seed writes it.
            Some(Lit::Str(s)) => syn::parse_str::<Ident>(&s.value())
                .map(|i| Ident::new(&i.to_string(), s.span()))
                .map_err(|_| expected()),
            _ => Err(expected()),
        },
    }
}
