//! The `file` source.
//!
//! ```yaml
//! bids:
//!   type: file
//!   path: data/bids-*.jsonl       # a path or a glob, relative to the pipeline file
//!   format: json                  # json (default) or csv
//!   schema: { auction: int64, price: int64, dateTime: "timestamp(ms)" }   # or infer_schema: true
//!   on_error: dead-letter         # fail (default), skip, dead-letter
//!   dead_letter: rejects          # a sink receiving the bad lines
//! ```
//!
//! `format: text` reads ordinary logs: each line is a row of one string column, `line`.
//!
//! With `follow: true` the source tails files like a log collector (Vector's `file` source):
//! - A file is known by its **fingerprint**, a hash of its first line (at most 256 bytes), not
//!   by its name: a file renamed by rotation (`app.log` -> `app.log.1`) is the same file and is
//!   not read again, which a glob like `app.log*` once did (79 % duplicates). A file is read once
//!   it has a complete first line. Files whose first lines are identical count as one.
//! - `copytruncate` rotation: the copy starts like the original, so when the original is
//!   truncated the source goes on in the copy at its read position and loses nothing the copy
//!   holds (let the glob match the rotated names). A file truncated without a copy is read
//!   again from its start; what was written after the last read and before the truncation is
//!   gone (the log says how many bytes).
//! - Read positions (fingerprint -> byte offset) are kept in a positions file, written at most
//!   once a second and only for lines every sink has confirmed, so a restart goes on where the
//!   last run's acknowledged lines end (`positions:`, default
//!   `.weir/<component>.positions.json` beside the pipeline file). Checkpoints will replace it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::pump::end_and_drain;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{Delivery, DeliveryTracker, Outcome};
use weir_formats::decode::{ChunkReader, CsvOptions, LineDecoder, LineFormat};
use weir_formats::schema::{SchemaSpec, build_schema};

/// `file` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// File path or glob.
    pub path: Spanned<String>,
    /// Record format.
    #[serde(default)]
    pub format: LineFormat,
    /// Declared columns; required unless `infer_schema` is true.
    pub schema: Option<Spanned<SchemaSpec>>,
    /// Infer the schema from the first lines of the first file.
    #[serde(default)]
    pub infer_schema: bool,
    /// CSV: the first line of each file is a header (default true).
    #[serde(default = "yes")]
    pub header: bool,
    /// CSV field delimiter (one character, default `,`).
    #[serde(default = "comma")]
    pub delimiter: Spanned<String>,
    /// Keep reading appended lines and new files.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new data (default 200ms).
    #[serde(default = "poll_interval")]
    pub poll_interval: Spanned<String>,
    /// Where `follow` keeps read positions across restarts (relative to the pipeline file).
    pub positions: Option<String>,
}

fn yes() -> bool {
    true
}

fn comma() -> Spanned<String> {
    weir_config::yaml::unspanned(",".into())
}

fn poll_interval() -> Spanned<String> {
    weir_config::yaml::unspanned("200ms".into())
}

/// Lines read for schema inference.
const INFER_LINES: usize = 1000;

