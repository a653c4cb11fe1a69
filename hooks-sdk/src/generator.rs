//! The generator v1 contract: a module that renders an app's manifests from its app spec.
//!
//! A generator is a WASI preview 1 command module, run in the hook sandbox with the same limits
//! and sha256 pin. The host runs it with argv `["generator", "generate"]` (or
//! `["generator", "validate-settings"]`), writes one JSON [`GenerateRequest`] to its stdin and
//! reads one JSON [`GenerateResponse`] from its stdout: `{"objects": [...]}`, or
//! `{"error": "..."}` when it refuses the request. Anything on stderr is logs.
//!
//! The app spec ([`AppSpec`]) is the `spec:` section of `release.yaml`; the request carries it
//! with the environment's overrides already merged (and no `environments`). Its field names
//! follow Score's (`score.dev`) where they fit.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `apiVersion` of every [`GenerateRequest`] in this version of the contract.
pub const GENERATOR_API_VERSION: &str = "kubectl-release.io/generators/v1";

/// The `kind` of a [`GenerateRequest`].
pub const GENERATE_REQUEST_KIND: &str = "GenerateRequest";

/// An app's spec: its containers (on the app's image), replicas, service and autoscaling, and
/// per-environment overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    title = "AppSpec",
    description = "The `spec:` of release.yaml: what a generator renders manifests from."
)]
pub struct AppSpec {
    /// The app's containers by name; each runs the app's image at the released commit.
    pub containers: BTreeMap<String, Container>,
    /// Pods to run (default: the generator's, 1 for `web-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// A Service in front of the pods, if the app takes traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// A HorizontalPodAutoscaler instead of fixed replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Overrides per environment name, merged over the rest before the generator sees it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, Overrides>,
}

/// One container of the app (Score's `containers.<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    /// The entrypoint, replacing the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Environment variables (Score's `variables`; `env` is accepted too).
    #[serde(default, alias = "env", skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// CPU and memory requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// When the container is ready for traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

/// A port a container listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    /// The port's name (an IANA service name: lower-case letters, digits, '-').
    pub name: String,
    /// The port number, 1 to 65535.
    pub port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "TCP".to_string()
}

/// Requests and limits (Kubernetes quantities, e.g. `100m`, `128Mi`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Quantities>,
    /// The most the container may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Quantities>,
}

/// CPU and memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    /// CPU, e.g. `100m` or `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `128Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A probe (only `httpGet` for now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    /// An HTTP GET that must answer 2xx or 3xx.
    pub http_get: HttpGet,
}

/// Where a probe sends its GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpGet {
    /// The path, e.g. `/healthz`.
    pub path: String,
    /// The container's port number.
    pub port: u16,
}

/// The Service in front of the app's pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    /// The port the Service listens on.
    pub port: u16,
    /// The container port it forwards to (default: the first container's first port, else
    /// `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
}

/// Horizontal autoscaling on CPU utilisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Target average CPU utilisation in percent of the requests.
    pub cpu: u32,
}

/// What an environment changes in the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Overrides {
    /// Replaces `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Added to (or replacing) every container's `variables`.
    #[serde(default, alias = "env", skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Replaces `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
}

impl AppSpec {
    /// The spec of environment `env`: its overrides merged in, `environments` dropped.
    pub fn for_environment(&self, env: &str) -> AppSpec {
        let mut spec = AppSpec {
            environments: BTreeMap::new(),
            ..self.clone()
        };
        if let Some(o) = self.environments.get(env) {
            if o.replicas.is_some() {
                spec.replicas = o.replicas;
            }
            if o.autoscaling.is_some() {
                spec.autoscaling.clone_from(&o.autoscaling);
            }
            for container in spec.containers.values_mut() {
                for (name, value) in &o.variables {
                    container.variables.insert(name.clone(), value.clone());
                }
            }
        }
        spec
    }
}

