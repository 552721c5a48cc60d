//! What the network connectors share: row templates for keys, subjects and topics, the
//! connection discipline (bounded connect, backoff, state-change logging), user names and
//! secrets read from the environment or a file, and TLS.

pub mod dimension;
pub mod link;
pub mod pump;
pub mod secret;
pub mod sql;
pub mod template;
pub mod tls;
