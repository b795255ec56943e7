//! Which workloads a command's `APP [--env ENV]` names.

/// Whether a qualified env name `org/project/app/env` matches an app name
/// (`web`, `shop/web`, `acme/shop/web`) and an optional env name.
pub fn matches(name: &str, app: &str, env: Option<&str>) -> bool {
    let Some((app_name, env_name)) = name.rsplit_once('/') else {
        return false;
    };
    (app_name == app || app_name.ends_with(&format!("/{app}"))) && env.is_none_or(|e| e == env_name)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn app_and_env_names_match_by_suffix() {
        assert!(matches("acme/shop/web/prod", "web", None));
        assert!(matches("acme/shop/web/prod", "shop/web", Some("prod")));
        assert!(!matches("acme/shop/web/prod", "eb", None));
        assert!(!matches("acme/shop/web/prod", "web", Some("dev")));
    }
}
