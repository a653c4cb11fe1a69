//! Hook modules as OCI artifacts, the way Kubewarden ships policies: pushed to any OCI registry
//! with a media type of their own, fetched by digest, kept in a content-addressed local cache,
//! and verified (manifest digest and module sha256) before anything compiles them. Once cached,
//! a module is used offline.

use std::path::{Path, PathBuf};

use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::artifacts::registry::{Registry, credentials_for};

/// Media type of the module layer.
pub const MODULE_MEDIA_TYPE: &str = "application/vnd.kubectl-release.hook.module.v1+wasm";
/// Media type of the (empty) config blob; also the manifest's artifact type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kubectl-release.hook.config.v1+json";
const MANIFEST_MEDIA_TYPES: [&str; 1] = ["application/vnd.oci.image.manifest.v1+json"];

#[derive(Debug, Error)]
pub enum ModuleFetchError {
    #[error(
        "`{0}` is not an OCI module reference: write oci://registry/repository@sha256:<64 hex>"
    )]
    BadReference(String),
    #[error(
        "{reference} is not pinned by digest: cluster policy modules must be referenced as oci://…@sha256:…"
    )]
    NotPinned { reference: String },
    #[error("cannot fetch {reference}: {detail}")]
    Registry { reference: String, detail: String },
    #[error(
        "{reference}: the registry served content whose digest is {actual}, not {expected}; refusing a tampered artifact"
    )]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{reference} holds no layer of media type {MODULE_MEDIA_TYPE}: not a kubectl-release hook module"
    )]
    NotAModule { reference: String },
    #[error("cannot use the module cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `oci://host/repo[:tag][@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    pub reference: Reference,
    pub text: String,
}

impl ModuleRef {
    pub fn parse(text: &str) -> Result<ModuleRef, ModuleFetchError> {
        let rest = text
            .strip_prefix("oci://")
            .ok_or_else(|| ModuleFetchError::BadReference(text.into()))?;
        let reference: Reference = rest
            .parse()
            .map_err(|_| ModuleFetchError::BadReference(text.into()))?;
        Ok(ModuleRef {
            reference,
            text: text.into(),
        })
    }

    pub fn digest(&self) -> Option<&str> {
        self.reference.digest()
    }
}

/// A module fetched and verified: where its bytes are and their sha256 (lower hex).
#[derive(Debug, Clone)]
pub struct FetchedModule {
    pub path: PathBuf,
    pub sha256: String,
}

/// The local, content-addressed store of fetched modules.
#[derive(Debug, Clone)]
pub struct ModuleStore {
    root: PathBuf,
}

