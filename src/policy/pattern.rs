// The `context` pattern language (SPEC B3, F1, F2): literal segments, `{name}` and `*`
// for one segment, `**` or a trailing `/*` for any rest, and anchored `regex:` patterns.

use std::cmp::Reverse;

use regex::Regex;

#[cfg(test)]
use super::CanonicalPath;

const MAX_PATTERN_SEGMENTS: usize = 64;
const MAX_REGEX_BYTES: usize = 1 << 20;

/// One segment of a structural pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Literal(Box<str>),
    /// `{name}` or `*`: exactly one non-empty segment.
    Wildcard,
}

/// A parsed `context`.
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    Segments { segments: Vec<Segment>, rest: bool },
    Regex(Regex),
}

/// How specific a pattern is; larger wins. Structural patterns beat regexes;
/// then more literal segments, then no any-rest tail, then fewer wildcards.
pub(crate) type Specificity = (bool, usize, bool, Reverse<usize>);

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if let Some(body) = text.strip_prefix("regex:") {
            return parse_regex(body);
        }
        if !text.starts_with('/') {
            return Err("a pattern must start with '/' (or be `regex:...`)".to_owned());
        }
        let body = &text[1..];
        // `/x/` is `/x`; `//` keeps its empty segment and is refused below.
        let body = if body.len() > 1 { body.strip_suffix('/').unwrap_or(body) } else { body };
        let mut segments = Vec::new();
        let mut rest = false;
        if body.is_empty() {
            return Ok(Pattern::Segments { segments, rest });
        }
        let parts: Vec<&str> = body.split('/').collect();
        if parts.len() > MAX_PATTERN_SEGMENTS {
            return Err(format!("a pattern may have at most {MAX_PATTERN_SEGMENTS} segments"));
        }
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "**" if last => rest = true,
                "*" if last => rest = true,
                "**" => return Err("`**` may only be the last segment".to_owned()),
                "*" => segments.push(Segment::Wildcard),
                "" => return Err("a pattern must not have an empty segment (`//`)".to_owned()),
                "." | ".." => return Err("`.` and `..` segments never match a request path".to_owned()),
                param if param.starts_with('{') => segments.push(parse_param(param)?),
                literal => segments.push(Segment::Literal(parse_literal(literal)?.into())),
            }
        }
        let tenant_prefixed = matches!(segments.first(), Some(Segment::Literal(t)) if &**t == "t");
        if tenant_prefixed && (segments.len() > 1 || rest) {
            // Found by fuzzing: such a rule never governs a tenant's path.
            return Err("rules match the path after its `/t/{tenant}` prefix (SPEC C5): write `/api/...`, not \
                        `/t/{tenant}/api/...`, and say which tenants may call with `cross_tenant`"
                .to_owned());
        }
        Ok(Pattern::Segments { segments, rest })
    }

    pub(crate) fn specificity(&self) -> Specificity {
        match self {
            Pattern::Segments { segments, rest } => {
                let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                (true, literals, !rest, Reverse(segments.len() - literals + usize::from(*rest)))
            }
            Pattern::Regex(_) => (false, 0, false, Reverse(0)),
        }
    }

    /// True when both patterns match at least one common path. Exact for structural
    /// patterns; regexes are compared by their text only.
    pub(crate) fn overlaps(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Segments { segments: a, rest: ra }, Pattern::Segments { segments: b, rest: rb }) => {
                let compatible = a.iter().zip(b).all(|pair| match pair {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    _ => true,
                });
                let lengths_fit = match a.len().cmp(&b.len()) {
                    std::cmp::Ordering::Equal => true,
                    std::cmp::Ordering::Less => *ra,
                    std::cmp::Ordering::Greater => *rb,
                };
                compatible && lengths_fit
            }
            (Pattern::Regex(x), Pattern::Regex(y)) => x.as_str() == y.as_str(),
            _ => false,
        }
    }

    /// The reference matcher the index is tested against.
    #[cfg(test)]
    pub(crate) fn matches(&self, path: &CanonicalPath) -> bool {
        match self {
            Pattern::Regex(regex) => regex.is_match(path.as_str()),
            Pattern::Segments { segments, rest } => {
                let mut actual = path.segments();
                for expected in segments {
                    match (expected, actual.next()) {
                        (_, None) => return false,
                        (Segment::Literal(l), Some(a)) if **l != *a => return false,
                        _ => {}
                    }
                }
                *rest || actual.next().is_none()
            }
        }
    }
}

