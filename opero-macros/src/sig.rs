//! What the macros need to know of the function they are put on: its parameters, its receiver
//! and the `T` and `E` of its `Result<T, E>`.

use proc_macro2::Span;
use quote::format_ident;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Signature, Type};

/// One parameter other than `self`.
pub struct Param {
    /// The name the generated function gives it (the user's, or a made-up one for a pattern).
    pub name: Ident,
    pub ty: Type,
}

/// The parts of a signature the expansions use.
pub struct Analysed {
    /// `&self` is the receiver.
    pub method: bool,
    pub params: Vec<Param>,
    pub ok_ty: Type,
    pub err_ty: Type,
}

pub fn analyse(sig: &Signature, macro_name: &str) -> syn::Result<Analysed> {
    if let Some(param) = sig.generics.type_params().next() {
        return Err(syn::Error::new(
            param.span(),
            format!(
                "`#[{macro_name}]` does not support generic functions: the pipeline is one static \
                 per function, and a static cannot depend on a type parameter. Wrap a concrete \
                 instance (`fn fetch_user(id: u64) -> .. {{ fetch::<User>(id) }}`) instead"
            ),
        ));
    }
    if let Some(param) = sig.generics.const_params().next() {
        return Err(syn::Error::new(
            param.span(),
            format!("`#[{macro_name}]` does not support const generic functions"),
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(
            v.span(),
            "variadic functions are not supported",
        ));
    }
    let mut method = false;
    let mut params = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                    return Err(syn::Error::new_spanned(
                        r,
                        format!(
                            "`#[{macro_name}]` supports `&self` methods only: every attempt calls \
                             the method again, so it cannot take `self` by value or `&mut self`"
                        ),
                    ));
                }
                method = true;
            }
            FnArg::Typed(pt) => {
                if let Type::ImplTrait(_) = &*pt.ty {
                    return Err(syn::Error::new_spanned(&pt.ty,
                        format!("`#[{macro_name}]` does not support `impl Trait` parameters (they make the function generic); name a concrete type"),
                    ));
                }
                if let Type::Reference(r) = &*pt.ty {
                    if r.mutability.is_some() {
                        return Err(syn::Error::new_spanned(&pt.ty,
                            format!("`#[{macro_name}]` does not support `&mut` parameters: every attempt gets the arguments again"),
                        ));
                    }
                }
                let name = match &*pt.pat {
                    Pat::Ident(pi) if pi.subpat.is_none() => pi.ident.clone(),
                    _ => format_ident!("__opero_arg{}", i),
                };
                params.push(Param {
                    name,
                    ty: (*pt.ty).clone(),
                });
            }
        }
    }
    let (ok_ty, err_ty) = result_types(&sig.output, sig.ident.span(), macro_name)?;
    Ok(Analysed {
        method,
        params,
        ok_ty,
        err_ty,
    })
}

/// `T` and `E` of a return type spelled `Result<T, E>`.
fn result_types(output: &ReturnType, fn_span: Span, macro_name: &str) -> syn::Result<(Type, Type)> {
    let message = format!(
        "`#[{macro_name}]` needs a function that returns `Result<T, E>` (spelled out, with both \
         types): that is what it retries, and `E` is what `retry_on` sees"
    );
    let ReturnType::Type(_, ty) = output else {
        return Err(syn::Error::new(fn_span, message));
    };
    let Type::Path(tp) = &**ty else {
        return Err(syn::Error::new(ty.span(), message));
    };
    let Some(last) = tp.path.segments.last() else {
        return Err(syn::Error::new(ty.span(), message));
    };
    if last.ident != "Result" {
        return Err(syn::Error::new(ty.span(), message));
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Err(syn::Error::new(ty.span(), message));
    };
    let types: Vec<&Type> = args
        .args
        .iter()
        .filter_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok, err] => Ok(((*ok).clone(), (*err).clone())),
        _ => Err(syn::Error::new(ty.span(), message)),
    }
}
