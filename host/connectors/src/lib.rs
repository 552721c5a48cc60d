//! Built-in connectors: one folder per system, source, sink and dimension table side by side.
//!
//! Adding a connector: a folder here plus one line per kind in [`register`].

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

use weir_config::yaml::Node;
use weir_engine::registry::{DuplicateKind, Registry, Supports};

/// Registers every built-in connector's sources, sinks and dimension tables: one line per kind,
/// with the shared options it takes and the typed config that reads its own options.
///
/// # Errors
/// A kind name already taken.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register_source("nexmark", Supports::SOURCE.parallelism(), Node::deserialize::<nexmark::NexmarkConfig>)?;
    registry.register_source(
        "generator",
        Supports::SOURCE.parallelism(),
        Node::deserialize::<generator::GeneratorConfig>,
    )?;
    registry.register_source("file", Supports::SOURCE.errors(), Node::deserialize::<file::FileSourceConfig>)?;
    registry.register_sink("file", Supports::SINK, Node::deserialize::<file::FileSinkConfig>)?;
    registry.register_source("stdin", Supports::SOURCE.errors(), Node::deserialize::<stdio::StdinConfig>)?;
    registry.register_sink("stdout", Supports::SINK, Node::deserialize::<stdio::StdoutConfig>)?;
    registry.register_source("nats", Supports::SOURCE.errors(), Node::deserialize::<nats::NatsSourceConfig>)?;
    registry.register_sink("nats", Supports::SINK, Node::deserialize::<nats::NatsSinkConfig>)?;
    registry.register_source("mqtt", Supports::SOURCE.errors(), Node::deserialize::<mqtt::MqttSourceConfig>)?;
    registry.register_sink("mqtt", Supports::SINK, Node::deserialize::<mqtt::MqttSinkConfig>)?;
    registry.register_source("amqp", Supports::SOURCE.errors(), Node::deserialize::<amqp::AmqpSourceConfig>)?;
    registry.register_sink("amqp", Supports::SINK, Node::deserialize::<amqp::AmqpSinkConfig>)?;
    registry.register_source("redis", Supports::SOURCE.errors(), Node::deserialize::<redis::RedisSourceConfig>)?;
    registry.register_sink("redis", Supports::SINK, Node::deserialize::<redis::RedisSinkConfig>)?;
    registry.register_source("kafka", Supports::SOURCE.errors(), Node::deserialize::<kafka::KafkaSourceConfig>)?;
    registry.register_sink("kafka", Supports::SINK, Node::deserialize::<kafka::KafkaSinkConfig>)?;
    registry.register_source("http", Supports::SOURCE.errors(), Node::deserialize::<http::HttpSourceConfig>)?;
    registry.register_sink("blackhole", Supports::SINK, Node::deserialize::<blackhole::BlackholeConfig>)?;
    registry.register_sink("postgres", Supports::SINK.errors(), Node::deserialize::<postgres::PostgresSinkConfig>)?;
    registry.register_sink("mysql", Supports::SINK.errors(), Node::deserialize::<mysql::MysqlSinkConfig>)?;
    registry.register_sink("webhook", Supports::SINK.errors(), Node::deserialize::<webhook::WebhookSinkConfig>)?;
    registry.register_sink("object_store", Supports::SINK, Node::deserialize::<object_store::ObjectStoreConfig>)?;
    registry.register_table("postgres", Supports::TABLE, Node::deserialize::<postgres::table::PostgresTableConfig>)?;
    registry.register_table("mysql", Supports::TABLE, Node::deserialize::<mysql::table::MysqlTableConfig>)?;
    registry.register_table("redis", Supports::TABLE, Node::deserialize::<redis::table::RedisTableConfig>)?;
    registry.register_table("file", Supports::TABLE, Node::deserialize::<file::table::FileTableConfig>)?;
    Ok(())
}
