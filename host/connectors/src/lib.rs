//! Built-in connectors: one folder per system, source, sink and dimension table side by side.
//!
//! Adding a connector: a folder here (with its `register` function) plus one line in [`register`].

pub mod amqp;
pub mod blackhole;
pub mod file;
pub mod generator;
pub mod http;
pub mod kafka;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod nexmark;
pub mod object_store;
pub mod postgres;
pub mod redis;
pub mod stdio;
pub mod support;
pub mod webhook;

use weir_engine::registry::{DuplicateKind, Registry};

/// Registers every built-in connector's sources, sinks and dimension tables.
///
/// # Errors
/// A kind name already taken.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    nexmark::register(registry)?;
    generator::register(registry)?;
    file::register(registry)?;
    stdio::register(registry)?;
    nats::register(registry)?;
    mqtt::register(registry)?;
    amqp::register(registry)?;
    redis::register(registry)?;
    kafka::register(registry)?;
    http::register(registry)?;
    blackhole::register(registry)?;
    postgres::register(registry)?;
    mysql::register(registry)?;
    webhook::register(registry)?;
    object_store::register(registry)?;
    Ok(())
}
