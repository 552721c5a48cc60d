//! What the network connectors share: row templates for keys, subjects and topics, and the
//! connection discipline (bounded connect, backoff, state-change logging).

pub mod dimension;
pub mod link;
pub mod pump;
pub mod sql;
pub mod template;
