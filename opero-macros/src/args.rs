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
    "arg_fallback",
    "cache",
    "cache_ttl",
    "cache_key",
    "cache_namespace",
    "cache_backend",
    "rate_limit",
    "burst",
    "name",
    "key",
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
    pub arg_fallback: Option<Ident>,
    pub cache: Option<bool>,
    pub cache_ttl: Option<Nanos>,
    pub cache_key: Option<Path>,
    pub cache_namespace: Option<String>,
    pub cache_backend: Option<At<String>>,
    pub rate_limit: Option<f64>,
    pub burst: Option<u32>,
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
        // A bare flag (`#[opero(cache)]`) means `= true`; only flags may be bare.
        let value = match meta {
            Meta::NameValue(nv) => &nv.value,
            Meta::Path(_) if matches!(key.as_str(), "cache" | "ordered" | "progress") => {
                self.set_bool(&key, true);
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
            "cache" | "ordered" | "progress" => {
                let b = boolean(value, &key)?;
                self.set_bool(&key, b);
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

    fn set_bool(&mut self, key: &str, value: bool) {
        match key {
            "cache" => self.cache = Some(value),
            "ordered" => self.ordered = Some(value),
            _ => self.progress = Some(value),
        }
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
    pub fn feature_checks(&self) -> TokenStream {
        let Some(backend) = &self.cache_backend else {
            return quote! {};
        };
        let span = backend.span;
        match backend.value.as_str() {
            "disk" => quote_spanned! {span=> ::opero::__opero_require_disk!{} },
            "redis" => quote_spanned! {span=> ::opero::__opero_require_redis!{} },
            _ => quote! {},
        }
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
    match lit(value) {
        Some(Lit::Int(i)) => i.base10_parse(),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{key}` expects a non-negative integer, as `{key} = 3`"),
        )),
    }
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
