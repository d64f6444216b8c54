// Whether a rule's scopes imply its permissions (SPEC C2). A token caller is judged by its
// scopes alone, which were issued against the permissions each scope is bound to
// (`[[scope]]`): a rule that also names permissions the bindings do not cover would let a
// token through without them. Such a rule is refused at load, for rule files and
// `#[secure]` handlers alike.

use crate::config::MatchMode;
use crate::identity::Permission;

use super::ScopeDefinition;

/// What a rule requires, as far as implication is concerned.
pub(crate) struct ScopedRequirement<'a, S> {
    pub(crate) scopes: &'a [S],
    pub(crate) scopes_match: MatchMode,
    pub(crate) permissions: &'a [Permission],
    pub(crate) permissions_match: MatchMode,
}

/// `Ok` when every token that passes the scope check holds, through the bindings of its
/// scopes, what the permission check asks for: with `scopes_match = "all"` the union of
/// the bindings must; with `any` each scope's bindings alone must. A scope without
/// bindings, or not defined, implies nothing. The error explains which permission is not
/// implied, and the two fixes.
pub(crate) fn scopes_imply_permissions<'d, S: AsRef<str>>(
    required: &ScopedRequirement<'_, S>,
    definition: &dyn Fn(&str) -> Option<&'d ScopeDefinition>,
) -> Result<(), String> {
    if required.scopes.is_empty() || required.permissions.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = required.scopes.iter().map(AsRef::as_ref).collect();
    let groups: Vec<Vec<&str>> = match required.scopes_match {
        MatchMode::All => vec![names],
        MatchMode::Any => names.into_iter().map(|name| vec![name]).collect(),
    };
    for group in groups {
        let bindings: Vec<&Permission> =
            group.iter().filter_map(|name| definition(name)).flat_map(|d| d.permissions.iter()).collect();
        let implied = |p: &&Permission| bindings.iter().any(|binding| binding.covers(p));
        let missing: Vec<&Permission> = match required.permissions_match {
            MatchMode::All => required.permissions.iter().filter(|p| !implied(p)).collect(),
            MatchMode::Any if required.permissions.iter().any(|p| implied(&p)) => Vec::new(),
            MatchMode::Any => required.permissions.iter().collect(),
        };
        if !missing.is_empty() {
            return Err(explain(&group, &bindings, &missing, required.permissions_match));
        }
    }
    Ok(())
}

fn explain(scopes: &[&str], bindings: &[&Permission], missing: &[&Permission], mode: MatchMode) -> String {
    let quoted = |items: Vec<String>| items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ");
    let scopes_text = match scopes {
        [one] => format!("scope `{one}`"),
        _ => format!("scopes {}", quoted(scopes.iter().map(|s| (*s).to_owned()).collect())),
    };
    let bound = match bindings {
        [] => "bound to no permission".to_owned(),
        _ => format!("bound to {}", bindings.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")),
    };
    let missing_text = quoted(missing.iter().map(ToString::to_string).collect());
    let without = match (mode, missing.len()) {
        (MatchMode::Any, n) if n > 1 => format!("without any of {missing_text}"),
        _ => format!("without {missing_text}"),
    };
    format!(
        "a token with {scopes_text} ({bound}) passes {without}: token callers are judged by their scopes \
         alone. Bind the scope to the permission in its [[scope]] table, or add token_permissions = \"check\" \
         to check the token user's permissions too"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(p: &str) -> Permission {
        Permission::parse(p).unwrap()
    }

    fn scope(name: &str, bindings: &[&str]) -> ScopeDefinition {
        ScopeDefinition {
            name: name.to_owned(),
            permissions: bindings.iter().map(|p| permission(p)).collect(),
            roles: vec![],
        }
    }

    /// Checks one requirement against the scopes `manage` (bound to /p/admin/manage), `del`
    /// (bound to /p/admin/delete), `none` (no binding); `ghost` is not defined.
    fn check(scopes: &[&str], sm: MatchMode, permissions: &[&str], pm: MatchMode) -> Result<(), String> {
        let defined = [scope("manage", &["/p/admin/manage"]), scope("del", &["/p/admin/delete"]), scope("none", &[])];
        let permissions: Vec<Permission> = permissions.iter().map(|p| permission(p)).collect();
        let required = ScopedRequirement { scopes, scopes_match: sm, permissions: &permissions, permissions_match: pm };
        scopes_imply_permissions(&required, &|name| defined.iter().find(|d| d.name == name))
    }

    use MatchMode::{All, Any};

    // SPEC C2: each combination of scopes_match and permissions_match.
    #[test]
    fn implication_for_every_match_mode() {
        // One scope: its bindings cover the permission (or a parent of it does).
        assert!(check(&["manage"], All, &["/p/admin/manage"], All).is_ok());
        assert!(check(&["manage"], All, &["/p/admin/manage/users"], All).is_ok());
        assert!(check(&["manage"], All, &["/p/admin"], All).is_err(), "a binding never implies its parent");
        let err = check(&["manage"], All, &["/p/admin/delete"], All).unwrap_err();
        assert!(
            err.contains("scope `manage` (bound to /p/admin/manage)") && err.contains("`/p/admin/delete`"),
            "{err}"
        );
        // all/all: the union of the bindings.
        assert!(check(&["manage", "del"], All, &["/p/admin/manage", "/p/admin/delete"], All).is_ok());
        let err = check(&["manage", "del"], All, &["/p/admin/manage", "/p/other"], All).unwrap_err();
        assert!(err.contains("without `/p/other`") && !err.contains("without `/p/admin/manage`"), "{err}");
        // any scope: each one alone must imply.
        assert!(check(&["manage", "del"], Any, &["/p/admin/manage", "/p/admin/delete"], All).is_err());
        let err = check(&["manage", "del"], Any, &["/p/admin/delete"], All).unwrap_err();
        assert!(err.contains("scope `manage`"), "{err}");
        assert!(check(&["manage", "del"], Any, &["/p/admin/manage", "/p/admin/delete"], Any).is_ok());
        // any permission: one implied permission is enough.
        assert!(check(&["manage"], All, &["/p/other", "/p/admin/manage"], Any).is_ok());
        let err = check(&["manage"], All, &["/p/other", "/p/else"], Any).unwrap_err();
        assert!(err.contains("without any of `/p/other`, `/p/else`"), "{err}");
        // Scopes without bindings, or undefined, imply nothing.
        let err = check(&["none"], All, &["/p/admin/manage"], All).unwrap_err();
        assert!(err.contains("bound to no permission"), "{err}");
        assert!(check(&["ghost"], All, &["/p/admin/manage"], All).is_err());
        assert!(check(&["manage", "ghost"], Any, &["/p/admin/manage"], All).is_err());
        assert!(check(&["manage", "ghost"], All, &["/p/admin/manage"], All).is_ok());
        // Without scopes or without permissions there is nothing to imply.
        assert!(check(&[], All, &["/p/x"], All).is_ok());
        assert!(check(&["ghost"], All, &[], All).is_ok());
    }
}
