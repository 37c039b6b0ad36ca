//! The expansion of `#[opmap(...)]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{ItemFn, Type};

use crate::args::{private, Args, Which};
use crate::opero::{fallback_index, is_lint_attr};
use crate::sig::analyse;

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func: ItemFn = syn::parse2(item)?;
    let args = Args::parse(attr, Which::Opmap)?;
    let sig = analyse(&func.sig, "opmap")?;
    let p = private();
    if sig.method {
        return Err(syn::Error::new(
            func.sig.inputs.span(),
            "`#[opmap]` goes on a free per-item function, not on a method: its workers may be \
             other processes, where no `self` is",
        ));
    }
    if let Some(key) = &args.key {
        return Err(syn::Error::new(
            key.span,
            "`key` chooses the key parameters of a method under `#[opero]`; an `#[opmap]` item is its own key",
        ));
    }
    let fallback = fallback_index(&args, &sig)?;
    let items: Vec<usize> = (0..sig.params.len())
        .filter(|i| Some(*i) != fallback)
        .collect();
    let [item_index] = items[..] else {
        return Err(syn::Error::new(
            func.sig.inputs.span(),
            "an `#[opmap]` function takes exactly one item parameter (besides the `arg_fallback` one)",
        ));
    };
    let is_async = func.sig.asyncness.is_some();
    let mode = args
        .mode
        .as_ref()
        .map(|m| m.value.as_str())
        .unwrap_or(if is_async { "async" } else { "thread" });
    let mode_ok = if is_async {
        matches!(mode, "async" | "async_process")
    } else {
        matches!(mode, "thread" | "rayon" | "process")
    };
    if !mode_ok {
        let span = args
            .mode
            .as_ref()
            .map_or_else(|| func.sig.span(), |m| m.span);
        let expected = if is_async {
            "an async function maps in mode \"async\" or \"async_process\""
        } else {
            "a blocking function maps in mode \"thread\", \"rayon\" or \"process\"; make it `async fn` for \"async\" or \"async_process\""
        };
        return Err(syn::Error::new(span, expected));
    }
    args.check_async(
        is_async,
        &format!("mode \"{mode}\" runs each attempt as a blocking call"),
    )?;
    let process = mode.ends_with("process");
    if process && fallback.is_some() {
        return Err(syn::Error::new(
            args.arg_fallback.as_ref().map_or_else(|| func.sig.span(), |f| f.span()),
            "`arg_fallback` is not available in the process modes yet; use mode \"thread\", \"rayon\" or \"async\"",
        ));
    }

    if fallback.is_some() && (args.cache == Some(true) || args.rate_limit.is_some()) {
        // The values come with each call, so the map (and with it its cache and its rate
        // limiter) is built per call: a cache or a limit would silently last one call only.
        return Err(syn::Error::new(
            args.arg_fallback
                .as_ref()
                .map_or_else(|| func.sig.span(), |f| f.span()),
            "`#[opmap]` with `arg_fallback` builds its map on every call, so `cache` and \
             `rate_limit` would last one call only: drop them here, or build the map once with \
             `opmap().wrap_fallback(..)` and keep it",
        ));
    }

    let fn_name = &func.sig.ident;
    let accessor = format_ident!("{}_opmap", fn_name);
    let vis = &func.vis;
    let attrs = &func.attrs;
    let ok_ty = &sig.ok_ty;
    let err_ty = &sig.err_ty;
    let item_param = &sig.params[item_index];
    let (item_ty, by_ref) = match &item_param.ty {
        Type::Reference(r) => ((*r.elem).clone(), true),
        other => (other.clone(), false),
    };
    let value_ty = match fallback {
        Some(i) => sig.params[i].ty.clone(),
        None => syn::parse_quote!(()),
    };

    let mut body_fn = func.clone();
    body_fn.attrs.retain(is_lint_attr);
    body_fn.vis = syn::Visibility::Inherited;
    body_fn.sig.ident = format_ident!("__opero_body");

    // The body's arguments inside an adapter that has `item` and `value`.
    let body_args = |item_is_ref: bool| {
        let list = (0..sig.params.len()).map(|i| {
            if Some(i) == fallback {
                if is_async {
                    quote! { value }
                } else {
                    quote! { ::core::clone::Clone::clone(value) }
                }
            } else if by_ref == item_is_ref {
                quote! { item }
            } else if by_ref {
                quote! { &item }
            } else {
                // Each attempt gets the item again.
                quote! { ::core::clone::Clone::clone(item) }
            }
        });
        quote! { #(#list),* }
    };

    let types = args.pipeline_types(err_ty);
    let setters = args.setters(&fn_name.to_string(), err_ty, false);
    let mut opmap_setters = quote! {};
    if let Some(m) = &args.mode {
        let variant = match m.value.as_str() {
            "thread" => quote!(Thread),
            "rayon" => quote!(Rayon),
            "async" => quote!(Async),
            "process" => quote!(Process),
            _ => quote!(AsyncProcess),
        };
        opmap_setters.extend(quote! { .mode(#p::Mode::#variant) });
    }
    if let Some(w) = args.workers {
        opmap_setters.extend(quote! { .workers(#w) });
    }
    if let Some(o) = args.ordered {
        opmap_setters.extend(quote! { .ordered(#o) });
    }
    if let Some(g) = args.progress {
        opmap_setters.extend(quote! { .progress(#g) });
    }
    let builder = args.with_env_options(quote! { #p::opmap_builder() #setters #opmap_setters });

    let fallbacks = match fallback {
        Some(i) => {
            let n = &sig.params[i].name;
            quote! { #p::Fallbacks::new(#n.to_vec()) }
        }
        None => quote! { #p::Fallbacks::new(::std::vec![()]) },
    };

    // (adapter items, the build expression, the map's type)
    let (adapter, build, map_ty) = match (is_async, process) {
        (false, false) => {
            let a = body_args(true);
            let f_ty =
                quote! { fn(&#item_ty, &#value_ty) -> ::core::result::Result<#ok_ty, #err_ty> };
            (
                quote! {
                    fn __opero_item(item: &#item_ty, value: &#value_ty) -> ::core::result::Result<#ok_ty, #err_ty> {
                        let _ = value;
                        __opero_body(#a)
                    }
                },
                quote! { #fallbacks.and_then(|f| #builder.wrap_fallback(f, __opero_item as #f_ty)) },
                quote! { #p::Opmap<#types, #f_ty, #value_ty, #p::AnyExecutor> },
            )
        }
        (true, false) => {
            let a = body_args(false);
            let f_ty = quote! { fn(#item_ty, #value_ty) -> #p::BoxFuture<::core::result::Result<#ok_ty, #err_ty>> };
            (
                quote! {
                    // Boxed, so that the map's type can be named in a `static`.
                    fn __opero_item(item: #item_ty, value: #value_ty) -> #p::BoxFuture<::core::result::Result<#ok_ty, #err_ty>> {
                        let _ = &value;
                        ::std::boxed::Box::pin(async move { __opero_body(#a).await })
                    }
                },
                quote! { #fallbacks.and_then(|f| #builder.wrap_fallback_async(f, __opero_item as #f_ty)) },
                quote! { #p::OpmapAsync<#types, #f_ty, #value_ty, #p::AnyAsyncExecutor> },
            )
        }
        (false, true) => {
            let a = body_args(true);
            // A closure that captures nothing: zero-sized, so a worker process rebuilds it from
            // its type, as `wrap_process` requires.
            (
                quote! {},
                quote! { #builder.wrap_process(|item: &#item_ty| __opero_body(#a)) },
                quote! { #p::OpmapProcess<#types, #item_ty, #ok_ty, #err_ty> },
            )
        }
        (true, true) => {
            let a = body_args(false);
            (
                quote! {},
                quote! { #builder.wrap_process_async(|item: #item_ty| async move { __opero_body(#a).await }) },
                quote! { #p::OpmapProcessAsync<#types, #item_ty, #ok_ty, #err_ty> },
            )
        }
    };
    let feature_checks = args.feature_checks();
    let await_ = if is_async {
        quote! { .await }
    } else {
        quote! {}
    };
    let iter_bound = if is_async {
        quote! { ::core::marker::Send + 'static }
    } else {
        quote! { ::core::marker::Send }
    };
    let asyncness = &func.sig.asyncness;
    let fallback_param = fallback.map(|i| {
        let n = &sig.params[i].name;
        let ty = &sig.params[i].ty;
        quote! { , #n: &[#ty] }
    });
    let ret = quote! { ::std::vec::Vec<#p::ItemResult<#ok_ty, #err_ty>> };
    let signature = quote! {
        #vis #asyncness fn #fn_name(
            items: impl ::core::iter::IntoIterator<Item = #item_ty, IntoIter: #iter_bound>
            #fallback_param
        ) -> #ret
    };

    if fallback.is_some() {
        // The fallback values come with each call, and an opmap holds its values: one per call.
        return Ok(quote! {
            #(#attrs)*
            #signature {
                #feature_checks
                #body_fn
                #adapter
                match #build {
                    ::core::result::Result::Ok(map) => map.call(items) #await_,
                    ::core::result::Result::Err(e) => #p::failed_items(items, &e),
                }
            }
        });
    }
    let accessor_doc = format!(
        "The opmap of [`{fn_name}`], built on its first use and shared by every call (its \
         `opero()` pipeline has the metrics and the cache), or why it could not start."
    );
    Ok(quote! {
        #(#attrs)*
        #signature {
            match #accessor() {
                ::core::result::Result::Ok(map) => map.call(items) #await_,
                ::core::result::Result::Err(e) => #p::failed_items(items, e),
            }
        }

        #[doc = #accessor_doc]
        #vis fn #accessor() -> &'static ::core::result::Result<#map_ty, #p::OperoError> {
            #feature_checks
            #body_fn
            #adapter
            static MAP: ::std::sync::OnceLock<::core::result::Result<#map_ty, #p::OperoError>> =
                ::std::sync::OnceLock::new();
            MAP.get_or_init(|| #build)
        }
    })
}
