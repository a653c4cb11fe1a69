//! The checked-in JSON Schemas must be the ones the types generate: authors of hooks in other
//! languages read the files, so a type change that is not reflected there breaks them silently.

use std::path::PathBuf;

use hooks_sdk::schema::{app_spec_schema, request_schema, response_schema, to_file_text};

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    let update = std::env::var_os("UPDATE_SCHEMA").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, schema) in [
        ("hook-request.schema.json", request_schema()),
        ("hook-response.schema.json", response_schema()),
        ("app-spec.schema.json", app_spec_schema()),
    ] {
        let path = dir.join(file);
        let generated = to_file_text(&schema);
        if update {
            std::fs::write(&path, &generated)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            continue;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in != generated {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "the JSON Schema in {} is out of date with the types in hooks-sdk/src/types.rs;\n\
         regenerate it with:  UPDATE_SCHEMA=1 cargo test -p hooks-sdk --test schema\n\
         and commit the result",
        stale.join(" and ")
    );
}

#[test]
fn request_schema_names_the_contract() {
    let schema = request_schema();
    assert_eq!(schema["title"], "HookRequest");
    assert_eq!(
        schema["properties"]["apiVersion"]["const"],
        hooks_sdk::API_VERSION
    );
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for field in [
        "apiVersion",
        "kind",
        "phase",
        "hook",
        "app",
        "actor",
        "now",
        "release",
    ] {
        assert!(required.contains(&field), "{field} should be required");
    }
    assert_eq!(
        response_schema()["required"],
        serde_json::json!(["allowed"])
    );
}
