//! The admin HTTP API of a running `weir run`: health, the pipeline's components with their
//! throughput and backpressure, the plugins with their versions, hot swap (reload, upload),
//! rollback, canary and promote, and Prometheus metrics at `/metrics`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | liveness (never needs a token) |
//! | GET | `/pipelines` | components: events in/out, rates, backpressure, errors, state |
//! | GET | `/plugins`, `/plugins/{name}` | versions, uses, calls, traps, swaps, canary, events |
//! | POST | `/plugins/{name}/reload` | new version: empty body = re-read its file; `{"path": ...}`; or the component's bytes (upload) |
//! | POST | `/plugins/{name}/rollback` | restore the previous version |
//! | POST | `/plugins/{name}/canary?sample=0.1` | start a canary (`{"path": ...}` or bytes) |
//! | GET, DELETE | `/plugins/{name}/canary` | its report; stop it |
//! | POST | `/plugins/{name}/promote` | the canary becomes the current version |
//! | GET | `/metrics` | Prometheus text format |
//! | POST | `/savepoints?stop=true` | take a savepoint now (and stop the job after it); answers its id and path |
//! | GET | `/checkpoints` | checkpoint history (id, trigger time, duration, alignment, size per step, status), counters, the restored checkpoint |
//!
//! Security, checked in this order before a handler runs or a body is read (`guard`):
//! - Browsers are refused: a request with an `Origin` or `Sec-Fetch-*` header is a web page's
//!   (a cross-site `text/plain` POST from any page once swapped a plugin), and on a loopback
//!   address the `Host` must name the loopback (`127.0.0.1`, `localhost`, `[::1]`), so a page
//!   that rebinds its DNS name to 127.0.0.1 cannot read the API either.
//! - The API binds to 127.0.0.1 by default; bound to any other address it refuses to start
//!   without a bearer token. With a token, every request but `/health` must carry
//!   `Authorization: Bearer <token>`. Without one, the API is read-only: every request that
//!   changes the job (reload, upload, rollback, canary, promote) needs the token. The watched
//!   plugins directory is the token-free way to publish a version.
//! - Bodies: 64 KiB on every route; only the two routes that take component bytes (reload and
//!   canary) accept up to [`MAX_UPLOAD`], and only once authenticated. A `Content-Length` above
//!   the limit is refused before reading.
//! - A version named by path must be a regular file of at most [`MAX_UPLOAD`] bytes inside the
//!   watched plugins directory or the directory of the plugin's declared file; every other path
//!   gets the same answer, whether it exists or not. A refused upload is removed again.

// Handlers return early with a ready `Response`; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod prometheus;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use weir_engine::graph::Role;
use weir_engine::metrics::{MetricsSnapshot, PipelineMetrics};
use weir_plugin::{PluginHandle, PluginRegistry, SwapError, Version};

/// Default address of the admin API.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8686";

/// Largest component accepted by upload (or named by path).
pub const MAX_UPLOAD: usize = 256 << 20;

/// Largest body of every other request.
pub const MAX_BODY: usize = 64 << 10;

/// Why the API did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "the admin API on {0} would be reachable from other machines: set a bearer token (--admin-token or WEIR_ADMIN_TOKEN), or bind to 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// The address is taken or not ours.
    #[error("cannot bind the admin API to {address}: {reason}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// What the API serves.
#[derive(Debug, Clone)]
pub struct AdminContext {
    /// The pipeline file.
    pub file: PathBuf,
    /// `(name, role, type, parallelism)` of every component, in pipeline order.
    pub components: Vec<(String, Role, String, usize)>,
    /// Live counters.
    pub metrics: PipelineMetrics,
    /// The job's plugins.
    pub plugins: Arc<PluginRegistry>,
    /// The job's dimension tables.
    pub tables: Arc<weir_lookup::TableCatalog>,
    /// The watched plugins directory, if any (versions named by path may come from there).
    pub plugins_dir: Option<PathBuf>,
    /// `settings.checkpoint.timeout` when the job takes checkpoints (bounds a savepoint's wait).
    pub checkpoint_timeout: Option<Duration>,
    /// Cancelled to stop the job (stop-with-savepoint), when the runner gave it.
    pub stop: Option<CancellationToken>,
}