fn parse_param(part: &str) -> Result<Segment, String> {
    let name = part
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .ok_or("a `{name}` parameter must be a whole segment")?;
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err("a parameter name must be letters, digits or `_`".to_owned());
    }
    Ok(Segment::Wildcard)
}

/// Literal segments are written decoded; characters a canonical path can never hold
/// (and wildcard characters inside a segment) are refused so that the rule can match.
fn parse_literal(literal: &str) -> Result<&str, String> {
    let bad = literal.chars().find(|&c| c.is_control() || matches!(c, '*' | '{' | '}' | '%' | ';' | '\\' | '?' | '#'));
    match bad {
        Some(c) => Err(format!(
            "segment `{}` holds {c:?}: wildcards must be whole segments, and literals are written decoded without ';', '\\\\', '?', '#' or control characters",
            literal.escape_debug()
        )),
        None => Ok(literal),
    }
}

/// `regex:` patterns are anchored at both ends with `\A` and `\z`, which no flag inside
/// the pattern can turn into line anchors, and request paths never hold a newline.
fn parse_regex(body: &str) -> Result<Pattern, String> {
    if body.is_empty() {
        return Err("`regex:` needs a pattern".to_owned());
    }
    let anchored = format!(r"\A(?:{body})\z");
    let regex = regex::RegexBuilder::new(&anchored)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("invalid regex: {e}"))?;
    Ok(Pattern::Regex(regex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(&CanonicalPath::parse(path).unwrap())
    }

    // SPEC B3, E1: segment-aware, anchored, case-sensitive.
    #[test]
    fn pattern_language() {
        assert!(matches("/api/users/{id}/challenges", "/api/users/42/challenges"));
        assert!(!matches("/api/users/{id}/challenges", "/api/users/challenges"));
        assert!(matches("/public/**", "/public"));
        assert!(matches("/public/**", "/public/a/b"));
        assert!(!matches("/public/**", "/publicity"));
        assert!(matches("/public/*", "/public"));
        assert!(matches("/public/*", "/public/x/y"));
        assert!(matches("/a/*/c", "/a/b/c"));
        assert!(!matches("/a/*/c", "/a/c"));
        assert!(!matches("/Api", "/api"));
        assert!(matches("regex:/api/v[0-9]+/.*", "/api/v2/x"));
        assert!(!matches("regex:/api/v[0-9]+", "/x/api/v2"));
        assert!(!matches("regex:/api/v[0-9]+", "/api/v2/x"));
    }

    // SPEC F2: malformed patterns are refused at load.
    #[test]
    fn refuses_malformed_patterns() {
        for bad in [
            "api", "", "/a//b", "/**/a", "/a/{x", "/a/x{y}", "/a/{}", "/a/b*", "/a/%2e", "/a/;x", "/a/..", "regex:",
            "regex:(", "/a/{x-y}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    // SPEC F2: `(?m)` cannot turn the anchors into line anchors.
    #[test]
    fn regex_anchors_survive_flags() {
        let regex = Pattern::parse("regex:(?m)/open").unwrap();
        let Pattern::Regex(regex) = regex else { unreachable!() };
        assert!(!regex.is_match("/open\n/admin"));
        assert!(!regex.is_match("/admin\n/open"));
    }

    // SPEC B4: more literals, then no rest, then fewer wildcards.
    #[test]
    fn specificity_order() {
        let s = |p: &str| Pattern::parse(p).unwrap().specificity();
        assert!(s("/api/users/{id}/challenges") > s("/api/users/**"));
        assert!(s("/api/{x}") > s("/api/**"));
        assert!(s("/api/{x}/c") > s("/api/{x}/{y}"));
        assert!(s("/a") > s("regex:/a"));
    }

    #[test]
    fn overlap_detection() {
        let o = |a: &str, b: &str| Pattern::parse(a).unwrap().overlaps(&Pattern::parse(b).unwrap());
        assert!(o("/a/{x}/c", "/a/b/{y}"));
        assert!(!o("/a/{x}/c", "/a/b/d"));
        assert!(o("/a/**", "/a/b/c"));
        assert!(!o("/a/b", "/a/b/c"));
    }
}
