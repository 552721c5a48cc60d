//! The cache modes of a dimension table, as in Flink's FLIP-221:
//!
//! - `none`: every batch looks up its keys (rows sharing a key in one batch still cost one
//!   lookup);
//! - `partial`: a bounded cache of looked-up rows (quick_cache): `max_rows`, `expire_after_write`,
//!   `expire_after_access`, and `cache_missing` (remember keys that have no row, default on);
//! - `full`: the whole table loaded before the first lookup and reloaded `reload_every`
//!   (default 1h) or daily `reload_at: "03:00"` (UTC, or with an offset: `"03:00+08:00"`); a
//!   reload builds a complete new snapshot and swaps it in atomically, so a join never sees a
//!   half-loaded table, and a failed reload keeps the previous snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use chrono::{DateTime, FixedOffset, NaiveTime, Utc};
use serde::Deserialize;

use super::metrics::LookupMetrics;

/// `cache:` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `none`, `partial` or `full`.
    mode: ModeName,
    /// `partial`: rows kept at most.
    max_rows: Option<u64>,
    /// `partial`: a row is looked up again this long after it was fetched.
    #[serde(default, with = "weir_config::yaml::duration_opt")]
    expire_after_write: Option<Duration>,
    /// `partial`: a row not used for this long is dropped.
    #[serde(default, with = "weir_config::yaml::duration_opt")]
    expire_after_access: Option<Duration>,
    /// `partial`: remember keys that have no row (default true).
    cache_missing: Option<bool>,
    /// `full`: reload this often.
    #[serde(default, with = "weir_config::yaml::duration_opt")]
    reload_every: Option<Duration>,
    /// `full`: reload daily at this time (`HH:MM`, UTC unless an offset follows).
    reload_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ModeName {
    None,
    Partial,
    Full,
}

/// A validated cache mode.
#[derive(Debug, Clone)]
pub enum CacheMode {
    /// No cache.
    None,
    /// LRU of looked-up rows.
    Partial(PartialOptions),
    /// The whole table in memory.
    Full(FullOptions),
}

/// `partial` options.
#[derive(Debug, Clone)]
pub struct PartialOptions {
    /// Rows kept at most.
    pub max_rows: u64,
    /// Time to live after a fetch.
    pub expire_after_write: Option<Duration>,
    /// Time to live after the last use.
    pub expire_after_access: Option<Duration>,
    /// Remember keys without a row.
    pub cache_missing: bool,
}

/// `full` options.
#[derive(Debug, Clone)]
pub struct FullOptions {
    /// When to reload.
    pub reload: Reload,
}

impl Default for FullOptions {
    fn default() -> Self {
        Self { reload: Reload::Every(DEFAULT_RELOAD) }
    }
}

/// Flink's default for `lookup.full-cache.periodic-reload.interval`.
const DEFAULT_RELOAD: Duration = Duration::from_secs(3600);

/// When a full cache reloads.
#[derive(Debug, Clone)]
pub enum Reload {
    /// At a fixed interval after the previous load started.
    Every(Duration),
    /// Daily at a time of day.
    At(NaiveTime, FixedOffset),
}

impl Reload {
    /// How long from `now` until the next reload.
    pub fn delay_from(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Every(interval) => *interval,
            Self::At(time, offset) => {
                let local = now.with_timezone(offset);
                let today = local.date_naive().and_time(*time);
                let mut next = today.and_local_timezone(*offset).single().unwrap_or(local);
                if next <= local {
                    next += chrono::Duration::days(1);
                }
                (next - local).to_std().unwrap_or(Duration::ZERO)
            }
        }
    }
}

impl CacheConfig {
    /// Checks that the options fit the mode; `point_lookups` is false for tables that can only be
    /// loaded whole (files).
    ///
    /// # Errors
    /// An option of another mode, a bad time of day, or a mode the table cannot do.
    pub fn check(&self, point_lookups: bool) -> Result<CacheMode, String> {
        let partial_options = self.max_rows.is_some()
            || self.expire_after_write.is_some()
            || self.expire_after_access.is_some()
            || self.cache_missing.is_some();
        let full_options = self.reload_every.is_some() || self.reload_at.is_some();
        if self.mode != ModeName::Partial && partial_options {
            return Err("max_rows, expire_after_write, expire_after_access and cache_missing are options of \
                        `mode: partial`"
                .into());
        }
        if self.mode != ModeName::Full && full_options {
            return Err("reload_every and reload_at are options of `mode: full`".into());
        }
        if !point_lookups && self.mode != ModeName::Full {
            return Err("this table is loaded whole; its cache mode can only be `full`".into());
        }
        Ok(match self.mode {
            ModeName::None => CacheMode::None,
            ModeName::Partial => {
                let max_rows = self.max_rows.unwrap_or(100_000);
                if max_rows == 0 {
                    return Err("`max_rows` must be at least 1".into());
                }
                CacheMode::Partial(PartialOptions {
                    max_rows,
                    expire_after_write: self.expire_after_write,
                    expire_after_access: self.expire_after_access,
                    cache_missing: self.cache_missing.unwrap_or(true),
                })
            }
            ModeName::Full => {
                let reload = match (self.reload_every, &self.reload_at) {
                    (Some(_), Some(_)) => return Err("give `reload_every` or `reload_at`, not both".into()),
                    (Some(interval), None) if interval.is_zero() => {
                        return Err("`reload_every` must be longer than zero".into());
                    }
                    (Some(interval), None) => Reload::Every(interval),
                    (None, Some(at)) => parse_time_of_day(at)?,
                    (None, None) => Reload::Every(DEFAULT_RELOAD),
                };
                CacheMode::Full(FullOptions { reload })
            }
        })
    }
}

