//! What the benchmarks share: which binaries they measure, and how they say so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};

/// The plugin binary a benchmark measures: `$KUBECTL_RELEASE_BIN`, else the release build, else
/// the debug build of this target directory.
pub fn measured_plugin() -> Result<PathBuf> {
    let plugin = match std::env::var_os("KUBECTL_RELEASE_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            // target/<profile>/deps/<this bench> → target/
            let exe = std::env::current_exe()?;
            let target = exe
                .ancestors()
                .nth(3)
                .context("the bench binary is not in target/<profile>/deps")?;
            ["release", "debug"]
                .iter()
                .map(|profile| target.join(profile).join("kubectl-release"))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "no kubectl-release in {0}/release or {0}/debug: `cargo build --release -p kubectl-release`",
                        target.display()
                    )
                })?
        }
    };
    ensure!(plugin.is_file(), "{} is not a file", plugin.display());
    Ok(plugin)
}

/// kubectl, what a user would run instead: `$KUBECTL`, else /usr/bin/kubectl.
pub fn kubectl_bin() -> Result<PathBuf> {
    let kubectl = std::env::var_os("KUBECTL")
        .map_or_else(|| PathBuf::from("/usr/bin/kubectl"), PathBuf::from);
    ensure!(
        kubectl.is_file(),
        "{} is not a file (set KUBECTL)",
        kubectl.display()
    );
    Ok(kubectl)
}

/// `path, built 3m ago`, with a warning when it is a debug build (not a fair comparison).
pub fn describe_binary(path: &Path) -> String {
    let profile = if path.components().any(|c| c.as_os_str() == "debug") {
        " (DEBUG build: numbers are not fair; `cargo build --release -p kubectl-release`)"
    } else {
        ""
    };
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or(String::new(), |d| {
            format!(
                ", built {} ago",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            )
        });
    format!("{}{age}{profile}", path.display())
}
