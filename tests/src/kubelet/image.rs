//! How the fake kubelet "pulls" images: a real lookup in the test registry, a made-up digest for
//! every other registry.

use std::str::FromStr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// A container whose image repository or tag contains this marker crash-loops once pulled.
pub const CRASHLOOP_MARKER: &str = "crashloop";

/// An image whose manifest carries this annotation with value `"true"` crash-loops once pulled.
/// Deploys pin images by digest, so the reference alone cannot mark a bad build: the manifest can,
/// just as a real broken build differs in its content, not its name.
pub const CRASHLOOP_ANNOTATION: &str = "kubectl-release.test/crashloop";

/// What a pull of one image reference came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullOutcome {
    /// The image is there; `image_id` is what a kubelet reports in `containerStatuses[].imageID`;
    /// `crashloop` when its manifest is annotated to crash.
    Pulled { image_id: String, crashloop: bool },
    /// The image cannot be pulled; `message` says why (without naming the image).
    Failed { message: String },
}

/// Whether the fake kubelet makes containers of this image crash-loop.
pub fn is_crashloop(image: &str) -> bool {
    match Reference::from_str(image) {
        Ok(r) => {
            r.repository().contains(CRASHLOOP_MARKER)
                || r.tag().is_some_and(|t| t.contains(CRASHLOOP_MARKER))
        }
        // An unparsable reference never gets as far as running anyway.
        Err(_) => false,
    }
}

/// `docker-pullable://<registry>/<repository>@<digest>`, the form the kubelet reported with the
/// Docker runtime and the form tools read digests from.
pub fn image_id(reference: &Reference, digest: &str) -> String {
    format!(
        "docker-pullable://{}/{}@{}",
        reference.registry(),
        reference.repository(),
        digest
    )
}

/// Digest given to images of registries other than the test registry, which cannot be reached
/// from here: the sha256 of the reference as written in the pod spec (or the digest it pins).
/// Stable for the same reference, different for different tags, so rollouts of public images
/// still show distinct image IDs.
pub fn synthetic_digest(image: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(image.as_bytes())))
}

/// Resolves image references the way the kubelet's image pull would.
pub struct Puller {
    registry: String,
    client: Client,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("registry", &self.registry)
            .finish()
    }
}

impl Puller {
    /// `registry` is the test registry's `host:port`, reached over plain HTTP.
    pub fn new(registry: &str) -> Self {
        crate::install_crypto_provider();
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![registry.to_string()]),
            connect_timeout: Some(std::time::Duration::from_secs(2)),
            read_timeout: Some(std::time::Duration::from_secs(10)),
            ..Default::default()
        });
        Self {
            registry: registry.to_string(),
            client,
        }
    }

    /// "Pulls" `image`: a HEAD on its manifest in the test registry (the registry's
    /// `Docker-Content-Digest` is the digest), a synthetic digest elsewhere.
    pub async fn pull(&self, image: &str) -> PullOutcome {
        let reference = match Reference::from_str(image) {
            Ok(r) => r,
            Err(e) => {
                return PullOutcome::Failed {
                    message: format!("invalid image reference: {e}"),
                };
            }
        };
        if reference.registry() != self.registry {
            let digest = reference
                .digest()
                .map_or_else(|| synthetic_digest(image), str::to_string);
            return PullOutcome::Pulled {
                image_id: image_id(&reference, &digest),
                crashloop: false,
            };
        }
        match self
            .client
            .pull_manifest(&reference, &RegistryAuth::Anonymous)
            .await
        {
            Ok((manifest, digest)) => PullOutcome::Pulled {
                image_id: image_id(&reference, &digest),
                crashloop: manifest_says_crashloop(&manifest),
            },
            Err(e) => PullOutcome::Failed {
                message: failure_reason(&e),
            },
        }
    }
}

fn manifest_says_crashloop(manifest: &oci_client::manifest::OciManifest) -> bool {
    let annotations = match manifest {
        oci_client::manifest::OciManifest::Image(m) => m.annotations.as_ref(),
        oci_client::manifest::OciManifest::ImageIndex(i) => i.annotations.as_ref(),
    };
    annotations
        .and_then(|a| a.get(CRASHLOOP_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Why a pull failed, in a few words: the registry's own error messages when it gave some
/// ("manifest unknown"), the client's error otherwise.
fn failure_reason(error: &oci_client::errors::OciDistributionError) -> String {
    match error {
        oci_client::errors::OciDistributionError::RegistryError { envelope, .. }
            if !envelope.errors.is_empty() =>
        {
            let messages: Vec<&str> = envelope.errors.iter().map(|e| e.message.as_str()).collect();
            messages.join("; ")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashloop_marker_in_repository_or_tag() {
        assert!(is_crashloop("127.0.0.1:5000/crashloop-web:v1"));
        assert!(is_crashloop("127.0.0.1:5000/team/web:crashloop-1"));
        assert!(!is_crashloop("127.0.0.1:5000/web:v1"));
        assert!(!is_crashloop("nginx"));
    }

    #[test]
    fn image_ids_name_registry_repository_and_digest() {
        let r = Reference::from_str("127.0.0.1:5000/web:v1").unwrap();
        assert_eq!(
            image_id(&r, "sha256:abc"),
            "docker-pullable://127.0.0.1:5000/web@sha256:abc"
        );
    }

    #[tokio::test]
    async fn other_registries_get_a_stable_synthetic_digest() {
        let puller = Puller::new("127.0.0.1:1");
        let PullOutcome::Pulled { image_id, .. } = puller.pull("nginx:1.25").await else {
            panic!("public images always pull")
        };
        assert_eq!(
            image_id,
            format!(
                "docker-pullable://docker.io/library/nginx@{}",
                synthetic_digest("nginx:1.25")
            )
        );
        let pinned = format!("busybox@sha256:{}", "1".repeat(64));
        assert_eq!(
            puller.pull(&pinned).await,
            PullOutcome::Pulled {
                image_id: format!(
                    "docker-pullable://docker.io/library/busybox@sha256:{}",
                    "1".repeat(64)
                ),
                crashloop: false,
            }
        );
    }

    #[tokio::test]
    async fn an_unreachable_test_registry_fails_the_pull() {
        // Port 1 on loopback refuses connections.
        let puller = Puller::new("127.0.0.1:1");
        let outcome = puller.pull("127.0.0.1:1/web:v1").await;
        assert!(matches!(outcome, PullOutcome::Failed { .. }), "{outcome:?}");
    }
}
