//! A fixture harness for hook authors, run with plain `cargo test`.
//!
//! A [`Testcase`] pairs a request (inline or a JSON file) and optional settings with the
//! [`Expected`] verdict. Conformance fixtures, shared by every implementation of a hook whatever
//! its language, are files of the form
//!
//! ```json
//! { "description": "…", "settings": {…}, "request": {…HookRequest…},
//!   "expected": { "allowed": false, "violations": 2 } }
//! ```
//!
//! and [`conformance_cases`] reads a directory of them. A typical test of a hook crate:
//!
//! ```no_run
//! use hooks_sdk::testing::{self, conformance_cases};
//! # fn validate(_: &serde_json::Value) -> Result<(), String> { Ok(()) }
//! # fn check(_: &hooks_sdk::HookRequest, _: &serde_json::Value) -> hooks_sdk::HookResponse { hooks_sdk::HookResponse::allow() }
//!
//! #[test]
//! fn conformance() {
//!     let cases = conformance_cases("../conformance/my-hook").unwrap();
//!     testing::assert_all(&cases, testing::with_settings(validate, check));
//! }
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::guest::{self, Command};
use crate::types::{HookRequest, HookResponse};

/// Where a test case's request comes from.
#[derive(Debug, Clone)]
pub enum Fixture {
    /// A JSON file holding a `HookRequest`.
    Path(PathBuf),
    /// A request built in the test.
    Request(Box<HookRequest>),
}

/// The verdict a test case expects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expected {
    /// The expected `allowed`.
    pub allowed: bool,
    /// The expected number of violations; not compared when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<usize>,
    /// Texts that must each appear in the message or in one of the violations' messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

impl Expected {
    /// Expects the release to be allowed.
    pub fn allowed() -> Self {
        Expected {
            allowed: true,
            violations: None,
            messages: Vec::new(),
        }
    }

    /// Expects a denial with `violations` violations.
    pub fn denied(violations: usize) -> Self {
        Expected {
            allowed: false,
            violations: Some(violations),
            messages: Vec::new(),
        }
    }

    /// Also expects `text` in the message or a violation.
    #[must_use]
    pub fn mentioning(mut self, text: impl Into<String>) -> Self {
        self.messages.push(text.into());
        self
    }

    /// Compares a response with the expectation.
    ///
    /// # Errors
    ///
    /// Every difference, one per line.
    pub fn check(&self, response: &HookResponse) -> Result<(), String> {
        let mut problems = String::new();
        if response.allowed != self.allowed {
            let _ = writeln!(
                problems,
                "allowed: expected {}, got {}",
                self.allowed, response.allowed
            );
        }
        if let Some(count) = self.violations
            && response.violations.len() != count
        {
            let _ = writeln!(
                problems,
                "violations: expected {count}, got {}",
                response.violations.len()
            );
        }
        for text in &self.messages {
            let found = response
                .message
                .as_deref()
                .is_some_and(|m| m.contains(text.as_str()))
                || response
                    .violations
                    .iter()
                    .any(|v| v.message.contains(text.as_str()));
            if !found {
                let _ = writeln!(problems, "no message or violation mentions {text:?}");
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            let got = serde_json::to_string_pretty(response).unwrap_or_default();
            Err(format!("{problems}response: {got}"))
        }
    }
}

/// One case: a request, optional settings and the expected verdict.
#[derive(Debug, Clone)]
pub struct Testcase {
    /// Shown when the case fails.
    pub name: String,
    /// The request.
    pub fixture: Fixture,
    /// Replaces the request's `settings` when given.
    pub settings: Option<Value>,
    /// The expected verdict.
    pub expected: Expected,
}

impl Testcase {
    /// The request the hook will see: the fixture with `settings` applied.
    ///
    /// # Errors
    ///
    /// When the fixture file cannot be read or is not a valid request.
    pub fn request(&self) -> Result<HookRequest, String> {
        let mut request = match &self.fixture {
            Fixture::Request(request) => (**request).clone(),
            Fixture::Path(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read fixture {}: {e}", path.display()))?;
                guest::read_request(&bytes)
                    .map_err(|e| format!("fixture {}: {e}", path.display()))?
            }
        };
        if let Some(settings) = &self.settings {
            request.settings = settings.clone();
        }
        Ok(request)
    }