impl SourceSpec for FileSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let pattern = ctx.resolve(&self.path.value);
        let pattern_text = pattern.to_string_lossy().into_owned();
        let at_path = |message: String| SpecIssue::at(&self.path.referenced, message);
        glob::Pattern::new(&pattern_text).map_err(|err| at_path(format!("`path` is not a valid glob: {err}")))?;
        let delimiter = match self.delimiter.value.as_bytes() {
            [byte] => *byte,
            _ => return Err(SpecIssue::at(&self.delimiter.referenced, "`delimiter` must be a single ASCII character")),
        };
        let poll = humantime::parse_duration(&self.poll_interval.value)
            .map_err(|err| SpecIssue::at(&self.poll_interval.referenced, format!("`poll_interval`: {err}")))?;
        let schema = match (&self.schema, self.infer_schema) {
            (None, false) if self.format == LineFormat::Text => LineFormat::text_schema(),
            (Some(spec), _) if self.format == LineFormat::Text => {
                return Err(SpecIssue::at(&spec.referenced, "`format: text` has one column, `line`: drop `schema`"));
            }
            (None, true) if self.format == LineFormat::Text => {
                return Err(SpecIssue::new("`format: text` has one column, `line`: drop `infer_schema`"));
            }
            (Some(spec), false) => build_schema(&spec.value)?,
            (None, true) => {
                let files = matching_files(&pattern_text).map_err(at_path)?;
                let first = files
                    .first()
                    .ok_or_else(|| at_path(format!("no file matches `{pattern_text}` to infer a schema from")))?;
                infer_schema(first, self.format, self.header, delimiter).map_err(at_path)?
            }
            (Some(spec), true) => {
                return Err(SpecIssue::at(&spec.referenced, "give either `schema` or `infer_schema: true`, not both"));
            }
            (None, false) => return Err(SpecIssue::new("`schema` is required (or set `infer_schema: true`)")),
        };
        if !self.follow && !pattern_text.contains(['*', '?', '[']) && !Path::new(&pattern_text).exists() {
            return Err(at_path(format!("file not found: {pattern_text}")));
        }
        let factory = FileSource {
            pattern: pattern_text,
            schema: schema.clone(),
            format: self.format,
            csv: CsvOptions { delimiter },
            header: self.format == LineFormat::Csv && self.header,
            follow: self.follow,
            poll,
            batch_size: ctx.batch_size,
            positions: match &self.positions {
                Some(path) => ctx.resolve(path),
                None => ctx.base_dir.join(".weir").join(format!("{}.positions.json", ctx.component)),
            },
        };
        Ok(PlannedSource { schema, parallelism: 1, factory: Arc::new(factory) })
    }
}

fn matching_files(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = glob::glob(pattern)
        .map_err(|err| format!("`path` is not a valid glob: {err}"))?
        .filter_map(Result::ok)
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn infer_schema(path: &Path, format: LineFormat, header: bool, delimiter: u8) -> Result<SchemaRef, String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let sample: Vec<u8> = reader
        .split(b'\n')
        .take(INFER_LINES)
        .filter_map(Result::ok)
        .flat_map(|mut line| {
            line.push(b'\n');
            line
        })
        .collect();
    let schema = match format {
        LineFormat::Json => arrow::json::reader::infer_json_schema(std::io::Cursor::new(&sample), Some(INFER_LINES))
            .map(|(schema, _)| schema),
        LineFormat::Csv => arrow::csv::reader::Format::default()
            .with_header(header)
            .with_delimiter(delimiter)
            .infer_schema(std::io::Cursor::new(&sample), Some(INFER_LINES))
            .map(|(schema, _)| schema),
        LineFormat::Text => return Ok(LineFormat::text_schema()),
    };
    schema.map(Arc::new).map_err(|err| format!("cannot infer a schema from {}: {err}", path.display()))
}

#[derive(Debug, Clone)]
struct FileSource {
    pattern: String,
    schema: SchemaRef,
    format: LineFormat,
    csv: CsvOptions,
    header: bool,
    follow: bool,
    poll: Duration,
    batch_size: usize,
    positions: PathBuf,
}

/// One open file being read (or followed).
struct OpenFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    reader: ChunkReader<tokio::fs::File>,
    decoder: LineDecoder,
    header_pending: bool,
}

impl FileSource {
    async fn open(&self, path: &Path) -> Result<OpenFile, RuntimeError> {
        self.open_at(path, Position::START).await
    }

