//! The attribute macros of [opero](https://docs.rs/opero): `#[opero(...)]` makes a function
//! resilient (cache, fallback, retry, rate limit), `#[opmap(...)]` maps a per-item function over
//! many items in parallel with the same protection.
//!
//! Use them through the `opero` crate (`use opero::opero;`), whose `macros` feature is on by
//! default: the code they generate refers to `::opero`, so this crate is never a dependency of
//! its own. The documentation with examples is on the re-exports, [`opero::opero`] and
//! [`opero::opmap`].
//!
//! [`opero::opero`]: https://docs.rs/opero/latest/opero/attr.opero.html
//! [`opero::opmap`]: https://docs.rs/opero/latest/opero/attr.opmap.html

use proc_macro::TokenStream;

mod args;
mod opero;
mod opmap;
mod sig;

/// Makes a function resilient: cache lookup, then fallback across the values of one parameter,
/// each with retries and exponential backoff, each attempt rate-limited. See the `opero` crate's
/// documentation of this attribute for the keys and examples.
#[proc_macro_attribute]
pub fn opero(attr: TokenStream, item: TokenStream) -> TokenStream {
    opero::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a per-item function into a parallel map over many items, each item with the pipeline
/// of `#[opero]`. See the `opero` crate's documentation of this attribute for the keys and
/// examples.
#[proc_macro_attribute]
pub fn opmap(attr: TokenStream, item: TokenStream) -> TokenStream {
    opmap::expand(attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
