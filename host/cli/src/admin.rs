//! `weir plugin list | reload | rollback | canary | promote` and `weir savepoint`: clients of a
//! running job's admin API (`crate::api`).
//!
//! Every request that changes the job needs the API's token (`--token` / `WEIR_ADMIN_TOKEN`).
//! A new version's file is sent as a path when the API is on this machine (a loopback address;
//! the file must lie in the watched plugins directory or beside the plugin's declared file); to a
//! remote API its bytes are uploaded.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Address of the running job's admin API.
    #[arg(long, env = "WEIR_ADMIN", default_value = weir_api::DEFAULT_ADDRESS)]
    pub admin: String,
    /// Bearer token of the admin API.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// What to ask the API.
#[derive(Debug)]
pub enum Request<'a> {
    /// GET /plugins.
    List,
    /// POST /plugins/{name}/reload.
    Reload(&'a str, Option<&'a Path>),
    /// POST /plugins/{name}/rollback.
    Rollback(&'a str),
    /// Start (with a file), report (without), or stop a canary.
    Canary { name: &'a str, file: Option<&'a Path>, sample: f64, watch: Option<Duration>, stop: bool },
    /// POST /plugins/{name}/promote.
    Promote(&'a str),
    /// POST /savepoints (`?stop=true`).
    Savepoint {
        /// Stop the job after it.
        stop: bool,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    loopback: bool,
    token: Option<String>,
}

impl Client {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let address = args.admin.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let host = address.rsplit_once(':').map_or(address.as_str(), |(host, _)| host);
        let loopback =
            matches!(host, "localhost" | "[::1]") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
        Ok(Self { http, base: format!("http://{address}"), loopback, token: args.token.clone() })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A request carrying a new version: its path on this machine, or its bytes.
    fn with_file(&self, request: reqwest::RequestBuilder, file: &Path) -> anyhow::Result<reqwest::RequestBuilder> {
        if self.loopback {
            let path = std::fs::canonicalize(file).map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            Ok(request.json(&serde_json::json!({ "path": path })))
        } else {
            let bytes = std::fs::read(file).map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            Ok(request.header(reqwest::header::CONTENT_TYPE, "application/wasm").body(bytes))
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.map_err(|err| {
            anyhow::anyhow!("cannot reach the admin API at {}: {err} (is `weir run` running with it?)", self.base)
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let message = body.get("error").and_then(Value::as_str).map_or_else(|| status.to_string(), str::to_owned);
            anyhow::bail!("{message}")
        }
    }
}

/// Runs one request against the admin API and prints the answer.
pub fn main(args: &AdminArgs, request: &Request<'_>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, request)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &AdminArgs, request: &Request<'_>) -> anyhow::Result<()> {
    use reqwest::Method;
    let client = Client::new(args)?;
    let answer = match request {
        Request::List => client.send(client.request(Method::GET, "/plugins")).await?,
        Request::Reload(name, file) => {
            let request = client.request(Method::POST, &format!("/plugins/{name}/reload"));
            let request = match file {
                Some(file) => client.with_file(request, file)?,
                None => request,
            };
            client.send(request).await?
        }
        Request::Rollback(name) => {
            client.send(client.request(Method::POST, &format!("/plugins/{name}/rollback"))).await?
        }
        Request::Promote(name) => {
            client.send(client.request(Method::POST, &format!("/plugins/{name}/promote"))).await?
        }
        Request::Savepoint { stop } => {
            client.send(client.request(Method::POST, &format!("/savepoints?stop={stop}"))).await?
        }
        Request::Canary { name, file, sample, watch, stop } => {
            let path = format!("/plugins/{name}/canary");
            if let Some(file) = file {
                let start = client.request(Method::POST, &format!("{path}?sample={sample}"));
                let started = client.send(client.with_file(start, file)?).await?;
                if watch.is_none() {
                    print_answer(args, request_name(request), &started);
                    return Ok(());
                }
            }
            if let Some(watch) = watch {
                tokio::time::sleep(*watch).await;
            }
            let method = if *stop { Method::DELETE } else { Method::GET };
            client.send(client.request(method, &path)).await?
        }
    };
    print_answer(args, request_name(request), &answer);
    Ok(())
}

fn request_name(request: &Request<'_>) -> &'static str {
    match request {
        Request::List => "list",
        Request::Reload(..) | Request::Rollback(_) | Request::Promote(_) => "swap",
        Request::Canary { .. } => "canary",
        Request::Savepoint { .. } => "savepoint",
    }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn print_answer(args: &AdminArgs, kind: &str, answer: &Value) {
    if args.json {
        println!("{}", serde_json::to_string_pretty(answer).unwrap_or_default());
        return;
    }
    match kind {
        "savepoint" => {
            println!(
                "savepoint {} at {}{}",
                text(answer, "id"),
                text(answer, "path"),
                if answer.get("stopping") == Some(&Value::Bool(true)) { " (the job is stopping)" } else { "" }
            );
        }
        "list" => {
            for plugin in answer.as_array().into_iter().flatten() {
                let current = plugin.get("current").cloned().unwrap_or(Value::Null);
                println!(
                    "{}  {}  serving {} (generation {}, {})  calls {}  traps {}  swaps {}  rollbacks {}{}",
                    text(plugin, "name"),
                    text(plugin, "kind"),
                    text(&current, "version"),
                    text(&current, "generation"),
                    text(&current, "origin"),
                    text(&current, "calls"),
                    text(&current, "traps"),
                    text(plugin, "swaps"),
                    text(plugin, "rollbacks"),
                    if plugin.get("pinned").is_some_and(|p| !p.is_null()) { "  pinned" } else { "" },
                );
                for version in plugin.get("history").and_then(Value::as_array).into_iter().flatten() {
                    println!(
                        "    earlier {} (generation {})  calls {}  traps {}",
                        text(version, "version"),
                        text(version, "generation"),
                        text(version, "calls"),
                        text(version, "traps")
                    );
                }
                if let Some(canary) = plugin.get("canary").filter(|c| !c.is_null()) {
                    print_canary(canary);
                }
            }
        }
        "swap" => {
            let serving = answer.get("serving").cloned().unwrap_or(Value::Null);
            println!(
                "{}: now serving {} (generation {})",
                text(answer, "plugin"),
                text(&serving, "version"),
                text(&serving, "generation")
            );
        }
        _ => {
            if let Some(canary) = answer.get("canary") {
                print_canary(canary);
            }
        }
    }
}

fn print_canary(canary: &Value) {
    println!(
        "    canary {}: {} rows compared in {} batches, {} differ; {} batches skipped, {} candidate failures; ns/row current {:.1}, candidate {:.1}",
        text(canary, "candidate"),
        text(canary, "rows_compared"),
        text(canary, "batches_compared"),
        text(canary, "rows_differing"),
        text(canary, "batches_skipped"),
        text(canary, "candidate_failures"),
        canary.get("current_ns_per_row").and_then(Value::as_f64).unwrap_or(0.0),
        canary.get("candidate_ns_per_row").and_then(Value::as_f64).unwrap_or(0.0),
    );
    for example in canary.get("examples").and_then(Value::as_array).into_iter().flatten() {
        println!(
            "      {} {}: current {} | candidate {}",
            text(example, "function"),
            text(example, "args"),
            text(example, "current"),
            text(example, "candidate")
        );
    }
    if let Some(failure) = canary.get("last_failure").and_then(Value::as_str) {
        println!("      last candidate failure: {failure}");
    }
}
