//! The job owner's side of `crowdfactor-server`: submit, list, watch, fetch
//! results and cancel, over the HTTP API.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Subcommand;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// `eprintln!` that does not panic when stderr is gone (a closed pipe):
/// a note that cannot be shown is dropped, and the exit code still tells.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Exit code for "the server said no" (bad request, unknown job, 401).
pub const EXIT_REFUSED: u8 = 3;
/// Exit code for "the server could not be reached".
pub const EXIT_UNREACHABLE: u8 = 4;

#[derive(Debug, clap::Args)]
pub struct Conn {
    /// Base URL of the coordinator (also `--server`, as the worker names it).
    #[arg(
        long,
        visible_alias = "server",
        env = "CROWDFACTOR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        value_parser = base_url
    )]
    pub url: String,
    /// API token (default: CROWDFACTOR_TOKEN, else ./crowdfactor.db.token).
    #[arg(
        long = "api-token",
        env = "CROWDFACTOR_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub api_token: Option<String>,
}

/// `jobs --state`: job states, comma-separated (a typo is a usage error
/// here, not a request the server refuses).
fn job_states(given: &str) -> Result<String, String> {
    const STATES: [&str; 5] = ["queued", "running", "done", "cancelled", "open"];
    match given.split(',').find(|s| !STATES.contains(s)) {
        Some(bad) => Err(format!(
            "{bad:?} is no job state (queued, running, done, cancelled or open; comma-separated)"
        )),
        None => Ok(given.to_owned()),
    }
}

/// `--url`: http:// or https:// (http:// when no scheme is given, as
/// `localhost:8080`), with a host and a valid port; no query or fragment.
/// Checked here so that a typo is a command-line error (exit 2), not a
/// server that "cannot be reached".
fn base_url(given: &str) -> Result<String, String> {
    let given = given.trim();
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    let url = reqwest::Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {}:// (use http:// or https://)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".to_owned());
    }
    if url.port() == Some(0) {
        return Err("port 0 is not a port (1 to 65535)".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "the base URL takes no ?query or #fragment (the API token goes in --api-token)"
                .to_owned(),
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a job: numbers as arguments, from a file (or - for stdin), or a range.
    ///
    /// Examples:
    ///   crowdfactor-server submit 999999999999 1000000000001
    ///   crowdfactor-server submit --file numbers.txt --chunk-size 100
    ///   crowdfactor-server submit --range 999999999999 1000 --step 2 --watch
    #[command(
        verbatim_doc_comment,
        group(clap::ArgGroup::new("input").required(true).args(["numbers", "file", "range"]))
    )]
    Submit {
        /// Numbers to factor.
        numbers: Vec<String>,
        /// Read numbers separated by whitespace or commas from this file (- for stdin).
        #[arg(long, conflicts_with = "numbers")]
        file: Option<PathBuf>,
        /// A range: START COUNT.
        #[arg(long, num_args = 2, value_names = ["START", "COUNT"], conflicts_with_all = ["numbers", "file"])]
        range: Option<Vec<String>>,
        /// Step of --range.
        #[arg(long, default_value = "1", requires = "range")]
        step: String,
        /// Most numbers per chunk (default: sized per worker, ~2 s each).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        chunk_size: Option<u32>,
        /// Priority (-1000..1000, higher first; default 0).
        #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
        priority: Option<i32>,
        /// A name for the job, shown in `jobs` and on the dashboard (up to
        /// 100 characters).
        #[arg(long)]
        name: Option<String>,
        /// Then watch it until done.
        #[arg(long)]
        watch: bool,
    },
    /// List jobs, oldest first.
    Jobs {
        /// Only jobs in these states: queued, running, done, cancelled, or
        /// open (queued and running); comma-separated.
        #[arg(long, value_parser = job_states)]
        state: Option<String>,
    },
    /// Show a job's progress until it is done (a progress bar on a terminal); waits out a server restart (up to 5 minutes).
    Watch {
        /// The job id.
        id: String,
    },
    /// Fetch a job's results.
    ///
    /// Examples:
    ///   crowdfactor-server results 3
    ///   crowdfactor-server results 3 --format csv --output factors.csv
    #[command(verbatim_doc_comment)]
    Results {
        /// The job id.
        id: String,
        /// json, ndjson or csv.
        #[arg(long, default_value = "json", value_parser = ["json", "ndjson", "csv"])]
        format: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Change a job's priority (-1000..1000, higher first).
    ///
    /// Example:
    ///   crowdfactor-server priority 3 -10
    #[command(verbatim_doc_comment)]
    Priority {
        /// The job id.
        id: String,
        /// The new priority.
        #[arg(allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
        priority: i32,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Delete a job with its numbers and results (cancelling it if it still
    /// runs): it frees their room in the database; the id is not reused.
    Delete {
        /// The job id.
        id: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot reach {url}: {} ({})", causes(.source), unreachable_hint(.source))]
    Unreachable { url: String, source: reqwest::Error },
    /// A proxy in front of the coordinator answered for it (502, 503 or
    /// 504 without the API's JSON): the coordinator is down or restarting.
    #[error("{url} answered {status}: is the coordinator behind it running?")]
    Gateway {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Local(String),
    /// A command line clap cannot check alone (exit 2, like clap's).
    #[error("{0}")]
    Usage(String),
    /// Whoever read our output stopped (`| head`): nothing to report.
    #[error("the output was closed")]
    OutputClosed,
}

/// An error and its causes, `: `-separated: reqwest's own message says
/// only "error sending request", the cause (refused, an untrusted
/// certificate) is further down.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// What to check when the server could not be reached, by the cause.
fn unreachable_hint(e: &reqwest::Error) -> &'static str {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        // rustls's error sits inside io::Errors, whose source() skips it.
        let mut inner = cause;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            inner = wrapped;
        }
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            match tls {
                // https:// to a plain-text port: its answer is no TLS record.
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                    return "the server does not speak TLS at this address: try http://";
                }
                rustls::Error::InvalidCertificate(_) => {
                    return "its certificate is not trusted: for a private CA, name its \
                            certificate in SSL_CERT_FILE";
                }
                _ => {}
            }
        }
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
        {
            return "its answer is not HTTP: if it serves TLS, use https://";
        }
        next = cause.source();
    }
    "is crowdfactor-server running? set --url"
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Where the token came from (or why there is none), for a 401's hint.
    token_source: String,
}

