//! `http` source: an ingest endpoint that accepts JSON lines or JSON arrays by POST.
//!
//! ```yaml
//! sources:
//!   events:
//!     type: http
//!     listen: 127.0.0.1:8080
//!     path: /ingest                  # default /ingest
//!     max_body: 4MiB                 # larger requests get 413
//!     format: json                   # a body is JSON lines, or one JSON array of objects
//!     schema: { device: string, temp: float64 }
//!     on_error: dead-letter          # bad records: fail / skip / dead-letter (like any source)
//!     dead_letter: rejected
//! ```
//!
//! Backpressure: requests queue in a small bounded channel, and a request takes its place in the
//! queue *before* its body is read: when the queue is full the endpoint answers `429 Too Many
//! Requests` with `Retry-After: 1` without reading the body, and a `Content-Length` above
//! `max_body` gets `413` without the body being kept (300 clients posting 4 MB once drove memory
//! to 984 MB; a body up to 1 MiB is read and dropped first, so that the client, still sending,
//! sees the answer rather than a broken pipe). A
//! request is answered `200 {"accepted": n}` only after every sink confirmed its records (so a
//! 200 means durable: at-least-once with client retries), or `503` if the pipeline failed or is
//! stopping.
//!
//! A bad record is the sender's error: under `on_error: fail` (the default) the request is
//! answered `400` naming the record and none of its records are taken, and the job goes on
//! serving every other client. `skip` and `dead-letter` take the request's good records and
//! handle the bad ones as any source does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytesize::ByteSize;
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::pump::{emit, end_and_drain};
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_engine::errors::ErrorPolicy;
use weir_formats::payload::{Envelope, MessageFormat, MessageLayout, MetaType, MetaValue, PayloadOptions};

const METADATA: &[(&str, MetaType)] = &[("received_at", MetaType::TimestampMs), ("remote", MetaType::Utf8)];

/// Requests that may wait for the pipeline before new ones get 429.
const QUEUED_REQUESTS: usize = 4;

/// `http` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address to listen on.
    pub listen: Spanned<String>,
    /// Endpoint path.
    #[serde(default = "default_path")]
    pub path: String,
    /// Largest accepted body.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

fn default_path() -> String {
    "/ingest".into()
}

fn default_max_body() -> ByteSize {
    ByteSize::mib(4)
}

impl SourceSpec for HttpSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let listen: SocketAddr = self
            .listen
            .value
            .parse()
            .map_err(|err| SpecIssue::at(&self.listen.referenced, format!("`listen` must be host:port ({err})")))?;
        if !self.path.starts_with('/') {
            return Err(SpecIssue::at(&self.listen.referenced, "`path` must start with `/`"));
        }
        let layout = self.payload.plan(METADATA)?;
        let factory = HttpSource {
            listen,
            path: self.path.clone(),
            max_body: self.max_body.as_u64() as usize,
            format: self.payload.format,
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct HttpSource {
    listen: SocketAddr,
    path: String,
    max_body: usize,
    format: MessageFormat,
    layout: MessageLayout,
    batch_size: usize,
}

/// One accepted request: its records and where to report the outcome.
struct Ingest {
    records: Vec<Record>,
    done: oneshot::Sender<Answer>,
}

/// How a request ends.
#[derive(Debug)]
enum Answer {
    /// Every sink confirmed its records.
    Accepted,
    /// A record is bad (`on_error: fail`): the sender's error, nothing of the request was taken.
    Rejected(String),
    /// The pipeline failed or stopped before confirming them.
    Unconfirmed,
}

/// One record of a request body.
struct Record {
    bytes: Bytes,
    received_at: i64,
    remote: Arc<str>,
    index: usize,
}

impl Envelope for Record {
    fn payload(&self) -> &[u8] {
        &self.bytes
    }

    fn position(&self) -> String {
        format!("request from {} record {}", self.remote, self.index + 1)
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        match field {
            0 => MetaValue::TimestampMs(Some(self.received_at)),
            _ => MetaValue::Utf8(Some(&self.remote)),
        }
    }
}

#[derive(Clone)]
struct Endpoint {
    queue: mpsc::Sender<Ingest>,
    format: MessageFormat,
    max_body: usize,
}

/// Splits a body into records: a JSON array of values, or one record per non-empty line.
fn split(body: &Bytes, format: MessageFormat) -> Result<Vec<Bytes>, String> {
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    if format == MessageFormat::Json && trimmed.is_some_and(|start| body[start] == b'[') {
        let values: Vec<&serde_json::value::RawValue> =
            serde_json::from_slice(body).map_err(|err| format!("not a JSON array: {err}"))?;
        return Ok(values.into_iter().map(|raw| Bytes::copy_from_slice(raw.get().as_bytes())).collect());
    }
    let mut records = Vec::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())) {
        let line = body.slice(start..end);
        let line = if line.ends_with(b"\r") { line.slice(..line.len() - 1) } else { line };
        if !line.iter().all(u8::is_ascii_whitespace) {
            records.push(line);
        }
        start = end + 1;
        if start > body.len() {
            break;
        }
    }
    Ok(records)
}