    /// Opens `path` to read from byte `at.offset` (the start of line `at.line`).
    async fn open_at(&self, path: &Path, at: Position) -> Result<OpenFile, RuntimeError> {
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|err| RuntimeError::io(format!("opening {}", path.display()), err))?;
        if at.offset > 0 {
            file.seek(std::io::SeekFrom::Start(at.offset))
                .await
                .map_err(|err| RuntimeError::io(format!("seeking in {}", path.display()), err))?;
        }
        let identity = identity(
            &file.metadata().await.map_err(|err| RuntimeError::io(format!("reading {}", path.display()), err))?,
        );
        let config = self;
        let decoder = LineDecoder::new(
            config.schema.clone(),
            config.format,
            config.csv,
            path.display().to_string(),
            config.batch_size,
        )?;
        Ok(OpenFile {
            path: path.to_path_buf(),
            identity,
            reader: ChunkReader::at(file, at.offset, at.line),
            decoder,
            header_pending: config.header && at.offset == 0,
        })
    }

    /// Reads what `file` has now; returns whether anything was read. With `tracked`, every chunk
    /// is a delivery that reports the fingerprint and position after it once sinks confirmed it.
    async fn drain(
        &self,
        file: &mut OpenFile,
        ctx: &mut SourceContext,
        to_end: bool,
        mut tracked: Option<(&mut DeliveryTracker<(Fingerprint, Position)>, Fingerprint)>,
    ) -> Result<bool, RuntimeError> {
        let mut progressed = false;
        loop {
            if ctx.stop.is_cancelled() {
                return Ok(progressed);
            }
            let chunk = file
                .reader
                .next_chunk(self.batch_size, to_end)
                .await
                .map_err(|err| RuntimeError::io(format!("reading {}", file.path.display()), err))?;
            let Some(mut chunk) = chunk else { return Ok(progressed) };
            progressed = true;
            if file.header_pending {
                file.header_pending = false;
                let header_end = memchr::memchr(b'\n', &chunk.bytes).map_or(chunk.bytes.len(), |at| at + 1);
                chunk.bytes.drain(..header_end);
                chunk.first_line += 1;
                chunk.first_offset += header_end as u64;
            }
            let batches = file.decoder.decode(&chunk, &mut ctx.errors)?;
            let delivery = match &mut tracked {
                Some((tracker, fingerprint)) => {
                    let after = Position { offset: file.reader.offset(), line: file.reader.next_line() };
                    tracker.track((*fingerprint, after))
                }
                None => Delivery::untracked(),
            };
            ctx.errors.flush_with(&delivery).await?;
            for batch in batches {
                ctx.metrics.record_received(batch.num_rows());
                ctx.output.deliver(batch, delivery.fork()).await?;
            }
            delivery.settle();
        }
    }

    async fn read_once(&self, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let files = matching_files(&self.pattern)
            .map_err(|err| RuntimeError::io(err, std::io::ErrorKind::InvalidInput.into()))?;
        if files.is_empty() {
            tracing::warn!(component = %ctx.component, pattern = %self.pattern, "no file matches");
        }
        for path in files {
            let mut file = self.open(&path).await?;
            self.drain(&mut file, ctx, true, None).await?;
            if ctx.stop.is_cancelled() {
                break;
            }
        }
        Ok(())
    }

    async fn follow(&self, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let mut positions = Positions::load(&self.positions)?;
        let mut tracker = DeliveryTracker::new();
        let mut followed: HashMap<Fingerprint, Followed> = HashMap::new();
        while !ctx.stop.is_cancelled() {
            self.discover(&mut followed, &positions, ctx).await?;
            let mut progressed = false;
            let mut gone = Vec::new();
            for (fingerprint, entry) in &mut followed {
                entry.file.reader.rearm();
                let read = self.drain(&mut entry.file, ctx, false, Some((&mut tracker, *fingerprint))).await?;
                progressed |= read;
                // A file no longer listed (deleted, or renamed out of the glob) may still be
                // written to by its old writer: it is read until it stays quiet for ROTATE_WAIT.
                match (entry.seen, read) {
                    (true, _) => entry.unlisted_quiet_since = None,
                    (false, true) => entry.unlisted_quiet_since = Some(std::time::Instant::now()),
                    (false, false) => {
                        let since = *entry.unlisted_quiet_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= ROTATE_WAIT {
                            self.drain(&mut entry.file, ctx, true, Some((&mut tracker, *fingerprint))).await?;
                            gone.push(*fingerprint);
                        }
                    }
                }
                entry.seen = false;
            }
            for fingerprint in gone {
                if let Some(entry) = followed.remove(&fingerprint) {
                    tracing::info!(component = %ctx.component, path = %entry.file.path.display(), "stopped following a file that is gone");
                }
            }
            positions.record(tracker.try_settled(), &ctx.component);
            positions.retain(&followed);
            positions.save_if_due()?;
            if !progressed {
                tokio::select! {
                    () = tokio::time::sleep(self.poll) => {}
                    () = ctx.stop.cancelled() => {}
                }
            }
        }
        // Stopping: what is complete was sent. A last line still being written is not a record
        // yet: it stays unread, and the log says so.
        for entry in followed.values() {
            if entry.file.reader.pending_bytes() > 0 {
                tracing::warn!(
                    component = %ctx.component,
                    path = %entry.file.path.display(),
                    offset = entry.file.reader.offset(),
                    bytes = entry.file.reader.pending_bytes(),
                    "stopped with an incomplete last line unread"
                );
            }
        }
        let component = Arc::clone(&ctx.component);
        end_and_drain(ctx, &mut tracker, |outcomes| {
            positions.record(outcomes, &component);
            std::future::ready(Ok(()))
        })
        .await?;
        positions.save()
    }

    /// Lists the files matching the pattern and matches them with the followed ones by identity
    /// and fingerprint: renamed files keep their reader, a copy replaces a truncated original,
    /// new files start at their remembered position (or the beginning). Marks every entry
    /// still listed as seen.
    async fn discover(
        &self,
        followed: &mut HashMap<Fingerprint, Followed>,
        positions: &Positions,
        ctx: &SourceContext,
    ) -> Result<(), RuntimeError> {
        // Files that are not a followed file going on under some name.
        let mut candidates = Vec::new();
        for path in matching_files(&self.pattern).unwrap_or_default() {
            let Ok(meta) = tokio::fs::metadata(&path).await else { continue };
            let id = identity(&meta);
            if let Some(entry) = followed.values_mut().find(|entry| entry.file.identity == id)
                && meta.len() >= entry.file.reader.offset()
            {
                entry.seen = true;
                entry.file.path.clone_from(&path);
                continue;
            }
            if let Some(fingerprint) = fingerprint(&path, self.header).await {
                candidates.push((path, meta.len(), id, fingerprint));
            }
        }
        // Known fingerprints first, so that a copy takes over from its truncated original before
        // the original's new content is taken for a new file.
        candidates.sort_by_key(|(_, _, _, fingerprint)| !followed.contains_key(fingerprint));
        for (path, length, id, fingerprint) in candidates {
            match followed.get_mut(&fingerprint) {
                Some(entry) if entry.file.identity == id => {
                    // Truncated, and written again with the same first line.
                    tracing::warn!(
                        component = %ctx.component,
                        path = %path.display(),
                        unread_bytes_lost = entry.file.reader.offset().saturating_sub(length),
                        "the file was truncated; reading it again from its start"
                    );
                    entry.file = self.open(&path).await?;
                    entry.seen = true;
                }
                Some(entry) => {
                    // Starts like a followed file: a copy (copytruncate) or a hard link. It takes
                    // over once the original was truncated or replaced.
                    let (read_path, read_identity) = (entry.file.path.clone(), entry.file.identity);
                    if !original_intact(&read_path, read_identity, entry.file.reader.offset()).await {
                        let at = Position { offset: entry.file.reader.offset(), line: entry.file.reader.next_line() };
                        tracing::info!(
                            component = %ctx.component,
                            from = %entry.file.path.display(),
                            to = %path.display(),
                            offset = at.offset,
                            "the followed file was truncated; going on in its copy"
                        );
                        entry.file = self.open_at(&path, at).await?;
                        entry.seen = true;
                    }
                }
                None => {
                    let truncated = followed.iter().find(|(_, entry)| entry.file.identity == id).map(|(fp, _)| *fp);
                    if let Some(old) = truncated.and_then(|fp| followed.remove(&fp)) {
                        tracing::warn!(
                            component = %ctx.component,
                            path = %path.display(),
                            unread_bytes_lost = old.file.reader.offset().saturating_sub(length),
                            "the file was truncated without a copy; reading it again from its start"
                        );
                    }
                    let at = positions.get(fingerprint).filter(|at| at.offset <= length).unwrap_or(Position::START);
                    tracing::info!(component = %ctx.component, path = %path.display(), offset = at.offset, "following file");
                    let file = self.open_at(&path, at).await?;
                    followed.insert(fingerprint, Followed { file, seen: true, unlisted_quiet_since: None });
                }
            }
        }
        Ok(())
    }
}

