//! The Docker label that makes a container a task of services: `weft.service=NAME` (several
//! names comma-separated). Read from the Engine API's inspect when the container starts
//! and in reconciliation; the start event then joins the services, the die event leaves.

use std::collections::BTreeMap;

/// The label naming the services a container is a task of.
pub const SERVICE_LABEL: &str = "weft.service";

/// The services a container's labels name: `weft.service=a,b` → `["a", "b"]`, blanks
/// dropped, each once, in the order given.
pub fn services(labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(value) = labels.get(SERVICE_LABEL) else {
        return out;
    };
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(SERVICE_LABEL.to_string(), v.to_string())])
    }

    #[test]
    fn one_or_several_names_each_once() {
        assert_eq!(services(&labels("whoami")), ["whoami"]);
        assert_eq!(services(&labels("a, b,,a ,c")), ["a", "b", "c"]);
        assert!(services(&labels(" , ")).is_empty());
        assert!(services(&BTreeMap::new()).is_empty());
        let other = BTreeMap::from([("weft.services".to_string(), "x".to_string())]);
        assert!(services(&other).is_empty());
    }
}
