//! `weir bench connectors`: messages per second (and per CPU-second of this process) for each
//! network source and rows per second for each sink, against the real services on loopback,
//! next to a reference measured in the same run with the service's own client doing the bare
//! minimum (receive + acknowledge, or produce), so the ratio shows what weir's decoding,
//! batching and delivery tracking cost. Run `tests/services.sh` first.
//!
//! Records are 100-byte JSON objects. Source runs read a backlog that was produced beforehand
//! (the production is the producer reference); weir runs `source -> blackhole` until every record
//! arrived. CPU is user+sys of this process only (the broker's work is not counted).

use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::Consumer;

use crate::measure::Measurement;
use weir_engine::graph::Role;
use weir_engine::registry::Registry;
use weir_engine::runner;
use weir_engine::rusage::cpu_time;

const KAFKA: &str = "127.0.0.1:9092";
const NATS: &str = "nats://127.0.0.1:4222";
const REDIS: &str = "redis://127.0.0.1:6379";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

/// A 100-byte JSON record.
fn record(id: u64) -> String {
    let text = format!(
        r#"{{"id":{id},"device":"dev-{:04}","temp":{:.2},"site":"berlin-north-{}","ok":true,"pad":""}}"#,
        id % 5000,
        (id % 4000) as f64 / 100.0,
        id % 10
    );
    let pad = 100usize.saturating_sub(text.len());
    text.replace(r#""pad":"""#, &format!(r#""pad":"{}""#, "x".repeat(pad)))
}

const SCHEMA: &str = "{ id: int64, device: string, temp: float64, site: string, ok: bool, pad: string }";

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), chrono::Utc::now().timestamp_millis())
}

/// Measures `work` (wall and this process's CPU) as `events` events.
async fn measure<F: Future<Output = anyhow::Result<()>>>(events: u64, work: F) -> anyhow::Result<Measurement> {
    let (wall, cpu) = (Instant::now(), cpu_time());
    work.await?;
    Ok(Measurement::new(events, wall.elapsed(), cpu_time() - cpu))
}

