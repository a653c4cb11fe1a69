//! The JSON Schema of both documents, for hook authors in languages other than Rust.
//!
//! The checked-in copies in `hooks-sdk/schema/` are generated from the types; a test fails when
//! they drift (`UPDATE_SCHEMA=1 cargo test -p hooks-sdk --test schema` rewrites them).

use serde_json::Value;

use crate::types::{HookRequest, HookResponse};

/// Where the schemas are published, as their `$id` prefix.
const ID_BASE: &str = "https://kubectl-release.io/schemas/hooks/v1";

/// The JSON Schema (draft 2020-12) of [`HookRequest`].
pub fn request_schema() -> Value {
    with_id(
        serde_json::to_value(schemars::schema_for!(HookRequest)),
        "hook-request.schema.json",
    )
}

/// The JSON Schema (draft 2020-12) of [`HookResponse`].
pub fn response_schema() -> Value {
    with_id(
        serde_json::to_value(schemars::schema_for!(HookResponse)),
        "hook-response.schema.json",
    )
}

/// The JSON Schema (draft 2020-12) of the app spec, `spec:` in release.yaml.
pub fn app_spec_schema() -> Value {
    with_id(
        serde_json::to_value(schemars::schema_for!(crate::generator::AppSpec)),
        "app-spec.schema.json",
    )
}

fn with_id(schema: Result<Value, serde_json::Error>, file: &str) -> Value {
    // Serializing a schema (a JSON value already) cannot fail.
    let mut schema = schema.unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_string(),
            Value::String(format!("{ID_BASE}/{file}")),
        );
    }
    schema
}

/// A schema as the checked-in files hold it: pretty JSON ending with a newline.
pub fn to_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}
