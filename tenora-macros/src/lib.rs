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
/// `const` or `static`). Use it as `tenora::embed_migrations!`, documented there with a tested
/// example:
///
/// ```text
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
/// Use it as `tenora::embed_seeds!`, documented there with a tested example:
///
/// ```text
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
        syn::Error::new(
            lit.span(),
            "CARGO_MANIFEST_DIR is not set; build with cargo",
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tenora-macro-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lit(path: &Path) -> LitStr {
        LitStr::new(path.to_str().unwrap(), Span::call_site())
    }

    fn compile_error_of(result: syn::Result<TokenStream2>) -> String {
        let tokens = match result {
            Ok(t) => panic!("expected a compile error, got {t}"),
            Err(e) => e.to_compile_error().to_string(),
        };
        assert!(tokens.contains("compile_error"), "{tokens}");
        tokens
    }

    #[test]
    fn expands_to_static_migrations_with_include_str() {
        let dir = temp_dir("ok");
        std::fs::create_dir_all(dir.join("2024-01-01-000000_a")).unwrap();
        std::fs::write(dir.join("2024-01-01-000000_a/up.sql"), "SELECT 1;").unwrap();
        let out = expand_migrations(&lit(&dir)).unwrap().to_string();
        assert!(out.contains("include_str !"), "{out}");
        assert!(out.contains("\"20240101000000\""), "{out}");
        assert!(
            out.contains(&tenora_migration_files::checksum("SELECT 1;")),
            "{out}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn folder_problems_become_compile_errors() {
        let missing = compile_error_of(expand_migrations(&lit(Path::new("/no/such/dir"))));
        assert!(missing.contains("cannot open folder"), "{missing}");

        let dir = temp_dir("no-up");
        std::fs::create_dir_all(dir.join("2024-01-01-000000_a")).unwrap();
        let no_up = compile_error_of(expand_migrations(&lit(&dir)));
        assert!(no_up.contains("missing up.sql"), "{no_up}");

        std::fs::write(dir.join("2024-01-01-000000_a/up.sql"), "").unwrap();
        std::fs::create_dir_all(dir.join("20240101000000_b")).unwrap();
        std::fs::write(dir.join("20240101000000_b/up.sql"), "").unwrap();
        let dup = compile_error_of(expand_migrations(&lit(&dir)));
        assert!(dup.contains("share the version"), "{dup}");
        std::fs::remove_dir_all(dir).unwrap();

        let seeds = compile_error_of(expand_seeds(&lit(Path::new("/no/such/seeds"))));
        assert!(seeds.contains("cannot open folder"), "{seeds}");
    }
}
