//! Record formats: declared schemas, decoding newline-delimited JSON and CSV with per-record
//! error handling, and encoding batches as JSON lines, CSV or Parquet.

pub mod decode;
pub mod encode;
pub mod guard;
pub mod message;
pub mod schema;
