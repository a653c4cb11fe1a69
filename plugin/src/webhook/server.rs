//! The webhook's HTTPS server: AdmissionReviews in, the admission logic's answers out, with probes
//! and metrics beside them. What to answer is [`Admit`]'s business (admission.rs); this module owns
//! the sockets, TLS, HTTP and the limits that keep one client from hurting the others.
//!
//! Each connection runs in its own task, behind a TLS handshake timeout, an HTTP/1 header timeout,
//! a body timeout and a body size limit. The protocol is the one agreed by ALPN (`h2` or
//! `http/1.1`; the API server offers both), so no connection waits to be sniffed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionReview, META_API_VERSION_V1, META_KIND};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::metrics::{self, Metrics, RequestKind, ReviewVerdict};
use super::tls::{self, ReloadingCert};

/// The API server caps objects near 1.5 MiB; an AdmissionReview carries up to two of them.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the API server's own webhook deadline (at most 30 s, ours below 10 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server asks of the admission logic (implemented in admission.rs).
#[allow(async_fn_in_trait)]
pub trait Admit: Send + Sync + 'static {
    /// Reviews one AdmissionReview posted to `path` (`/approvals` or `/workloads`); returns the
    /// AdmissionReview response to send back. The server only passes reviews that have a
    /// `request`.
    fn review(
        &self,
        path: &str,
        review: AdmissionReview<DynamicObject>,
    ) -> impl Future<Output = AdmissionReview<DynamicObject>> + Send;

    /// Whether the server is ready to judge (its policy is loaded): `/readyz`.
    fn ready(&self) -> bool;
}

/// Where to listen and what to serve with.
#[derive(Debug)]
pub struct ServeSettings {
    /// HTTPS: `POST /approvals`, `POST /workloads`, `GET /healthz`, `GET /readyz`.
    pub listen: SocketAddr,
    /// Plain HTTP: `GET /metrics`; none when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// The certificate pair, loaded by the caller (so a bad one stops it before it connects to
    /// anything) and re-read when its files change.
    pub tls: ReloadingCert,
}

/// Bound sockets, for [`serve_on`].
#[derive(Debug)]
pub struct Listeners {
    pub https: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Serves HTTPS on `listen` and plain-HTTP metrics on `metrics_listen` until `shutdown`
/// completes, then stops accepting and lets in-flight requests finish (at most a few seconds).
///
/// # Errors
///
/// When TLS cannot be set up or an address cannot be bound; once serving, a
/// failing connection or handshake is logged and never stops the server.
pub async fn serve<A: Admit>(
    settings: ServeSettings,
    admit: Arc<A>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = tls::acceptor(Arc::new(settings.tls))?;
    let https = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen for HTTPS on {}", settings.listen))?;
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(listen = %settings.listen, metrics = ?settings.metrics_listen, "webhook serving");
    let listeners = Listeners {
        https,
        metrics: metrics_listener,
    };
    serve_on(listeners, tls, admit, metrics, shutdown).await
}

/// [`serve`] on sockets already bound (tests bind port 0 and read the address first).
///
/// # Errors
///
/// None yet once the sockets are bound; the `Result` leaves room for fatal listener errors.
pub async fn serve_on<A: Admit>(
    listeners: Listeners,
    tls: TlsAcceptor,
    admit: Arc<A>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let http = Http::new();
    let app = App { admit, metrics };
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listeners.https.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (tls, http, app) = (tls.clone(), http.clone(), app.clone());
                    let watcher = graceful.watcher();
                    connections.spawn(serve_https(tcp, peer, tls, http, app, watcher));
                }
                Err(e) => accept_failed(e).await,
            },
            accepted = accept_on(listeners.metrics.as_ref()) => match accepted {
                Ok((tcp, peer)) => {
                    let metrics = app.metrics.clone();
                    let handler = move |req| metrics_response(req, metrics.clone());
                    let conn = http.serve(TokioIo::new(tcp), false, handler, graceful.watcher());
                    connections.spawn(log_connection_end(conn, peer));
                }
                Err(e) => accept_failed(e).await,
            },
            // Reaps finished connection tasks so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listeners);
    drain(graceful, connections).await;
    Ok(())
}

