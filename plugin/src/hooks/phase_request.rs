//! A phase's request, serialized once for all of its hooks.
//!
//! Every hook of a phase reads the same request except for its header: `phase`, `hook` and
//! `settings`, which the runner sets from the hook itself. The rest (the workloads, the objects
//! before and after, approvals, history) is most of the bytes, and cloning and serializing it once
//! per hook was a measurable part of the webhook's CPU. So the body is serialized once, and each
//! hook's stdin is its own header followed by that body: byte for byte what serializing the
//! hook's own copy of the request would give.

use hooks_sdk::{HookRequest, Phase};
use serde::Serialize;
use serde_json::Value;

use super::engine::LoadedHook;

/// The leading fields of [`HookRequest`], in its order and with its names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    api_version: &'a str,
    kind: &'a str,
    phase: Phase,
    hook: &'a str,
    settings: &'a Value,
}

impl<'a> Header<'a> {
    fn of(request: &'a HookRequest) -> Header<'a> {
        Header {
            api_version: &request.api_version,
            kind: &request.kind,
            phase: request.phase,
            hook: &request.hook,
            settings: &request.settings,
        }
    }
}

/// A request to give every hook of `phase`, each with its own header.
pub(crate) struct PhaseRequest<'a> {
    request: &'a HookRequest,
    phase: Phase,
    /// The serialized request from the comma after its header to its end, when the header
    /// could be split off (else each hook's copy is serialized whole).
    body: Option<Vec<u8>>,
}

impl<'a> PhaseRequest<'a> {
    pub(crate) fn new(request: &'a HookRequest, phase: Phase) -> PhaseRequest<'a> {
        let body = serde_json::to_vec(request).ok().and_then(|whole| {
            let header = serde_json::to_vec(&Header::of(request)).ok()?;
            // The header's bytes without their closing brace, then the comma before `app`.
            let open = header.strip_suffix(b"}")?;
            (whole.starts_with(open) && whole.get(open.len()) == Some(&b','))
                .then(|| whole[open.len()..].to_vec())
        });
        PhaseRequest {
            request,
            phase,
            body,
        }
    }

    /// What `hook` reads on stdin: the request with this phase, the hook's name and settings.
    pub(crate) fn stdin_for(&self, hook: &LoadedHook) -> serde_json::Result<Vec<u8>> {
        let Some(body) = &self.body else {
            let mut own = self.request.clone();
            own.phase = self.phase;
            own.hook = hook.name().to_string();
            own.settings = hook.settings().clone();
            return serde_json::to_vec(&own);
        };
        let header = Header {
            phase: self.phase,
            hook: hook.name(),
            settings: hook.settings(),
            ..Header::of(self.request)
        };
        let mut stdin = Vec::with_capacity(body.len() + 256);
        serde_json::to_writer(&mut stdin, &header)?;
        stdin.pop(); // its closing brace: the body goes on from the comma
        stdin.extend_from_slice(body);
        Ok(stdin)
    }

    #[cfg(test)]
    fn shares_its_body(&self) -> bool {
        self.body.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HookConfig, HookLimits};
    use crate::hooks::HookEngine;

    /// A loaded module that does nothing, named `name` with `settings`.
    fn hook(engine: &HookEngine, dir: &std::path::Path, name: &str, settings: Value) -> LoadedHook {
        let module = dir.join(format!("{name}.wasm"));
        std::fs::write(
            &module,
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
                .unwrap(),
        )
        .unwrap();
        let unpinned = engine
            .load_unpinned(name, &module, HookLimits::default())
            .unwrap();
        let config = HookConfig {
            sha256: unpinned.sha256().to_string(),
            settings,
            ..unpinned.config().clone()
        };
        engine.load(&config).unwrap()
    }

    #[test]
    fn each_hook_reads_what_its_own_copy_of_the_request_serializes_to() {
        let engine = HookEngine::without_cache().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let request = HookRequest {
            phase: Phase::PreDeploy,
            hook: "placeholder".into(),
            app: "web".into(),
            now: "2026-12-03T12:00:00Z".into(),
            workloads: vec![
                serde_json::json!({"kind": "Deployment", "metadata": {"name": "web \"quoted\""}}),
            ],
            ..HookRequest::default()
        };
        let hooks = [
            hook(
                &engine,
                dir.path(),
                "required-labels",
                serde_json::json!({"labels": ["team"]}),
            ),
            hook(&engine, dir.path(), "empty", serde_json::json!({})),
        ];
        let shared = PhaseRequest::new(&request, Phase::Admission);
        assert!(
            shared.shares_its_body(),
            "the header splits off HookRequest as it is"
        );
        for hook in &hooks {
            let mut own = request.clone();
            own.phase = Phase::Admission;
            own.hook = hook.name().to_string();
            own.settings = hook.settings().clone();
            assert_eq!(
                String::from_utf8(shared.stdin_for(hook).unwrap()).unwrap(),
                serde_json::to_string(&own).unwrap()
            );
        }
    }
}
