//! `webhook` sink: alerts as HTTP POSTs of JSON.
//!
//! ```yaml
//! sinks:
//!   page:
//!     type: webhook
//!     inputs: [too_hot]
//!     url: https://alerts.example.com/hook
//!     batch: false                 # false: one POST per row; true: one POST per batch (a JSON array)
//!     body: '{{"text": "{device} is at {temp} C"}}'   # optional template: {column}, {{ }} for braces;
//!                                  # values are JSON-escaped
//!                                  # default: the row as a JSON object
//!     headers: { Authorization: "Bearer ..." }
//!     timeout: 10s                 # per request
//!     retries: 5                   # attempts after the first, with exponential backoff
//!     circuit: { failures: 5, cooldown: 30s }   # open the circuit after 5 requests failed in a row
//!     on_error: dead-letter        # what happens to a row whose POST finally failed
//!     dead_letter: undelivered
//! ```
//!
//! A POST succeeds on 2xx. Network errors, timeouts, 429 and 5xx are retried with backoff;
//! other 4xx answers are final (retrying cannot help). A row whose POST failed finally goes to
//! the error policy with the last status or error. While the circuit is open (after
//! `circuit.failures` requests failed in a row) rows go to the error policy at once, without a
//! request, until `cooldown` has passed; then one request probes the endpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use backon::BackoffBuilder;
use indexmap::IndexMap;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_engine::errors::BadRecord;
use weir_formats::encode::rows_as_json;

/// `webhook` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// Endpoint.
    pub url: Spanned<String>,
    /// One POST per batch (a JSON array) instead of per row.
    #[serde(default)]
    pub batch: bool,
    /// Body template (JSON text); default: the row as JSON.
    pub body: Option<Spanned<String>>,
    /// Extra request headers.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Per-request timeout (`10s`).
    #[serde(default = "default_timeout")]
    pub timeout: Spanned<String>,
    /// Retries after the first attempt.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Circuit breaker.
    #[serde(default)]
    pub circuit: CircuitConfig,
}

/// Circuit breaker options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Requests failing in a row (after their retries) that open the circuit.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long the circuit stays open (`30s`).
    #[serde(default = "default_cooldown")]
    pub cooldown: String,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self { failures: default_failures(), cooldown: default_cooldown() }
    }
}

fn default_timeout() -> Spanned<String> {
    weir_config::yaml::unspanned("10s".into())
}

fn default_retries() -> usize {
    5
}

fn default_failures() -> u32 {
    5
}

fn default_cooldown() -> String {
    "30s".into()
}

impl SinkSpec for WebhookSinkConfig {
    fn plan(&self, input: &SchemaRef, _ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let url = reqwest::Url::parse(&self.url.value)
            .map_err(|err| SpecIssue::at(&self.url.referenced, format!("bad URL: {err}")))?;
        let body = match &self.body {
            None => None,
            Some(body) => {
                Some(Template::parse(&body.value, input).map_err(|message| SpecIssue::at(&body.referenced, message))?)
            }
        };
        let timeout = humantime::parse_duration(&self.timeout.value)
            .map_err(|err| SpecIssue::at(&self.timeout.referenced, format!("`timeout`: {err}")))?;
        let cooldown = humantime::parse_duration(&self.circuit.cooldown)
            .map_err(|err| SpecIssue::at(&self.url.referenced, format!("`circuit.cooldown`: {err}")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|err| SpecIssue::at(&self.url.referenced, format!("header `{name}`: {err}")))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|err| SpecIssue::at(&self.url.referenced, format!("header `{name}`: {err}")))?;
            headers.insert(name, value);
        }
        headers.insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/json"));
        Ok(Arc::new(WebhookFactory {
            url,
            per_batch: self.batch,
            body,
            headers,
            timeout,
            retries: self.retries,
            circuit_failures: self.circuit.failures.max(1),
            cooldown,
        }))
    }
}

#[derive(Debug, Clone)]
struct WebhookFactory {
    url: reqwest::Url,
    per_batch: bool,
    body: Option<Template>,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    retries: usize,
    circuit_failures: u32,
    cooldown: Duration,
}

#[async_trait]
impl SinkFactory for WebhookFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .default_headers(self.headers.clone())
            .build()
            .map_err(|err| RuntimeError::external("webhook", self.url.as_str(), err))?;
        Ok(Box::new(WebhookSink { config: self.clone(), client, failures_in_a_row: 0, open_until: None })
            as Box<dyn Sink>)
    }
}

struct WebhookSink {
    config: WebhookFactory,
    client: reqwest::Client,
    failures_in_a_row: u32,
    open_until: Option<Instant>,
}

/// How one POST ended after its retries.
enum Posted {
    Ok,
    Failed(String),
}

impl WebhookSink {
    async fn post(&mut self, body: Vec<u8>) -> Posted {
        if let Some(until) = self.open_until {
            if Instant::now() < until {
                return Posted::Failed("circuit open: the endpoint failed repeatedly; not sending".into());
            }
            self.open_until = None; // half-open: this request probes
        }
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.config.retries)
            .with_jitter()
            .build();
        let body = bytes::Bytes::from(body);
        loop {
            let (reason, retry) = match self.client.post(self.config.url.clone()).body(body.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    self.failures_in_a_row = 0;
                    return Posted::Ok;
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let retry = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
                    (format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()), retry)
                }
                Err(err) => (format!("request failed: {err}"), true),
            };
            match delays.next() {
                Some(delay) if retry => tokio::time::sleep(delay).await,
                _ => {
                    self.failures_in_a_row += 1;
                    if self.failures_in_a_row >= self.config.circuit_failures {
                        tracing::warn!(url = %self.config.url, failures = self.failures_in_a_row, cooldown = ?self.config.cooldown, "webhook circuit opened");
                        self.open_until = Some(Instant::now() + self.config.cooldown);
                        self.failures_in_a_row = 0;
                    }
                    return Posted::Failed(reason);
                }
            }
        }
    }
}

#[async_trait]
impl Sink for WebhookSink {
    async fn write(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let rows_json = rows_as_json(batch)?;
        let bodies: Vec<Vec<u8>> = match &self.config.body {
            Some(template) => template.render_json(batch)?.into_iter().map(String::into_bytes).collect(),
            None => (0..rows_json.len()).map(|row| rows_json.row(row).to_vec()).collect(),
        };
        if self.config.per_batch {
            let mut array = Vec::with_capacity(bodies.iter().map(Vec::len).sum::<usize>() + bodies.len() + 2);
            array.push(b'[');
            for (i, body) in bodies.iter().enumerate() {
                if i > 0 {
                    array.push(b',');
                }
                array.extend_from_slice(body);
            }
            array.push(b']');
            if let Posted::Failed(reason) = self.post(array).await {
                for row in 0..batch.num_rows() {
                    reject(ctx, &self.config.url, rows_json.row(row), &reason)?;
                }
            }
            return Ok(());
        }
        for (row, body) in bodies.into_iter().enumerate() {
            if let Posted::Failed(reason) = self.post(body).await {
                reject(ctx, &self.config.url, rows_json.row(row), &reason)?;
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}

fn reject(ctx: &mut SinkContext, url: &reqwest::Url, row: &[u8], reason: &str) -> Result<(), RuntimeError> {
    ctx.errors.handle(BadRecord { position: format!("POST {url}"), raw: row, reason: reason.to_owned() })
}
