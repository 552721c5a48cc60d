//! Built-in connectors: one folder per system, source, sink and dimension table side by side.
//!
//! Adding a connector: a folder here plus one line in [`SOURCES`], [`SINKS`] and/or [`TABLES`].

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

use crate::engine::component::{SinkKind, SourceKind};
use crate::lookup::TableKind;

/// Every built-in source type.
pub static SOURCES: &[SourceKind] = &[
    nexmark::SOURCE,
    generator::SOURCE,
    file::SOURCE,
    stdio::SOURCE,
    nats::SOURCE,
    mqtt::SOURCE,
    amqp::SOURCE,
    redis::SOURCE,
    kafka::SOURCE,
    http::SOURCE,
];

/// Every built-in sink type.
pub static SINKS: &[SinkKind] = &[
    file::SINK,
    stdio::SINK,
    blackhole::SINK,
    postgres::SINK,
    mysql::SINK,
    nats::SINK,
    mqtt::SINK,
    amqp::SINK,
    redis::SINK,
    kafka::SINK,
    webhook::SINK,
    object_store::SINK,
];

/// Every built-in dimension-table type (for `lookup_join`).
pub static TABLES: &[TableKind] =
    &[postgres::table::TABLE, mysql::table::TABLE, redis::table::TABLE, file::table::TABLE];
