//! Image references and the registry: a commit's tag → the digest the registry serves for it.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use thiserror::Error;

use crate::domain::CommitSha;

pub use hooks_sdk::helpers::ImageRef;

/// `repo@sha256:…`: how we pin every container.
pub fn pinned(repository: &str, digest: &str) -> String {
    ImageRef::pinned(repository, digest)
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(
        "no image for commit {commit} in {repository}; has CI built it? (looked for {repository}:{commit})"
    )]
    NoImage { repository: String, commit: String },
    #[error(
        "registry {registry} refused access to {reference}: {detail}; log in with `docker login {registry}`"
    )]
    Unauthorized {
        registry: String,
        reference: String,
        detail: String,
    },
    /// The registry could not be reached, or answered that it cannot serve now (429, 5xx):
    /// worth waiting for with `--wait-for-image`, never a reason to change anything.
    #[error(
        "cannot reach registry {registry} for {reference}: {detail}; check that the registry is up \
         and reachable from here (and any proxy), then run again"
    )]
    Unavailable {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("cannot resolve image {reference}: {source}")]
    Other {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
}

/// Resolves tags to digests. Plain HTTP is used for loopback registries (local test and
/// development registries never have TLS) and for those listed in
/// `$KUBECTL_RELEASE_INSECURE_REGISTRIES` (comma-separated host:port); HTTPS for the rest.
#[derive(Default)]
pub struct Registry;

impl Registry {
    pub fn new() -> Registry {
        Registry
    }

    /// An OCI client for `registry`, over plain HTTP where [`Registry`] says so.
    pub fn oci_client(registry: &str) -> Client {
        Self::client_for(registry)
    }

    fn client_for(registry: &str) -> Client {
        let protocol = if is_insecure(registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        Client::new(ClientConfig {
            protocol,
            ..Default::default()
        })
    }

    /// The digest the registry serves for `<repository>:<commit>`.
    pub async fn commit_digest(
        &self,
        repository: &str,
        commit: &CommitSha,
    ) -> Result<String, RegistryError> {
        let reference = format!("{repository}:{commit}");
        let registry = ImageRef::parse(repository).registry().to_string();
        // Built from parts: parsing a reference string compiles oci-spec's large regex (~40 ms).
        let path = repository
            .strip_prefix(&format!("{registry}/"))
            .unwrap_or(repository);
        let path = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let parsed = Reference::with_tag(registry.clone(), path, commit.to_string());
        let auth = credentials_for(&registry);
        match Self::client_for(&registry)
            .fetch_manifest_digest(&parsed, &auth)
            .await
        {
            Ok(digest) => Ok(digest),
            Err(e) if is_not_found(&e) => Err(RegistryError::NoImage {
                repository: repository.to_string(),
                commit: commit.to_string(),
            }),
            Err(OciDistributionError::UnauthorizedError { url }) => {
                Err(RegistryError::Unauthorized {
                    registry,
                    reference,
                    detail: format!("401 from {url}"),
                })
            }
            Err(e) if is_unavailable(&e) => Err(RegistryError::Unavailable {
                detail: describe_unavailable(&e),
                registry,
                reference,
            }),
            Err(source) => Err(RegistryError::Other { reference, source }),
        }
    }

    /// Like [`Registry::commit_digest`], but waits up to `patience` for CI to push the image,
    /// and through a registry that is down or overloaded meanwhile. Registries cannot be
    /// watched, so this polls, backing off from 2 s to 10 s.
    pub async fn wait_for_commit_digest(
        &self,
        repository: &str,
        commit: &CommitSha,
        patience: Duration,
    ) -> Result<String, RegistryError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_secs(2);
        loop {
            match self.commit_digest(repository, commit).await {
                Err(e @ (RegistryError::NoImage { .. } | RegistryError::Unavailable { .. }))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    match e {
                        RegistryError::NoImage { .. } => {
                            tracing::info!(%commit, "image not pushed yet; waiting")
                        }
                        other => tracing::warn!("{other}; trying again"),
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|err| {
            matches!(
                err.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// A registry that did not answer, or answered "not now".
fn is_unavailable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        _ => false,
    }
}

fn describe_unavailable(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::ServerError { code, url, .. } if *code == 429 => {
            format!("it is throttling requests (429 from {url})")
        }
        OciDistributionError::ServerError { code, url, .. } => format!("{code} from {url}"),
        OciDistributionError::RequestError(err) => {
            // reqwest's own words hide the cause (connection refused, TLS) in its source chain.
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
        other => other.to_string(),
    }
}

fn is_insecure(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    let loopback = host == "localhost" || host == "[::1]" || host.starts_with("127.");
    loopback
        || std::env::var("KUBECTL_RELEASE_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .any(|r| r.trim() == registry)
}

/// Credentials from the docker config and its credential helpers, where present (anonymous
/// otherwise): the same lookup for images and for hook modules.
pub fn credentials_for(registry: &str) -> RegistryAuth {
    match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
            RegistryAuth::Basic(user, password)
        }
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            RegistryAuth::Bearer(token)
        }
        Err(_) => RegistryAuth::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("127.0.0.1:5000/acme/web:3f2a");
        assert_eq!(r.repository, "127.0.0.1:5000/acme/web");
        assert_eq!(r.tag.as_deref(), Some("3f2a"));
        assert_eq!(r.registry(), "127.0.0.1:5000");

        let r = ImageRef::parse("127.0.0.1:5000/acme/web@sha256:abc");
        assert_eq!(r.repository, "127.0.0.1:5000/acme/web");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));

        assert!(is_insecure("127.0.0.1:5000") && is_insecure("localhost:5000"));
        assert!(!is_insecure("registry.example.com"));

        let r = ImageRef::parse("nginx");
        assert_eq!(
            (r.repository.as_str(), r.registry()),
            ("nginx", "docker.io")
        );
    }
}
