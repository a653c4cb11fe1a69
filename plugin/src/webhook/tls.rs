//! The webhook's serving certificate: read from two PEM files and read again when they change, so
//! a rotated certificate (cert-manager, a renewed Secret) is served without a restart.
//!
//! The files are checked on each TLS handshake — two `stat` calls against the loaded pair's
//! modification times and lengths — rather than by a polling thread or a file watcher: nothing
//! runs while nobody connects, and the first handshake after a rotation already sees the new
//! pair. A pair that cannot be used keeps the previous one in service and is logged once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, crypto::ring};
use tokio_rustls::TlsAcceptor;

/// Why the certificate pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read (missing, no permission).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The certificate file is not PEM, or holds no `CERTIFICATE` block.
    #[error(
        "cannot read a certificate chain from {}: {source} \
         (expected PEM `BEGIN CERTIFICATE` blocks, the server's own first)",
        path.display()
    )]
    Certificates {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },

    /// The key file is not PEM, or holds no private key.
    #[error(
        "cannot read a private key from {}: {source} (expected one PEM PKCS#8, PKCS#1 or SEC1 key)",
        path.display()
    )]
    Key {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },

    /// The key is of an unsupported kind, or is not the certificate's key.
    #[error("the key in {} cannot serve the certificate in {}: {source}", key.display(), cert.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    /// rustls refused the server configuration (no usable protocol version in the provider).
    #[error("cannot build the TLS server configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Serves the pair in `cert` and `key`, re-reading both when either file changes.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The stamps last read, whether or not that pair was usable: a broken pair is tried (and
    /// warned about) once, not on every handshake until the files change again.
    seen: (FileStamp, FileStamp),
    serving: Arc<CertifiedKey>,
}

/// What tells a file changed without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

impl ReloadingCert {
    /// Reads the pair once; the server does not start without a usable one.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when a file cannot be read or parsed, or the key does not match the
    /// certificate.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let provider = default_provider();
        let seen = (stamp(cert_path)?, stamp(key_path)?);
        let serving = Arc::new(read_pair(cert_path, key_path, &provider)?);
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            state: Mutex::new(Loaded { seen, serving }),
        })
    }

    /// The pair to serve now: re-read first if either file changed since it was last read.
    ///
    /// Called in the handshake, on the runtime's thread: two `stat`s are microseconds, a re-read
    /// of two small files happens once per rotation, and the API server reuses its connections.
    pub fn current(&self) -> Arc<CertifiedKey> {
        // A panic elsewhere while holding the lock leaves a pair that is still whole.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match (stamp(&self.cert_path), stamp(&self.key_path)) {
            (Ok(cert), Ok(key)) => (cert, key),
            // Mid-rotation (a Secret volume swaps a symlink) a file can be briefly missing.
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("keeping the served certificate: {e}");
                return state.serving.clone();
            }
        };
        if now != state.seen {
            state.seen = now;
            match read_pair(&self.cert_path, &self.key_path, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert_path.display(), "serving a new TLS certificate");
                    state.serving = Arc::new(pair);
                }
                Err(e) => tracing::warn!("keeping the previous TLS certificate: {e}"),
            }
        }
        state.serving.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS acceptor serving `resolver`'s pair, offering HTTP/2 and HTTP/1.1 by ALPN (the API server
/// uses either).
///
/// # Errors
///
/// [`TlsError::Config`] when the crypto provider supports no safe protocol version.
pub fn acceptor(resolver: Arc<ReloadingCert>) -> Result<TlsAcceptor, TlsError> {
    let mut config = ServerConfig::builder_with_provider(resolver.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The process's provider (the binary installs ring at start); ring when none is installed, as in
/// unit tests.
fn default_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(ring::default_provider()))
}

