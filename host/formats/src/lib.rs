//! Record formats: declared schemas ([`schema`]), decoding newline-delimited JSON and CSV with
//! per-record error handling ([`decode`], with the input guards of [`guard`]), broker message
//! payloads with their metadata columns ([`payload`]), and encoding batches as JSON lines, CSV or
//! Parquet ([`encode`]).

pub mod decode;
pub mod encode;
pub mod guard;
pub mod payload;
pub mod schema;