    /// Runs `hook` on the case and compares its verdict.
    ///
    /// # Errors
    ///
    /// When the request cannot be built, the hook fails, or the verdict differs; the message
    /// names the case.
    pub fn run(
        &self,
        hook: impl Fn(&HookRequest) -> Result<HookResponse, String>,
    ) -> Result<HookResponse, String> {
        let request = self.request().map_err(|e| format!("{}: {e}", self.name))?;
        let response = hook(&request).map_err(|e| format!("{}: hook error: {e}", self.name))?;
        self.expected
            .check(&response)
            .map_err(|e| format!("{}: {e}", self.name))?;
        Ok(response)
    }
}

/// Runs every case and panics with a report of all that failed (not just the first).
pub fn assert_all(cases: &[Testcase], hook: impl Fn(&HookRequest) -> Result<HookResponse, String>) {
    assert!(
        !cases.is_empty(),
        "no test cases: is the fixture directory empty?"
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| case.run(&hook).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Adapts a hook without typed settings to what [`Testcase::run`] calls, through the same code
/// path as [`guest::run`].
pub fn plain(
    check: impl Fn(&HookRequest) -> HookResponse,
) -> impl Fn(&HookRequest) -> Result<HookResponse, String> {
    move |request| guest::evaluate(Command::Check, request, &check)
}

/// Adapts a hook with settings of type `S` to what [`Testcase::run`] calls, through the same
/// code path as [`guest::run_with_settings`] (settings are parsed and validated first).
pub fn with_settings<S: DeserializeOwned>(
    validate: impl Fn(&S) -> Result<(), String>,
    check: impl Fn(&HookRequest, &S) -> HookResponse,
) -> impl Fn(&HookRequest) -> Result<HookResponse, String> {
    move |request| guest::evaluate_with_settings(Command::Check, request, &validate, &check)
}

/// A conformance fixture file as stored on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConformanceCase {
    /// What the case is about.
    pub description: String,
    /// Replaces the request's `settings` when given.
    #[serde(default)]
    pub settings: Option<Value>,
    /// The `HookRequest`, as JSON.
    pub request: Value,
    /// The verdict every implementation must reach.
    pub expected: Expected,
}

impl ConformanceCase {
    /// Reads one fixture file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a fixture.
    pub fn load(path: &Path) -> Result<ConformanceCase, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a conformance fixture: {e}", path.display()))
    }

    /// The request document with the case's settings applied, as the host would send it.
    pub fn request_document(&self) -> Value {
        let mut request = self.request.clone();
        if let (Some(settings), Some(object)) = (&self.settings, request.as_object_mut()) {
            object.insert("settings".to_string(), settings.clone());
        }
        request
    }
}

/// Reads every `*.json` fixture in `dir`, sorted by file name, as test cases named after the
/// file and its description.
///
/// # Errors
///
/// When the directory or a fixture cannot be read, or a request is invalid.
pub fn conformance_cases(dir: impl AsRef<Path>) -> Result<Vec<Testcase>, String> {
    conformance_files(dir.as_ref())?
        .into_iter()
        .map(|path| {
            let case = ConformanceCase::load(&path)?;
            let bytes = serde_json::to_vec(&case.request_document()).map_err(|e| e.to_string())?;
            let request =
                guest::read_request(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Testcase {
                name: format!("{} ({})", path.display(), case.description),
                fixture: Fixture::Request(Box::new(request)),
                settings: None,
                expected: case.expected,
            })
        })
        .collect()
}

/// The `*.json` files of a fixture directory, sorted.
///
/// # Errors
///
/// When the directory cannot be listed.
pub fn conformance_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list fixtures in {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Violation;

    #[test]
    fn expectations_report_every_difference() {
        let response =
            HookResponse::deny("no").with_violation(Violation::new("missing label team"));
        assert!(
            Expected::denied(1)
                .mentioning("team")
                .check(&response)
                .is_ok()
        );
        let err = Expected::denied(2)
            .mentioning("owner")
            .check(&response)
            .unwrap_err();
        assert!(err.contains("violations: expected 2, got 1"), "{err}");
        assert!(err.contains("\"owner\""), "{err}");
        assert!(
            Expected::allowed()
                .check(&response)
                .unwrap_err()
                .contains("allowed")
        );
    }

    #[test]
    fn cases_apply_settings_and_name_themselves_on_failure() {
        let case = Testcase {
            name: "needs-two".into(),
            fixture: Fixture::Request(Box::default()),
            settings: Some(serde_json::json!({"n": 2})),
            expected: Expected::allowed(),
        };
        let seen = case.run(plain(|req| {
            if req.settings["n"] == 2 {
                HookResponse::allow()
            } else {
                HookResponse::deny("settings not applied")
            }
        }));
        assert!(seen.is_ok());
        let err = case.run(plain(|_| HookResponse::deny("no"))).unwrap_err();
        assert!(err.starts_with("needs-two:"), "{err}");
    }
}
