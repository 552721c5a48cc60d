//! The runtime of one dimension table: resolves the distinct keys of a batch to rows through its
//! cache, fetching what missed in chunks, concurrently (bounded), with a time limit and retries.
//!
//! A key maps to at most one row: the key columns are the table's primary key. If the system
//! returns several rows for a key anyway, the last one wins (and a full load logs how many keys
//! were repeated). Keys with a NULL never match and are never looked up.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::cache::{CacheMode, Cached, FullOptions, PartialCache, Snapshot};
use super::keys::{KeyCodec, RowCodec};
use super::metrics::LookupMetrics;
use super::{LookupError, LookupOptions, PlannedTable, TableConnector};
use weir_config::SpecIssue;

/// What happens when a lookup keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Retry `lookup.max_retries` times, then report the failure.
    Bounded,
    /// Retry until it works (or the job stops).
    Unbounded,
}

/// Retry a lookup that found no row, after a delay (for dimension rows that arrive just after
/// the facts that refer to them).
#[derive(Debug, Clone, Copy)]
pub struct RetryOnMiss {
    /// Extra attempts.
    pub attempts: usize,
    /// Wait before each.
    pub delay: Duration,
}

/// The distinct keys of a batch, resolved.
#[derive(Debug)]
pub struct Resolved {
    /// Rows of the table's schema that the keys point into.
    pub rows: RecordBatch,
    /// Per key: the row in `rows`, `None` if the table has no row, or why the lookup failed.
    pub found: Vec<Result<Option<u32>, Arc<str>>>,
}

/// One dimension table, shared by every join that uses it.
#[derive(Debug)]
pub struct DimensionTable {
    name: String,
    schema: SchemaRef,
    key: Vec<String>,
    key_indices: Vec<usize>,
    /// The key columns' schema (of the key batches connectors get).
    key_schema: SchemaRef,
    keys: KeyCodec,
    rows: RowCodec,
    connector: Arc<dyn TableConnector>,
    options: LookupOptions,
    permits: Semaphore,
    partial: Option<PartialCache>,
    full: Option<FullCache>,
    /// Counters.
    pub metrics: Arc<LookupMetrics>,
}

#[derive(Debug)]
struct FullCache {
    options: FullOptions,
    state: watch::Sender<FullState>,
    loader: Mutex<Weak<LoaderGuard>>,
}

#[derive(Debug, Clone)]
enum FullState {
    /// The first load has not finished.
    Loading,
    /// A complete snapshot.
    Ready(Arc<Snapshot>),
    /// The first load failed (the loader keeps trying).
    Failed(LookupError),
}

/// Keeps a full cache's loader running; the last join subtask to drop it stops the loader.
#[derive(Debug)]
pub struct LoaderGuard(CancellationToken);

impl Drop for LoaderGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// How long a loader whose first load failed waits before trying again.
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(5);