/// What the host writes to a generator's stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(
    title = "GenerateRequest",
    description = "The document a generator reads from stdin (generator v1)."
)]
pub struct GenerateRequest {
    /// Always `kubectl-release.io/generators/v1`.
    #[schemars(extend("const" = "kubectl-release.io/generators/v1"))]
    pub api_version: String,
    /// Always `GenerateRequest`.
    #[schemars(extend("const" = "GenerateRequest"))]
    pub kind: String,
    /// The app's name.
    pub app: String,
    /// The app's image repository (the release pins it by digest at deploy time).
    pub image: String,
    /// The environment rendered.
    pub environment: String,
    /// The environment's namespace.
    pub namespace: String,
    /// The app spec with the environment's overrides merged.
    pub spec: AppSpec,
    /// The generator's `settings` from release.yaml (an empty object if none).
    #[serde(default)]
    pub settings: Value,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        GenerateRequest {
            api_version: GENERATOR_API_VERSION.to_string(),
            kind: GENERATE_REQUEST_KIND.to_string(),
            app: String::new(),
            image: String::new(),
            environment: String::new(),
            namespace: String::new(),
            spec: AppSpec::default(),
            settings: Value::Object(serde_json::Map::new()),
        }
    }
}

/// What a generator writes to stdout: the objects, or why it refuses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "GenerateResponse",
    description = "The document a generator writes to stdout (generator v1)."
)]
pub struct GenerateResponse {
    /// The Kubernetes objects, plain JSON, one per manifest file.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// Set when the generator refuses the request (bad spec or settings); no objects then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the host asks a generator to do, from `argv[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorCommand {
    /// Render the objects.
    Generate,
    /// Say whether the settings are acceptable: `error` when not.
    ValidateSettings,
}

impl GeneratorCommand {
    /// The argv word for the command.
    pub fn as_str(self) -> &'static str {
        match self {
            GeneratorCommand::Generate => "generate",
            GeneratorCommand::ValidateSettings => "validate-settings",
        }
    }
}

/// The response of a generator with settings of type `S`, without any I/O.
pub fn evaluate<S: DeserializeOwned>(
    command: GeneratorCommand,
    request: &GenerateRequest,
    generate: impl Fn(&GenerateRequest, &S) -> Result<Vec<Value>, String>,
) -> GenerateResponse {
    let settings = if request.settings.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        request.settings.clone()
    };
    let outcome = serde_json::from_value::<S>(settings)
        .map_err(|e| format!("invalid settings: {e}"))
        .and_then(|s| match command {
            GeneratorCommand::ValidateSettings => Ok(Vec::new()),
            GeneratorCommand::Generate => generate(request, &s),
        });
    match outcome {
        Ok(objects) => GenerateResponse {
            objects,
            error: None,
        },
        Err(error) => GenerateResponse {
            objects: Vec::new(),
            error: Some(error),
        },
    }
}

/// A generator's `main`: reads argv and the request, writes the response; exits 1 when the
/// request cannot be read.
pub fn run<S: DeserializeOwned>(
    generate: impl Fn(&GenerateRequest, &S) -> Result<Vec<Value>, String>,
) {
    let args: Vec<String> = std::env::args().collect();
    let outcome = read_command(&args).and_then(|command| {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        let request: GenerateRequest = serde_json::from_slice(&input)
            .map_err(|e| format!("cannot read the GenerateRequest on stdin: {e}"))?;
        if request.api_version != GENERATOR_API_VERSION {
            return Err(format!(
                "unsupported apiVersion `{}`: this generator understands `{GENERATOR_API_VERSION}`",
                request.api_version
            ));
        }
        let response = evaluate(command, &request, &generate);
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, &response)
            .map_err(std::io::Error::from)
            .and_then(|()| stdout.write_all(b"\n"))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write the response to stdout: {e}"))
    });
    if let Err(message) = outcome {
        let _ = writeln!(std::io::stderr(), "error: {message}");
        std::process::exit(1);
    }
}

fn read_command(args: &[String]) -> Result<GeneratorCommand, String> {
    match args.get(1).map(String::as_str) {
        None | Some("generate") => Ok(GeneratorCommand::Generate),
        Some("validate-settings") => Ok(GeneratorCommand::ValidateSettings),
        Some(other) => Err(format!(
            "unknown command `{other}`: expected `generate` or `validate-settings`"
        )),
    }
}