/// The token file a server started with the default `--db` writes, in
/// the directory it started in.
const DEFAULT_TOKEN_FILE: &str = "crowdfactor.db.token";

impl Api {
    fn new(conn: &Conn) -> Self {
        // Trimmed like the token file: one read from a file may end in a
        // line break (a header cannot carry it).
        let given = conn.api_token.as_deref().map(str::trim);
        let (token, token_source) = match given.filter(|t| !t.is_empty()).map(str::to_owned) {
            Some(t) => (Some(t), "the token given was refused".to_owned()),
            None => match std::fs::read_to_string(DEFAULT_TOKEN_FILE) {
                Ok(t) => (
                    Some(t.trim().to_owned()),
                    format!("the token in ./{DEFAULT_TOKEN_FILE} was refused"),
                ),
                Err(e) => (
                    None,
                    format!("no token: none given, and ./{DEFAULT_TOKEN_FILE}: {e}"),
                ),
            },
        };
        Api {
            http: reqwest::Client::new(),
            base: conn.url.trim_end_matches('/').to_owned(),
            token,
            token_source,
        }
    }

    /// Sends with the token; any answer is Ok.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send().await.map_err(|source| CliError::Unreachable {
            url: self.base.clone(),
            source,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        let resp = self.exchange(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.refusal(resp).await)
    }

    /// Whether the server takes our token, asked without a body: a server
    /// refusing a large upload answers at once and closes the connection,
    /// which the client then sees as a write error, not as the 401.
    async fn check_token(&self) -> Result<(), CliError> {
        let resp = self
            .exchange(self.http.get(format!("{}/api/jobs/0", self.base)))
            .await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Err(self.refusal(resp).await);
        }
        Ok(())
    }

    /// The error for a refused request.
    async fn refusal(&self, resp: reqwest::Response) -> CliError {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let Some(msg) = body["error"]["message"].as_str().map(str::to_owned) else {
            if matches!(status.as_u16(), 502..=504) {
                return CliError::Gateway {
                    url: self.base.clone(),
                    status,
                };
            }
            // Not the API's JSON error: something else answers at --url.
            return CliError::Refused(format!(
                "{} answered {status}, not as crowdfactor's API does: is --url the \
                 coordinator's address?",
                self.base
            ));
        };
        if status.as_u16() == 401 {
            // The server's message explains the token; say which one we
            // sent and how to send another.
            return CliError::Refused(format!(
                "the server answered {status}: {}. Pass --api-token or set CROWDFACTOR_TOKEN \
                 (a server keeps its token in <its --db>.token)",
                self.token_source
            ));
        }
        CliError::Refused(format!("the server answered {status}: {msg}"))
    }

    async fn get_json(&self, path: &str) -> Result<Value, CliError> {
        let resp = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        self.read_json(resp).await
    }

    /// A successful answer's JSON body.
    async fn read_json(&self, resp: reqwest::Response) -> Result<Value, CliError> {
        resp.json().await.map_err(|e| {
            CliError::Refused(format!(
                "the answer from {} is not crowdfactor's API ({}): is --url the coordinator's \
                 address?",
                self.base,
                causes(&e)
            ))
        })
    }
}