/// `HH:MM`, `HH:MM:SS`, optionally followed by an offset (`+08:00`, `Z`).
fn parse_time_of_day(text: &str) -> Result<Reload, String> {
    let bad = || format!("`reload_at: {text}` is not a time of day like \"03:00\" or \"03:00+08:00\"");
    let text = text.trim();
    let (time, offset) = match text.find(['+', '-', 'Z']) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(time, "%H:%M"))
        .map_err(|_| bad())?;
    let offset = match offset {
        "" | "Z" => FixedOffset::east_opt(0).expect("zero offset"),
        offset => offset.parse::<FixedOffset>().map_err(|_| bad())?,
    };
    Ok(Reload::At(time, offset))
}

/// What a partial cache remembers about a key.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The row, in the table's row encoding ([`super::keys::RowCodec`]).
    Row(Arc<[u8]>),
    /// The table has no row for the key.
    Missing,
}

/// A cache entry: the value, when it was written and when it was last read (nanoseconds since
/// the cache was made).
#[derive(Debug)]
struct Entry {
    value: Cached,
    written: u64,
    read: AtomicU64,
}

/// Counts entries the cache evicted because it was full (values are never replaced, see
/// [`PartialCache::insert`], so every call is an eviction).
#[derive(Clone)]
struct CountEvictions(Arc<LookupMetrics>);

impl quick_cache::Lifecycle<Vec<u8>, Arc<Entry>> for CountEvictions {
    type RequestState = ();

    fn begin_request(&self) -> Self::RequestState {}