/// Identifies a followed file whatever its name: a hash of its first line, at most
/// [`FINGERPRINT_BYTES`] long (Vector's `checksum` fingerprint).
type Fingerprint = u64;

/// How much of a file's start its fingerprint covers.
const FINGERPRINT_BYTES: usize = 256;

/// The fingerprint of the file at `path` (of its first line after a CSV header, which every file
/// shares), or `None` while it has no complete such line.
async fn fingerprint(path: &Path, header: bool) -> Option<Fingerprint> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.ok()?;
    let mut head = Vec::with_capacity(2 * FINGERPRINT_BYTES);
    file.take(2 * FINGERPRINT_BYTES as u64).read_to_end(&mut head).await.ok()?;
    let start = if header { memchr::memchr(b'\n', &head)? + 1 } else { 0 };
    let head = &head[start..head.len().min(start + FINGERPRINT_BYTES)];
    let end = match memchr::memchr(b'\n', head) {
        Some(at) => at + 1,
        None if head.len() == FINGERPRINT_BYTES => head.len(),
        None => return None,
    };
    let digest = sha2::Sha256::digest(&head[..end]);
    Some(u64::from_le_bytes(digest[..8].try_into().ok()?))
}

/// Where reading stands in a file: the next byte and the number of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
struct Position {
    offset: u64,
    line: u64,
}

