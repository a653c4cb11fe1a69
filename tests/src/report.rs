//! The release report `deploy`, `plan`, `promote` and `rollback` print with `-o json`: exactly
//! one JSON document on stdout whatever the exit code, valid against the schema `hooks-sdk`
//! publishes for CI scripts.

use std::path::Path;

use serde_json::Value;

use crate::CmdOutput;

/// The JSON Schema of the release report, next to the hook contract's schemas.
pub const REPORT_SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../hooks-sdk/schema/release-report.schema.json"
);

/// Reads and compiles the release report's JSON Schema. Panics saying what is missing: a test
/// that cannot check the contract fails rather than passes.
pub fn report_schema() -> jsonschema::Validator {
    let path = Path::new(REPORT_SCHEMA);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read the release report's JSON Schema {}: {e}; hooks-sdk publishes it \
             alongside hook-request.schema.json (generated from the report type)",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    compile(&schema, path)
}

/// Compiles `schema`, its relative `$ref`s resolved next to `path`.
fn compile(schema: &Value, path: &Path) -> jsonschema::Validator {
    let base = format!("file://{}", path.display());
    jsonschema::options()
        .with_base_uri(base)
        .build(schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// What is wrong with `doc` according to `schema`, one line per error; empty when valid.
pub fn schema_errors(schema: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    schema
        .iter_errors(doc)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect()
}

/// The one JSON document `stdout` holds; an error saying what else it holds (nothing, text,
/// a second document).
pub fn one_json_document(stdout: &str) -> Result<Value, String> {
    let mut docs = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = match docs.next() {
        None => return Err("stdout is empty: no JSON document".into()),
        Some(Err(e)) => return Err(format!("stdout is not a JSON document: {e}")),
        Some(Ok(doc)) => doc,
    };
    match docs.next() {
        None => Ok(first),
        Some(Ok(_)) => Err("stdout holds more than one JSON document".into()),
        Some(Err(e)) => Err(format!("stdout has more after its JSON document: {e}")),
    }
}

/// Asserts that a `-o json` release command exited with `code` and printed exactly one JSON
/// document with `"outcome": outcome` that is valid against the report schema; returns it.
///
/// The schema is checked last, so that a run against a plugin without it still shows whether
/// everything else holds.
#[track_caller]
pub fn assert_report(out: &CmdOutput, code: i32, outcome: &str) -> Value {
    assert_eq!(out.code(), Some(code), "exit code: {out}");
    let report = one_json_document(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["outcome"], outcome, "outcome: {out}");
    assert_matches_schema(&report, out);
    report
}

/// Asserts that a `-o json` release command printed exactly one JSON document, valid against
/// the report schema, whatever its outcome; returns it.
#[track_caller]
pub fn assert_valid_report(out: &CmdOutput) -> Value {
    let report = one_json_document(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_matches_schema(&report, out);
    report
}

#[track_caller]
fn assert_matches_schema(report: &Value, out: &CmdOutput) {
    let errors = schema_errors(&report_schema(), report);
    assert!(
        errors.is_empty(),
        "the report does not match {REPORT_SCHEMA}:\n  {}\n{out}",
        errors.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_document() {
        assert_eq!(
            one_json_document("{\"outcome\": \"succeeded\"}\n").unwrap()["outcome"],
            "succeeded"
        );
        assert!(one_json_document("").unwrap_err().contains("empty"));
        assert!(one_json_document("deploy web: succeeded").is_err());
        assert!(
            one_json_document("{}\n{}\n")
                .unwrap_err()
                .contains("more than one")
        );
        assert!(one_json_document("{}\ndone\n").is_err());
    }

    #[test]
    fn schema_errors_name_the_field() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["outcome"],
            "properties": {"outcome": {"enum": ["succeeded", "failed"]}}
        });
        let validator = compile(&schema, Path::new("/nonexistent/report.schema.json"));
        assert!(schema_errors(&validator, &serde_json::json!({"outcome": "failed"})).is_empty());
        let errors = schema_errors(&validator, &serde_json::json!({"outcome": "maybe"}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("/outcome"), "{errors:?}");
        assert_eq!(schema_errors(&validator, &serde_json::json!({})).len(), 1);
    }
}
