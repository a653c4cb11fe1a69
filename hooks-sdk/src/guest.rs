//! The guest side of the protocol: what a hook's `main` calls.
//!
//! ```no_run
//! use hooks_sdk::{HookRequest, HookResponse};
//!
//! fn main() {
//!     hooks_sdk::guest::run(|req: &HookRequest| {
//!         if req.release.containers.is_empty() {
//!             HookResponse::deny("nothing to release")
//!         } else {
//!             HookResponse::allow()
//!         }
//!     });
//! }
//! ```
//!
//! [`run`] reads the command from argv (`check` or `validate-settings`), one [`HookRequest`] from
//! stdin, writes one [`HookResponse`] to stdout and returns, so the module exits 0. A request it
//! cannot read, or settings the hook rejects during `check`, is a hook error: a message on stderr
//! and exit status 1. The host treats that according to the hook's `failurePolicy`; it is never
//! mistaken for a verdict.
//!
//! [`evaluate`] and [`evaluate_with_settings`] are the same logic without the I/O, for tests
//! (see [`crate::testing`]).

use std::io::{Read, Write};

use serde::de::DeserializeOwned;

use crate::types::{API_VERSION, HookRequest, HookResponse, REQUEST_KIND};

/// What the host asks a hook to do, from `argv[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Decide on the release in the request.
    Check,
    /// Say whether the request's `settings` are acceptable (`allowed`), with the reason in
    /// `message` when they are not. The rest of the request is a placeholder.
    ValidateSettings,
}

impl Command {
    /// The argv word for the command.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Check => "check",
            Command::ValidateSettings => "validate-settings",
        }
    }

    /// Reads the command from the process arguments (`argv[0]` is the program). No argument is
    /// `check`, so that `wasmtime run hook.wasm < request.json` works by hand.
    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Result<Command, String> {
        match args.get(1).map(AsRef::as_ref) {
            None | Some("check") => Ok(Command::Check),
            Some("validate-settings") => Ok(Command::ValidateSettings),
            Some(other) => Err(format!(
                "unknown command `{other}`: expected `check` or `validate-settings`"
            )),
        }
    }
}

/// Runs a hook without typed settings: every `settings` value is accepted.
///
/// Returns after writing the response; exits the process with status 1 if the request cannot be
/// read or the response cannot be written.
pub fn run(check: impl Fn(&HookRequest) -> HookResponse) {
    serve(|command, request| evaluate(command, request, &check));
}

/// Runs a hook whose settings deserialize into `S`.
///
/// For `validate-settings`, the response allows when `settings` deserialize and `validate`
/// accepts them, and denies with the reason otherwise. For `check`, settings that do not pass are
/// a hook error (exit 1), so a misconfigured rule never decides anything.
pub fn run_with_settings<S: DeserializeOwned>(
    validate: impl Fn(&S) -> Result<(), String>,
    check: impl Fn(&HookRequest, &S) -> HookResponse,
) {
    serve(|command, request| evaluate_with_settings(command, request, &validate, &check));
}

/// The decision of a hook without typed settings, without any I/O.
pub fn evaluate(
    command: Command,
    request: &HookRequest,
    check: impl Fn(&HookRequest) -> HookResponse,
) -> Result<HookResponse, String> {
    Ok(match command {
        Command::Check => check(request),
        Command::ValidateSettings => HookResponse::allow(),
    })
}

/// The decision of a hook with settings of type `S`, without any I/O.
///
/// # Errors
///
/// For [`Command::Check`], when the settings do not deserialize or `validate` rejects them.
pub fn evaluate_with_settings<S: DeserializeOwned>(
    command: Command,
    request: &HookRequest,
    validate: impl Fn(&S) -> Result<(), String>,
    check: impl Fn(&HookRequest, &S) -> HookResponse,
) -> Result<HookResponse, String> {
    let settings = parse_settings(&request.settings).and_then(|s| validate(&s).map(|()| s));
    match (command, settings) {
        (Command::ValidateSettings, Ok(_)) => Ok(HookResponse::allow()),
        (Command::ValidateSettings, Err(reason)) => Ok(HookResponse::deny(reason)),
        (Command::Check, Ok(settings)) => Ok(check(request, &settings)),
        (Command::Check, Err(reason)) => Err(reason),
    }
}