fn line(job: &Value) -> String {
    let mut line = format!(
        "{:>6}  {:<9} {:>12} / {:<12} priority {}",
        job["id"].as_str().unwrap_or("?"),
        job["state"].as_str().unwrap_or("?"),
        job["done"],
        job["total"],
        job["priority"]
    );
    if let Some(name) = job["name"].as_str() {
        line.push_str("  ");
        line.push_str(name);
    }
    line
}

/// Runs one subcommand; returns the exit code.
pub async fn run(conn: Conn, cmd: Command) -> u8 {
    let api = Api::new(&conn);
    let outcome = match cmd {
        Command::Submit {
            numbers,
            file,
            range,
            step,
            chunk_size,
            priority,
            name,
            watch,
        } => {
            let mut fields = serde_json::Map::new();
            if let Some(c) = chunk_size {
                fields.insert("chunk_size".into(), json!(c));
            }
            if let Some(p) = priority {
                fields.insert("priority".into(), json!(p));
            }
            if let Some(n) = name {
                fields.insert("name".into(), json!(n));
            }
            submit(&api, numbers, file, range, step, fields, watch).await
        }
        Command::Jobs { state } => jobs(&api, state.as_deref()).await,
        Command::Watch { id } => watch_job(&api, &id).await,
        Command::Results { id, format, output } => results(&api, &id, &format, output).await,
        Command::Priority { id, priority } => set_priority(&api, &id, priority).await,
        Command::Cancel { id } => cancel(&api, &id).await,
        Command::Delete { id } => delete(&api, &id).await,
    };
    match outcome {
        Ok(()) | Err(CliError::OutputClosed) => 0,
        Err(e) => {
            tell!("crowdfactor-server: {e}");
            match e {
                CliError::Unreachable { .. } | CliError::Gateway { .. } => EXIT_UNREACHABLE,
                CliError::Refused(_) => EXIT_REFUSED,
                CliError::Local(_) => 1,
                CliError::Usage(_) => 2,
                CliError::OutputClosed => 0,
            }
        }
    }
}