fn stamp(path: &Path) -> Result<FileStamp, TlsError> {
    // `metadata` follows symlinks: a Secret volume's `..data` swap changes the target's stamp.
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| match chain.is_empty() {
            true => Err(pem::Error::NoItemsFound),
            false => Ok(chain),
        })
        .map_err(|source| TlsError::Certificates {
            path: cert_path.to_path_buf(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| TlsError::Key {
        path: key_path.to_path_buf(),
        source,
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    })
}

/// Certificates for tests: a CA and server pairs it signs, for `localhost` and 127.0.0.1.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::CertificateDer;

    /// A test CA.
    pub(crate) struct TestCa {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    /// One server pair the CA signed.
    pub(crate) struct ServerPair {
        pub(crate) cert_pem: String,
        pub(crate) key_pem: String,
        pub(crate) der: CertificateDer<'static>,
    }

    impl TestCa {
        pub(crate) fn new() -> Self {
            let mut params = CertificateParams::new(Vec::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let key = KeyPair::generate().expect("CA key");
            let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
            Self { issuer }
        }

        pub(crate) fn der(&self) -> CertificateDer<'static> {
            self.issuer.der().clone()
        }

        pub(crate) fn server_pair(&self) -> ServerPair {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let params = CertificateParams::new(names).expect("server params");
            let key = KeyPair::generate().expect("server key");
            let cert = params.signed_by(&key, &self.issuer).expect("server cert");
            ServerPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                der: cert.der().clone(),
            }
        }
    }

    impl ServerPair {
        /// Writes the pair, each file stamped `age_secs` in the past: tests replace files faster
        /// than some file systems' clocks tick, so each write gets a distinct stamp.
        pub(crate) fn write(&self, cert: &Path, key: &Path, age_secs: u64) {
            let when = SystemTime::now() - Duration::from_secs(age_secs);
            for (path, text) in [(cert, &self.cert_pem), (key, &self.key_pem)] {
                std::fs::write(path, text).expect("write PEM");
                let file = std::fs::File::options()
                    .write(true)
                    .open(path)
                    .expect("open PEM");
                file.set_modified(when).expect("stamp PEM");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestCa;
    use super::*;

    fn files() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        (dir, cert, key)
    }

    fn served_der(resolver: &ReloadingCert) -> Vec<u8> {
        resolver.current().cert[0].to_vec()
    }

    #[test]
    fn serves_the_new_pair_once_the_files_change() {
        let ca = TestCa::new();
        let (_dir, cert, key) = files();
        let first = ca.server_pair();
        first.write(&cert, &key, 100);
        let resolver = ReloadingCert::load(&cert, &key).expect("load");
        assert_eq!(served_der(&resolver), first.der.to_vec());

        let second = ca.server_pair();
        second.write(&cert, &key, 50);
        assert_eq!(served_der(&resolver), second.der.to_vec());
        // Unchanged files: the same pair, not a re-read one.
        assert!(Arc::ptr_eq(&resolver.current(), &resolver.current()));
    }

    #[test]
    fn a_broken_pair_keeps_the_previous_one_until_a_good_one_arrives() {
        let ca = TestCa::new();
        let (_dir, cert, key) = files();
        let first = ca.server_pair();
        first.write(&cert, &key, 100);
        let resolver = ReloadingCert::load(&cert, &key).expect("load");

        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
        assert_eq!(served_der(&resolver), first.der.to_vec());

        // A certificate with someone else's key: parsed, but refused.
        let (second, third) = (ca.server_pair(), ca.server_pair());
        second.write(&cert, &key, 60);
        std::fs::write(&key, &third.key_pem).expect("write");
        assert_eq!(served_der(&resolver), first.der.to_vec());

        second.write(&cert, &key, 30);
        assert_eq!(served_der(&resolver), second.der.to_vec());
    }

    #[test]
    fn a_missing_file_keeps_the_pair_and_a_bad_start_is_an_error() {
        let ca = TestCa::new();
        let (_dir, cert, key) = files();
        let first = ca.server_pair();
        first.write(&cert, &key, 100);
        let resolver = ReloadingCert::load(&cert, &key).expect("load");
        std::fs::remove_file(&key).expect("remove");
        assert_eq!(served_der(&resolver), first.der.to_vec());

        let err = ReloadingCert::load(&cert, &key).expect_err("no key file");
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        std::fs::write(&key, "no PEM here").expect("write");
        let err = ReloadingCert::load(&cert, &key).expect_err("no key in file");
        assert!(
            err.to_string().contains("cannot read a private key"),
            "{err}"
        );
    }
}
