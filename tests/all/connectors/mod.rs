//! Connectors against the real services on loopback (started by `tests/services.sh`): each test
//! round-trips unique ids, checks that the source acknowledged exactly what the sinks confirmed,
//! and exercises bad payloads and lost connections. Independent clients (tokio-postgres,
//! mysql_async, redis, async-nats, rumqttc, lapin, rdkafka, object_store) set up and check.

mod amqp;
mod http;
mod kafka;
mod mqtt;
pub mod mysql;
mod nats;
mod object_store;
pub mod postgres;
pub mod redis;
mod unreachable;
mod webhook;
