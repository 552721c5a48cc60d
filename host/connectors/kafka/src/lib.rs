//! `kafka` source and sink (Apache Kafka and Kafka-protocol brokers: Redpanda, tansu, ...),
//! through librdkafka (rdkafka, built from source).
//!
//! ```yaml
//! sources:
//!   bids:
//!     type: kafka
//!     brokers: 127.0.0.1:9092
//!     topics: [bids]                 # names, or patterns starting with `^` (regular expressions)
//!     group: weir-bids               # consumer group: offsets are committed here
//!     start: committed               # committed (default) | earliest | latest | timestamp
//!     reset: earliest                # committed: where to start when the group has no offset
//!     timestamp: 2026-11-24T00:00:00Z   # start: timestamp
//!     properties: { fetch.min.bytes: "1" }   # any librdkafka option
//!     format: json
//!     schema: { auction: int64, price: int64 }
//!     metadata: { k: key, p: partition, o: offset, ts: timestamp, h: headers, t: topic }
//! sinks:
//!   out:
//!     type: kafka
//!     inputs: [big]
//!     brokers: 127.0.0.1:9092
//!     topic: "bids-{channel}"        # template
//!     key: "{auction}"               # optional template
//! ```
//!
//! Delivery: offsets are tracked per partition and committed only once every sink confirmed the
//! batch, in order (the committed offset of a partition is one past the highest delivered
//! offset). After a failed batch nothing more is committed, so a restart replays from the last
//! confirmed position (at-least-once). `earliest`, `latest` and `timestamp` assign every partition
//! of the listed topics to this consumer (no group rebalancing) and still commit to the group;
//! `committed` subscribes through the group protocol, so several weir processes share the
//! partitions. The sink waits for the broker's acknowledgement (`acks=all`) of every message in a
//! batch before the batch counts as written.

mod sink;
mod source;

pub use sink::KafkaSinkConfig;
pub use source::{KafkaSourceConfig, Reset, StartFrom};