/// Runs a streaming pipeline until its sources received `events` records, then stops it.
async fn run_until(registry: &Registry, yaml: &str, dir: &std::path::Path, events: u64) -> anyhow::Result<Measurement> {
    let file = dir.join("bench.yaml");
    std::fs::write(&file, yaml)?;
    let pipeline = weir_pipeline::load(&file, registry)?;
    let metrics = runner::metrics_for(&pipeline.graph);
    let stop = tokio_util::sync::CancellationToken::new();
    let (wall, cpu) = (Instant::now(), cpu_time());
    let job = {
        let (metrics, stop) = (metrics.clone(), stop.clone());
        tokio::spawn(async move { runner::run(&pipeline.graph, &metrics, stop).await })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while metrics.total(Role::Source, |m| m.received_events) < events {
        anyhow::ensure!(!job.is_finished(), "the job ended early: {:?}", job.await);
        anyhow::ensure!(Instant::now() < deadline, "not all records arrived within 300 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let measured = Measurement::new(events, wall.elapsed(), cpu_time() - cpu);
    stop.cancel();
    job.await??;
    Ok(measured)
}

struct Row {
    name: String,
    weir: Measurement,
    reference: Option<(String, Measurement)>,
}

fn print(rows: &[Row]) {
    println!(
        "| connector | weir msg/s | weir msg/s per core | reference | reference msg/s | ref per core | weir/ref (per core) |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|");
    for row in rows {
        let human = weir_engine::metrics::human;
        let (reference, ref_rate, ref_core, ratio) = match &row.reference {
            Some((what, m)) => (
                what.clone(),
                human(m.per_second()),
                human(m.per_cpu_second()),
                format!("{:.2}", row.weir.per_cpu_second() / m.per_cpu_second()),
            ),
            None => ("—".into(), String::new(), String::new(), String::new()),
        };
        println!(
            "| {} | {} | {} | {reference} | {ref_rate} | {ref_core} | {ratio} |",
            row.name,
            human(row.weir.per_second()),
            human(row.weir.per_cpu_second()),
        );
    }
}

/// Runs the suite with `events` records per scenario.
///
/// # Errors
/// A service that is not running, or a failed run.
pub fn bench(events: u64, only: Option<&str>, registry: &Registry) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("weir-bench-connectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!("weir bench connectors: {events} records of 100 bytes per scenario, {cores} cores, loopback services\n");
    let wanted = |name: &str| only.is_none_or(|only| name.contains(only));
    let mut rows = Vec::new();
    runtime.block_on(async {
        if wanted("kafka") {
            rows.extend(kafka(events, &dir, registry).await?);
        }
        if wanted("nats") {
            rows.extend(nats(events, &dir, registry).await?);
        }
        if wanted("redis") {
            rows.extend(redis(events, &dir, registry).await?);
        }
        if wanted("amqp") {
            rows.push(amqp(events, &dir, registry).await?);
        }
        if wanted("postgres") {
            rows.extend(postgres(events, &dir, registry).await?);
        }
        if wanted("mysql") {
            rows.push(mysql(events, &dir, registry).await?);
        }
        anyhow::Ok(())
    })?;
    print(&rows);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn generator(events: u64) -> String {
    format!(
        r#"gen:
    type: generator
    count: {events}
    columns:
      id: {{ sequence: {{ start: 1 }} }}
      device: {{ choice: [dev-0001, dev-0002, dev-0003, dev-0004] }}
      temp: {{ random: {{ min: -10.0, max: 40.0 }} }}
      site: {{ choice: [berlin-north-1, berlin-north-2] }}
      pad: {{ choice: [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx] }}"#
    )
}

async fn run_sink(registry: &Registry, dir: &std::path::Path, events: u64, sink: &str) -> anyhow::Result<Measurement> {
    let file = dir.join("bench.yaml");
    std::fs::write(&file, format!("sources:\n  {}\nsinks:\n  out: {sink}\n", generator(events)))?;
    let pipeline = weir_pipeline::load(&file, registry)?;
    let metrics = runner::metrics_for(&pipeline.graph);
    measure(events, async {
        runner::run(&pipeline.graph, &metrics, tokio_util::sync::CancellationToken::new()).await?;
        Ok(())
    })
    .await
}

async fn kafka(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Vec<Row>> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = unique("bench");
    let sink_topic = unique("bench_out");
    // Brokers may not create topics on first use (tansu does not): create them.
    let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new().set("bootstrap.servers", KAFKA).create()?;
    let create = async |name: &str| -> anyhow::Result<()> {
        let new = rdkafka::admin::NewTopic::new(name, 1, rdkafka::admin::TopicReplication::Fixed(1));
        for result in admin.create_topics([&new], &rdkafka::admin::AdminOptions::new()).await? {
            result.map_err(|(topic, err)| anyhow::anyhow!("creating {topic}: {err}"))?;
        }
        Ok(())
    };
    create(&topic).await?;
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", KAFKA).set("linger.ms", "5").create()?;
    let produce = measure(events, async {
        let mut pending = Vec::with_capacity(10_000);
        for id in 0..events {
            let payload = record(id);
            loop {
                match producer.send_result(FutureRecord::<str, str>::to(&topic).payload(&payload)) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((_, _)) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            if pending.len() == 10_000 {
                for delivery in pending.drain(..) {
                    delivery.await?.map_err(|(err, _)| err)?;
                }
            }
        }
        for delivery in pending.drain(..) {
            delivery.await?.map_err(|(err, _)| err)?;
        }
        Ok(())
    })
    .await?;
    let weir = run_until(
        registry,
        &format!(
            "sources:\n  s: {{ type: kafka, brokers: \"{KAFKA}\", topics: [{topic}], group: {}, schema: {SCHEMA} }}\nsinks:\n  out: {{ type: blackhole, inputs: [s] }}\n",
            unique("weir")
        ),
        dir,
        events,
    )
    .await?;
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let raw = measure(events, async {
        for _ in 0..events {
            consumer.recv().await?;
        }
        consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)?;
        Ok(())
    })
    .await?;
    create(&sink_topic).await?;
    let sink = run_sink(
        registry,
        dir,
        events,
        &format!("{{ type: kafka, inputs: [gen], brokers: \"{KAFKA}\", topic: {sink_topic} }}"),
    )
    .await?;
    Ok(vec![
        Row { name: "kafka source".into(), weir, reference: Some(("rdkafka consumer, no decoding".into(), raw)) },
        Row { name: "kafka sink".into(), weir: sink, reference: Some(("rdkafka producer, acks=all".into(), produce)) },
    ])
}

async fn nats(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Vec<Row>> {
    use async_nats::jetstream;
    let client = async_nats::connect(NATS).await?;
    let js = jetstream::new(client);
    let fill = async |stream: &str| -> anyhow::Result<Measurement> {
        js.create_stream(jetstream::stream::Config {
            name: stream.into(),
            subjects: vec![format!("{stream}.>")],
            ..Default::default()
        })
        .await?;
        measure(events, async {
            let mut acks = Vec::with_capacity(5_000);
            for id in 0..events {
                acks.push(js.publish(format!("{stream}.r"), record(id).into()).await?);
                if acks.len() == 5_000 {
                    for ack in acks.drain(..) {
                        ack.await?;
                    }
                }
            }
            for ack in acks.drain(..) {
                ack.await?;
            }
            Ok(())
        })
        .await
    };
    let stream = unique("BENCH");
    let produce = fill(&stream).await?;
    let weir = run_until(
        registry,
        &format!(
            "sources:\n  s: {{ type: nats, url: \"{NATS}\", stream: {stream}, consumer: weir, schema: {SCHEMA} }}\nsinks:\n  out: {{ type: blackhole, inputs: [s] }}\n"
        ),
        dir,
        events,
    )
    .await?;
    let raw_stream = unique("BENCHRAW");
    fill(&raw_stream).await?;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(&raw_stream)
        .await?
        .create_consumer(jetstream::consumer::pull::Config { durable_name: Some("raw".into()), ..Default::default() })
        .await?;
    let raw = measure(events, async {
        let mut messages = consumer.messages().await?;
        for _ in 0..events {
            let message = messages
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("stream ended"))?
                .map_err(|e| anyhow::anyhow!(e))?;
            message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(())
    })
    .await?;
    let out = unique("BENCHOUT");
    js.create_stream(jetstream::stream::Config {
        name: out.clone(),
        subjects: vec![format!("{out}.>")],
        ..Default::default()
    })
    .await?;
    let sink = run_sink(
        registry,
        dir,
        events,
        &format!("{{ type: nats, inputs: [gen], url: \"{NATS}\", subject: \"{out}.x\", jetstream: true }}"),
    )
    .await?;
    for name in [stream, raw_stream, out] {
        let _ = js.delete_stream(&name).await;
    }
    Ok(vec![
        Row { name: "nats source (JetStream)".into(), weir, reference: Some(("async-nats pull + ack".into(), raw)) },
        Row {
            name: "nats sink (JetStream)".into(),
            weir: sink,
            reference: Some(("async-nats publish + acks".into(), produce)),
        },
    ])
}

async fn redis(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Vec<Row>> {
    use ::redis::AsyncCommands;
    let client = ::redis::Client::open(REDIS)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let fill =
        async |connection: &mut ::redis::aio::MultiplexedConnection, stream: &str| -> anyhow::Result<Measurement> {
            measure(events, async {
                let mut id = 0;
                while id < events {
                    let mut pipe = ::redis::pipe();
                    for _ in 0..1000.min(events - id) {
                        pipe.xadd(stream, "*", &[("payload", record(id))]).ignore();
                        id += 1;
                    }
                    let () = pipe.query_async(connection).await?;
                }
                Ok(())
            })
            .await
        };
    let stream = unique("bench");
    fill(&mut connection, &stream).await?;
    let weir = run_until(
        registry,
        &format!(
            "sources:\n  s: {{ type: redis, url: \"{REDIS}\", stream: {stream}, group: weir, schema: {SCHEMA} }}\nsinks:\n  out: {{ type: blackhole, inputs: [s] }}\n"
        ),
        dir,
        events,
    )
    .await?;
    let raw_stream = unique("bench_raw");
    fill(&mut connection, &raw_stream).await?;
    let () = connection.xgroup_create(&raw_stream, "raw", "0").await?;
    let raw = measure(events, async {
        let options = ::redis::streams::StreamReadOptions::default().group("raw", "raw").count(1000);
        let mut seen = 0;
        while seen < events {
            let reply: ::redis::streams::StreamReadReply =
                connection.xread_options(&[&raw_stream], &[">"], &options).await?;
            let ids: Vec<String> = reply.keys.into_iter().flat_map(|k| k.ids).map(|entry| entry.id).collect();
            seen += ids.len() as u64;
            let _: usize = connection.xack(&raw_stream, "raw", &ids).await?;
        }
        Ok(())
    })
    .await?;
    let prefix = unique("bench_set");
    let sink = run_sink(
        registry,
        dir,
        events,
        &format!("{{ type: redis, inputs: [gen], url: \"{REDIS}\", command: set, key: \"{prefix}:{{id}}\" }}"),
    )
    .await?;
    let reference = redis_benchmark(events)?;
    let _: () = connection.del(&[&stream, &raw_stream]).await?;
    Ok(vec![
        Row {
            name: "redis source (Streams)".into(),
            weir,
            reference: Some(("XREADGROUP + XACK, 1000 per call".into(), raw)),
        },
        Row { name: "redis sink (SET)".into(), weir: sink, reference },
    ])
}

/// `redis-benchmark -t set -d 100 -P 1000` on the same machine, when it is installed; its CPU
/// is not this process's, so only its rate is comparable.
fn redis_benchmark(events: u64) -> anyhow::Result<Option<(String, Measurement)>> {
    let output = match std::process::Command::new("redis-benchmark")
        .args(["-t", "set", "-n", &events.to_string(), "-d", "100", "-P", "1000", "-q", "-r", "100000"])
        .output()
    {
        Ok(output) if output.status.success() => output,
        _ => return Ok(None),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // The last progress update (after the final carriage return) holds the result:
    // `SET: 740740.75 requests per second, ...`.
    let rate: f64 = text
        .rsplit('\r')
        .next()
        .and_then(|last| last.trim().strip_prefix("SET:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0.0);
    if rate <= 0.0 {
        return Ok(None);
    }
    let wall = Duration::from_secs_f64(events as f64 / rate);
    // redis-benchmark is single-threaded: one core for the whole run.
    Ok(Some(("redis-benchmark SET -P 1000 (own process)".into(), Measurement::new(events, wall, wall))))
}

async fn amqp(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Row> {
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let connection = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let fill = async |queue: &str| -> anyhow::Result<()> {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        channel.queue_declare(queue.into(), durable, FieldTable::default()).await?;
        for id in 0..events {
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    record(id).as_bytes(),
                    Default::default(),
                )
                .await?;
        }
        // Wait until the broker has them all.
        loop {
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            let queue = channel.queue_declare(queue.into(), passive, FieldTable::default()).await?;
            if u64::from(queue.message_count()) >= events {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let queue = unique("bench");
    fill(&queue).await?;
    let weir = run_until(
        registry,
        &format!(
            "sources:\n  s: {{ type: amqp, url: \"{AMQP}\", queue: {queue}, schema: {SCHEMA} }}\nsinks:\n  out: {{ type: blackhole, inputs: [s] }}\n"
        ),
        dir,
        events,
    )
    .await?;
    let raw_queue = unique("bench_raw");
    fill(&raw_queue).await?;
    channel.basic_qos(8192, BasicQosOptions::default()).await?;
    let raw = measure(events, async {
        let mut consumer = channel
            .basic_consume(
                raw_queue.as_str().into(),
                "raw".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for seen in 1..=events {
            let delivery = consumer.next().await.ok_or_else(|| anyhow::anyhow!("consumer ended"))??;
            if seen % 1000 == 0 || seen == events {
                channel.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true }).await?;
            }
        }
        Ok(())
    })
    .await?;
    for name in [&queue, &raw_queue] {
        let _ = channel.queue_delete(name.as_str().into(), Default::default()).await;
    }
    Ok(Row { name: "amqp source".into(), weir, reference: Some(("lapin consume, ack per 1000".into(), raw)) })
}

async fn postgres(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Vec<Row>> {
    let (client, connection) = tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let copy_table = unique("bench_copy");
    let upsert_table = unique("bench_upsert");
    let copy = run_sink(
        registry,
        dir,
        events,
        &format!("{{ type: postgres, inputs: [gen], url: \"{POSTGRES}\", table: {copy_table}, create_table: true }}"),
    )
    .await?;
    let upsert = run_sink(
        registry,
        dir,
        events,
        &format!(
            "{{ type: postgres, inputs: [gen], url: \"{POSTGRES}\", table: {upsert_table}, mode: upsert, key: [id], create_table: true }}"
        ),
    ).await?;
    // Reference: row-by-row INSERTs of a tenth of the rows with a prepared statement.
    let rows = (events / 10).max(1);
    let row_table = unique("bench_rows");
    client
        .batch_execute(&format!(
            "CREATE TABLE {row_table} (id bigint, device text, temp double precision, site text, pad text)"
        ))
        .await?;
    let insert = client.prepare(&format!("INSERT INTO {row_table} VALUES ($1, $2, $3, $4, $5)")).await?;
    let row_by_row = measure(rows, async {
        for id in 0..rows as i64 {
            client.execute(&insert, &[&id, &"dev-0001", &21.5f64, &"berlin-north-1", &"xxxxxxxx"]).await?;
        }
        Ok(())
    })
    .await?;
    client
        .batch_execute(&format!("DROP TABLE {copy_table}; DROP TABLE {upsert_table}; DROP TABLE {row_table}"))
        .await?;
    Ok(vec![
        Row {
            name: "postgres sink, append (binary COPY)".into(),
            weir: copy,
            reference: Some(("row-by-row INSERT".into(), row_by_row)),
        },
        Row {
            name: "postgres sink, upsert (INSERT .. UNNEST .. ON CONFLICT)".into(),
            weir: upsert,
            reference: Some(("row-by-row INSERT".into(), row_by_row)),
        },
    ])
}

async fn mysql(events: u64, dir: &std::path::Path, registry: &Registry) -> anyhow::Result<Row> {
    use mysql_async::prelude::Queryable;
    let table = unique("bench_mysql");
    let weir = run_sink(
        registry,
        dir,
        events,
        &format!("{{ type: mysql, inputs: [gen], url: \"{MYSQL}\", table: {table}, create_table: true }}"),
    )
    .await?;
    let mut connection = mysql_async::Conn::from_url(MYSQL).await?;
    let rows = (events / 10).max(1);
    let row_table = unique("bench_mysql_rows");
    connection
        .query_drop(format!("CREATE TABLE {row_table} (id BIGINT, device TEXT, temp DOUBLE, site TEXT, pad TEXT)"))
        .await?;
    let row_by_row = measure(rows, async {
        let statement = connection.prep(format!("INSERT INTO {row_table} VALUES (?, ?, ?, ?, ?)")).await?;
        for id in 0..rows {
            connection.exec_drop(&statement, (id, "dev-0001", 21.5f64, "berlin-north-1", "xxxxxxxx")).await?;
        }
        Ok(())
    })
    .await?;
    connection.query_drop(format!("DROP TABLE {table}; DROP TABLE {row_table}")).await?;
    Ok(Row {
        name: "mysql sink, append (multi-row INSERT)".into(),
        weir,
        reference: Some(("row-by-row INSERT".into(), row_by_row)),
    })
}