impl ModuleStore {
    /// `$KUBECTL_RELEASE_CACHE_DIR/oci`, else `$XDG_CACHE_HOME` or `~/.cache` `/kubectl-release/oci`.
    pub fn default_location() -> ModuleStore {
        let base = std::env::var_os("KUBECTL_RELEASE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kubectl-release"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kubectl-release"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("kubectl-release"));
        ModuleStore {
            root: base.join("oci"),
        }
    }

    pub fn at(root: &Path) -> ModuleStore {
        ModuleStore {
            root: root.to_path_buf(),
        }
    }

    fn blob_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256_hex)
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.root.join("manifests").join(digest.replace(':', "-"))
    }

    /// The module `reference` pins, from the cache when it is there and intact, else from the
    /// registry. Everything is verified against the pinned digest before it is returned.
    pub async fn fetch(&self, reference: &ModuleRef) -> Result<FetchedModule, ModuleFetchError> {
        let digest = reference
            .digest()
            .ok_or_else(|| ModuleFetchError::NotPinned {
                reference: reference.text.clone(),
            })?;
        if let Some(hit) = self.cached(digest) {
            return Ok(hit);
        }
        let client = Registry::oci_client(reference.reference.registry());
        let auth = credentials_for(reference.reference.registry());
        let fail = |e: oci_client::errors::OciDistributionError| ModuleFetchError::Registry {
            reference: reference.text.clone(),
            detail: e.to_string(),
        };
        let (manifest_bytes, _) = client
            .pull_manifest_raw(&reference.reference, &auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(fail)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_bytes)));
        if actual != digest {
            return Err(ModuleFetchError::DigestMismatch {
                reference: reference.text.clone(),
                expected: digest.into(),
                actual,
            });
        }
        let manifest: OciImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| ModuleFetchError::Registry {
                reference: reference.text.clone(),
                detail: format!("unreadable manifest: {e}"),
            })?;
        let layer = module_layer(&manifest).ok_or_else(|| ModuleFetchError::NotAModule {
            reference: reference.text.clone(),
        })?;
        let mut bytes = Vec::new();
        client
            .pull_blob(&reference.reference, &layer, &mut bytes)
            .await
            .map_err(fail)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if format!("sha256:{sha}") != layer.digest {
            return Err(ModuleFetchError::DigestMismatch {
                reference: reference.text.clone(),
                expected: layer.digest.clone(),
                actual: format!("sha256:{sha}"),
            });
        }
        self.store(digest, &sha, &bytes)
    }

    /// A cached module whose bytes still hash to what its manifest recorded; anything else is
    /// a miss (and is fetched again), never trusted.
    fn cached(&self, manifest_digest: &str) -> Option<FetchedModule> {
        let sha = std::fs::read_to_string(self.manifest_path(manifest_digest)).ok()?;
        let sha = sha.trim();
        let path = self.blob_path(sha);
        let bytes = std::fs::read(&path).ok()?;
        (hex::encode(Sha256::digest(&bytes)) == sha).then(|| FetchedModule {
            path,
            sha256: sha.to_string(),
        })
    }

    fn store(
        &self,
        manifest_digest: &str,
        sha: &str,
        bytes: &[u8],
    ) -> Result<FetchedModule, ModuleFetchError> {
        let path = self.blob_path(sha);
        write_atomically(&path, bytes)?;
        write_atomically(&self.manifest_path(manifest_digest), sha.as_bytes())?;
        Ok(FetchedModule {
            path,
            sha256: sha.to_string(),
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModuleFetchError> {
    let cache_err = |source| ModuleFetchError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cache_err)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(cache_err)?;
    std::fs::rename(&tmp, path).map_err(cache_err)
}

fn module_layer(manifest: &OciImageManifest) -> Option<OciDescriptor> {
    manifest
        .layers
        .iter()
        .find(|l| l.media_type == MODULE_MEDIA_TYPE)
        .cloned()
}

/// Publishes `bytes` as a hook module at `reference` (a tag or a bare repository); returns the
/// pinned reference `oci://…@sha256:…` to put in a policy.
pub async fn push(bytes: Vec<u8>, reference: &ModuleRef) -> anyhow::Result<String> {
    let client: Client = Registry::oci_client(reference.reference.registry());
    let layers = [ImageLayer::new(bytes, MODULE_MEDIA_TYPE.to_string(), None)];
    let config = Config::new(b"{}".to_vec(), CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.artifact_type = Some(CONFIG_MEDIA_TYPE.to_string());
    let auth = credentials_for(reference.reference.registry());
    client
        .push(&reference.reference, &layers, config, &auth, Some(manifest))
        .await
        .map_err(|e| anyhow::anyhow!("cannot push {}: {e}", reference.text))?;
    // The pinned reference must name what the registry stores, whatever our serialisation was:
    // its digest comes from the registry or not at all.
    let digest = client
        .fetch_manifest_digest(&reference.reference, &auth)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "pushed {}, but the registry does not say which digest it stored ({e}); run `kubectl release hooks pull` on the tag's digest before pinning it",
                reference.text
            )
        })?;
    let repo = format!(
        "{}/{}",
        reference.reference.registry(),
        reference.reference.repository()
    );
    Ok(format!("oci://{repo}@{digest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_must_be_oci_and_pinned_for_fetching() {
        assert!(matches!(
            ModuleRef::parse("https://x/y"),
            Err(ModuleFetchError::BadReference(_))
        ));
        let r = ModuleRef::parse(&format!(
            "oci://127.0.0.1:5000/policies/labels@sha256:{}",
            "a".repeat(64)
        ))
        .unwrap();
        assert_eq!(r.reference.registry(), "127.0.0.1:5000");
        assert_eq!(r.reference.repository(), "policies/labels");
        assert!(r.digest().is_some());
        assert!(
            ModuleRef::parse("oci://127.0.0.1:5000/policies/labels:v1")
                .unwrap()
                .digest()
                .is_none()
        );
    }

    #[test]
    fn a_damaged_cache_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::at(dir.path());
        let bytes = b"\0asm module".to_vec();
        let sha = hex::encode(Sha256::digest(&bytes));
        let digest = format!("sha256:{}", "b".repeat(64));
        store.store(&digest, &sha, &bytes).unwrap();
        assert_eq!(store.cached(&digest).unwrap().sha256, sha);
        std::fs::write(store.blob_path(&sha), b"tampered").unwrap();
        assert!(
            store.cached(&digest).is_none(),
            "tampered bytes must not be served from the cache"
        );
    }
}
