//! `file`: newline-delimited JSON or CSV files in, and JSON lines / CSV / Parquet files out.
//!
//! The source reads a file or a glob once, or with `follow: true` keeps reading appended lines
//! like a log collector (new files matching the glob are picked up; a rotated or truncated file
//! is read to its end and then reopened from the start). The sink writes one file, or rolls over
//! to numbered files by size or age so that every closed file is complete. As a dimension table,
//! a CSV or JSON-lines file is loaded whole (and reloaded on the cache's schedule).

mod sink;
mod source;
pub mod table;

pub use sink::FileSinkConfig;
pub use source::FileSourceConfig;
