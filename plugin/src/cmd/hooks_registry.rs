//! `hooks push` and `hooks pull`: hook modules as OCI artifacts, for cluster policies.

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::artifacts::oci_modules::{self, ModuleRef, ModuleStore};
use crate::cli::{GlobalArgs, HooksPullArgs, HooksPushArgs};
use crate::domain::{Failure, Outcome};
use crate::output;

#[derive(Serialize)]
struct Published {
    reference: String,
    sha256: String,
}

pub async fn push(global: &GlobalArgs, args: &HooksPushArgs) -> Result<Outcome> {
    let bytes = std::fs::read(&args.module)
        .with_context(|| format!("cannot read {}", args.module.display()))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(Failure::invalid(format!(
            "{} is not a WebAssembly module",
            args.module.display()
        ))
        .into());
    }
    let target = ModuleRef::parse(&args.reference).map_err(|e| Failure::invalid(e.to_string()))?;
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let reference = oci_modules::push(bytes, &target).await?;
    let published = Published { reference, sha256 };
    output::emit(global.output, &published, || {
        format!("{}\n", published.reference)
    })?;
    Ok(Outcome::Succeeded)
}

#[derive(Serialize)]
struct Pulled {
    reference: String,
    path: String,
    sha256: String,
}

pub async fn pull(global: &GlobalArgs, args: &HooksPullArgs) -> Result<Outcome> {
    let reference =
        ModuleRef::parse(&args.reference).map_err(|e| Failure::invalid(e.to_string()))?;
    let fetched = ModuleStore::default_location()
        .fetch(&reference)
        .await
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let pulled = Pulled {
        reference: reference.text,
        path: fetched.path.display().to_string(),
        sha256: fetched.sha256,
    };
    output::emit(global.output, &pulled, || {
        format!("{} sha256:{}\n", pulled.path, pulled.sha256)
    })?;
    Ok(Outcome::Succeeded)
}