/// Lets open connections finish their requests, then cuts off whatever is left.
async fn drain(graceful: GracefulShutdown, mut connections: JoinSet<()>) {
    let open = graceful.count();
    tracing::info!(open, "webhook stopping: finishing in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            left = connections.len(),
            "connections still open after {DRAIN_TIMEOUT:?}; closing them"
        );
    }
    connections.shutdown().await;
}

/// The metrics listener's accept, or never when there is none.
async fn accept_on(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Out of file descriptors (EMFILE) accept fails at once, again and again: a short pause keeps
/// that from spinning a core while connections close; per-connection errors are rarer.
async fn accept_failed(error: std::io::Error) {
    tracing::warn!("cannot accept a connection: {error}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn serve_https<A: Admit>(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    http: Http,
    app: App<A>,
    watcher: Watcher,
) {
    // Without it, a response written in more than one segment (TLS records, HTTP/1 head and
    // body) waits for the client's delayed ACK on a keep-alive connection: 40 ms on Linux.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
    }
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let handler = move |req| {
        let app = app.clone();
        async move { app.respond(req).await }
    };
    log_connection_end(http.serve(TokioIo::new(stream), h2, handler, watcher), peer).await;
}

/// What a connection ends with: hyper's error, boxed by hyper-util's protocol switch.
type ConnectionResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn log_connection_end(conn: impl Future<Output = ConnectionResult>, peer: SocketAddr) {
    // Clients that go away mid-request are routine; nothing here concerns the server's health.
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// HTTP/1.1 and HTTP/2 connection settings, one builder per protocol.
#[derive(Clone)]
struct Http {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Http {
    fn new() -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        // Pings find peers that vanished without closing (a node gone, a dropped NAT entry).
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        Self {
            http1: builder.clone().http1_only(),
            http2: builder.http2_only(),
        }
    }

    /// Serves one connection with `handler`, until it closes or `watcher` sees shutdown.
    fn serve<I, H, F>(
        &self,
        io: I,
        h2: bool,
        handler: H,
        watcher: Watcher,
    ) -> impl Future<Output = ConnectionResult> + Send + 'static
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Send + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let builder = if h2 { &self.http2 } else { &self.http1 };
        let service = hyper::service::service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        watcher.watch(builder.serve_connection(io, service).into_owned())
    }
}

/// The HTTPS side's routes over the admission logic.
struct App<A> {
    admit: Arc<A>,
    metrics: Metrics,
}

impl<A> Clone for App<A> {
    fn clone(&self) -> Self {
        Self {
            admit: self.admit.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<A: Admit> App<A> {
    async fn respond(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let path = req.uri().path();
        let review_path = match path {
            "/approvals" => Some("/approvals"),
            "/workloads" => Some("/workloads"),
            _ => None,
        };
        match (req.method(), review_path, path) {
            (&Method::POST, Some(path), _) => self.review(path, req, started).await,
            // Probes are not counted: the kubelet's every few seconds would drown the reviews.
            (&Method::GET, None, "/healthz") => plain(StatusCode::OK, "ok"),
            (&Method::GET, None, "/readyz") if self.admit.ready() => plain(StatusCode::OK, "ok"),
            (&Method::GET, None, "/readyz") => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the cluster policy is not loaded yet",
            ),
            (_, None, "/healthz" | "/readyz") => method_not_allowed("GET"),
            (_, Some(path), _) => {
                self.count(RequestKind::of_path(path), ReviewVerdict::Error, started);
                method_not_allowed("POST")
            }
            (_, None, _) => {
                self.count(RequestKind::Other, ReviewVerdict::Error, started);
                plain(
                    StatusCode::NOT_FOUND,
                    "not found: the webhook serves POST /approvals, POST /workloads, \
                     GET /healthz and GET /readyz",
                )
            }
        }
    }

    async fn review(
        &self,
        path: &'static str,
        req: Request<Incoming>,
        started: Instant,
    ) -> Response<Full<Bytes>> {
        let kind = RequestKind::of_path(path);
        let review = match read_review(req).await {
            Ok(review) => review,
            Err(rejection) => {
                tracing::debug!(path, status = %rejection.status(), "review rejected");
                self.count(kind, ReviewVerdict::Error, started);
                return rejection;
            }
        };
        let uid = review
            .request
            .as_ref()
            .map(|r| r.uid.clone())
            .unwrap_or_default();
        let (response, verdict) = answer(self.admit.review(path, review).await);
        let elapsed = started.elapsed();
        tracing::debug!(
            path,
            uid,
            verdict = verdict.as_str(),
            ?elapsed,
            "review answered"
        );
        self.metrics.observe(kind, verdict, elapsed);
        response
    }

    fn count(&self, kind: RequestKind, verdict: ReviewVerdict, started: Instant) {
        self.metrics.observe(kind, verdict, started.elapsed());
    }
}

/// The posted AdmissionReview, or the response that refuses it. A refusal is an HTTP error, not
/// an AdmissionResponse, so that the API server applies the webhook's `failurePolicy`.
async fn read_review(
    req: Request<Incoming>,
) -> Result<AdmissionReview<DynamicObject>, Response<Full<Bytes>>> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes");
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        Ok(Err(e)) => {
            let message = format!("cannot read the request body: {e}");
            return Err(plain(StatusCode::BAD_REQUEST, message));
        }
        Err(_) => {
            let message = format!("the request body did not arrive within {BODY_TIMEOUT:?}");
            return Err(plain(StatusCode::REQUEST_TIMEOUT, message));
        }
    };
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(&bytes).map_err(|e| {
        let message = format!("the body is not an AdmissionReview: {e}");
        plain(StatusCode::BAD_REQUEST, message)
    })?;
    if review.types.kind != META_KIND || review.types.api_version != META_API_VERSION_V1 {
        let message = format!(
            "expected a {META_API_VERSION_V1} {META_KIND}, got {} {} \
             (list only v1 in the webhook's admissionReviewVersions)",
            review.types.api_version, review.types.kind
        );
        return Err(plain(StatusCode::BAD_REQUEST, message));
    }
    if review.request.is_none() {
        let message = "the AdmissionReview has no request";
        return Err(plain(StatusCode::BAD_REQUEST, message));
    }
    Ok(review)
}

/// The HTTP response for the admission logic's answer, and the verdict it counts as.
fn answer(review: AdmissionReview<DynamicObject>) -> (Response<Full<Bytes>>, ReviewVerdict) {
    let verdict = match &review.response {
        Some(response) if response.allowed => ReviewVerdict::Allowed,
        Some(_) => ReviewVerdict::Denied,
        None => {
            tracing::error!("the admission logic answered an AdmissionReview without a response");
            let message = "the webhook produced no admission response";
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, message),
                ReviewVerdict::Error,
            );
        }
    };
    match serde_json::to_vec(&review) {
        Ok(body) => (with_type(StatusCode::OK, "application/json", body), verdict),
        Err(e) => {
            tracing::error!("cannot serialise the AdmissionReview response: {e}");
            let message = format!("cannot serialise the admission response: {e}");
            (
                plain(StatusCode::INTERNAL_SERVER_ERROR, message),
                ReviewVerdict::Error,
            )
        }
    }
}