fn parse_settings<S: DeserializeOwned>(settings: &serde_json::Value) -> Result<S, String> {
    // A hook configured without settings gets `{}`; `null` is treated the same so that hooks
    // written against a host that sends null still work.
    let value = if settings.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        settings.clone()
    };
    serde_json::from_value(value).map_err(|e| format!("invalid settings: {e}"))
}

/// Parses a request document and checks that it is one this SDK understands.
///
/// # Errors
///
/// When the input is not JSON, misses a required field, or has another `apiVersion` or `kind`.
pub fn read_request(input: &[u8]) -> Result<HookRequest, String> {
    let request: HookRequest = serde_json::from_slice(input)
        .map_err(|e| format!("cannot read the HookRequest on stdin: {e}"))?;
    if request.api_version != API_VERSION {
        return Err(format!(
            "unsupported apiVersion `{}`: this hook understands `{API_VERSION}`",
            request.api_version
        ));
    }
    if request.kind != REQUEST_KIND {
        return Err(format!(
            "unexpected kind `{}`: expected `{REQUEST_KIND}`",
            request.kind
        ));
    }
    Ok(request)
}

/// Bytes reserved for the request before reading it; a bigger one is read all the same.
const REQUEST_CAPACITY: usize = 16 * 1024;

/// The process plumbing shared by [`run`] and [`run_with_settings`].
fn serve(evaluate: impl FnOnce(Command, &HookRequest) -> Result<HookResponse, String>) {
    let args: Vec<String> = std::env::args().collect();
    let outcome = Command::from_args(&args).and_then(|command| {
        // Sized for a typical request: read in one call rather than the ten of a buffer that
        // starts empty and doubles (each read is a host call, a few µs of a warm evaluation).
        let mut input = Vec::with_capacity(REQUEST_CAPACITY);
        std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        let request = read_request(&input)?;
        let response = evaluate(command, &request)?;
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, &response)
            .map_err(std::io::Error::from)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write the response to stdout: {e}"))
    });
    if let Err(message) = outcome {
        // Best effort: if stderr is gone there is nobody left to tell.
        let _ = writeln!(std::io::stderr(), "error: {message}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        required: u32,
    }

    fn validate(s: &Settings) -> Result<(), String> {
        if s.required == 0 {
            Err("required must be at least 1".into())
        } else {
            Ok(())
        }
    }

    fn request(settings: serde_json::Value) -> HookRequest {
        HookRequest {
            settings,
            ..HookRequest::default()
        }
    }

    #[test]
    fn commands_from_argv() {
        assert_eq!(Command::from_args(&["hook"]), Ok(Command::Check));
        assert_eq!(Command::from_args(&["hook", "check"]), Ok(Command::Check));
        assert_eq!(
            Command::from_args(&["hook", "validate-settings"]),
            Ok(Command::ValidateSettings)
        );
        assert!(
            Command::from_args(&["hook", "nope"])
                .unwrap_err()
                .contains("nope")
        );
    }

    #[test]
    fn settings_are_validated_before_any_check() {
        let check = |_: &HookRequest, _: &Settings| HookResponse::allow();
        let ok = request(json!({"required": 2}));
        let zero = request(json!({"required": 0}));
        let typo = request(json!({"requird": 2}));
        assert!(
            evaluate_with_settings(Command::ValidateSettings, &ok, validate, check)
                .unwrap()
                .allowed
        );
        let denied =
            evaluate_with_settings(Command::ValidateSettings, &zero, validate, check).unwrap();
        assert_eq!(
            denied.message.as_deref(),
            Some("required must be at least 1")
        );
        let typo_denied =
            evaluate_with_settings(Command::ValidateSettings, &typo, validate, check).unwrap();
        assert!(typo_denied.message.unwrap().contains("requird"));
        assert!(evaluate_with_settings(Command::Check, &zero, validate, check).is_err());
        assert!(
            evaluate_with_settings(Command::Check, &ok, validate, check)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn requests_of_another_version_are_refused() {
        let mut doc = serde_json::to_value(HookRequest::default()).unwrap();
        assert!(read_request(doc.to_string().as_bytes()).is_ok());
        doc["apiVersion"] = json!("kubectl-release.io/hooks/v2");
        assert!(
            read_request(doc.to_string().as_bytes())
                .unwrap_err()
                .contains("v2")
        );
        assert!(
            read_request(b"not json")
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
