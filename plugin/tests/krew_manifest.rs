//! The krew manifest is what `kubectl krew install` reads: check it is a valid Plugin manifest
//! whose every platform names an archive, a well-formed sha256 and our binary, and that each
//! archive built by scripts/krew-release.sh (in dist/, when present) has that sha256.

use serde_yaml_ng::Value;

fn manifest() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../krew-manifest.yaml");
    let text = std::fs::read_to_string(path).expect("krew-manifest.yaml at the repo root");
    serde_yaml_ng::from_str(&text).expect("krew-manifest.yaml is YAML")
}

#[test]
fn is_a_krew_plugin_manifest_named_release() {
    let m = manifest();
    assert_eq!(
        m["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(m["kind"].as_str(), Some("Plugin"));
    assert_eq!(m["metadata"]["name"].as_str(), Some("release"));
    let version = m["spec"]["version"].as_str().expect("spec.version");
    assert_eq!(
        version,
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "manifest version follows the crate's"
    );
    assert!(
        m["spec"]["shortDescription"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[test]
fn every_platform_names_an_archive_a_sha256_and_the_binary() {
    let m = manifest();
    let platforms = m["spec"]["platforms"]
        .as_sequence()
        .expect("spec.platforms");
    let mut seen = Vec::new();
    for p in platforms {
        let os = p["selector"]["matchLabels"]["os"]
            .as_str()
            .expect("os label");
        let arch = p["selector"]["matchLabels"]["arch"]
            .as_str()
            .expect("arch label");
        let uri = p["uri"].as_str().expect("uri");
        assert!(
            uri.ends_with(&format!("_{os}_{arch}.tar.gz")),
            "{uri} is not the {os}/{arch} archive"
        );
        let sha = p["sha256"].as_str().expect("sha256");
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "bad sha256 {sha:?} for {os}/{arch}"
        );
        assert_eq!(
            p["bin"].as_str(),
            Some("kubectl-release"),
            "{os}/{arch} must run kubectl-release"
        );
        let files = p["files"].as_sequence().expect("files");
        assert!(
            files
                .iter()
                .any(|f| f["from"].as_str() == Some("kubectl-release")),
            "{os}/{arch} archive must carry the binary"
        );
        seen.push(format!("{os}/{arch}"));
    }
    seen.sort();
    // darwin archives need a macOS SDK to link, which this project's build machines do not
    // have; scripts/krew-release.sh adds them where it does. Linux on both architectures is
    // always there.
    for required in ["linux/amd64", "linux/arm64"] {
        assert!(
            seen.iter().any(|p| p == required),
            "{required} missing from {seen:?}"
        );
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "a platform is listed twice");
}

#[test]
fn built_archives_match_the_manifest() {
    use sha2::Digest as _;
    let m = manifest();
    let dist = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist");
    for p in m["spec"]["platforms"]
        .as_sequence()
        .expect("spec.platforms")
    {
        let uri = p["uri"].as_str().expect("uri");
        let file = std::path::Path::new(dist).join(uri.rsplit('/').next().unwrap());
        // Archives are release artefacts, not in git: check them where a release run left them.
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            p["sha256"].as_str().unwrap(),
            "{}",
            file.display()
        );
    }
}
