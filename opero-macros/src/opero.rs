//! The expansion of `#[opero(...)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Pat, PatIdent, PatType};

use crate::args::{private, Args, Which};
use crate::sig::{analyse, Analysed};

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    // The function is parsed first so that a bad attribute and a bad signature both show.
    let func: ItemFn = syn::parse2(item)?;
    let args = Args::parse(attr, Which::Opero)?;
    let sig = analyse(&func.sig, "opero")?;
    args.check_async(
        func.sig.asyncness.is_some(),
        "a sync function's calls are blocking",
    )?;
    let p = private();

    let fallback = fallback_index(&args, &sig)?;
    let key = key_exprs(&args, &sig, fallback)?;

    let fn_name = &func.sig.ident;
    let accessor = format_ident!("{}_opero", fn_name);
    let body_name = if sig.method {
        format_ident!("__opero_body_{}", fn_name)
    } else {
        format_ident!("__opero_body")
    };
    let ok_ty = &sig.ok_ty;
    let err_ty = &sig.err_ty;
    let vis = &func.vis;
    let attrs = &func.attrs;
    let types = args.pipeline_types(err_ty);
    let setters = args.setters(&fn_name.to_string(), err_ty, sig.method);
    let feature_checks = args.feature_checks();
    let builder = if args.cache == Some(true) {
        let b = args.with_env_options(quote! { #p::opero_builder() #setters });
        quote! { #p::build_cached(|| #b) }
    } else {
        quote! { #p::build(#p::opero_builder() #setters) }
    };
    // The pipeline carries the function's name (given, or its path); the key takes it from there.
    let name = quote! { __opero_pipeline.name().unwrap_or_default() };

    // The user's function, unchanged but for its name: the body each attempt runs.
    let mut body_fn = func.clone();
    // The user's lint settings still apply to the user's code.
    body_fn.attrs.retain(is_lint_attr);
    body_fn.vis = syn::Visibility::Inherited;
    body_fn.sig.ident = body_name.clone();

    // The generated function: the same signature, the fallback parameter as a slice of its type,
    // patterns as plain names, and the error as `AllFailedError<E>`.
    let mut outer_sig = func.sig.clone();
    let mut typed = 0;
    for input in outer_sig.inputs.iter_mut() {
        let FnArg::Typed(pt) = input else { continue };
        let param = &sig.params[typed];
        *pt = PatType {
            attrs: Vec::new(),
            pat: Box::new(Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: param.name.clone(),
                subpat: None,
            })),
            colon_token: pt.colon_token,
            ty: if Some(typed) == fallback {
                let ty = &param.ty;
                Box::new(syn::parse_quote_spanned! {ty.span()=> &[#ty] })
            } else {
                pt.ty.clone()
            },
        };
        typed += 1;
    }
    outer_sig.output = syn::parse_quote! {
        -> ::core::result::Result<#ok_ty, #p::AllFailedError<#err_ty>>
    };

    // Each attempt gets the arguments again: references are copied, owned values cloned.
    let call_args = sig.params.iter().enumerate().map(|(i, param)| {
        if Some(i) == fallback {
            quote! { ::core::clone::Clone::clone(__opero_value) }
        } else {
            let n = &param.name;
            quote_spanned! {param.ty.span()=> ::core::clone::Clone::clone(&#n) }
        }
    });
    let (receiver, path_to) = if sig.method {
        (quote! { self, }, quote! { Self:: })
    } else {
        (quote! {}, quote! {})
    };
    let body_call = quote! { #path_to #body_name(#receiver #(#call_args),*) };
    let values = match fallback {
        Some(i) => {
            let n = &sig.params[i].name;
            quote! { #n }
        }
        None => quote! { &[()] },
    };
    let key = quote! { &(#(#key,)*) };
    let cached = args.cache == Some(true);
    let is_async = func.sig.asyncness.is_some();
    // Without a cache there is no key to make and no name to read: the retry loop alone.
    let run = match (is_async, cached) {
        (true, true) => quote! {
            __opero_pipeline
                .call_attempts_async(
                    #p::FunctionId::named(#name),
                    #key,
                    #values,
                    |_, __opero_value| {
                        let __opero_attempt = #body_call;
                        async move { __opero_attempt.await.map_err(#p::AttemptError::Failed) }
                    },
                )
                .await
        },
        (true, false) => quote! {
            __opero_pipeline
                .run_attempts_async(#values, |__opero_value| {
                    let __opero_attempt = #body_call;
                    async move { __opero_attempt.await.map_err(#p::AttemptError::Failed) }
                })
                .await
        },
        (false, true) => quote! {
            __opero_pipeline.call_attempts(
                #p::FunctionId::named(#name),
                #key,
                #values,
                |_, __opero_value| #body_call.map_err(#p::AttemptError::Failed),
            )
        },
        (false, false) => quote! {
            __opero_pipeline.run_attempts(#values, |__opero_value| {
                #body_call.map_err(#p::AttemptError::Failed)
            })
        },
    };

    let (inner_fn, sibling_fn) = if sig.method {
        (quote! {}, quote! { #[doc(hidden)] #body_fn })
    } else {
        (quote! { #body_fn }, quote! {})
    };
    let accessor_doc = format!(
        "The [`Opero`]({p}::Opero) pipeline of [`{fn_name}`]{}, built on its first use and shared by \
         every call: its `metrics()`, its cache (`cache()`), its rate limiter.",
        if sig.method { "(Self::".to_string() + &fn_name.to_string() + ")" } else { String::new() },
        p = "::opero"
    );
    Ok(quote! {
        #(#attrs)*
        #[allow(clippy::clone_on_copy, clippy::redundant_clone)]
        #vis #outer_sig {
            #inner_fn
            let __opero_pipeline = #path_to #accessor();
            #run
        }

        #sibling_fn

        #[doc = #accessor_doc]
        #vis fn #accessor() -> &'static #p::Opero<#types> {
            #feature_checks
            static PIPELINE: ::std::sync::OnceLock<#p::Opero<#types>> = ::std::sync::OnceLock::new();
            PIPELINE.get_or_init(|| #builder)
        }
    })
}

/// The position (among the typed parameters) of the `arg_fallback` parameter.
pub fn fallback_index(args: &Args, sig: &Analysed) -> syn::Result<Option<usize>> {
    let Some(fb) = &args.arg_fallback else {
        return Ok(None);
    };
    match sig.params.iter().position(|p| p.name == *fb) {
        Some(i) => Ok(Some(i)),
        None => Err(syn::Error::new(
            fb.span(),
            format!(
                "`arg_fallback = {fb}` names no parameter of this function; its parameters are: {}",
                names(sig)
            ),
        )),
    }
}

fn names(sig: &Analysed) -> String {
    let list: Vec<String> = sig.params.iter().map(|p| p.name.to_string()).collect();
    if list.is_empty() {
        "(none)".to_string()
    } else {
        list.join(", ")
    }
}

/// What makes the cache key: `key = (..)`, or `self` (for a method) and every parameter but the
/// fallback one (the answer does not depend on which fallback value served it).
fn key_exprs(
    args: &Args,
    sig: &Analysed,
    fallback: Option<usize>,
) -> syn::Result<Vec<TokenStream>> {
    if let Some(key) = &args.key {
        let mut out = Vec::new();
        for ident in &key.value {
            if ident == "self" {
                if !sig.method {
                    return Err(syn::Error::new(
                        ident.span(),
                        "`key` names `self`, but this is not a method",
                    ));
                }
                out.push(quote! { self });
                continue;
            }
            match sig.params.iter().position(|p| p.name == *ident) {
                Some(i) if Some(i) == fallback => {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!("`key` names `{ident}`, the fallback parameter: fallback values are never part of a key"),
                    ))
                }
                Some(_) => out.push(quote! { #ident }),
                None => {
                    return Err(syn::Error::new(
                        ident.span(),
                        format!("`key` names `{ident}`, which is no parameter of this function; its parameters are: {}", names(sig)),
                    ))
                }
            }
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    if sig.method {
        out.push(quote! { self });
    }
    for (i, p) in sig.params.iter().enumerate() {
        if Some(i) != fallback {
            let n = &p.name;
            out.push(quote! { #n });
        }
    }
    Ok(out)
}

/// `#[allow(..)]`, `#[warn(..)]`, `#[deny(..)]`, `#[expect(..)]`.
pub fn is_lint_attr(attr: &syn::Attribute) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|l| attr.path().is_ident(l))
}