async fn ingest(
    State(endpoint): State<Endpoint>,
    axum::extract::ConnectInfo(remote): axum::extract::ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let length = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = length.filter(|length| *length > endpoint.max_body as u64) {
        // A client still sending its body when the connection closes sees a broken pipe, not the
        // 413: a body of moderate size is read and dropped first (never held), a huge one is not.
        if length <= DISCARD_AT_MOST {
            let mut chunks = request.into_body().into_data_stream();
            let _ = tokio::time::timeout(DISCARD_TIME, async { while let Some(Ok(_)) = chunks.next().await {} }).await;
        }
        return too_large(endpoint.max_body);
    }
    // A place in the queue before the body is read: a busy pipeline reads no bodies.
    let permit = match endpoint.queue.try_reserve() {
        Ok(permit) => permit,
        Err(mpsc::error::TrySendError::Full(())) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "pipeline is busy; retry later").into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(mpsc::error::TrySendError::Closed(())) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "pipeline is stopping").into_response();
        }
    };
    let body = match axum::body::to_bytes(request.into_body(), endpoint.max_body).await {
        Ok(body) => body,
        Err(_) => return too_large(endpoint.max_body),
    };
    let records = match split(&body, endpoint.format) {
        Ok(records) => records,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    let count = records.len();
    let received_at = chrono::Utc::now().timestamp_millis();
    let remote: Arc<str> = Arc::from(remote.to_string());
    let records = records
        .into_iter()
        .enumerate()
        .map(|(index, bytes)| Record { bytes, received_at, remote: Arc::clone(&remote), index })
        .collect();
    let (done, outcome) = oneshot::channel();
    permit.send(Ingest { records, done });
    match outcome.await {
        Ok(Answer::Accepted) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], format!("{{\"accepted\":{count}}}"))
                .into_response()
        }
        Ok(Answer::Rejected(reason)) => (StatusCode::BAD_REQUEST, reason).into_response(),
        Ok(Answer::Unconfirmed) | Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "the pipeline did not confirm these records").into_response()
        }
    }
}

/// The largest body of a refused request that is read (and dropped) before the 413, so that the
/// client sees the answer.
const DISCARD_AT_MOST: u64 = 1 << 20;

/// How long reading such a body may take.
const DISCARD_TIME: Duration = Duration::from_secs(2);

fn too_large(max_body: usize) -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {max_body} bytes")).into_response()
}

