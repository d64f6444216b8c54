// The methods of a rule (SPEC F3, F19): `http_method` names standard methods, or extension
// methods the rule declares in `extension_methods`. Anything else is a load error, so a
// typo (`DELTE`) never silently leaves that method to the secure default.

use http::Method;

use super::rule::{Methods, STANDARD_METHODS};
use crate::config::{ConfigError, RuleConfig, SourceMap};

/// Standard methods (RFC 9110) a rule may name although `all` does not stand for them.
const NAMED_ONLY: [Method; 2] = [Method::TRACE, Method::CONNECT];

/// True for the methods a rule may name without declaring them.
fn is_standard(method: &Method) -> bool {
    STANDARD_METHODS.contains(method) || NAMED_ONLY.contains(method)
}

/// `http_method` with the rule's `extension_methods`; errors name the key at fault.
pub(crate) fn compile_methods(config: &RuleConfig, source: &SourceMap) -> Result<Methods, ConfigError> {
    let extensions = match &config.extension_methods {
        None => Vec::new(),
        Some(list) => {
            parse_extensions(&list.get_ref().0).map_err(|m| source.error(list.span(), "extension_methods", m))?
        }
    };
    let methods = match &config.http_method {
        None => Methods::All,
        Some(list) => {
            parse_methods(&list.get_ref().0, &extensions).map_err(|m| source.error(list.span(), "http_method", m))?
        }
    };
    if let (Some(list), Some(unused)) = (&config.extension_methods, extensions.iter().find(|m| !methods.contains(m))) {
        let message = format!(
            "`{unused}` is declared but http_method does not name it (`all` stands for the standard methods only)"
        );
        return Err(source.error(list.span(), "extension_methods", message));
    }
    Ok(methods)
}

fn parse_methods(names: &[String], extensions: &[Method]) -> Result<Methods, String> {
    if names.is_empty() {
        return Err("list at least one method, or write \"all\"".to_owned());
    }
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        return match names.len() {
            1 => Ok(Methods::All),
            _ => Err("\"all\" cannot be combined with other methods".to_owned()),
        };
    }
    let mut list = Vec::with_capacity(names.len());
    for name in names {
        let method = method_token(name)?;
        if method == Method::HEAD {
            return Err("HEAD is checked as GET: list GET instead".to_owned());
        }
        if !is_standard(&method) && !extensions.contains(&method) {
            return Err(format!(
                "unknown HTTP method {}; declare it in extension_methods if it is an extension method",
                method.as_str().escape_debug()
            ));
        }
        if list.contains(&method) {
            return Err(format!("`{method}` is listed twice"));
        }
        list.push(method);
    }
    Ok(Methods::Only(list))
}

fn parse_extensions(names: &[String]) -> Result<Vec<Method>, String> {
    if names.is_empty() {
        return Err("an empty list declares nothing: leave the key out".to_owned());
    }
    let mut list = Vec::with_capacity(names.len());
    for name in names {
        let method = method_token(name)?;
        if is_standard(&method) || method == Method::HEAD {
            return Err(format!("{method} is a standard method: name it in http_method only"));
        }
        if list.contains(&method) {
            return Err(format!("`{method}` is listed twice"));
        }
        list.push(method);
    }
    Ok(list)
}

/// A method name, case-insensitive: an RFC 9110 token, upper-cased.
fn method_token(name: &str) -> Result<Method, String> {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", name.escape_debug()))
}
