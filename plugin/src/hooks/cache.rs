//! The on-disk cache of compiled modules, so that the second run of a hook does not compile.
//!
//! An entry is keyed by the module's sha256 and by the engine's compatibility hash (wasmtime
//! version, target, and every setting that changes generated code), so an upgrade or a config
//! change simply misses. Entries are written to a temporary file and renamed into place, so
//! readers never see half an entry; each starts with the sha256 of the serialized bytes, checked
//! before wasmtime sees them, so a damaged or truncated entry is recompiled and never trusted.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Identifies the file format; bump when the layout changes.
const MAGIC: &[u8; 16] = b"krel-cwasm-v1\0\0\0";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// Makes temporary file names unique within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Compiled modules of one engine configuration in one directory.
#[derive(Debug, Clone)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    /// Hex sha256 of the engine's compatibility hash.
    engine_key: String,
}

/// What a cache lookup found.
pub(crate) enum Lookup {
    Hit(Module),
    Miss,
    /// The entry exists but cannot be used; it has been removed.
    Damaged(String),
}

impl ModuleCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> ModuleCache {
        ModuleCache {
            dir,
            engine_key: engine_key(engine),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for a module with sha256 `module_sha256` (lower-case hex).
    pub(crate) fn entry_path(&self, module_sha256: &str) -> PathBuf {
        // 16 hex digits of the engine key are plenty to tell configurations apart.
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", &self.engine_key[..16]))
    }

    /// Loads the compiled module, verifying the entry first.
    pub(crate) fn load(&self, engine: &Engine, module_sha256: &str) -> Lookup {
        let path = self.entry_path(module_sha256);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Damaged(format!("cannot read {}: {e}", path.display())),
        };
        let problem = match verify(&bytes) {
            Ok(payload) => match deserialize(engine, payload) {
                Ok(module) => return Lookup::Hit(module),
                Err(e) => format!("wasmtime refused {}: {e}", path.display()),
            },
            Err(reason) => format!("{}: {reason}", path.display()),
        };
        // Removing it lets the next store write a good one; if that fails the store replaces it
        // anyway by rename.
        let _ = fs::remove_file(&path);
        Lookup::Damaged(problem)
    }

    /// Serializes `module` and stores it atomically.
    pub(crate) fn store(&self, module_sha256: &str, module: &Module) -> Result<PathBuf, String> {
        let payload = module
            .serialize()
            .map_err(|e| format!("cannot serialize the compiled module: {e}"))?;
        create_private_dir(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let path = self.entry_path(module_sha256);
        let tmp = self.dir.join(format!(
            ".{module_sha256}.{}.{}.tmp",
            std::process::id(),
            // Two threads of one process may store the same module at once.
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&Sha256::digest(&payload))?;
            file.write_all(&payload)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })?;
        Ok(path)
    }
}

/// Checks the header and returns the serialized module it guards.
fn verify(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a kubectl-release module cache entry".into());
    }
    let (expected, payload) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != expected {
        return Err("checksum mismatch (damaged or truncated)".into());
    }
    Ok(payload)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `Module::deserialize` runs the machine code in `payload`, so it must come from
    // `Module::serialize` of a compatible engine. It does: the checksum in the header proves these
    // are the bytes `store` wrote (a damaged or truncated entry never gets here), and wasmtime
    // itself rejects artifacts of another version or configuration. The cache lives in the
    // user's own cache directory, created private to them: whoever can write there can also
    // replace the kubectl-release binary, so it is no weaker than the binary itself.
    unsafe { Module::deserialize(engine, payload) }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The engine's compatibility hash as hex, stable across processes (unlike `DefaultHasher`).
fn engine_key(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            0 // unused: the digest is taken from the inner state
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(hasher.0.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_refuses_damage() {
        let payload = b"compiled".to_vec();
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&Sha256::digest(&payload));
        entry.extend_from_slice(&payload);
        assert_eq!(verify(&entry).unwrap(), payload.as_slice());

        let mut flipped = entry.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(verify(&flipped).unwrap_err().contains("checksum"));
        assert!(verify(&entry[..entry.len() - 1]).is_err());
        assert!(verify(b"short").is_err());
    }
}
