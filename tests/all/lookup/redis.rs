//! `redis` dimension tables: hashes by key pattern, with no cache, a partial cache and a full
//! cache found by `SCAN`.

use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::{free_port, http_join_pipeline, name_for, sorted_rows, write_site_events};
use crate::connectors::redis::{URL, connection};
use crate::support::{Workspace, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_by_composite_key_pattern_with_every_cache_mode() {
    let prefix = unique("dim");
    let mut redis = connection().await;
    for (site, id, name, floor) in [("berlin", 1, "boiler", 1), ("berlin", 2, "chiller", 2), ("austin", 1, "pump", 3)] {
        let _: () = redis
            .hset_multiple(format!("{prefix}:{site}:{id}"), &[("name", name.to_owned()), ("floor", floor.to_string())])
            .await
            .unwrap();
    }
    // A hash lacking a declared field: the column is NULL.
    let _: () = redis.hset(format!("{prefix}:austin:2"), "name", "fan").await.unwrap();
    let ws = Workspace::new();
    write_site_events(&ws, &[(1, "berlin", 1), (2, "austin", 1), (3, "austin", 2), (4, "berlin", 9), (5, "berlin", 2)]);
    for cache in ["{ mode: none }", "{ mode: partial, max_rows: 2 }", "{ mode: full }"] {
        let yaml = format!(
            r#"
sources:
  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, site: string, device: int64 }} }}
tables:
  devices:
    type: redis
    url: "{URL}"
    key: "{prefix}:{{site}}:{{id}}"
    columns: {{ site: string, id: int64, name: string, floor: int32 }}
    cache: {cache}
transforms:
  joined: {{ type: lookup_join, inputs: [events], table: devices, on: {{ site: site, device: id }}, kind: left, columns: [name, floor] }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}
"#
        );
        ws.run(&yaml).await.unwrap_or_else(|err| panic!("cache {cache}: {err}"));
        let rows = sorted_rows(&ws);
        let joined: Vec<(Option<&str>, Option<i64>)> =
            rows.iter().map(|row| (row["name"].as_str(), row["floor"].as_i64())).collect();
        assert_eq!(
            joined,
            [
                (Some("boiler"), Some(1)),
                (Some("pump"), Some(3)),
                (Some("fan"), None),
                (None, None),
                (Some("chiller"), Some(2))
            ],
            "cache {cache}"
        );
    }
    let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
    let _: () = redis.del(keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_cache_entries_expire_after_access() {
    let prefix = unique("dim_tti");
    let mut redis = connection().await;
    let _: () = redis.hset(format!("{prefix}:1"), "name", "boiler").await.unwrap();
    let port = free_port();
    let ws = Workspace::new();
    let declaration = format!(
        "    type: redis\n    url: \"{URL}\"\n    key: \"{prefix}:{{id}}\"\n    columns: {{ id: int64, name: string }}\n    cache: {{ mode: partial, max_rows: 100, expire_after_access: 3s }}\n"
    );
    let running = ws.start(&http_join_pipeline(port, &declaration));
    let cached_at = Instant::now();
    assert_eq!(name_for(&ws, port, 1, 1).await.as_deref(), Some("boiler"));
    let _: () = redis.hset(format!("{prefix}:1"), "name", "furnace").await.unwrap();
    // Used again within the idle time: still cached.
    assert_eq!(name_for(&ws, port, 2, 1).await.as_deref(), Some("boiler"));
    assert!(cached_at.elapsed() < Duration::from_secs(3), "the machine was too slow to check the idle expiry");
    // Left idle past 3 s: looked up again.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(name_for(&ws, port, 3, 1).await.as_deref(), Some("furnace"));
    running.stop().await.unwrap();
    let _: () = redis.del(format!("{prefix}:1")).await.unwrap();
}