impl AdminContext {
    /// The context of a loaded pipeline and its metrics.
    pub fn new(pipeline: &weir_pipeline::Pipeline, metrics: &PipelineMetrics) -> Self {
        Self {
            file: pipeline.graph.file.clone(),
            components: pipeline
                .graph
                .components
                .iter()
                .map(|c| (c.name.clone(), c.role, c.kind.clone(), c.parallelism))
                .collect(),
            metrics: metrics.clone(),
            plugins: Arc::clone(&pipeline.plugins),
            tables: Arc::clone(&pipeline.tables),
            plugins_dir: None,
            checkpoint_timeout: pipeline.graph.settings.checkpoint.as_ref().map(|checkpoint| checkpoint.timeout),
            stop: None,
        }
    }

    /// Also accepts versions named by path from the watched plugins directory `dir`.
    #[must_use]
    pub fn with_plugins_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.plugins_dir = dir;
        self
    }

    /// The job's stop token, for stop-with-savepoint.
    pub fn with_stop(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }
}

/// Counters one second apart, for rates.
#[derive(Debug, Default)]
struct Rates {
    previous: Option<(Instant, Vec<MetricsSnapshot>)>,
    latest: Option<(Instant, Vec<MetricsSnapshot>)>,
}

#[derive(Clone)]
struct AppState {
    context: Arc<AdminContext>,
    token: Option<Arc<str>>,
    started: Instant,
    rates: Arc<Mutex<Rates>>,
    /// Bound to a loopback address: the `Host` header must name the loopback.
    loopback: bool,
}

/// Binds the API and serves it until `stop`; returns the bound address.
///
/// # Errors
/// [`AdminError::TokenRequired`] for a non-loopback address without a token, and bind failures.
pub async fn serve(
    address: SocketAddr,
    token: Option<String>,
    context: AdminContext,
    stop: CancellationToken,
) -> Result<SocketAddr, AdminError> {
    let token = token.filter(|t| !t.is_empty());
    if !address.ip().is_loopback() && token.is_none() {
        return Err(AdminError::TokenRequired(address));
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| AdminError::Bind { address, reason: err.to_string() })?;
    let bound = listener.local_addr().map_err(|err| AdminError::Bind { address, reason: err.to_string() })?;
    let state = AppState {
        context: Arc::new(context),
        token: token.map(Arc::from),
        started: Instant::now(),
        rates: Arc::default(),
        loopback: bound.ip().is_loopback(),
    };
    tokio::spawn(sample_rates(state.clone(), stop.clone()));
    let app = Router::new()
        .route("/health", get(health))
        .route("/pipelines", get(pipelines))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}", get(plugin))
        .route("/plugins/{name}/reload", post(reload).layer(DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/plugins/{name}/rollback", post(rollback))
        .route(
            "/plugins/{name}/canary",
            post(canary_start).layer(DefaultBodyLimit::max(MAX_UPLOAD)).get(canary_report).delete(canary_stop),
        )
        .route("/plugins/{name}/promote", post(promote))
        .route("/metrics", get(metrics))
        .route("/checkpoints", get(checkpoints))
        .route("/savepoints", post(savepoint))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the admin API stopped");
        }
    });
    tracing::info!(address = %bound, "admin API listening");
    Ok(bound)
}

