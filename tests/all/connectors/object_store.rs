//! `object_store` sink: partitioned JSON / Parquet files in a local directory and in
//! S3-compatible storage (s3s-fs on 9000, started by tests/services.sh), through one code path.

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::support::{Workspace, unique};

fn pipeline(url: &str, format: &str, options: &str) -> String {
    format!(
        r#"
sources:
  gen:
    type: generator
    count: 3000
    columns:
      id: {{ sequence: {{ start: 1 }} }}
      site: {{ choice: [a, b] }}
      ts: {{ timestamp: {{ start: "2026-11-23T09:30:00Z", step: 1s }} }}
sinks:
  archive:
    type: object_store
    inputs: [gen]
    url: "{url}"
    format: {format}
    partition: "dt={{ts:%Y-%m-%d}}/hour={{ts:%H}}/site={{site}}"
    roll: {{ max_size: 4KiB }}
    {options}
settings: {{ batch_size: 500 }}
"#
    )
}

/// Reads every file under `store` and returns (partition directory, id) pairs.
async fn read_all(store: &dyn ObjectStore, prefix: Option<&object_store::path::Path>) -> Vec<(String, i64)> {
    let objects: Vec<_> = store.list(prefix).try_collect().await.unwrap();
    let mut rows = Vec::new();
    for object in objects {
        let path = object.location.to_string();
        let bytes = store.get(&object.location).await.unwrap().bytes().await.unwrap();
        let directory = path.rsplit_once('/').unwrap().0.to_owned();
        let ids: Vec<i64> = if path.ends_with(".parquet") {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
            reader
                .flat_map(|batch| {
                    let batch = batch.unwrap();
                    let ids = batch.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().clone();
                    ids.values().to_vec()
                })
                .collect()
        } else {
            crate::support::json_lines(std::str::from_utf8(&bytes).unwrap())
                .iter()
                .map(|row| row["id"].as_i64().unwrap())
                .collect()
        };
        rows.extend(ids.into_iter().map(|id| (directory.clone(), id)));
    }
    rows
}

fn check_partitions(rows: &mut [(String, i64)], prefix: &str) {
    rows.sort_by_key(|(_, id)| *id);
    let ids: Vec<i64> = rows.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>(), "every row exactly once");
    // id 1 is 09:30:00 on site a or b; id 3000 is 10:19:59.
    assert!(rows[0].0.starts_with(&format!("{prefix}dt=2026-11-23/hour=09/site=")), "{}", rows[0].0);
    assert!(rows[2999].0.starts_with(&format!("{prefix}dt=2026-11-23/hour=10/site=")), "{}", rows[2999].0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_gets_partitioned_rolled_parquet_files() {
    let ws = Workspace::new();
    ws.run(&pipeline("archive", "parquet", "")).await.unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(ws.path("archive")).unwrap();
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(objects.len() > 4, "several files per partition after roll-over: {}", objects.len());
    let mut rows = read_all(&store, None).await;
    check_partitions(&mut rows, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compatible_storage_gets_the_same_layout() {
    let prefix = unique("raw");
    let ws = Workspace::new();
    let options = r#"options: { endpoint: "http://127.0.0.1:9000", region: us-east-1, access_key_id: weir, secret_access_key: weir-secret, allow_http: "true" }"#;
    ws.run(&pipeline(&format!("s3://weir-test/{prefix}"), "json", options)).await.unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("weir-test")
        .with_endpoint("http://127.0.0.1:9000")
        .with_region("us-east-1")
        .with_access_key_id("weir")
        .with_secret_access_key("weir-secret")
        .with_allow_http(true)
        .build()
        .unwrap();
    let mut rows = read_all(&store, Some(&object_store::path::Path::from(prefix.as_str()))).await;
    check_partitions(&mut rows, &format!("{prefix}/"));
}
