//! The part of the kubelet API the API server proxies to for `kubectl logs`:
//! `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `previous`, `timestamps`,
//! `tailLines`, `limitBytes`, `sinceSeconds` and `sinceTime`, served over HTTPS with a
//! self-signed certificate (the API server does not verify the kubelet's serving certificate
//! without `--kubelet-certificate-authority`) and without asking for a client certificate. Every
//! node registers the same endpoint; pods are found by namespace and name.
//! `GET /healthz` answers `ok`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::logs::{LogError, LogOptions, LogStore, within_budget};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The kubelet API, bound and ready to serve.
pub struct KubeletServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for KubeletServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletServer")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl KubeletServer {
    /// Binds `addr` (port 0: any free port) with a new self-signed certificate.
    ///
    /// # Errors
    /// When the address cannot be bound or the certificate made.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<KubeletServer> {
        crate::install_crypto_provider();
        let certified = rcgen::generate_simple_self_signed(vec![
            addr.ip().to_string(),
            "localhost".to_string(),
        ])
        .context("Failed to make the kubelet's serving certificate")?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .context("Failed to load the kubelet's serving certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to bind the kubelet API on {addr}"))?;
        Ok(KubeletServer {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves `logs` until the process ends.
    pub async fn serve(self, logs: Arc<LogStore>) {
        loop {
            let tcp = match self.listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let logs = logs.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::debug!(error = %e, "kubelet API TLS handshake failed");
                        return;
                    }
                };
                let service = service_fn(move |request| {
                    let logs = logs.clone();
                    async move { Ok::<_, Infallible>(handle(&request, &logs)) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(error = %e, "kubelet API connection ended");
                }
            });
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())).boxed_unsync())
        .unwrap_or_default()
}

fn handle(request: &Request<Incoming>, logs: &Arc<LogStore>) -> Response<Body> {
    let path = request.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let [namespace, pod, container] = parts.as_slice() else {
        return text(
            StatusCode::BAD_REQUEST,
            "expected /containerLogs/{namespace}/{pod}/{container}\n",
        );
    };
    let options = LogOptions::from_query(request.uri().query().unwrap_or_default());
    tracing::debug!(%namespace, %pod, %container, ?options, "container logs");
    container_logs(logs, namespace, pod, container, options)
}

/// The response to one log request: the lines so far, then (`follow`) the lines as they come
/// until the run ends, the pod goes away, or `limitBytes` is reached.
fn container_logs(
    logs: &Arc<LogStore>,
    namespace: &str,
    pod: &str,
    container: &str,
    options: LogOptions,
) -> Response<Body> {
    // Subscribed before the first read: no change after it goes unnoticed.
    let changes = logs.subscribe();
    let run = match logs.read(namespace, pod, container, options.previous) {
        Ok(run) => run,
        Err(e @ LogError::NotFound(_)) => return text(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ LogError::NotStarted(_)) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut budget = options.limit_bytes;
    let first: String = options
        .initial(&run, Timestamp::now())
        .iter()
        .map(|(at, line)| options.render(*at, line))
        .collect();
    let first = within_budget(first, &mut budget).unwrap_or_default();
    if !options.follow || run.ended || budget == Some(0) {
        return text(StatusCode::OK, first);
    }

    let follow = Follow {
        logs: logs.clone(),
        changes,
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: container.to_string(),
        index: run.index,
        sent: run.lines.len(),
        budget,
        options,
    };
    let first = futures::stream::once(async move { Ok(Frame::data(Bytes::from(first))) });
    let rest = futures::stream::unfold(follow, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok(Frame::data(Bytes::from(chunk))), f))
    });
    let body = StreamBody::new(futures::StreamExt::chain(first, rest));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body.boxed_unsync())
        .unwrap_or_default()
}

/// A `follow` reader of one run of a container.
struct Follow {
    logs: Arc<LogStore>,
    changes: watch::Receiver<u64>,
    namespace: String,
    pod: String,
    container: String,
    index: u32,
    /// Lines of the run already handled.
    sent: usize,
    budget: Option<usize>,
    options: LogOptions,
}

impl Follow {
    /// The next lines, once there are; `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<String> {
        loop {
            if self.budget == Some(0) {
                return None;
            }
            self.changes.mark_unchanged();
            let run =
                self.logs
                    .read_run(&self.namespace, &self.pod, &self.container, self.index)?;
            let new = run.lines.get(self.sent..).unwrap_or_default();
            if !new.is_empty() {
                self.sent = run.lines.len();
                let chunk: String = new
                    .iter()
                    .map(|(at, line)| self.options.render(*at, line))
                    .collect();
                return within_budget(chunk, &mut self.budget);
            }
            if run.ended {
                return None;
            }
            self.changes.changed().await.ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use super::super::logs::RunLog;

    fn run(lines: &[&str], ended: bool) -> BTreeMap<String, Vec<RunLog>> {
        let lines = lines
            .iter()
            .map(|l| (Timestamp::UNIX_EPOCH, l.to_string()))
            .collect();
        [(
            "app".to_string(),
            vec![RunLog {
                index: 0,
                lines,
                ended,
            }],
        )]
        .into()
    }

    async fn next_text(body: &mut Body) -> Option<String> {
        let frame = body.frame().await?.unwrap();
        Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn follow_streams_new_lines_and_ends_with_the_run() {
        let store = Arc::new(LogStore::default());
        store.sync("ns", "pod", "uid", &run(&["one"], false));
        let options = LogOptions::from_query("follow=true");
        let response = container_logs(&store, "ns", "pod", "app", options);
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        assert_eq!(next_text(&mut body).await.as_deref(), Some("one\n"));

        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            writer.sync("ns", "pod", "uid", &run(&["one", "two"], false));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            writer.sync("ns", "pod", "uid", &run(&["one", "two", "three"], true));
        });
        assert_eq!(next_text(&mut body).await.as_deref(), Some("two\n"));
        assert_eq!(next_text(&mut body).await.as_deref(), Some("three\n"));
        assert_eq!(next_text(&mut body).await, None, "the run ended");
    }

    #[tokio::test]
    async fn follow_ends_when_the_pod_is_deleted_and_limit_bytes_cuts_it_short() {
        let store = Arc::new(LogStore::default());
        store.sync("ns", "pod", "uid", &run(&["one"], false));
        let response = container_logs(
            &store,
            "ns",
            "pod",
            "app",
            LogOptions::from_query("follow=true"),
        );
        let mut body = response.into_body();
        assert_eq!(next_text(&mut body).await.as_deref(), Some("one\n"));
        store.forget("uid");
        assert_eq!(next_text(&mut body).await, None);

        store.sync("ns", "pod", "uid", &run(&["hello", "world"], true));
        let response = container_logs(
            &store,
            "ns",
            "pod",
            "app",
            LogOptions::from_query("limitBytes=8"),
        );
        let mut body = response.into_body();
        assert_eq!(next_text(&mut body).await.as_deref(), Some("hello\nwo"));
    }

    #[tokio::test]
    async fn unknown_containers_and_missing_previous_runs_are_bad_requests() {
        let store = Arc::new(LogStore::default());
        store.sync("ns", "pod", "uid", &run(&["one"], false));
        let status = |container: &str, query: &str| {
            container_logs(
                &store,
                "ns",
                "pod",
                container,
                LogOptions::from_query(query),
            )
            .status()
        };
        assert_eq!(status("other", ""), StatusCode::BAD_REQUEST);
        assert_eq!(status("app", "previous=true"), StatusCode::BAD_REQUEST);
        assert_eq!(status("app", ""), StatusCode::OK);
    }
}