/// The metrics listener's one route.
async fn metrics_response(req: Request<Incoming>, metrics: Metrics) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            with_type(StatusCode::OK, metrics::CONTENT_TYPE, metrics.encode())
        }
        (_, "/metrics") => method_not_allowed("GET"),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are on GET /metrics",
        ),
    }
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    let mut text = text.into();
    text.push('\n');
    with_type(status, "text/plain; charset=utf-8", text)
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, http::HeaderValue::from_static(allow));
    response
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let value = http::HeaderValue::from_static(content_type);
    response.headers_mut().insert(CONTENT_TYPE, value);
    response
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::BodyExt;
    use kube::core::admission::AdmissionResponse;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use sha2::{Digest, Sha256};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    use super::*;
    use crate::webhook::tls::testing::TestCa;

    /// Allows everything but objects named `forbidden`; answers `slow` objects after a pause;
    /// echoes the path it was given as a warning.
    struct StubAdmit {
        ready: AtomicBool,
    }

    impl Admit for StubAdmit {
        async fn review(
            &self,
            path: &str,
            review: AdmissionReview<DynamicObject>,
        ) -> AdmissionReview<DynamicObject> {
            let request = review
                .request
                .expect("the server passes only reviews with a request");
            if request.name == "slow" {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            let mut response = AdmissionResponse::from(&request);
            response.warnings = Some(vec![format!("reviewed at {path}")]);
            if request.name == "forbidden" {
                response = response.deny("forbidden by the stub");
            }
            response.into_review()
        }

        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
    }

    fn review_body(name: &str) -> String {
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": format!("uid-{name}"),
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": name,
                "namespace": "production",
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["approvers"]},
                "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}},
                "oldObject": null,
            }
        })
        .to_string()
    }

    struct TestServer {
        https: SocketAddr,
        metrics: SocketAddr,
        ca: TestCa,
        admit: Arc<StubAdmit>,
        files: (tempfile::TempDir, PathBuf, PathBuf),
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    }

    async fn start() -> (TestServer, CertificateDer<'static>) {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let pair = ca.server_pair();
        pair.write(&cert, &key, 100);
        let tls = tls::acceptor(Arc::new(ReloadingCert::load(&cert, &key).expect("load")))
            .expect("acceptor");
        let listeners = Listeners {
            https: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            metrics: Some(TcpListener::bind("127.0.0.1:0").await.expect("bind")),
        };
        let https = listeners.https.local_addr().expect("addr");
        let metrics = listeners
            .metrics
            .as_ref()
            .expect("metrics")
            .local_addr()
            .expect("addr");
        let admit = Arc::new(StubAdmit {
            ready: AtomicBool::new(false),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let served = serve_on(listeners, tls, admit.clone(), Metrics::new(), shutdown);
        let task = tokio::spawn(served);
        let files = (dir, cert, key);
        let server = TestServer {
            https,
            metrics,
            ca,
            admit,
            files,
            stop: Some(stop),
            task,
        };
        (server, pair.der)
    }

    fn fingerprint(der: &[u8]) -> String {
        hex::encode(Sha256::digest(der))
    }

    /// A TLS connection trusting only the test CA, offering `alpn`.
    async fn connect(server: &TestServer, alpn: &[u8]) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(server.ca.der()).expect("CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(server.https).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }

    fn peer_fingerprint(stream: &TlsStream<TcpStream>) -> String {
        let certs = stream
            .get_ref()
            .1
            .peer_certificates()
            .expect("server certificate");
        fingerprint(&certs[0])
    }

    fn request(method: Method, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body.into()))
            .expect("request")
    }

    /// One HTTP/1.1 request on a connection of its own: status and body.
    async fn send<I>(io: I, req: Request<Full<Bytes>>) -> (StatusCode, String)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        let response = sender.send_request(req).await.expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn https(server: &TestServer, req: Request<Full<Bytes>>) -> (StatusCode, String) {
        send(connect(server, b"http/1.1").await, req).await
    }

    async fn scrape(server: &TestServer) -> String {
        let tcp = TcpStream::connect(server.metrics).await.expect("connect");
        let (status, text) = send(tcp, request(Method::GET, "/metrics", "")).await;
        assert_eq!(status, StatusCode::OK);
        text
    }

    fn parse_review(body: &str) -> AdmissionResponse {
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_str(body).expect("an AdmissionReview");
        review.response.expect("a response")
    }

    #[tokio::test]
    async fn answers_reviews_with_the_admission_logic_and_counts_them() {
        let (server, _) = start().await;
        let (status, body) = https(
            &server,
            request(Method::POST, "/approvals", review_body("ok")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer = parse_review(&body);
        assert!(answer.allowed);
        assert_eq!(answer.uid, "uid-ok");
        assert_eq!(
            answer.warnings,
            Some(vec!["reviewed at /approvals".to_string()])
        );

        let (status, body) = https(
            &server,
            request(Method::POST, "/workloads", review_body("forbidden")),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer = parse_review(&body);
        assert!(!answer.allowed);
        assert_eq!(answer.result.message, "forbidden by the stub");

        let text = scrape(&server).await;
        for line in [
            r#"kubectl_release_webhook_requests_total{kind="approval",verdict="allowed"} 1"#,
            r#"kubectl_release_webhook_requests_total{kind="workload",verdict="denied"} 1"#,
            r#"kubectl_release_webhook_request_duration_seconds_count{kind="approval"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }

    #[tokio::test]
    async fn speaks_http2_when_the_client_offers_it() {
        let (server, _) = start().await;
        let stream = connect(&server, b"h2").await;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let req = request(Method::POST, "/workloads", review_body("ok"));
        let response = sender.send_request(req).await.expect("response");
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(parse_review(&String::from_utf8_lossy(&body)).allowed);
    }

    #[tokio::test]
    async fn refuses_what_is_not_an_admission_review() {
        let (server, _) = start().await;
        let (status, body) = https(&server, request(Method::POST, "/workloads", "{not json")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("not an AdmissionReview"), "{body}");

        let no_request = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        let (status, body) = https(&server, request(Method::POST, "/approvals", no_request)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("no request"), "{body}");

        let v1beta1 = review_body("ok").replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        let (status, body) = https(&server, request(Method::POST, "/approvals", v1beta1)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("expected a admission.k8s.io/v1"), "{body}");

        let huge = vec![b' '; MAX_BODY_BYTES + 1];
        let (status, _) = https(&server, request(Method::POST, "/approvals", huge)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

        let text = scrape(&server).await;
        let errors = r#"kubectl_release_webhook_requests_total{kind="workload",verdict="error"} 1"#;
        assert!(text.contains(errors), "{text}");
        let errors = r#"kubectl_release_webhook_requests_total{kind="approval",verdict="error"} 3"#;
        assert!(text.contains(errors), "{text}");
    }

    #[tokio::test]
    async fn routes_probes_and_refuses_unknown_paths_and_methods() {
        let (server, _) = start().await;
        let get = |path: &str| request(Method::GET, path, "");
        assert_eq!(
            https(&server, get("/healthz")).await,
            (StatusCode::OK, "ok\n".into())
        );
        let (status, body) = https(&server, get("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        server.admit.ready.store(true, Ordering::SeqCst);
        assert_eq!(https(&server, get("/readyz")).await.0, StatusCode::OK);

        assert_eq!(
            https(&server, get("/nowhere")).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            https(&server, get("/approvals")).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let post_probe = request(Method::POST, "/healthz", "");
        assert_eq!(
            https(&server, post_probe).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );

        let tcp = TcpStream::connect(server.metrics).await.expect("connect");
        assert_eq!(send(tcp, get("/other")).await.0, StatusCode::NOT_FOUND);
        let text = scrape(&server).await;
        let other = r#"kubectl_release_webhook_requests_total{kind="other",verdict="error"} 1"#;
        assert!(text.contains(other), "{text}");
    }

    #[tokio::test]
    async fn the_next_connection_sees_a_replaced_certificate() {
        let (server, first) = start().await;
        let stream = connect(&server, b"http/1.1").await;
        assert_eq!(peer_fingerprint(&stream), fingerprint(&first));

        let second = server.ca.server_pair();
        let (_, cert, key) = &server.files;
        second.write(cert, key, 10);
        let stream = connect(&server, b"http/1.1").await;
        assert_eq!(peer_fingerprint(&stream), fingerprint(&second.der));
        let (status, _) = send(stream, request(Method::GET, "/healthz", "")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_silent_or_broken_client_does_not_block_others() {
        let (server, _) = start().await;
        // Connected, never says a word: its handshake waits in its own task.
        let _silent = TcpStream::connect(server.https).await.expect("connect");
        let mut garbage = TcpStream::connect(server.https).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut garbage, b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let probe = https(&server, request(Method::GET, "/healthz", ""));
        let (status, _) = tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .expect("answered while other clients stall");
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let (mut server, _) = start().await;
        let stream = connect(&server, b"http/1.1").await;
        let slow = tokio::spawn(send(
            stream,
            request(Method::POST, "/approvals", review_body("slow")),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        server
            .stop
            .take()
            .expect("stop")
            .send(())
            .expect("server running");

        let (status, body) = slow.await.expect("slow request");
        assert_eq!(status, StatusCode::OK);
        assert!(parse_review(&body).allowed);
        let stopped = tokio::time::timeout(Duration::from_secs(3), &mut server.task).await;
        stopped
            .expect("stopped in time")
            .expect("task")
            .expect("serve_on");
        assert!(
            TcpStream::connect(server.https).await.is_err(),
            "still accepting"
        );
    }
}
