//! Test images in the test registry, without Docker: a tiny OCI image per tag, pushed with
//! oci-client over plain HTTP.

use std::collections::BTreeMap;

use anyhow::Context as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

/// Pushes a distinct tiny image to `registry/repository:tag` and returns its digest as the
/// registry reports it (`sha256:…`).
///
/// The layer holds a file naming the image, so every repository and tag gets different bytes
/// and a different digest. The digest is always the registry's, never one computed here: that
/// is the one the kubelet and kubectl-release will see.
///
/// # Errors
/// When the registry refuses the push or cannot be reached.
pub async fn push_image(registry: &str, repository: &str, tag: &str) -> anyhow::Result<String> {
    push_image_annotated(registry, repository, tag, &[]).await
}

/// Pushes a build that the fake kubelet makes crash-loop (its manifest carries
/// [`crate::kubelet::image::CRASHLOOP_ANNOTATION`]); returns the registry's digest.
///
/// # Errors
/// As [`push_image`].
pub async fn push_crashing_image(
    registry: &str,
    repository: &str,
    tag: &str,
) -> anyhow::Result<String> {
    push_image_annotated(
        registry,
        repository,
        tag,
        &[(crate::kubelet::image::CRASHLOOP_ANNOTATION, "true")],
    )
    .await
}

async fn push_image_annotated(
    registry: &str,
    repository: &str,
    tag: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<String> {
    crate::install_crypto_provider();
    let reference = Reference::with_tag(
        registry.to_string(),
        repository.to_string(),
        tag.to_string(),
    );
    let layer = tar_with_file(
        "image",
        format!("{registry}/{repository}:{tag}\n").as_bytes(),
    );
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { "org.opencontainers.image.ref.name": tag } },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let mut annotations = BTreeMap::from([(
        "org.opencontainers.image.ref.name".to_string(),
        tag.to_string(),
    )]);
    annotations.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));

    let layers = [ImageLayer::oci_v1(layer, None)];
    let config = Config::oci_v1(serde_json::to_vec(&config)?, None);
    let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    client_for(registry)
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .with_context(|| format!("Failed to push {reference}"))?;
    image_digest(registry, repository, tag)
        .await?
        .with_context(|| format!("{reference} is not in the registry right after its push"))
}

/// The digest the registry has for `registry/repository:tag`, `None` when there is no such tag.
///
/// # Errors
/// When the registry cannot be reached or answers with something else than the manifest or
/// "not found".
pub async fn image_digest(
    registry: &str,
    repository: &str,
    tag: &str,
) -> anyhow::Result<Option<String>> {
    crate::install_crypto_provider();
    let reference = Reference::with_tag(
        registry.to_string(),
        repository.to_string(),
        tag.to_string(),
    );
    match client_for(registry)
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
    {
        Ok(digest) => Ok(Some(digest)),
        Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
        Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                )
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("Failed to look up {reference}")),
    }
}

fn client_for(registry: &str) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.to_string()]),
        ..Default::default()
    })
}

/// An uncompressed tar archive holding one regular file: a real layer, small enough to write by
/// hand (ustar: a 512-byte header, the content padded to 512 bytes, two zero blocks).
fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "ustar names are shorter than 100 bytes");
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        // Zero-padded octal, NUL-terminated, filling the field.
        let digits = format!("{value:0width$o}", width = field.len() - 1);
        field[..digits.len()].copy_from_slice(digits.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime: fixed, so the bytes depend on the content only
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let checksum = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(checksum.as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().next_multiple_of(512), 0);
    tar.resize(tar.len() + 1024, 0);
    tar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_tar_archives_tar_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("layer.tar");
        std::fs::write(&archive, tar_with_file("image", b"127.0.0.1:5000/web:v1\n")).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("image")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"127.0.0.1:5000/web:v1\n");
    }

    #[test]
    fn every_tag_gets_different_bytes() {
        assert_ne!(
            tar_with_file("image", b"web:a"),
            tar_with_file("image", b"web:b")
        );
    }
}
