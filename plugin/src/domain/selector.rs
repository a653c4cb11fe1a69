//! A workload's pod selector (`spec.selector`): `matchLabels` and `matchExpressions`, as a
//! query for the API server and as a test on a pod's labels. One reading for both, so the pods
//! a release watches are exactly the pods the workload owns.

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A label selector as a workload spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Reads `spec.selector`; `None` when there is none or it selects nothing it can name (an
    /// empty selector, or one with an operator Kubernetes does not define).
    pub fn from_spec(selector: &Value) -> Option<Selector> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(k.clone(), v.as_str()?.to_string()));
            }
        }
        for e in selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e.get("key")?.as_str()?.to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            requirements.push(match e.get("operator")?.as_str()? {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => return None,
            });
        }
        (!requirements.is_empty()).then_some(Selector(requirements))
    }

    /// The selector as a `labelSelector` query: `app=web,tier in (a,b),!legacy`.
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        parts.join(",")
    }

    /// Whether a pod with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions_read_the_same_as_a_query_and_a_test() {
        let selector = Selector::from_spec(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "track", "operator": "NotIn", "values": ["canary"]},
                {"key": "team", "operator": "Exists"}
            ]
        }))
        .unwrap();
        assert_eq!(
            selector.to_query(),
            "app=web,tier in (front,edge),!legacy,track notin (canary),team"
        );
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("team", "a")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "back"), ("team", "a")])));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("team", "a"),
            ("legacy", "1")
        ])));
        assert!(!selector.matches(&labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("team", "a"),
            ("track", "canary")
        ])));
    }

    #[test]
    fn expressions_alone_are_a_selector_and_nonsense_is_none() {
        let only =
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]});
        assert_eq!(
            Selector::from_spec(&only).unwrap().to_query(),
            "app in (web)"
        );
        assert_eq!(Selector::from_spec(&json!({})), None);
        assert_eq!(
            Selector::from_spec(&json!({"matchExpressions": [{"key": "a", "operator": "Near"}]})),
            None
        );
        assert_eq!(Selector::from_spec(&json!({"matchLabels": {"a": 1}})), None);
    }
}