async fn submit(
    api: &Api,
    numbers: Vec<String>,
    file: Option<PathBuf>,
    range: Option<Vec<String>>,
    step: String,
    // The job's other fields: chunk_size, priority, name.
    mut fields: serde_json::Map<String, Value>,
    watch: bool,
) -> Result<(), CliError> {
    let url = format!("{}/api/jobs", api.base);
    let resp = match (range, file) {
        (Some(r), _) => {
            let count = r[1].parse::<u64>().map_err(|_| {
                CliError::Usage(format!("range COUNT {:?} is not a whole number", r[1]))
            })?;
            fields.insert(
                "range".into(),
                json!({"start": r[0], "count": count, "step": step}),
            );
            api.send(api.http.post(url).json(&fields)).await?
        }
        (None, Some(path)) => {
            let cannot = |e: &std::io::Error| format!("cannot read {}: {e}", path.display());
            let input: Box<dyn Read + Send> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(std::fs::File::open(&path).map_err(|e| CliError::Local(cannot(&e)))?)
            };
            api.check_token().await?;
            // The file goes as the text it is, the job's other fields in
            // the query string: the server reads the list, and names the
            // line of anything in it that is no number.
            let (body, failed) = file_body(input);
            let sent = api
                .send(
                    api.http
                        .post(format!("{url}{}", job_query(&fields)))
                        .header(reqwest::header::CONTENT_TYPE, "text/plain")
                        .body(body),
                )
                .await;
            // A read error ends the upload: report it rather than what
            // the request made of it.
            if let Some(e) = failed.lock().ok().and_then(|mut f| f.take()) {
                return Err(CliError::Local(cannot(&e)));
            }
            sent?
        }
        (None, None) if !numbers.is_empty() => {
            // `submit numbers.txt` meant --file: say so before the server
            // calls the file's name a bad number.
            if let Some(path) = numbers
                .iter()
                .find(|n| !n.bytes().all(|b| b.is_ascii_digit()) && Path::new(n.as_str()).is_file())
            {
                return Err(CliError::Usage(format!(
                    "{path:?} is a file, not a number: to submit the numbers in it, use --file {path}"
                )));
            }
            fields.insert("numbers".into(), json!(numbers));
            api.send(api.http.post(url).json(&fields)).await?
        }
        (None, None) => {
            return Err(CliError::Usage(
                "nothing to submit: give numbers, --file FILE or --range START COUNT".into(),
            ))
        }
    };
    let job = api.read_json(resp).await?;
    let id = job["id"].as_str().unwrap_or("?").to_owned();
    say(&id)?;
    // Chunks are cut as workers take them (sized to each one's speed), so
    // there is no chunk count to report yet.
    let hint = if watch {
        String::new()
    } else {
        format!("; follow it with `crowdfactor-server watch {id}`")
    };
    let total = job["total"].as_u64().unwrap_or(0);
    let noun = if total == 1 { "number" } else { "numbers" };
    tell!("submitted job {id}: {total} {noun}{hint}");
    if watch {
        watch_job(api, &id).await?;
    }
    Ok(())
}