    fn on_evict(&self, _state: &mut Self::RequestState, _key: Vec<u8>, _value: Arc<Entry>) {
        self.0.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

type Entries = quick_cache::sync::Cache<
    Vec<u8>,
    Arc<Entry>,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    CountEvictions,
>;

/// The partial cache: key bytes to rows, bounded (quick_cache's S3-FIFO, whose reads take a
/// shard's read lock and nothing else) and expiring. Expiry is checked when an entry is read,
/// against a clock read once per batch: an expired entry counts as a miss and is dropped, so
/// it never serves a row older than `expire_after_write` or idle longer than
/// `expire_after_access`; entries nobody reads again leave when the LRU pushes them out.
#[derive(Clone)]
pub struct PartialCache {
    entries: Arc<Entries>,
    epoch: Instant,
    expire_after_write: Option<u64>,
    expire_after_access: Option<u64>,
    metrics: Arc<LookupMetrics>,
    /// Whether keys without a row are remembered.
    pub cache_missing: bool,
}

impl std::fmt::Debug for PartialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialCache").field("entries", &self.entries.len()).finish()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl PartialCache {
    /// A cache with these options; evictions and expirations are counted in `metrics`.
    pub fn new(options: &PartialOptions, metrics: &Arc<LookupMetrics>) -> Self {
        let capacity = usize::try_from(options.max_rows).unwrap_or(usize::MAX);
        let entries = Entries::with(
            capacity,
            options.max_rows,
            quick_cache::UnitWeighter,
            quick_cache::DefaultHashBuilder::default(),
            CountEvictions(Arc::clone(metrics)),
        );
        Self {
            entries: Arc::new(entries),
            epoch: Instant::now(),
            expire_after_write: options.expire_after_write.map(nanos),
            expire_after_access: options.expire_after_access.map(nanos),
            metrics: Arc::clone(metrics),
            cache_missing: options.cache_missing,
        }
    }

    /// The cache's clock at `now`.
    pub fn clock(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch))
    }

    /// What is cached for `key` at time `now` (from [`PartialCache::clock`]).
    pub fn get(&self, key: &[u8], now: u64) -> Option<Cached> {
        let entry = self.entries.get(key)?;
        let too_old = self.expire_after_write.is_some_and(|ttl| now.saturating_sub(entry.written) > ttl);
        let idle =
            self.expire_after_access.is_some_and(|tti| now.saturating_sub(entry.read.load(Ordering::Relaxed)) > tti);
        if too_old || idle {
            // Only this entry: a fresher one written meanwhile stays.
            let removed = self.entries.remove_if(key, |current| Arc::ptr_eq(current, &entry));
            if removed.is_some() {
                self.metrics.expirations.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        if self.expire_after_access.is_some() {
            entry.read.fetch_max(now, Ordering::Relaxed);
        }
        Some(entry.value.clone())
    }

    /// Remembers what a lookup found, written at `now`. An entry another batch put there since
    /// this one missed (it fetched the same key concurrently) is kept: both are fresh, and
    /// replacing it would count as an eviction.
    pub fn insert(&self, key: &[u8], value: Cached, now: u64) {
        if matches!(value, Cached::Missing) && !self.cache_missing {
            return;
        }
        let entry =
            || Ok::<_, std::convert::Infallible>(Arc::new(Entry { value, written: now, read: AtomicU64::new(now) }));
        let _ = self.entries.get_or_insert_with(key, entry);
    }
}

/// A complete copy of the table for a full cache.
#[derive(Debug)]
pub struct Snapshot {
    /// Every row.
    pub rows: RecordBatch,
    /// Key bytes to row index.
    pub index: hashbrown::HashMap<Box<[u8]>, u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> CacheConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn options_belong_to_their_mode() {
        assert!(matches!(config("mode: none").check(true).unwrap(), CacheMode::None));
        let err = config("{ mode: none, max_rows: 3 }").check(true).unwrap_err();
        assert!(err.contains("mode: partial"), "{err}");
        let err = config("{ mode: partial, reload_every: 1m }").check(true).unwrap_err();
        assert!(err.contains("mode: full"), "{err}");
        let err = config("{ mode: partial }").check(false).unwrap_err();
        assert!(err.contains("only be `full`"), "{err}");
        let CacheMode::Partial(partial) = config("{ mode: partial, max_rows: 5 }").check(true).unwrap() else {
            panic!("partial")
        };
        assert_eq!((partial.max_rows, partial.cache_missing), (5, true));
    }

    #[test]
    fn partial_entries_expire_on_the_callers_clock_and_full_caches_evict() {
        let metrics = Arc::new(LookupMetrics::default());
        let options = PartialOptions {
            max_rows: 1000,
            expire_after_write: Some(Duration::from_secs(10)),
            expire_after_access: Some(Duration::from_secs(3)),
            cache_missing: false,
        };
        let cache = PartialCache::new(&options, &metrics);
        let s = |seconds: u64| nanos(Duration::from_secs(seconds));
        cache.insert(b"a", Cached::Row(Arc::from(&b"row"[..])), s(0));
        cache.insert(b"gone", Cached::Missing, s(0));
        assert!(cache.get(b"gone", s(0)).is_none(), "misses are not kept without cache_missing");
        // Read every 2 s: never idle for 3 s, but written 10 s ago at the end.
        for t in [2, 4, 6, 8, 10] {
            assert!(matches!(cache.get(b"a", s(t)), Some(Cached::Row(_))), "at {t}s");
        }
        assert!(cache.get(b"a", s(11)).is_none(), "expired 10 s after the write");
        cache.insert(b"b", Cached::Missing, s(20));
        let cache_missing = PartialCache { cache_missing: true, ..cache.clone() };
        cache_missing.insert(b"b", Cached::Missing, s(20));
        assert!(matches!(cache.get(b"b", s(22)), Some(Cached::Missing)));
        assert!(cache.get(b"b", s(26)).is_none(), "idle for more than 3 s");
        assert_eq!(metrics.expirations.load(Ordering::Relaxed), 2);

        let small = PartialCache::new(&PartialOptions { max_rows: 10, ..options }, &metrics);
        for key in 0..100u32 {
            small.insert(&key.to_le_bytes(), Cached::Row(Arc::from(&b"row"[..])), 0);
        }
        assert!(small.entries.len() <= 10);
        assert!(metrics.evictions.load(Ordering::Relaxed) >= 90);
    }

    #[test]
    fn reload_at_a_time_of_day() {
        let CacheMode::Full(full) = config("{ mode: full, reload_at: \"03:00+08:00\" }").check(true).unwrap() else {
            panic!("full")
        };
        // 18:00 UTC is 02:00 at +08:00: the next 03:00 there is one hour away.
        let now = DateTime::parse_from_rfc3339("2026-01-01T18:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(full.reload.delay_from(now), Duration::from_secs(3600));
        // 20:00 UTC is 04:00 there: 23 hours to the next day's 03:00.
        let now = DateTime::parse_from_rfc3339("2026-01-01T20:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(full.reload.delay_from(now), Duration::from_secs(23 * 3600));
        assert!(config("{ mode: full, reload_at: \"25:00\" }").check(true).is_err());
    }
}
