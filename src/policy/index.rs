// The rule index: a segment trie for structural patterns and one `RegexSet` for
// `regex:` patterns. A lookup walks only the trie nodes the path can reach; it never
// scans the rule list (SPEC B4, F18).

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use regex::RegexSet;

use super::pattern::{Pattern, Segment};
use super::rule::Rule;
use super::CanonicalPath;

/// Segment keys come from the configuration, never from callers, so a fast non-keyed
/// hash is safe here: a caller can only look up, not fill the table.
#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, Node, foldhash::fast::RandomState>,
    wildcard: Option<Box<Node>>,
    /// Rules whose pattern ends here.
    exact: Vec<usize>,
    /// Rules whose pattern ends here with an any-rest tail.
    rest: Vec<usize>,
}

/// Why no rule could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupError {
    /// The method is outside `all` and no matching rule names it.
    MethodNotAllowed,
    /// Two `regex:` rules of equal rank match (structural ties are load errors).
    Ambiguous,
}

#[derive(Debug)]
pub(crate) struct RuleIndex {
    root: Node,
    regexes: RegexSet,
    regex_rules: Vec<usize>,
}

impl RuleIndex {
    pub(crate) fn build(rules: &[Arc<Rule>]) -> Result<Self, regex::Error> {
        let mut root = Node::default();
        let mut regex_sources = Vec::new();
        let mut regex_rules = Vec::new();
        for rule in rules {
            match &rule.pattern {
                Pattern::Segments { segments, rest } => {
                    let mut node = &mut root;
                    for segment in segments {
                        node = match segment {
                            Segment::Literal(text) => node.literals.entry(text.clone()).or_default(),
                            Segment::Wildcard => node.wildcard.get_or_insert_with(Box::default),
                        };
                    }
                    if *rest { &mut node.rest } else { &mut node.exact }.push(rule.id);
                }
                Pattern::Regex(regex) => {
                    regex_sources.push(regex.as_str().to_owned());
                    regex_rules.push(rule.id);
                }
            }
        }
        let regexes = RegexSet::new(regex_sources)?;
        Ok(Self { root, regexes, regex_rules })
    }

    /// The most specific rule for `method` (HEAD already mapped to GET) and `path`, or
    /// `Ok(None)` when no rule matches.
    pub(crate) fn lookup<'r>(
        &self,
        rules: &'r [Arc<Rule>],
        method: &Method,
        path: &CanonicalPath,
    ) -> Result<Option<&'r Arc<Rule>>, LookupError> {
        let mut best = Best { rules, method, chosen: None, tied: false };
        best.walk(&self.root, path.segments());
        if best.chosen.is_none() && !self.regex_rules.is_empty() {
            for i in self.regexes.matches(path.as_str()).iter() {
                best.consider(self.regex_rules[i]);
            }
        }
        match best.chosen {
            Some(_) if best.tied => Err(LookupError::Ambiguous),
            Some(id) => Ok(Some(&rules[id])),
            None if !super::rule::STANDARD_METHODS.contains(method) => Err(LookupError::MethodNotAllowed),
            None => Ok(None),
        }
    }
}

struct Best<'a> {
    rules: &'a [Arc<Rule>],
    method: &'a Method,
    chosen: Option<usize>,
    tied: bool,
}

impl Best<'_> {
    fn walk<'p>(&mut self, node: &Node, mut segments: impl Iterator<Item = &'p str> + Clone) {
        for &id in &node.rest {
            self.consider(id);
        }
        match segments.next() {
            None => {
                for &id in &node.exact {
                    self.consider(id);
                }
            }
            Some(segment) => {
                if let Some(child) = node.literals.get(segment) {
                    self.walk(child, segments.clone());
                }
                if let Some(child) = &node.wildcard {
                    self.walk(child, segments);
                }
            }
        }
    }

    fn consider(&mut self, id: usize) {
        let rule = &self.rules[id];
        if !rule.methods.contains(self.method) {
            return;
        }
        match self.chosen {
            None => self.chosen = Some(id),
            Some(current) => match rule.rank().cmp(&self.rules[current].rank()) {
                std::cmp::Ordering::Greater => {
                    self.chosen = Some(id);
                    self.tied = false;
                }
                std::cmp::Ordering::Equal => self.tied = true,
                std::cmp::Ordering::Less => {}
            },
        }
    }
}
