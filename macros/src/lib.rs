//! `tower-secure-macros`: the `#[secure(...)]` attribute, re-exported as
//! `tower_secure::secure`; its documentation lives there.
//!
//! The attribute does not rewrite the handler's body, signature as callers see it, or
//! return type. It emits a hidden static with the rule (registered for the policy listing),
//! a zero-sized type naming it, and inserts a guard extractor as the handler's *first*
//! argument, so the check runs before any other extractor reads the request.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, ItemFn, Lit, LitStr, MetaNameValue, Token};

/// Attaches an access rule to an axum handler.
///
/// ```text
/// #[secure(scope = "internal_identity_mgt_view")]
/// async fn challenges(Path(user_id): Path<String>) -> String { ... }
///
/// #[secure(permission = ["/permission/a", "/permission/b"], permissions_match = "any",
///          path = "/api/things/{id}", method = "PUT")]
/// async fn update(Path(id): Path<String>, Json(body): Json<Value>) -> String { ... }
/// ```
///
/// Keys: `scope` (or `scopes`) and `permission` (or `permissions`), each a string or a
/// list; `scopes_match` / `permissions_match`: `"all"` (default) or `"any"`;
/// `token_permissions = "check"` to check a token user's permissions as well as the
/// token's scopes; optional `path` and `method`, which let the policy listing find the
/// runtime rule that meets the route. `method` is a standard method, or an extension
/// method declared in `extension_methods`. A rule with scopes and permissions whose scopes'
/// bindings (`[[scope]]`) do not imply the permissions is refused when the layer is built,
/// unless it says `token_permissions = "check"`.
/// The handler's rule and the rule file's rule for the request both apply (deny wins),
/// unless the rule file's rule has `override = true`, which replaces the handler's rule.
/// The check runs before the handler's other extractors; a handler reached without the
/// `SecureLayer` answers 500. Misuse is a compile error at the offending token. Free
/// functions only: on an associated function of an `impl` block the expansion does not
/// compile (its hidden items cannot live there).
#[proc_macro_attribute]
pub fn secure(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// The attribute's arguments, checked.
struct Args {
    scopes: Vec<LitStr>,
    scopes_match: Option<LitStr>,
    permissions: Vec<LitStr>,
    permissions_match: Option<LitStr>,
    token_permissions: Option<LitStr>,
    path: Option<LitStr>,
    method: Option<LitStr>,
    extension_methods: Vec<LitStr>,
}

struct RawArgs(Punctuated<MetaNameValue, Token![,]>);

impl Parse for RawArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        Ok(Self(Punctuated::parse_terminated(input)?))
    }
}

const KEYS: &str = "scope (or scopes), permission (or permissions), scopes_match, permissions_match, \
                    token_permissions, path, method, extension_methods";

/// Methods `method` may name without declaring them (RFC 9110 and PATCH, RFC 5789).
const STANDARD_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

impl Args {
    fn parse(attr: TokenStream2) -> syn::Result<Self> {
        let raw: RawArgs = syn::parse2(attr)?;
        let mut args = Args {
            scopes: Vec::new(),
            scopes_match: None,
            permissions: Vec::new(),
            permissions_match: None,
            token_permissions: None,
            path: None,
            method: None,
            extension_methods: Vec::new(),
        };
        let mut seen: Vec<String> = Vec::new();
        for pair in raw.0 {
            let key = pair.path.get_ident().map(ToString::to_string).unwrap_or_default();
            // `scopes` and `permissions` are the same keys as `scope` and `permission`.
            let canonical = match key.as_str() {
                "scope" | "scopes" => "scope",
                "permission" | "permissions" => "permission",
                "scopes_match" | "permissions_match" | "token_permissions" | "path" | "method"
                | "extension_methods" => key.as_str(),
                _ => {
                    let message = format!("unknown key `{}` in #[secure]: expected one of {KEYS}", key_text(&pair));
                    return Err(syn::Error::new_spanned(&pair.path, message));
                }
            }
            .to_owned();
            if seen.contains(&canonical) {
                let message = if key == canonical {
                    format!("duplicate key `{key}` in #[secure]")
                } else {
                    format!("duplicate key `{key}` in #[secure] (`{canonical}` and `{key}` are the same key)")
                };
                return Err(syn::Error::new_spanned(&pair.path, message));
            }
            seen.push(canonical.clone());
            match canonical.as_str() {
                "scope" => args.scopes = one_or_many(&pair.value, check_scope)?,
                "permission" => args.permissions = one_or_many(&pair.value, check_permission)?,
                "scopes_match" => args.scopes_match = Some(match_mode(&pair.value)?),
                "permissions_match" => args.permissions_match = Some(match_mode(&pair.value)?),
                "token_permissions" => args.token_permissions = Some(token_permissions(&pair.value)?),
                "path" => args.path = Some(check(&pair.value, check_path)?),
                "extension_methods" => args.extension_methods = one_or_many(&pair.value, check_extension_method)?,
                _ => args.method = Some(check(&pair.value, check_method)?),
            }
        }
        args.check_methods()?;
        args.check_token_permissions()?;
        let modes =
            [(&args.scopes_match, &args.scopes, "scope"), (&args.permissions_match, &args.permissions, "permission")];
        for (mode, list, name) in modes {
            if let (Some(mode), true) = (mode, list.is_empty()) {
                let message = format!("`{name}s_match` without any `{name}`: add a `{name}` or remove `{name}s_match`");
                return Err(syn::Error::new(mode.span(), message));
            }
        }
        if args.scopes.is_empty() && args.permissions.is_empty() {
            let message = "#[secure] needs at least one `scope` or `permission`";
            return Err(syn::Error::new(Span::call_site(), message));
        }
        Ok(args)
    }
}

