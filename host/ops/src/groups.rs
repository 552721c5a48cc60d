//! Group keys to dense group indices, for windows and keyed aggregates.
//!
//! Keys of any types (one or many `group_by` columns) are encoded once per batch with Arrow's row
//! format ([`KeyEncoder`]) and interned in a [`GroupTable`]: a hash table of indices into the
//! encoded keys, so a group costs its key bytes plus a few words. Group indices are what
//! DataFusion's accumulators take; [`GroupTable::keys`] decodes the keys back into columns when
//! a window fires.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{Field, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;

/// Encodes the `group_by` columns of batches into comparable row bytes.
#[derive(Debug)]
pub struct KeyEncoder {
    /// Input column indices of the key.
    pub columns: Vec<usize>,
    /// Output fields of the key columns.
    pub fields: Vec<Field>,
    converter: RowConverter,
}

impl KeyEncoder {
    /// An encoder for these columns of `schema`.
    ///
    /// # Errors
    /// Column types the row format cannot encode.
    pub fn new(schema: &SchemaRef, columns: Vec<usize>) -> Result<Self, arrow::error::ArrowError> {
        let fields: Vec<Field> = columns.iter().map(|&c| schema.field(c).clone()).collect();
        let converter = RowConverter::new(fields.iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
        Ok(Self { columns, fields, converter })
    }

    /// Encodes the key of every row of `batch`; `None` without key columns (one global group).
    ///
    /// # Errors
    /// Arrow failures.
    pub fn encode(&self, batch: &arrow::array::RecordBatch) -> Result<Option<Rows>, arrow::error::ArrowError> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        let columns: Vec<ArrayRef> = self.columns.iter().map(|&c| Arc::clone(batch.column(c))).collect();
        self.converter.convert_columns(&columns).map(Some)
    }

    /// Encodes key columns given directly (restored from a checkpoint) rather than taken from
    /// an input batch; `None` without key columns.
    ///
    /// # Errors
    /// Columns of other types than the key's.
    pub fn encode_columns(&self, columns: &[ArrayRef]) -> Result<Option<Rows>, arrow::error::ArrowError> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        self.converter.convert_columns(columns).map(Some)
    }

    /// What a checkpoint of state keyed by this key depends on: the key's columns and types.
    pub fn state_shape(&self) -> String {
        let fields: Vec<String> = self.fields.iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
        format!("key [{}]", fields.join(", "))
    }

    /// A table for groups of this key.
    pub fn table(&self) -> GroupTable {
        GroupTable {
            keys: self.converter.empty_rows(0, 0),
            index: HashTable::new(),
            hashes: Vec::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            global: self.columns.is_empty(),
        }
    }

    /// Decodes a table's keys into columns, in group order.
    ///
    /// # Errors
    /// Arrow failures.
    pub fn decode(&self, table: &GroupTable) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
        if table.global {
            return Ok(Vec::new());
        }
        self.converter.convert_rows(table.keys.iter())
    }
}

impl KeyEncoder {
    /// Decodes the keys of some groups of a table, in the order given.
    ///
    /// # Errors
    /// Arrow failures.
    pub fn decode_groups(
        &self,
        table: &GroupTable,
        groups: &[usize],
    ) -> Result<Vec<ArrayRef>, arrow::error::ArrowError> {
        if table.global {
            return Ok(Vec::new());
        }
        self.converter.convert_rows(groups.iter().map(|&group| table.keys.row(group)))
    }
}

/// Interned group keys: key bytes to a dense index (0, 1, 2, ... in order of first appearance).
#[derive(Debug)]
pub struct GroupTable {
    keys: Rows,
    index: HashTable<u32>,
    hashes: Vec<u64>,
    hasher: hashbrown::DefaultHashBuilder,
    /// No key columns: every row is in group 0.
    global: bool,
}

impl GroupTable {
    /// The group of each row of `rows` (the rows at `selection`, or all `row_count`), adding
    /// new groups. `rows` is `None` for a global (keyless) table.
    pub fn intern(
        &mut self,
        rows: Option<&Rows>,
        selection: Option<&[u32]>,
        row_count: usize,
        groups: &mut Vec<usize>,
    ) {
        use std::hash::BuildHasher as _;
        groups.clear();
        let Some(rows) = rows else {
            if self.hashes.is_empty() {
                self.hashes.push(0);
            }
            groups.resize(selection.map_or(row_count, <[u32]>::len), 0);
            return;
        };
        let hasher = &self.hasher;
        let mut add = |row: arrow::row::Row<'_>| {
            let bytes = row.as_ref();
            let hash = hasher.hash_one(bytes);
            let keys = &self.keys;
            let found = self.index.find(hash, |&group| keys.row(group as usize).as_ref() == bytes);
            let group = match found {
                Some(&group) => group,
                None => {
                    let group = self.hashes.len() as u32;
                    self.keys.push(row);
                    self.hashes.push(hash);
                    let hashes = &self.hashes;
                    self.index.insert_unique(hash, group, |&g| hashes[g as usize]);
                    group
                }
            };
            groups.push(group as usize);
        };
        match selection {
            None => rows.iter().for_each(&mut add),
            Some(selection) => selection.iter().for_each(|&r| add(rows.row(r as usize))),
        }
    }

    /// A table of only the groups `keep` (ascending), renumbered 0, 1, 2, ... in that order.
    pub fn retain(&self, encoder: &KeyEncoder, keep: &[usize]) -> Self {
        let mut table = encoder.table();
        let selection: Vec<u32> = keep.iter().map(|&group| group as u32).collect();
        let mut groups = Vec::new();
        if self.global {
            table.intern(None, Some(&selection), keep.len(), &mut groups);
        } else {
            table.intern(Some(&self.keys), Some(&selection), keep.len(), &mut groups);
        }
        table
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.keys.size() + self.index.capacity() * 4 + self.hashes.capacity() * 8
    }
}