async fn sample_rates(state: AppState, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let snapshot: Vec<MetricsSnapshot> =
            state.context.metrics.components.iter().map(|(_, _, m)| m.snapshot()).collect();
        let mut rates = state.rates.lock().unwrap_or_else(PoisonError::into_inner);
        rates.previous = rates.latest.take();
        rates.latest = Some((Instant::now(), snapshot));
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Runs before every handler, before any body is read: refuses browsers, foreign `Host`s on a
/// loopback address, requests without the token where one is needed, and bodies above their
/// route's limit by `Content-Length`.
async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let from_browser =
        headers.contains_key(header::ORIGIN) || headers.keys().any(|name| name.as_str().starts_with("sec-fetch-"));
    if from_browser {
        return error(StatusCode::FORBIDDEN, "the admin API does not answer web pages");
    }
    if state.loopback && !host_is_loopback(headers) {
        return error(StatusCode::MISDIRECTED_REQUEST, "the admin API answers only requests for a loopback host");
    }
    let read_only = request.method() == axum::http::Method::GET;
    if request.uri().path() != "/health"
        && let Err(denied) = authorize(&state, headers, !read_only)
    {
        return denied;
    }
    let takes_components = request.method() == axum::http::Method::POST
        && (request.uri().path().ends_with("/reload") || request.uri().path().ends_with("/canary"));
    let limit = if takes_components { MAX_UPLOAD } else { MAX_BODY };
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if length.is_some_and(|length| length > limit as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than this route's limit ({limit} bytes)"),
        );
    }
    next.run(request).await
}

/// Whether the `Host` header names a loopback address (any port).
fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|value| value.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(name, _)| name),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks the bearer token; requests that change the job need one even on loopback.
fn authorize(state: &AppState, headers: &HeaderMap, changes_the_job: bool) -> Result<(), Response> {
    let Some(token) = &state.token else {
        return if changes_the_job {
            Err(error(
                StatusCode::FORBIDDEN,
                "changing the job through the admin API (plugins, savepoints) needs a bearer token: start weir \
                 with --admin-token (or WEIR_ADMIN_TOKEN); new plugin versions can also be published into the \
                 watched plugins directory",
            ))
        } else {
            Ok(())
        };
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "wrong bearer token")),
        None => Err(error(StatusCode::UNAUTHORIZED, "this admin API needs `Authorization: Bearer <token>`")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(json!({ "status": "ok", "uptime_seconds": state.started.elapsed().as_secs_f64() })).into_response()
}

async fn pipelines(State(state): State<AppState>) -> Response {
    let context = &state.context;
    let rates = state.rates.lock().unwrap_or_else(PoisonError::into_inner);
    let window = match (&rates.previous, &rates.latest) {
        (Some((t0, before)), Some((t1, after))) => Some((t1.duration_since(*t0).as_secs_f64(), before, after)),
        _ => None,
    };
    let components: Vec<Value> = context
        .components
        .iter()
        .zip(&context.metrics.components)
        .enumerate()
        .map(|(i, ((name, role, kind, parallelism), (_, _, metrics)))| {
            let now = metrics.snapshot();
            #[allow(clippy::cast_precision_loss)]
            let (received_rate, sent_rate, backpressure) = match window {
                Some((seconds, before, after)) if seconds > 0.0 => {
                    let (b, a) = (&before[i], &after[i]);
                    let blocked = a.blocked_micros.saturating_sub(b.blocked_micros) as f64 / 1e6;
                    (
                        a.received_events.saturating_sub(b.received_events) as f64 / seconds,
                        a.sent_events.saturating_sub(b.sent_events) as f64 / seconds,
                        (blocked / (seconds * *parallelism as f64)).min(1.0),
                    )
                }
                _ => (0.0, 0.0, 0.0),
            };
            json!({
                "name": name,
                "role": role,
                "type": kind,
                "parallelism": parallelism,
                "received_events": now.received_events,
                "sent_events": now.sent_events,
                "received_events_per_second": received_rate,
                "sent_events_per_second": sent_rate,
                "backpressure": backpressure,
                "errors": now.errors,
                "discarded_events": now.discarded_events,
                "dead_lettered_events": now.dead_lettered_events,
                "late_events": now.late_events,
                "state_bytes": now.state_bytes,
                "unacknowledged_events": now.unacknowledged_events,
            })
        })
        .collect();
    axum::Json(json!([{ "file": context.file.display().to_string(), "components": components }])).into_response()
}

fn version_json(version: &Version) -> Value {
    let stats = &version.stats;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let micros = |q: f64| stats.call_seconds.quantile(q).map(|d| d.as_micros());
    json!({
        "version": version.label(),
        "declared_version": version.plugin.info.version,
        "hash": version.plugin.hash,
        "generation": version.generation,
        "origin": version.origin,
        "installed_at": version.installed_at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
        "calls": load(&stats.calls),
        "rows": load(&stats.rows),
        "traps": load(&stats.traps),
        "call_p50_us_at_most": micros(0.5),
        "call_p99_us_at_most": micros(0.99),
    })
}