impl Args {
    /// `method` is standard or declared in `extension_methods`, and every declared method
    /// is the `method`.
    fn check_methods(&self) -> syn::Result<()> {
        let declared = |method: &str| self.extension_methods.iter().any(|m| m.value().eq_ignore_ascii_case(method));
        if let Some(method) = &self.method {
            let name = method.value().to_ascii_uppercase();
            if !STANDARD_METHODS.contains(&name.as_str()) && !declared(&name) {
                let message =
                    format!("unknown HTTP method {name}; declare it in extension_methods if it is an extension method");
                return Err(syn::Error::new(method.span(), message));
            }
        }
        let named =
            |m: &LitStr| self.method.as_ref().is_some_and(|method| method.value().eq_ignore_ascii_case(&m.value()));
        match self.extension_methods.iter().find(|m| !named(m)) {
            Some(unused) => {
                let message = format!("`{}` is declared but `method` does not name it", unused.value());
                Err(syn::Error::new(unused.span(), message))
            }
            None => Ok(()),
        }
    }

    /// `token_permissions = "check"` checks the rule's permissions: it needs some.
    fn check_token_permissions(&self) -> syn::Result<()> {
        match &self.token_permissions {
            Some(mode) if mode.value() == "check" && self.permissions.is_empty() => Err(syn::Error::new(
                mode.span(),
                "`token_permissions = \"check\"` checks a token user's permissions, and this rule names none: \
                 add a `permission` or remove the key",
            )),
            _ => Ok(()),
        }
    }
}

fn key_text(pair: &MetaNameValue) -> String {
    quote!(#pair).to_string().split('=').next().unwrap_or_default().trim().to_owned()
}

/// A string literal, checked by `rule`.
fn check(value: &Expr, rule: fn(&str) -> Result<(), String>) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) => {
            rule(&lit.value()).map_err(|m| syn::Error::new(lit.span(), m))?;
            Ok(lit.clone())
        }
        other => Err(syn::Error::new_spanned(other, "expected a string literal")),
    }
}

/// `"x"` or `["x", "y"]`, each checked by `rule`; an empty list is an error.
fn one_or_many(value: &Expr, rule: fn(&str) -> Result<(), String>) -> syn::Result<Vec<LitStr>> {
    match value {
        Expr::Array(ExprArray { elems, bracket_token, .. }) => {
            if elems.is_empty() {
                return Err(syn::Error::new(
                    bracket_token.span.join(),
                    "an empty list requires nothing: leave the key out",
                ));
            }
            let items: Vec<LitStr> = elems.iter().map(|e| check(e, rule)).collect::<syn::Result<_>>()?;
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| earlier.value() == item.value()) {
                    return Err(syn::Error::new(item.span(), format!("`{}` listed twice", item.value())));
                }
            }
            Ok(items)
        }
        single => Ok(vec![check(single, rule)?]),
    }
}

fn match_mode(value: &Expr) -> syn::Result<LitStr> {
    check(value, |v| match v {
        "all" | "any" => Ok(()),
        _ => Err("expected \"all\" or \"any\"".to_owned()),
    })
}

/// The same syntax the rule file accepts for a scope (a scope token, RFC 6749 section 3.3).
fn check_scope(scope: &str) -> Result<(), String> {
    let valid = !scope.is_empty() && scope.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    if valid {
        Ok(())
    } else if scope.is_empty() {
        Err("empty scope: a scope is a non-empty scope token".to_owned())
    } else {
        Err("not a scope token (printable ASCII, no space, quote or backslash)".to_owned())
    }
}