impl Position {
    const START: Self = Self { offset: 0, line: 1 };
}

/// How long a followed file that is no longer listed is still read while it stays quiet.
const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// A followed file.
struct Followed {
    file: OpenFile,
    /// Listed by the latest look at the directory.
    seen: bool,
    /// Since when the file is unlisted and has had nothing new.
    unlisted_quiet_since: Option<std::time::Instant>,
}

/// Whether the file a followed entry reads still holds, under its name, everything read so far.
async fn original_intact(path: &Path, read_identity: Option<(u64, u64)>, offset: u64) -> bool {
    match tokio::fs::metadata(path).await {
        Ok(meta) => identity(&meta) == read_identity && meta.len() >= offset,
        Err(_) => false,
    }
}

/// Read positions of followed files by fingerprint, kept in a JSON file across restarts. Only
/// positions every sink confirmed are recorded; a failed delivery stops recording (the job
/// fails, and the next run reads from the last confirmed position).
struct Positions {
    path: PathBuf,
    offsets: BTreeMap<String, Position>,
    dirty: bool,
    failed: bool,
    saved_at: std::time::Instant,
}

impl Positions {
    fn load(path: &Path) -> Result<Self, RuntimeError> {
        let offsets = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                RuntimeError::io(
                    format!("reading the positions file {}", path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, err),
                )
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(RuntimeError::io(format!("reading {}", path.display()), err)),
        };
        Ok(Self { path: path.to_path_buf(), offsets, dirty: false, failed: false, saved_at: std::time::Instant::now() })
    }

    fn get(&self, fingerprint: Fingerprint) -> Option<Position> {
        self.offsets.get(&format!("{fingerprint:016x}")).copied()
    }

    fn record(&mut self, outcomes: Vec<Outcome<(Fingerprint, Position)>>, component: &str) {
        for outcome in outcomes {
            match outcome {
                Outcome::Delivered((fingerprint, position)) if !self.failed => {
                    self.offsets.insert(format!("{fingerprint:016x}"), position);
                    self.dirty = true;
                }
                Outcome::Delivered(_) => {}
                Outcome::Failed(_) => {
                    if !self.failed {
                        tracing::warn!(component, "a batch was not delivered; read positions stay before it");
                    }
                    self.failed = true;
                }
            }
        }
    }

    /// Forgets the positions of files no longer followed (gone from the directory).
    fn retain(&mut self, followed: &HashMap<Fingerprint, Followed>) {
        let before = self.offsets.len();
        self.offsets
            .retain(|key, _| u64::from_str_radix(key, 16).is_ok_and(|fingerprint| followed.contains_key(&fingerprint)));
        self.dirty |= self.offsets.len() != before;
    }

    fn save_if_due(&mut self) -> Result<(), RuntimeError> {
        if self.dirty && self.saved_at.elapsed() >= Duration::from_secs(1) { self.save() } else { Ok(()) }
    }

    /// Writes the file atomically (a temporary file, fsynced, renamed over it).
    fn save(&mut self) -> Result<(), RuntimeError> {
        if !self.dirty {
            return Ok(());
        }
        let io = |err| RuntimeError::io(format!("writing the positions file {}", self.path.display()), err);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let temporary = self.path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(&self.offsets).map_err(|err| io(std::io::Error::other(err)))?;
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        std::io::Write::write_all(&mut file, &json).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, &self.path).map_err(io)?;
        self.dirty = false;
        self.saved_at = std::time::Instant::now();
        Ok(())
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[async_trait]
impl Source for FileSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        if self.follow { self.follow(ctx).await } else { self.read_once(ctx).await }
    }
}
