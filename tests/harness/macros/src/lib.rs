//! `#[harness::test]`: the attribute of daemonic's integration tests (`tests/harness/mod.rs`).
//!
//! It leaves the function as it is and registers it with the harness through `inventory`, so
//! that the harness (libtest-mimic) can run it and report a test that cannot run on this host as
//! *ignored* with its reason, which libtest's `#[test]` cannot do at run time. No dependencies:
//! the only thing read from the item is the identifier after `fn`.

use proc_macro::{Delimiter, TokenStream, TokenTree};

/// Registers a `fn name()` as a test of the harness.
#[proc_macro_attribute]
pub fn test(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("#[harness::test] takes no arguments");
    }
    let mut tokens = item.clone().into_iter();
    let name = loop {
        match tokens.next() {
            Some(TokenTree::Ident(i)) if i.to_string() == "fn" => match tokens.next() {
                Some(TokenTree::Ident(name)) => break name.to_string(),
                _ => return error("#[harness::test] expects `fn name()`"),
            },
            // Attributes and doc comments before the function.
            Some(TokenTree::Punct(_)) | Some(TokenTree::Group(_)) => {}
            Some(TokenTree::Ident(i)) if i.to_string() == "pub" => {}
            Some(other) => return error(&format!("#[harness::test] expects a function, found `{other}`")),
            None => return error("#[harness::test] expects a function"),
        }
    };
    let registration: TokenStream =
        format!("::inventory::submit! {{ crate::harness::Test::new(::core::module_path!(), \"{name}\", {name}) }}")
            .parse()
            .expect("the registration is valid Rust");
    let mut out = item;
    out.extend(registration);
    out
}

fn error(message: &str) -> TokenStream {
    let mut out: TokenStream = "::core::compile_error!".parse().expect("a path");
    let text: TokenStream = format!("{message:?}").parse().expect("a string literal");
    out.extend([TokenTree::Group(proc_macro::Group::new(Delimiter::Parenthesis, text))]);
    out.extend("; ".parse::<TokenStream>().expect("a semicolon"));
    out
}
