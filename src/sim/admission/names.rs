//! The name and label rules of Kubernetes (apimachinery's validation package).

/// DNS-1123 label: namespaces, container names, port names.
pub fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// DNS-1035 label: Service names (a letter first).
pub fn dns1035_label(s: &str) -> bool {
    dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// DNS-1123 subdomain: most object names.
pub fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

/// The name part of a qualified name (a label key, a finalizer).
fn qualified_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `[prefix/]name`: label and annotation keys, finalizers.
pub fn qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_part(name),
        None => qualified_part(s),
    }
}

/// A label value: empty, or a qualified part.
pub fn label_value(s: &str) -> bool {
    s.is_empty() || qualified_part(s)
}

/// ConfigMap and Secret keys.
pub fn config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

pub const LABEL_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
pub const LABEL_RFC1123: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub const SUBDOMAIN_RFC1123: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(dns_label("demo-1") && !dns_label("Demo") && !dns_label("a.b"));
        assert!(dns_subdomain("a.b-c") && !dns_subdomain("-a"));
        assert!(dns1035_label("svc") && !dns1035_label("1svc"));
        assert!(qualified_name("showroom.dev/demo-uid") && qualified_name("app"));
        assert!(!qualified_name("bad key") && !qualified_name("a/b/c"));
        assert!(label_value("") && label_value("v1.2_x") && !label_value("a b"));
        assert!(!label_value(&"x".repeat(64)));
    }
}
