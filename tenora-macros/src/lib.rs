//! Compile-time embedding of Tenora migration and seed folders.
//!
//! Use these through the `tenora` crate (`tenora::embed_migrations!`, `tenora::embed_seeds!`);
//! the generated code refers to `::tenora` items. Paths are relative to the invoking crate's
//! `Cargo.toml` folder. Problems in the folder (missing `up.sql`, duplicate version, unreadable
//! file, bad folder name) are reported as compile errors on the path literal.
//!
//! Cargo rebuilds when an embedded *file* changes, but not when a *new* migration folder is
//! added: give the crate a `build.rs` that prints `cargo:rerun-if-changed=<folder>`.

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{LitStr, parse_macro_input};

/// Embeds a Diesel-layout migrations folder as a `tenora::Migrations` value (usable in a
/// `const` or `static`).
///
/// ```ignore
/// pub const MIGRATIONS: tenora::Migrations = tenora::embed_migrations!("migrations");
/// ```
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
    expand_migrations(&lit)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

/// Embeds a folder of `*.sql` seed files as a `tenora::Seeds` value (run in file-name order).
///
/// ```ignore
/// pub const SEEDS: tenora::Seeds = tenora::embed_seeds!("seeds");
/// ```
#[proc_macro]
pub fn embed_seeds(input: TokenStream) -> TokenStream {
    let lit = parse_macro_input!(input as LitStr);
    expand_seeds(&lit)
        .unwrap_or_else(|e| e.to_compile_error())
        .into()
}

fn resolve(lit: &LitStr) -> syn::Result<PathBuf> {
    let relative = lit.value();
    let base = std::env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| {
        syn::Error::new(lit.span(), "CARGO_MANIFEST_DIR is not set; build with cargo")
    })?;
    let dir = Path::new(&base).join(&relative);
    dir.canonicalize().map_err(|e| {
        syn::Error::new(
            lit.span(),
            format!(
                "cannot open folder `{relative}` (looked in {}): {e}",
                dir.display()
            ),
        )
    })
}

fn path_str(span: Span, path: &Path) -> syn::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| syn::Error::new(span, format!("path {} is not UTF-8", path.display())))
}

fn expand_migrations(lit: &LitStr) -> syn::Result<TokenStream2> {
    let dir = resolve(lit)?;
    let found = tenora_migration_files::scan_migrations(&dir)
        .map_err(|e| syn::Error::new(lit.span(), e.to_string()))?;
    let mut items = Vec::with_capacity(found.len());
    for m in &found {
        let version = &m.version;
        let name = &m.name;
        let up = path_str(lit.span(), &m.up_path)?;
        let down = match &m.down_path {
            Some(p) => {
                let p = path_str(lit.span(), p)?;
                quote!(::core::option::Option::Some(include_str!(#p)))
            }
            None => quote!(::core::option::Option::None),
        };
        let tx = m.run_in_transaction;
        let checksum = &m.checksum;
        items.push(quote! {
            ::tenora::__private::SqlMigration::__embedded(
                #version, #name, include_str!(#up), #down, #tx, #checksum
            )
        });
    }
    // A named const gets 'static lifetime extension; a bare `&[...]` of types with
    // destructors would not be promoted.
    Ok(quote! {{
        const MIGRATIONS: &[::tenora::__private::SqlMigration] = &[ #(#items),* ];
        ::tenora::__private::Migrations::__from_static(MIGRATIONS)
    }})
}

fn expand_seeds(lit: &LitStr) -> syn::Result<TokenStream2> {
    let dir = resolve(lit)?;
    let found = tenora_migration_files::scan_seeds(&dir)
        .map_err(|e| syn::Error::new(lit.span(), e.to_string()))?;
    let mut items = Vec::with_capacity(found.len());
    for s in &found {
        let name = &s.name;
        let path = path_str(lit.span(), &s.path)?;
        let checksum = &s.checksum;
        items.push(quote! {
            ::tenora::__private::SeedScript::__embedded(#name, include_str!(#path), #checksum)
        });
    }
    Ok(quote! {{
        const SEEDS: &[::tenora::__private::SeedScript] = &[ #(#items),* ];
        ::tenora::__private::Seeds::__from_static(SEEDS)
    }})
}