/// The body of a job read from `input`, streamed as it is read: a file of
/// ten million numbers is never held whole. The second half holds the read
/// error that cut the body off.
fn file_body(
    mut input: Box<dyn Read + Send>,
) -> (reqwest::Body, Arc<Mutex<Option<std::io::Error>>>) {
    let failed = Arc::new(Mutex::new(None));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let slot = failed.clone();
    std::thread::spawn(move || {
        let mut block = vec![0; 1 << 20];
        loop {
            let read = match input.read(&mut block) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Kept before the upload is ended with it: the caller
                    // looks here as soon as the request fails.
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    if let Ok(mut f) = slot.lock() {
                        *f = Some(e);
                    }
                    let _ = tx.blocking_send(Err(copy));
                    return;
                }
            };
            if tx.blocking_send(Ok(block[..read].to_vec())).is_err() {
                return; // the request ended (refused, or the server is gone)
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    (reqwest::Body::wrap_stream(stream), failed)
}

/// A job's fields (`chunk_size`, `priority`, `name`) as the query string of
/// a plain-text job: `?priority=-5&name=seed%20tail`, or nothing.
fn job_query(fields: &serde_json::Map<String, Value>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let mut query = form_urlencoded::Serializer::new(String::from("?"));
    for (key, value) in fields {
        match value {
            Value::String(s) => query.append_pair(key, s),
            other => query.append_pair(key, &other.to_string()),
        };
    }
    query.finish()
}

/// Jobs asked for at once by `jobs`: a long history is printed page by
/// page as it comes, never held whole by the server or here.
const JOBS_PAGE: usize = 500;

async fn jobs(api: &Api, state: Option<&str>) -> Result<(), CliError> {
    let mut listed = 0;
    let mut after: Option<String> = None;
    loop {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("limit", &JOBS_PAGE.to_string());
        if let Some(s) = state {
            query.append_pair("state", s);
        }
        if let Some(id) = &after {
            query.append_pair("after", id);
        }
        let list = api
            .get_json(&format!("/api/jobs?{}", query.finish()))
            .await?;
        let jobs = list["jobs"].as_array().cloned().unwrap_or_default();
        for job in &jobs {
            say(&line(job))?;
        }
        listed += jobs.len();
        match jobs.last().and_then(|j| j["id"].as_str()) {
            Some(id) if jobs.len() == JOBS_PAGE => after = Some(id.to_owned()),
            _ => break,
        }
    }
    match state {
        _ if listed > 0 => {}
        Some(s) => tell!("no jobs in state {s}"),
        None => tell!("no jobs yet; submit one with `crowdfactor-server submit`"),
    }
    Ok(())
}

async fn watch_job(api: &Api, id: &str) -> Result<(), CliError> {
    let job = api.get_json(&format!("/api/jobs/{id}")).await?;
    let total = job["total"].as_u64().unwrap_or(0);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = indicatif::ProgressBar::new(total);
    if tty {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} numbers  {msg}",
        ) {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    // Without a terminal (a log): a line when the state changes, when
    // progress was made at most every 5 s, and a minute after the last one.
    let mut printed: Option<(std::time::Instant, String, u64)> = None;
    // A server restarting (or a network blip) is waited out: jobs outlive
    // their server, so watching one should too, up to this long.
    const OUTAGE: Duration = Duration::from_secs(300);
    let mut lost: Option<std::time::Instant> = None;
    // The job's rate over the last polls, from the server's counts: the
    // bar's own estimate would count a job half done when the watch began
    // as done in its first second.
    let mut recent = std::collections::VecDeque::new();
    loop {
        let job = match api.get_json(&format!("/api/jobs/{id}")).await {
            Ok(job) => job,
            Err(e @ (CliError::Unreachable { .. } | CliError::Gateway { .. })) => {
                let since = *lost.get_or_insert_with(|| {
                    bar.suspend(|| {
                        tell!("crowdfactor-server: {e}; trying again for up to 5 minutes")
                    });
                    std::time::Instant::now()
                });
                if since.elapsed() >= OUTAGE {
                    bar.abandon();
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if lost.take().is_some() {
            bar.suspend(|| tell!("crowdfactor-server: reached the server again"));
        }
        let done = job["done"].as_u64().unwrap_or(0);
        let state = job["state"].as_str().unwrap_or("?").to_owned();
        bar.set_position(done);
        bar.set_message(match job_rate(&mut recent, done) {
            Some(rate) if state == "running" => format!(
                "{}/s  eta {:#}  {state}",
                indicatif::HumanCount(rate.round() as u64),
                indicatif::HumanDuration(Duration::from_secs_f64(
                    total.saturating_sub(done) as f64 / rate
                ))
            ),
            _ => state.clone(),
        });
        let due = printed.as_ref().is_none_or(|(at, was, was_done)| {
            *was != state
                || (done != *was_done && at.elapsed() >= Duration::from_secs(5))
                || at.elapsed() >= Duration::from_secs(60)
        });
        if !tty && due {
            tell!("job {id}: {state}, {done} of {total} numbers");
            printed = Some((std::time::Instant::now(), state.clone(), done));
        }
        match state.as_str() {
            "done" => {
                bar.finish();
                return Ok(());
            }
            "cancelled" => {
                bar.abandon();
                return Err(CliError::Refused(format!("job {id} was cancelled")));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Numbers per second over the last 10 s of `(when, done)` samples (this
/// one added), once they span a second and show progress.
fn job_rate(
    recent: &mut std::collections::VecDeque<(std::time::Instant, u64)>,
    done: u64,
) -> Option<f64> {
    let now = std::time::Instant::now();
    recent.push_back((now, done));
    while recent.len() > 2
        && recent
            .front()
            .is_some_and(|(at, _)| now - *at > Duration::from_secs(10))
    {
        recent.pop_front();
    }
    let &(since, was) = recent.front()?;
    let secs = (now - since).as_secs_f64();
    (secs >= 1.0 && done > was).then(|| (done - was) as f64 / secs)
}

async fn results(
    api: &Api,
    id: &str,
    format: &str,
    output: Option<PathBuf>,
) -> Result<(), CliError> {
    // The results of an unfinished job hold only the numbers done so far:
    // say so, where a CSV or NDJSON file alone would not.
    let job = api.get_json(&format!("/api/jobs/{id}")).await?;
    if let ("queued" | "running" | "cancelled", Some(done), Some(total)) = (
        job["state"].as_str().unwrap_or(""),
        job["done"].as_u64(),
        job["total"].as_u64(),
    ) {
        tell!(
            "crowdfactor-server: job {id} is {}: the results hold {done} of its {total} numbers",
            job["state"].as_str().unwrap_or("")
        );
    }
    // Gzipped on the wire (a third of the size), unpacked as it arrives.
    let resp = api
        .send(
            api.http
                .get(format!(
                    "{}/api/jobs/{id}/results?format={format}",
                    api.base
                ))
                .header(reqwest::header::ACCEPT_ENCODING, "gzip"),
        )
        .await?;
    let gzipped = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let file: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| CliError::Local(format!("cannot create {}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut sink = if gzipped {
        Sink::Gzip(Box::new(flate2::write::GzDecoder::new(file)))
    } else {
        Sink::Plain(file)
    };
    // Streamed to the output as it arrives: large jobs never sit in memory.
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| CliError::Refused(format!("the download broke off: {e}")))?;
        sink.write_all(&piece)?;
    }
    // The JSON document ends without a newline; a terminal wants one. It goes
    // after the gzip stream, which takes nothing past its end.
    sink.finish(if format == "json" { b"\n" } else { b"" })
}

/// Where downloaded results go: as they come, or unpacked from gzip.
enum Sink {
    Plain(Box<dyn Write>),
    Gzip(Box<flate2::write::GzDecoder<Box<dyn Write>>>),
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        match self {
            Sink::Plain(w) => w.write_all(bytes).map_err(local),
            Sink::Gzip(z) => z.write_all(bytes).map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                    CliError::Refused(format!("the download is not valid gzip: {e}"))
                }
                _ => local(e),
            }),
        }
    }

    /// Writes `trailer` and flushes the output; for gzip first checks the
    /// stream was whole.
    fn finish(self, trailer: &[u8]) -> Result<(), CliError> {
        let mut w = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(mut z) => {
                z.try_finish()
                    .map_err(|e| CliError::Refused(format!("the download ended early: {e}")))?;
                z.finish().map_err(local)?
            }
        };
        w.write_all(trailer).map_err(local)?;
        w.flush().map_err(local)
    }
}

fn local(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return CliError::OutputClosed;
    }
    CliError::Local(e.to_string())
}

async fn set_priority(api: &Api, id: &str, priority: i32) -> Result<(), CliError> {
    let url = format!("{}/api/jobs/{id}", api.base);
    let resp = api
        .send(api.http.patch(url).json(&json!({ "priority": priority })))
        .await?;
    print_job(api, resp).await
}

async fn cancel(api: &Api, id: &str) -> Result<(), CliError> {
    let resp = api
        .send(api.http.delete(format!("{}/api/jobs/{id}", api.base)))
        .await?;
    print_job(api, resp).await
}

async fn delete(api: &Api, id: &str) -> Result<(), CliError> {
    api.send(
        api.http
            .delete(format!("{}/api/jobs/{id}", api.base))
            .query(&[("purge", "true")]),
    )
    .await?;
    say(&format!("job {id} deleted"))
}

async fn print_job(api: &Api, resp: reqwest::Response) -> Result<(), CliError> {
    let job = api.read_json(resp).await?;
    say(&line(&job))
}

/// Prints a line on stdout (`println!` would panic once a reader such as
/// `head` has gone).
fn say(text: &str) -> Result<(), CliError> {
    writeln!(std::io::stdout().lock(), "{text}").map_err(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_fields_go_in_its_query_string() {
        assert_eq!(job_query(&Default::default()), "");
        let mut fields = serde_json::Map::new();
        fields.insert("priority".into(), json!(-3));
        fields.insert("chunk_size".into(), json!(40));
        fields.insert("name".into(), json!("seed tail & more"));
        let query = job_query(&fields);
        let pairs: std::collections::HashMap<String, String> =
            form_urlencoded::parse(query.strip_prefix('?').expect("a query").as_bytes())
                .into_owned()
                .collect();
        assert_eq!(pairs.len(), 3, "{query}");
        assert_eq!(pairs["priority"], "-3");
        assert_eq!(pairs["chunk_size"], "40");
        assert_eq!(pairs["name"], "seed tail & more");
    }
}
