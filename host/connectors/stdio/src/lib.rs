//! `stdin` source and `stdout` sink: pipelines in shell pipes.
//!
//! ```yaml
//! sources:
//!   lines: { type: stdin, format: json, schema: { level: string, msg: string } }
//! sinks:
//!   show:  { type: stdout, inputs: [lines], format: table }   # json (default), csv, table
//! ```

mod sink;
mod source;

pub use sink::{StdoutConfig, StdoutFormat};
pub use source::StdinConfig;
