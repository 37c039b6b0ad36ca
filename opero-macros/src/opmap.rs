//! The expansion of `#[opmap(...)]`.

use proc_macro2::TokenStream;

pub fn expand(_attr: TokenStream, _item: TokenStream) -> syn::Result<TokenStream> {
    Err(syn::Error::new(proc_macro2::Span::call_site(), "todo"))
}
