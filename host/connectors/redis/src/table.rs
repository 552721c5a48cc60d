//! `redis` dimension table: one hash per key, hash fields as columns.
//!
//! ```yaml
//! tables:
//!   devices:
//!     type: redis
//!     url: redis://127.0.0.1:6379
//!     key: "device:{id}"              # the key columns are the placeholders
//!     columns: { id: int64, name: string, floor: int32 }
//!     cache: { mode: partial, max_rows: 10000, expire_after_write: 30s }
//! ```
//!
//! A chunk of keys is one pipeline of `HGETALL`s (one round trip); a key with no hash (or an
//! empty one) has no row. Fields not declared in `columns` are ignored, declared fields the hash
//! lacks are NULL. A full cache finds the keys with `SCAN MATCH device:*` and reads each key's
//! column values back out of its name, strictly: a key that matches the glob but whose values do
//! not parse as the declared types fails the load with the column named. One multiplexed
//! connection (redis-rs `ConnectionManager`, which reconnects) carries every query.

use async_trait::async_trait;

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use serde::Deserialize;

use super::{describe_address, open_client};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, unspanned};
use weir_connector_support::dimension::plan_columns;
use weir_connector_support::link::CONNECT_TIMEOUT;
use weir_connector_support::template::Template;
use weir_engine::component::PlanContext;
use weir_engine::table::{LookupError, PlannedTable, TableConnector, TableSpec};
use weir_formats::schema::SchemaSpec;
use weir_lookup::text::TextRows;

/// Keys per `SCAN` step and per `HGETALL` pipeline of a full load.
const SCAN_CHUNK: usize = 1000;

/// `redis` table options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTableConfig {
    /// `redis://host:port/db` (`rediss://` for TLS).
    pub url: Spanned<String>,
    /// Password (and ACL user name), TLS.
    #[serde(flatten)]
    pub access: weir_connector_support::secret::Access,
    /// Key pattern: literal text and `{column}` placeholders (the key columns).
    pub key: Spanned<String>,
    /// Every column with its type: the key columns and the hash fields.
    pub columns: Spanned<SchemaSpec>,
}

impl TableSpec for RedisTableConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedTable, SpecIssue> {
        let client = open_client(&self.url, &self.access, ctx)?;
        let at_key = |message: String| SpecIssue::at(&self.key.referenced, message);
        let all = weir_formats::schema::build_schema(&self.columns.value)?;
        let placeholders = Template::parse(&self.key.value, &all).map_err(at_key)?;
        let key: Vec<String> = placeholders.columns().iter().map(|&i| all.field(i).name().clone()).collect();
        if key.is_empty() {
            return Err(at_key(format!("`key: {}` names no column; write it like `device:{{id}}`", self.key.value)));
        }
        if placeholders.has_adjacent_columns() {
            return Err(at_key("two placeholders need literal text between them (`{site}:{id}`)".into()));
        }
        let schema = plan_columns(&self.columns, &unspanned(key.clone()))?;
        let key_schema: SchemaRef = Arc::new(Schema::new(
            key.iter().map(|name| schema.field_with_name(name).expect("declared").clone()).collect::<Vec<_>>(),
        ));
        let pattern = Template::parse(&self.key.value, &key_schema).map_err(at_key)?;
        let connector = RedisTable {
            address: describe_address(&client),
            client,
            connection: tokio::sync::OnceCell::new(),
            key_positions: key.iter().map(|name| schema.index_of(name).expect("declared")).collect(),
            pattern,
            schema: Arc::clone(&schema),
        };
        Ok(PlannedTable { schema, key, connector: Arc::new(connector), point_lookups: true })
    }
}

/// A table of Redis hashes.
struct RedisTable {
    client: ::redis::Client,
    address: String,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    /// The key pattern over the key columns.
    pattern: Template,
    /// Where each key column is in the schema.
    key_positions: Vec<usize>,
    schema: SchemaRef,
}

impl std::fmt::Debug for RedisTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTable").field("address", &self.address).field("key", &self.pattern.text()).finish()
    }
}

impl RedisTable {
    async fn connection(&self) -> Result<ConnectionManager, LookupError> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                // No response timeout of the client's own (500 ms by default, too short for a
                // pipeline of 1,000 HGETALLs on a busy server): `lookup.timeout` bounds each query.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None)
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await.map_err(|err| classify(&err))
            })
            .await?;
        Ok(connection.clone())
    }

    /// `HGETALL` of every key in one pipeline; appends a row per key that has a hash.
    async fn read_hashes(
        &self,
        connection: &mut ConnectionManager,
        keys: &[String],
        key_values: &[Vec<&str>],
        text: &mut TextRows,
    ) -> Result<(), LookupError> {
        let mut pipeline = ::redis::pipe();
        for key in keys {
            pipeline.hgetall(key);
        }
        let hashes: Vec<HashMap<String, String>> =
            pipeline.query_async(connection).await.map_err(|err| classify(&err))?;
        for (values, hash) in key_values.iter().zip(hashes) {
            if hash.is_empty() {
                continue;
            }
            for (column, field) in self.schema.fields().iter().enumerate() {
                match self.key_positions.iter().position(|&p| p == column) {
                    Some(k) => text.push(column, Some(values[k])),
                    None => text.push(column, hash.get(field.name()).map(String::as_str)),
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl TableConnector for RedisTable {
    fn system(&self) -> &'static str {
        "redis"
    }

    fn address(&self) -> String {
        self.address.clone()
    }

    async fn fetch(&self, keys: &RecordBatch) -> Result<Vec<RecordBatch>, LookupError> {
        let names = self.pattern.render(keys).map_err(|err| LookupError::Invalid(err.to_string()))?;
        let columns: Vec<Vec<String>> =
            keys.columns().iter().map(|column| weir_lookup::text::key_text(column)).collect::<Result<_, _>>()?;
        let key_values: Vec<Vec<&str>> =
            (0..keys.num_rows()).map(|row| columns.iter().map(|column| column[row].as_str()).collect()).collect();
        let mut connection = self.connection().await?;
        let mut text = TextRows::new(Arc::clone(&self.schema));
        self.read_hashes(&mut connection, &names, &key_values, &mut text).await?;
        text.finish()
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>, LookupError> {
        let mut connection = self.connection().await?;
        let glob = self.pattern.glob();
        let mut names = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&glob)
                .arg("COUNT")
                .arg(SCAN_CHUNK)
                .query_async(&mut connection)
                .await
                .map_err(|err| classify(&err))?;
            names.extend(found);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let names: Vec<String> = names.into_iter().filter(|name| self.pattern.extract(name).is_some()).collect();
        let mut text = TextRows::new(Arc::clone(&self.schema));
        for chunk in names.chunks(SCAN_CHUNK) {
            let key_values: Vec<Vec<&str>> =
                chunk.iter().map(|name| self.pattern.extract(name).expect("filtered")).collect();
            self.read_hashes(&mut connection, chunk, &key_values, &mut text).await?;
            text.cut_if_full()?;
        }
        text.finish()
    }
}

/// Connection trouble can be retried; anything else (a key that is not a hash) cannot.
fn classify(err: &::redis::RedisError) -> LookupError {
    if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout() {
        LookupError::Unavailable(err.to_string())
    } else {
        LookupError::Invalid(err.to_string())
    }
}