fn plugin_json(handle: &PluginHandle) -> Value {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let uses: Vec<Value> = handle
        .uses()
        .iter()
        .map(|u| {
            json!({
                "user": u.user,
                "function": u.function,
                "signature": u.shape.to_string(),
                "active": u.active.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    json!({
        "name": handle.name(),
        "kind": format!("{:?}", handle.kind()).to_lowercase(),
        "path": handle.path.display().to_string(),
        "pinned": handle.pinned(),
        "current": version_json(&handle.current()),
        "history": handle.history().iter().rev().map(|v| version_json(v)).collect::<Vec<_>>(),
        "uses": uses,
        "swaps": load(&handle.stats.swaps),
        "rollbacks": load(&handle.stats.rollbacks),
        "automatic_rollbacks": load(&handle.stats.automatic_rollbacks),
        "refused": load(&handle.stats.refused),
        "rollback_policy": { "max_traps": handle.policy.max_traps, "window_seconds": handle.policy.window.as_secs_f64() },
        "canary": handle.canary().map(|c| c.report()),
        "events": handle.events(),
    })
}

async fn plugins(State(state): State<AppState>) -> Response {
    let list: Vec<Value> = state.context.plugins.handles().iter().map(|h| plugin_json(h)).collect();
    axum::Json(list).into_response()
}

fn handle_of(state: &AppState, name: &str) -> Result<Arc<PluginHandle>, Response> {
    state.context.plugins.get(name).ok_or_else(|| error(StatusCode::NOT_FOUND, format!("unknown plugin `{name}`")))
}

async fn plugin(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match handle_of(&state, &name) {
        Ok(handle) => axum::Json(plugin_json(&handle)).into_response(),
        Err(response) => response,
    }
}

/// Where a new version comes from: a path on this machine, or uploaded bytes.
enum Candidate {
    Current,
    Path(PathBuf),
    Upload(Bytes),
}

fn candidate(headers: &HeaderMap, body: Bytes) -> Result<Candidate, Response> {
    let wasm = headers.get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/wasm"));
    if wasm || body.starts_with(b"\0asm") {
        return Ok(Candidate::Upload(body));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Candidate::Current);
    }
    #[derive(serde::Deserialize)]
    struct PathBody {
        path: PathBuf,
    }
    serde_json::from_slice::<PathBody>(&body)
        .map(|b| Candidate::Path(b.path))
        .map_err(|err| error(StatusCode::BAD_REQUEST, format!("expected {{\"path\": ...}} or component bytes: {err}")))
}

/// The plugin and the new version a request names (the guard has authorized the request).
fn candidate_request(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    body: Bytes,
) -> Result<(Arc<PluginHandle>, Candidate), Response> {
    let candidate = candidate(headers, body)?;
    Ok((handle_of(state, name)?, candidate))
}

/// The answer for registry work done on the blocking pool.
fn blocking_answer<T>(
    joined: Result<Result<T, SwapError>, tokio::task::JoinError>,
    answer: impl FnOnce(T) -> Value,
) -> Response {
    match joined {
        Ok(Ok(value)) => axum::Json(answer(value)).into_response(),
        Ok(Err(err)) => swap_error(&err),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// A loaded candidate version, and the file an upload was stored in (removed again if the
/// version is refused).
struct Loaded {
    plugin: weir_plugin::Plugin,
    origin: String,
    upload: Option<PathBuf>,
}

impl Loaded {
    /// Forgets a refused upload.
    fn discard(upload: Option<&PathBuf>) {
        if let Some(file) = upload {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Loads the candidate off the async workers (compiling takes a while).
async fn load_candidate(state: &AppState, handle: &PluginHandle, candidate: Candidate) -> Result<Loaded, SwapError> {
    let unreadable = |path: &std::path::Path, reason: String| {
        SwapError::Load(weir_plugin::PluginError::Read { path: path.to_path_buf(), reason })
    };
    let (path, origin, upload) = match candidate {
        Candidate::Current => (handle.path.clone(), format!("reload {}", handle.path.display()), None),
        Candidate::Path(path) => {
            let allowed = allowed_version_file(state, handle, &path).map_err(|reason| unreadable(&path, reason))?;
            (allowed, format!("reload {}", path.display()), None)
        }
        Candidate::Upload(bytes) => {
            let stored = store_upload(&bytes).map_err(|err| unreadable("upload".as_ref(), err.to_string()))?;
            (stored.clone(), "upload".into(), Some(stored))
        }
    };
    let limits = handle.limits;
    let loaded = tokio::task::spawn_blocking(move || weir_plugin::load(&path, limits)).await;
    let plugin = match loaded {
        Ok(plugin) => plugin.inspect_err(|err| handle.refuse_unloadable(err)).map_err(SwapError::Load),
        Err(err) => Err(unreadable("upload".as_ref(), err.to_string())),
    };
    match plugin {
        Ok(plugin) => Ok(Loaded { plugin, origin, upload }),
        Err(err) => {
            Loaded::discard(upload.as_ref());
            Err(err)
        }
    }
}

/// A version named by path: a regular file of at most [`MAX_UPLOAD`] bytes inside the watched
/// plugins directory or the directory of the plugin's declared file. Every refusal gives the
/// same reason, so the answer does not tell whether a path exists.
fn allowed_version_file(state: &AppState, handle: &PluginHandle, path: &std::path::Path) -> Result<PathBuf, String> {
    let directories: Vec<PathBuf> = state
        .context
        .plugins_dir
        .as_deref()
        .into_iter()
        .chain(handle.path.parent())
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .collect();
    let refused = || {
        let listed: Vec<String> = directories.iter().map(|dir| dir.display().to_string()).collect();
        format!(
            "a new version named by path must be a regular file of at most {MAX_UPLOAD} bytes in {}",
            listed.join(" or ")
        )
    };
    let resolved = std::fs::canonicalize(path).map_err(|_| refused())?;
    if !directories.iter().any(|dir| resolved.starts_with(dir)) {
        return Err(refused());
    }
    let metadata = std::fs::metadata(&resolved).map_err(|_| refused())?;
    if !metadata.is_file() || metadata.len() > MAX_UPLOAD as u64 {
        return Err(refused());
    }
    Ok(resolved)
}

/// Keeps an uploaded component under the cache directory, named by its hash.
fn store_upload(bytes: &[u8]) -> std::io::Result<PathBuf> {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    let dir = weir_plugin::runtime::cache_dir().join("uploads");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{hash}.wasm"));
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

fn swap_error(err: &SwapError) -> Response {
    let status = match err {
        SwapError::Unknown(_) => StatusCode::NOT_FOUND,
        SwapError::Load(_) | SwapError::Unsupported { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        SwapError::Incompatible { .. }
        | SwapError::Pinned { .. }
        | SwapError::NoHistory(_)
        | SwapError::NoCanary(_) => StatusCode::CONFLICT,
    };
    error(status, err.to_string())
}

async fn reload(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> Response {
    let (handle, candidate) = match candidate_request(&state, &headers, &name, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let started = Instant::now();
    let Loaded { plugin, origin, upload } = match load_candidate(&state, &handle, candidate).await {
        Ok(loaded) => loaded,
        Err(err) => return swap_error(&err),
    };
    let installed = tokio::task::spawn_blocking(move || handle.install(plugin, origin)).await;
    if !matches!(installed, Ok(Ok(_))) {
        Loaded::discard(upload.as_ref());
    }
    blocking_answer(
        installed,
        |version| json!({ "plugin": name, "serving": version_json(&version), "seconds": started.elapsed().as_secs_f64() }),
    )
}

async fn rollback(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    let handle = match handle_of(&state, &name) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    match handle.rollback() {
        Ok(version) => axum::Json(json!({ "plugin": name, "serving": version_json(&version) })).into_response(),
        Err(err) => swap_error(&err),
    }
}

#[derive(Debug, serde::Deserialize)]
struct CanaryQuery {
    /// Fraction of batches to compare.
    sample: Option<f64>,
}

async fn canary_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<CanaryQuery>,
    body: Bytes,
) -> Response {
    let (handle, candidate) = match candidate_request(&state, &headers, &name, body) {
        Ok((_, Candidate::Current)) => {
            return error(StatusCode::BAD_REQUEST, "a canary needs a new version: {\"path\": ...} or component bytes");
        }
        Ok(request) => request,
        Err(response) => return response,
    };
    let sample = query.sample.unwrap_or(0.1);
    if !(sample > 0.0 && sample <= 1.0) {
        return error(StatusCode::BAD_REQUEST, "`sample` is a fraction of batches in (0, 1]");
    }
    let Loaded { plugin, upload, .. } = match load_candidate(&state, &handle, candidate).await {
        Ok(loaded) => loaded,
        Err(err) => return swap_error(&err),
    };
    let started = tokio::task::spawn_blocking(move || handle.start_canary(plugin, sample)).await;
    if !matches!(started, Ok(Ok(_))) {
        Loaded::discard(upload.as_ref());
    }
    blocking_answer(started, |canary| json!({ "plugin": name, "canary": canary.report() }))
}

async fn canary_report(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    let handle = match handle_of(&state, &name) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    match handle.canary() {
        Some(canary) => axum::Json(json!({ "plugin": name, "canary": canary.report() })).into_response(),
        None => swap_error(&SwapError::NoCanary(name)),
    }
}

async fn canary_stop(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    let handle = match handle_of(&state, &name) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    match handle.stop_canary() {
        Ok(canary) => axum::Json(json!({ "plugin": name, "canary": canary.report() })).into_response(),
        Err(err) => swap_error(&err),
    }
}

async fn promote(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    let handle = match handle_of(&state, &name) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let report = handle.canary().map(|c| c.report());
    let promoted = tokio::task::spawn_blocking(move || handle.promote()).await;
    blocking_answer(promoted, |version| json!({ "plugin": name, "serving": version_json(&version), "canary": report }))
}

/// Checkpoint history (newest last), counters and the checkpoint the job restored.
async fn checkpoints(State(state): State<AppState>) -> Response {
    let stats = &state.context.metrics.checkpoints;
    let restored = stats.restored().map(|(id, completed_at_ms)| {
        json!({ "id": id, "age_seconds": weir_engine::coordinator::age(completed_at_ms).as_secs() })
    });
    axum::Json(json!({
        "enabled": state.context.checkpoint_timeout.is_some(),
        "completed": stats.completed.load(std::sync::atomic::Ordering::Relaxed),
        "failed": stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        "restored": restored,
        "history": stats.history(),
    }))
    .into_response()
}

/// `?stop=true`: stop the job once the savepoint is complete (Flink's stop-with-savepoint).
#[derive(Debug, serde::Deserialize)]
struct SavepointQuery {
    #[serde(default)]
    stop: bool,
}

/// Takes a savepoint now and answers with its id and path once it is complete.
async fn savepoint(State(state): State<AppState>, Query(query): Query<SavepointQuery>) -> Response {
    let context = &state.context;
    let Some(timeout) = context.checkpoint_timeout else {
        return error(StatusCode::CONFLICT, "the job takes no checkpoints (add `settings.checkpoint`)");
    };
    let answer = context.metrics.checkpoints.request_savepoint();
    let record = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(Ok(record))) => record,
        Ok(Ok(Err(reason))) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("savepoint failed: {reason}")),
        Ok(Err(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "the job ended before the savepoint completed"),
        Err(_) => {
            return error(StatusCode::GATEWAY_TIMEOUT, "the savepoint did not complete within the checkpoint timeout");
        }
    };
    let stopping = query.stop
        && context.stop.as_ref().is_some_and(|stop| {
            stop.cancel();
            true
        });
    axum::Json(json!({ "id": record.id, "path": record.path, "bytes": record.size_bytes, "stopping": stopping }))
        .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = prometheus::render(&state.context);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