impl DimensionTable {
    /// The runtime for a planned table (no connection yet: connectors connect on first use).
    ///
    /// # Errors
    /// Column types the key or row encoding cannot handle.
    pub fn new(
        name: String,
        planned: PlannedTable,
        cache: CacheMode,
        options: LookupOptions,
    ) -> Result<Self, SpecIssue> {
        let schema = planned.schema;
        let key_indices = planned
            .key
            .iter()
            .map(|column| {
                schema.index_of(column).map_err(|_| SpecIssue::new(format!("key column `{column}` is not a column")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_schema = Arc::new(schema.project(&key_indices).expect("key columns are in the schema"));
        let key_types = key_indices.iter().map(|&i| schema.field(i).data_type().clone()).collect();
        let unsupported = |err: arrow::error::ArrowError| SpecIssue::new(format!("unsupported column type: {err}"));
        let keys = KeyCodec::new(key_types).map_err(unsupported)?;
        let rows = RowCodec::new(Arc::clone(&schema)).map_err(unsupported)?;
        let metrics = Arc::new(LookupMetrics::default());
        let (partial, full) = match cache {
            CacheMode::None => (None, None),
            CacheMode::Partial(options) => (Some(PartialCache::new(&options, &metrics)), None),
            CacheMode::Full(options) => {
                let full = FullCache {
                    options,
                    state: watch::Sender::new(FullState::Loading),
                    loader: Mutex::new(Weak::new()),
                };
                (None, Some(full))
            }
        };
        Ok(Self {
            name,
            schema,
            key: planned.key,
            key_indices,
            key_schema,
            keys,
            rows,
            connector: planned.connector,
            permits: Semaphore::new(options.max_concurrency),
            options,
            partial,
            full,
            metrics,
        })
    }

    /// The table's name in the pipeline.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every column.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The key columns, in key order.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// The key codec (stream key columns are encoded with it).
    pub fn keys(&self) -> &KeyCodec {
        &self.keys
    }

    /// The encoded keys of a batch of the table's schema.
    fn encode_keys(&self, batch: &RecordBatch) -> Result<super::keys::EncodedKeys, LookupError> {
        let key_columns: Vec<ArrayRef> = self.key_indices.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        self.keys.encode(&key_columns).map_err(|err| LookupError::Invalid(err.to_string()))
    }

    /// Runs one query, counting it, its latency and its failure.
    async fn timed<T>(&self, query: impl Future<Output = Result<T, LookupError>>) -> Result<T, LookupError> {
        LookupMetrics::add(&self.metrics.queries, 1);
        let started = Instant::now();
        let result = query.await;
        self.metrics.record_latency(started.elapsed());
        if result.is_err() {
            LookupMetrics::add(&self.metrics.errors, 1);
        }
        result
    }

    /// A runtime error about this table; `reason` should name the table.
    pub fn error(&self, reason: impl std::fmt::Display) -> weir_engine::component::RuntimeError {
        weir_engine::component::RuntimeError::external(self.connector.system(), self.connector.address(), reason)
    }

    /// Called when a join subtask starts: a full cache starts (or keeps) its loader, which runs
    /// until every subtask holding the guard has ended.
    pub fn attach(self: &Arc<Self>) -> Option<Arc<LoaderGuard>> {
        let full = self.full.as_ref()?;
        let mut loader = full.loader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(guard) = loader.upgrade() {
            return Some(guard);
        }
        let token = CancellationToken::new();
        let guard = Arc::new(LoaderGuard(token.clone()));
        *loader = Arc::downgrade(&guard);
        tokio::spawn(Arc::clone(self).keep_loaded(token));
        Some(guard)
    }

    /// Resolves distinct encoded keys.
    ///
    /// # Errors
    /// Only when nothing can be resolved at all: a full cache whose first load failed (bounded
    /// persistence), or the job stopping while lookups still fail (unbounded persistence).
    /// Failures of single chunks are reported per key in [`Resolved::found`].
    pub async fn resolve(
        &self,
        keys: &[&[u8]],
        persistence: Persistence,
        retry_on_miss: Option<RetryOnMiss>,
        stop: &CancellationToken,
    ) -> Result<Resolved, LookupError> {
        if let Some(full) = &self.full {
            let snapshot = self.snapshot(full, persistence, stop).await?;
            let found = keys.iter().map(|key| Ok(snapshot.index.get(*key).copied())).collect();
            LookupMetrics::add(&self.metrics.cache_hits, keys.len() as u64);
            return Ok(Resolved { rows: snapshot.rows.clone(), found });
        }
        let mut found: Vec<Result<Option<u32>, Arc<str>>> = vec![Ok(None); keys.len()];
        let mut row_bytes: Vec<Arc<[u8]>> = Vec::new();
        let mut misses: Vec<usize> = Vec::new();
        let now = self.partial.as_ref().map_or(0, |cache| cache.clock(Instant::now()));
        match &self.partial {
            Some(cache) => {
                for (i, key) in keys.iter().enumerate() {
                    match cache.get(key, now) {
                        Some(Cached::Row(bytes)) => {
                            found[i] = Ok(Some(row_bytes.len() as u32));
                            row_bytes.push(bytes);
                        }
                        Some(Cached::Missing) => {}
                        None => misses.push(i),
                    }
                }
            }
            None => misses.extend(0..keys.len()),
        }
        LookupMetrics::add(&self.metrics.cache_hits, (keys.len() - misses.len()) as u64);
        LookupMetrics::add(&self.metrics.cache_misses, misses.len() as u64);
        let mut attempts_left = retry_on_miss.map_or(0, |retry| retry.attempts);
        while !misses.is_empty() {
            let missing: Vec<&[u8]> = misses.iter().map(|&i| keys[i]).collect();
            let fetched = self.fetch(&missing, persistence, stop).await?;
            let mut still_missing = Vec::new();
            for (&i, result) in misses.iter().zip(fetched) {
                match result {
                    Ok(Some(bytes)) => {
                        if let Some(cache) = &self.partial {
                            cache.insert(keys[i], Cached::Row(Arc::clone(&bytes)), now);
                        }
                        found[i] = Ok(Some(row_bytes.len() as u32));
                        row_bytes.push(bytes);
                    }
                    Ok(None) => still_missing.push(i),
                    Err(reason) => found[i] = Err(reason),
                }
            }
            match retry_on_miss {
                Some(retry) if attempts_left > 0 && !still_missing.is_empty() && !stop.is_cancelled() => {
                    attempts_left -= 1;
                    tokio::time::sleep(retry.delay).await;
                    misses = still_missing;
                }
                _ => {
                    if let Some(cache) = &self.partial {
                        still_missing.iter().for_each(|&i| cache.insert(keys[i], Cached::Missing, now));
                    }
                    misses = Vec::new();
                }
            }
        }
        let rows = self
            .rows
            .decode(row_bytes.iter().map(AsRef::as_ref))
            .map_err(|err| LookupError::Invalid(format!("decoding cached rows: {err}")))?;
        Ok(Resolved { rows, found })
    }

    /// The current full snapshot, waiting for the first load.
    async fn snapshot(
        &self,
        full: &FullCache,
        persistence: Persistence,
        stop: &CancellationToken,
    ) -> Result<Arc<Snapshot>, LookupError> {
        let mut state = full.state.subscribe();
        let usable = |state: &FullState| match state {
            FullState::Ready(_) => true,
            FullState::Failed(_) => persistence == Persistence::Bounded,
            FullState::Loading => false,
        };
        // Biased: a loaded table answers even when the job is stopping (batches still drain).
        let waited = tokio::select! {
            biased;
            waited = state.wait_for(usable) => waited.map(|state| state.clone()),
            () = stop.cancelled() => {
                return Err(LookupError::Unavailable("the job stopped before the table was loaded".into()));
            }
        };
        match waited {
            Ok(FullState::Ready(snapshot)) => Ok(snapshot),
            Ok(FullState::Failed(err)) => Err(err),
            Ok(FullState::Loading) | Err(_) => Err(LookupError::Unavailable("the table loader stopped".into())),
        }
    }

    /// Loads the whole table now and then until `stop`.
    async fn keep_loaded(self: Arc<Self>, stop: CancellationToken) {
        let full = self.full.as_ref().expect("only full caches have a loader");
        loop {
            let started = Instant::now();
            let loaded = tokio::select! {
                loaded = self.load() => loaded,
                () = stop.cancelled() => return,
            };
            let ready = match loaded {
                Ok(snapshot) => {
                    self.metrics.snapshot_rows.store(snapshot.rows.num_rows() as u64, Ordering::Relaxed);
                    LookupMetrics::add(&self.metrics.loads, 1);
                    tracing::info!(table = %self.name, rows = snapshot.rows.num_rows(), elapsed_ms = started.elapsed().as_millis() as u64, "dimension table loaded");
                    full.state.send_replace(FullState::Ready(Arc::new(snapshot)));
                    true
                }
                Err(err) => {
                    let ready = matches!(*full.state.borrow(), FullState::Ready(_));
                    if ready {
                        tracing::warn!(table = %self.name, error = %err, "reloading the dimension table failed; keeping the previous snapshot");
                    } else {
                        tracing::error!(table = %self.name, error = %err, "loading the dimension table failed; trying again");
                        full.state.send_replace(FullState::Failed(err));
                    }
                    ready
                }
            };
            let delay = if ready { full.options.reload.delay_from(chrono::Utc::now()) } else { FIRST_LOAD_RETRY };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Reads the whole table into a snapshot (with the bounded retries of a lookup).
    async fn load(&self) -> Result<Snapshot, LookupError> {
        let scan = || self.timed(self.connector.scan());
        let batches = scan
            .retry(self.backoff(Persistence::Bounded))
            .when(LookupError::is_retryable)
            .notify(|err, delay| tracing::warn!(table = %self.name, error = %err, retry_in_ms = delay.as_millis() as u64, "loading the dimension table failed; retrying"))
            .await?;
        let rows = arrow::compute::concat_batches(&self.schema, &batches)
            .map_err(|err| LookupError::Invalid(format!("assembling the table: {err}")))?;
        let encoded = self.encode_keys(&rows)?;
        let mut index = hashbrown::HashMap::with_capacity(rows.num_rows());
        let mut repeated = 0usize;
        for row in 0..rows.num_rows() {
            if encoded.valid.as_ref().is_some_and(|valid| valid.is_null(row)) {
                continue;
            }
            if index.insert(Box::<[u8]>::from(encoded.rows.row(row).data()), row as u32).is_some() {
                repeated += 1;
            }
        }
        if repeated > 0 {
            tracing::warn!(table = %self.name, repeated, "keys with more than one row; the last row of each is used");
        }
        Ok(Snapshot { rows, index })
    }

    fn backoff(&self, persistence: Persistence) -> ExponentialBuilder {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter();
        match persistence {
            Persistence::Bounded => backoff.with_max_times(self.options.max_retries),
            Persistence::Unbounded => backoff.without_max_times(),
        }
    }

    /// Fetches keys in chunks, concurrently up to `lookup.max_concurrency` queries for the whole
    /// table. Per key: the encoded row, `None` if there is no row, or why its chunk failed.
    async fn fetch(
        &self,
        keys: &[&[u8]],
        persistence: Persistence,
        stop: &CancellationToken,
    ) -> Result<Vec<Result<Option<Arc<[u8]>>, Arc<str>>>, LookupError> {
        let chunks = keys.chunks(self.options.chunk_size).map(|chunk| self.fetch_chunk(chunk, persistence, stop));
        let results = futures::future::join_all(chunks).await;
        let mut found = Vec::with_capacity(keys.len());
        for (chunk, result) in keys.chunks(self.options.chunk_size).zip(results) {
            match result {
                Ok(rows) => found.extend(chunk.iter().map(|key| Ok(rows.get(*key).cloned()))),
                // Retrying without limit ends only when retrying cannot help or the job stops.
                Err(err) if persistence == Persistence::Unbounded => return Err(err),
                Err(err) => {
                    let reason: Arc<str> = Arc::from(format!("lookup in table `{}` failed: {err}", self.name));
                    found.extend(chunk.iter().map(|_| Err(Arc::clone(&reason))));
                }
            }
        }
        Ok(found)
    }

    /// One query for one chunk of keys, with the time limit and retries.
    async fn fetch_chunk(
        &self,
        chunk: &[&[u8]],
        persistence: Persistence,
        stop: &CancellationToken,
    ) -> Result<hashbrown::HashMap<Box<[u8]>, Arc<[u8]>>, LookupError> {
        let key_columns =
            self.keys.decode(chunk.iter().copied()).map_err(|err| LookupError::Invalid(err.to_string()))?;
        let key_batch = RecordBatch::try_new(Arc::clone(&self.key_schema), key_columns)
            .map_err(|err| LookupError::Invalid(err.to_string()))?;
        let key_batch = &key_batch;
        let attempt = || async move {
            let _permit = self.permits.acquire().await.map_err(|_| LookupError::Unavailable("closed".into()))?;
            LookupMetrics::add(&self.metrics.keys_fetched, chunk.len() as u64);
            self.timed(async {
                match self.options.timeout {
                    Some(limit) => {
                        tokio::time::timeout(limit, self.connector.fetch(key_batch)).await.unwrap_or_else(|_| {
                            Err(LookupError::Unavailable(format!(
                                "no answer within {}",
                                humantime::format_duration(limit)
                            )))
                        })
                    }
                    None => self.connector.fetch(key_batch).await,
                }
            })
            .await
        };
        let batches = attempt
            .retry(self.backoff(persistence))
            .when(|err| err.is_retryable() && !stop.is_cancelled())
            .notify(|err, delay| tracing::warn!(table = %self.name, error = %err, retry_in_ms = delay.as_millis() as u64, "lookup failed; retrying"))
            .await?;
        let mut rows = hashbrown::HashMap::with_capacity(chunk.len());
        for batch in &batches {
            let keys = self.encode_keys(batch)?;
            let encoded = self.rows.encode(batch).map_err(|err| LookupError::Invalid(err.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.insert(Box::<[u8]>::from(keys.rows.row(row).data()), Arc::<[u8]>::from(encoded.row(row).data()));
            }
        }
        Ok(rows)
    }
}