/// The same syntax the rule file accepts for a permission: an absolute path of non-empty
/// segments, no `.`/`..`, no white space or control characters.
fn check_permission(permission: &str) -> Result<(), String> {
    let rest = permission.strip_prefix('/').ok_or("a permission is an absolute path such as `/permission/admin`")?;
    if permission.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a permission has no white space or control characters".to_owned());
    }
    if rest.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("a permission's segments are non-empty and not `.` or `..`".to_owned());
    }
    Ok(())
}

fn token_permissions(value: &Expr) -> syn::Result<LitStr> {
    check(value, |v| match v {
        "scopes" | "check" => Ok(()),
        _ => Err("expected \"scopes\" (the default) or \"check\"".to_owned()),
    })
}

fn check_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err("the route path starts with `/`, as in axum's `route`".to_owned())
    }
}

fn check_method(method: &str) -> Result<(), String> {
    if is_token(method) {
        Ok(())
    } else {
        Err("expected an HTTP method such as \"GET\"".to_owned())
    }
}

/// An extension method: a method token that is not a standard method.
fn check_extension_method(method: &str) -> Result<(), String> {
    check_method(method)?;
    let name = method.to_ascii_uppercase();
    if STANDARD_METHODS.contains(&name.as_str()) {
        return Err(format!("{name} is a standard method: name it in `method` only"));
    }
    Ok(())
}

/// An RFC 9110 token (the syntax of a method name).
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut function: ItemFn = syn::parse2(item)
        .map_err(|e| syn::Error::new(e.span(), "#[secure] goes on a free `async fn` (an axum handler)"))?;
    let args = Args::parse(attr)?;
    if function.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            function.sig.fn_token.span(),
            "#[secure] goes on a free `async fn` (an axum handler)",
        ));
    }
    if let Some(receiver) = function.sig.receiver() {
        return Err(syn::Error::new_spanned(receiver, "#[secure] goes on a free `async fn`, not a method"));
    }
    let name = function.sig.ident.clone();
    let name_text = name.to_string();
    let rule_static = format_ident!("__TOWER_SECURE_RULE_{}", name);
    let rule_type = format_ident!("__TowerSecureRule_{}", name);
    let krate = quote!(::tower_secure);
    let mode = |m: &Option<LitStr>| match m.as_ref().map(LitStr::value).as_deref() {
        Some("any") => quote!(#krate::config::MatchMode::Any),
        _ => quote!(#krate::config::MatchMode::All),
    };
    let (scopes, permissions) = (&args.scopes, &args.permissions);
    let (scopes_match, permissions_match) = (mode(&args.scopes_match), mode(&args.permissions_match));
    let token_permissions = match args.token_permissions.as_ref().map(LitStr::value).as_deref() {
        Some("check") => quote!(#krate::config::TokenPermissions::Check),
        _ => quote!(#krate::config::TokenPermissions::Scopes),
    };
    let option = |value: &Option<LitStr>| match value {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let (path, method) = (option(&args.path), option(&args.method));
    let span = function.sig.ident.span();
    let guard: syn::FnArg = syn::parse2(quote_spanned! {span=>
        _: #krate::__private::Guard<#rule_type>
    })?;
    function.sig.inputs.insert(0, guard);
    let visibility = &function.vis;
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        static #rule_static: #krate::__private::HandlerRule = #krate::__private::HandlerRule::new(
            #name_text,
            ::core::module_path!(),
            ::core::file!(),
            ::core::line!(),
            ::core::column!(),
            &[#(#scopes),*],
            #scopes_match,
            &[#(#permissions),*],
            #permissions_match,
            #token_permissions,
            #path,
            #method,
        );
        #krate::__private::inventory::submit! {
            #krate::__private::RegisteredRule(&#rule_static)
        }
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #visibility struct #rule_type;
        impl #krate::__private::RuleOf for #rule_type {
            fn rule() -> &'static #krate::__private::HandlerRule {
                &#rule_static
            }
        }
        #function
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_match_the_rule_file() {
        assert!(check_scope("internal_identity_mgt_view").is_ok());
        assert!(check_scope("a b").is_err() && check_scope("").is_err());
        assert!(check_permission("/permission/admin").is_ok());
        assert!(check_permission("permission").is_err() && check_permission("/a//b").is_err());
        assert!(check_permission("/a/../b").is_err() && check_permission("/a b").is_err());
    }

    // SPEC F19: method names are tokens; extension methods are not standard ones.
    #[test]
    fn method_syntax() {
        assert!(check_method("get").is_ok() && check_method("VERSION-CONTROL").is_ok());
        assert!(check_method("GET POST").is_err() && check_method("").is_err());
        assert!(check_extension_method("PROPFIND").is_ok());
        assert!(check_extension_method("delete").is_err() && check_extension_method("PROP FIND").is_err());
    }
}