/// Under `on_error: fail`: decodes each request on its own, answers a request with a bad record
/// `400` (the sender's error, the job goes on), and sends the good requests on as one delivery.
async fn emit_rejecting_bad_requests(
    ctx: &mut SourceContext,
    decoder: &mut weir_formats::payload::MessageDecoder,
    tracker: &mut DeliveryTracker<Vec<oneshot::Sender<Answer>>>,
    requests: Vec<Ingest>,
) -> Result<(), RuntimeError> {
    let mut batches = Vec::new();
    let mut waiting = Vec::new();
    for request in requests {
        match decoder.decode(&request.records, &mut ctx.errors) {
            Ok(batch) => {
                batches.extend(batch);
                waiting.push(request.done);
            }
            Err(RuntimeError::BadRecord { position, reason }) => {
                let _ = request.done.send(Answer::Rejected(format!("{position}: {reason}")));
            }
            Err(other) => return Err(other),
        }
    }
    if waiting.is_empty() {
        return Ok(());
    }
    let delivery = tracker.track(waiting);
    match batches.len() {
        0 => delivery.settle(),
        _ => {
            let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
            ctx.metrics.record_received(batch.num_rows());
            ctx.output.deliver(batch, delivery).await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Source for HttpSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|err| RuntimeError::io(format!("listening on {}", config.listen), err))?;
        let (queue, mut requests) = mpsc::channel(QUEUED_REQUESTS);
        let endpoint = Endpoint { queue, format: config.format, max_body: config.max_body };
        let app = Router::new()
            .route(&config.path, axum::routing::post(ingest))
            .layer(DefaultBodyLimit::max(config.max_body))
            .with_state(endpoint);
        let stop = ctx.stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        tracing::info!(component = %ctx.component, listen = %config.listen, path = %config.path, "accepting records over HTTP");
        let mut decoder = config.layout.decoder(config.batch_size)?;
        let mut tracker: DeliveryTracker<Vec<oneshot::Sender<Answer>>> = DeliveryTracker::new();
        let reject_bad_requests = ctx.errors.policy() == ErrorPolicy::Fail;
        loop {
            tokio::select! {
                biased;
                () = ctx.stop.cancelled() => break,
                outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => answer(outcomes),
                request = requests.recv() => {
                    let Some(first) = request else { break };
                    // Take whatever else is queued, up to about one batch of records.
                    let mut taken = first.records.len();
                    let mut batch = vec![first];
                    while taken < config.batch_size {
                        let Ok(next) = requests.try_recv() else { break };
                        taken += next.records.len();
                        batch.push(next);
                    }
                    if reject_bad_requests {
                        emit_rejecting_bad_requests(ctx, &mut decoder, &mut tracker, batch).await?;
                    } else {
                        let (records, waiting): (Vec<Vec<Record>>, Vec<_>) =
                            batch.into_iter().map(|ingest| (ingest.records, ingest.done)).unzip();
                        let records: Vec<Record> = records.into_iter().flatten().collect();
                        emit(ctx, &mut decoder, &mut tracker, &records, waiting).await?;
                    }
                }
            }
        }
        requests.close();
        while let Ok(request) = requests.try_recv() {
            if reject_bad_requests {
                emit_rejecting_bad_requests(ctx, &mut decoder, &mut tracker, vec![request]).await?;
            } else {
                emit(ctx, &mut decoder, &mut tracker, &request.records, vec![request.done]).await?;
            }
        }
        end_and_drain(ctx, &mut tracker, |outcomes| {
            answer(outcomes);
            std::future::ready(Ok(()))
        })
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        Ok(())
    }
}

fn answer(outcomes: Vec<Outcome<Vec<oneshot::Sender<Answer>>>>) {
    for outcome in outcomes {
        let (waiting, delivered) = match outcome {
            Outcome::Delivered(waiting) => (waiting, true),
            Outcome::Failed(waiting) => (waiting, false),
        };
        for done in waiting {
            let _ = done.send(if delivered { Answer::Accepted } else { Answer::Unconfirmed });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_json_lines_or_array_elements() {
        let lines = split(&Bytes::from_static(b"{\"a\":1}\r\n\n{\"a\":2}"), MessageFormat::Json).unwrap();
        assert_eq!(lines, vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"a\":2}")]);
        let array = split(&Bytes::from_static(b" [{\"a\":1}, {\"a\": [2]}]"), MessageFormat::Json).unwrap();
        assert_eq!(array, vec![Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{\"a\": [2]}")]);
        assert!(split(&Bytes::from_static(b"[{\"a\":1}"), MessageFormat::Json).is_err());
    }
}
