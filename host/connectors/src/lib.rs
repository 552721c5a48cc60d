//! Built-in connectors: one crate per system (`host/connectors/<system>/`: the config and
//! registration types in `lib.rs`, then `source.rs`, `sink.rs`, `table.rs`), gathered here into
//! one [`register`] call. A crate per system keeps a change to one connector from rebuilding the
//! others, and keeps each client library's dependencies with the connector that uses it.
//!
//! Adding a connector: a crate in `host/connectors/<system>/` (what the network connectors share
//! is in `weir-connector-support`), one dependency in this crate's manifest and one line per kind
//! in [`register`].

pub use weir_connector_amqp as amqp;
pub use weir_connector_blackhole as blackhole;
pub use weir_connector_file as file;
pub use weir_connector_generator as generator;
pub use weir_connector_http as http;
pub use weir_connector_kafka as kafka;
pub use weir_connector_mqtt as mqtt;
pub use weir_connector_mysql as mysql;
pub use weir_connector_nats as nats;
pub use weir_connector_nexmark as nexmark;
pub use weir_connector_object_store as object_store;
pub use weir_connector_postgres as postgres;
pub use weir_connector_redis as redis;
pub use weir_connector_stdio as stdio;
pub use weir_connector_webhook as webhook;

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
