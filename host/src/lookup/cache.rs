//! The cache modes of a dimension table, as in Flink's FLIP-221:
//!
//! - `none`: every batch looks up its keys (rows sharing a key in one batch still cost one
//!   lookup);
//! - `partial`: an LRU of looked-up rows (moka): `max_rows`, `expire_after_write`,
//!   `expire_after_access`, and `cache_missing` (remember keys that have no row, default on);
//! - `full`: the whole table loaded before the first lookup and reloaded `reload_every`
//!   (default 1h) or daily `reload_at: "03:00"` (UTC, or with an offset: `"03:00+08:00"`); a
//!   reload builds a complete new snapshot and swaps it in atomically, so a join never sees a
//!   half-loaded table, and a failed reload keeps the previous snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    #[serde(default, with = "crate::pipeline::yaml::duration_opt")]
    expire_after_write: Option<Duration>,
    /// `partial`: a row not used for this long is dropped.
    #[serde(default, with = "crate::pipeline::yaml::duration_opt")]
    expire_after_access: Option<Duration>,
    /// `partial`: remember keys that have no row (default true).
    cache_missing: Option<bool>,
    /// `full`: reload this often.
    #[serde(default, with = "crate::pipeline::yaml::duration_opt")]
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

/// The partial cache: key bytes to rows, bounded and expiring.
#[derive(Clone)]
pub struct PartialCache {
    cache: moka::sync::Cache<Box<[u8]>, Cached>,
    /// Whether keys without a row are remembered.
    pub cache_missing: bool,
}

impl std::fmt::Debug for PartialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialCache").field("entries", &self.cache.entry_count()).finish()
    }
}

impl PartialCache {
    /// A cache with these options; evictions and expirations are counted in `metrics`.
    pub fn new(options: &PartialOptions, metrics: &Arc<LookupMetrics>) -> Self {
        let counted = Arc::clone(metrics);
        let mut builder = moka::sync::Cache::builder().max_capacity(options.max_rows).eviction_listener(
            move |_key, _value, cause: moka::notification::RemovalCause| match cause {
                moka::notification::RemovalCause::Size => {
                    counted.evictions.fetch_add(1, Ordering::Relaxed);
                }
                moka::notification::RemovalCause::Expired => {
                    counted.expirations.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            },
        );
        if let Some(ttl) = options.expire_after_write {
            builder = builder.time_to_live(ttl);
        }
        if let Some(tti) = options.expire_after_access {
            builder = builder.time_to_idle(tti);
        }
        Self { cache: builder.build(), cache_missing: options.cache_missing }
    }

    /// What is cached for `key`.
    pub fn get(&self, key: &[u8]) -> Option<Cached> {
        self.cache.get(key)
    }

    /// Remembers what a lookup found.
    pub fn insert(&self, key: &[u8], value: Cached) {
        if matches!(value, Cached::Missing) && !self.cache_missing {
            return;
        }
        self.cache.insert(key.into(), value);
    }

    /// Entries now (approximate, as moka counts).
    pub fn entries(&self) -> u64 {
        self.cache.entry_count()
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

/// Counts rows loaded, for the metrics (the last snapshot's size).
pub fn record_snapshot(metrics: &LookupMetrics, snapshot: &Snapshot) {
    metrics.snapshot_rows.store(snapshot.rows.num_rows() as u64, Ordering::Relaxed);
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
