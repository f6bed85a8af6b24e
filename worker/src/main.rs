//! `crowdfactor-worker`: contributes this machine's cores to a crowdfactor
//! coordinator, or factors numbers locally like GNU `factor`.

mod big;
mod cli_factor;
mod reuse;
mod session;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use crowdfactor_process::{hangup_ignored, init_logs, keep_heap_slack, LogFormat};
use tokio_tungstenite::tungstenite::http::Uri;

/// crowdfactor native worker.
///
/// Connects to a coordinator over one WebSocket and factors the chunks it
/// pushes on N compute threads, reconnecting with backoff if the server goes
/// away. `factor` factors numbers locally with GNU factor's output format.
///
/// Examples:
///   crowdfactor-worker --server ws://127.0.0.1:8080/ws
///   crowdfactor-worker --server ws://coordinator:8080/ws --threads 4 --name lab-pc
///   crowdfactor-worker --server https://factor.example.org   # TLS (wss://)
///   crowdfactor-worker coordinator:8080          # the same as --server
///   crowdfactor-worker --exit-when-idle          # finish the queue, then exit 0
///   crowdfactor-worker factor 999999999999 12
///   seq 1000 2000 | crowdfactor-worker factor --threads 2
///
/// Ctrl-C (or SIGTERM, or SIGHUP when its terminal is closed, unless
/// started with `nohup`) hands back the chunks not started, finishes the
/// ones in progress, and exits 0; a second one quits at once (the server
/// requeues).
///
/// Exit codes: 0 success (idle with --exit-when-idle, or stopped); 1 invalid
/// numbers given to `factor`; 2 bad command line; 3 refused by the
/// coordinator for good (wrong or missing --token, or it speaks none of the
/// worker's protocol versions, 3 to 6: upgrade whichever is older; a newer
/// worker speaks an older coordinator's version by itself); 130 a second
/// stop signal. Anything else
/// (server down, restarting, banned for a while) is retried with backoff.
// The doc comment is the `--help` text: its URLs stay bare, as typed.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment, args_conflicts_with_subcommands = true)]
struct Args {
    /// The coordinator: its WebSocket URL (ws:// or wss://), its page URL
    /// (http://host:8080/, https://host/) or just host:port. A `?token=` in
    /// it, as in a page URL for a coordinator with --worker-token, is used
    /// as --token. TLS checks the
    /// server's certificate against the system's store (SSL_CERT_FILE or
    /// SSL_CERT_DIR name another, e.g. a private CA).
    #[arg(
        long,
        env = "CROWDFACTOR_SERVER",
        default_value = "ws://127.0.0.1:8080/ws",
        value_parser = ws_url
    )]
    server: Endpoint,
    /// The coordinator, as --server takes it, given without the option
    /// (`crowdfactor-worker coordinator:8080`).
    #[arg(value_name = "SERVER", value_parser = ws_url)]
    at: Option<Endpoint>,
    /// Compute threads, up to 1024 (default, or 0: all cores).
    #[arg(long, short = 't', env = "CROWDFACTOR_THREADS", value_parser = thread_count)]
    threads: Option<usize>,
    /// Name shown to the operator (up to 64 characters, no control characters).
    #[arg(long, env = "CROWDFACTOR_NAME", value_parser = worker_name)]
    name: Option<String>,
    /// Worker token, if the coordinator requires one (its --worker-token);
    /// overrides a `?token=` in --server.
    #[arg(long, env = "CROWDFACTOR_WORKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CPU share each compute thread may use, 1-100 (sleeps between slices).
    #[arg(long, env = "CROWDFACTOR_CPU_PERCENT", default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    cpu_percent: u8,
    /// Exit with status 0 once the coordinator has no work left for this worker.
    #[arg(long)]
    exit_when_idle: bool,
    /// Log lines as text, or as JSON (one object per line, for log
    /// collectors). Levels from RUST_LOG (default info).
    #[arg(
        long,
        env = "CROWDFACTOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the prime factors of each number, like GNU coreutils `factor`.
    ///
    /// Reads numbers from the arguments, or from stdin when there are none
    /// (separated by spaces, tabs or newlines: as in GNU factor, the `\r`
    /// of a CRLF line makes its number invalid). Output: `n: p1 p2 ...`, one
    /// line per input, in input order. Numbers of any size: from 2^128 up
    /// by Pollard rho and ECM: about a second for a 64-bit prime factor of a
    /// composite part above 2^128, ~10 s for a 70-bit one, more from there
    /// (GNU factor, which has rho only: minutes at 64 bits). Invalid
    /// input is reported on stderr (quoted as GNU quotes it) and gives exit
    /// status 1; the other numbers are still factored.
    ///
    /// Examples:
    ///   crowdfactor-worker factor 12 340282366920938463463374607431768211455
    ///   crowdfactor-worker factor -h 1000000000000     # 1000000000000: 2^12 5^12
    ///   seq 1 1000000 | crowdfactor-worker factor --threads 2 > out.txt
    #[command(verbatim_doc_comment, disable_help_flag = true)]
    Factor {
        /// Numbers to factor (stdin when none).
        #[arg(allow_negative_numbers = true)]
        numbers: Vec<std::ffi::OsString>,
        /// Print repeated factors in the form p^e (as GNU `factor -h` does
        /// since coreutils 9.3).
        #[arg(long, short = 'h')]
        exponents: bool,
        /// Print help.
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        /// Threads for long inputs, up to 1024 (0: all cores; output order is kept).
        #[arg(long, short = 't', default_value_t = 1, value_parser = thread_count)]
        threads: usize,
    },
}

/// 0 (all cores) to the most threads the coordinator counts: more would
/// only be OS threads fighting over the cores.
fn thread_count(arg: &str) -> Result<usize, String> {
    use crowdfactor_protocol::MAX_THREADS;
    match arg.parse::<usize>() {
        Ok(n) if n <= MAX_THREADS as usize => Ok(n),
        _ => Err(format!("expected 0 (all cores) to {MAX_THREADS}")),
    }
}

/// `--name`, trimmed: refused rather than shown altered when the
/// coordinator would clip it or blank out a control character in it.
fn worker_name(arg: &str) -> Result<String, String> {
    use crowdfactor_protocol::MAX_NAME_CHARS;
    let name = arg.trim();
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{chars} characters long; the coordinator shows at most {MAX_NAME_CHARS}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("holds a control character (a line break, a tab, an escape)".into());
    }
    Ok(name.to_owned())
}

/// Reports bad arguments; returns the exit status: 2 as clap has it, but
/// GNU's message and status 1 for an unknown option of `factor`, which
/// scripts written for GNU `factor` may check.
fn bad_arguments(e: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let factor = std::env::args_os().nth(1).is_some_and(|a| a == "factor");
    let unknown = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) if e.kind() == ErrorKind::UnknownArgument => Some(arg),
        _ => None,
    };
    match unknown {
        Some(arg) if factor => {
            let what = match arg.strip_prefix("--") {
                Some(_) => format!("unrecognized option '{arg}'"),
                None => format!("invalid option -- '{}'", arg.trim_start_matches('-')),
            };
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "crowdfactor-worker factor: {what}\nTry 'crowdfactor-worker factor --help' for more information.\n"
                )
                .as_bytes(),
            );
            1
        }
        _ => {
            let _ = e.print();
            if e.use_stderr() {
                2
            } else {
                0
            }
        }
    }
}

/// The command line; the coordinator may come as `SERVER` or `--server`
/// (not both), and either overrides CROWDFACTOR_SERVER.
fn parse_args() -> Result<Args, clap::Error> {
    use clap::{parser::ValueSource, CommandFactory, FromArgMatches};
    let matches = Args::command().try_get_matches()?;
    let args = Args::from_arg_matches(&matches)?;
    if args.at.is_some() && matches.value_source("server") == Some(ValueSource::CommandLine) {
        return Err(Args::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "the coordinator is given twice, as SERVER and as --server: give it once",
        ));
    }
    Ok(args)
}

fn all_cores_if_zero(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

fn main() -> ExitCode {
    keep_heap_slack();
    // Read before anything watches SIGHUP.
    hangup_ignored();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => return ExitCode::from(bad_arguments(&e)),
    };
    if let Some(Command::Factor {
        numbers,
        exponents,
        threads,
        ..
    }) = &args.command
    {
        // clap drops the `--` that makes `-5` a number for GNU's getopt:
        // count what followed it in the raw arguments.
        let literal = std::env::args_os()
            .skip_while(|a| a != "--")
            .skip(1)
            .count();
        return ExitCode::from(cli_factor::run(
            numbers,
            literal,
            *exponents,
            all_cores_if_zero(*threads),
        ));
    }
    init_logs(args.log_format);
    // One TLS crypto provider for the process, whatever else the build
    // enables (rustls refuses to choose when it has two).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let threads = all_cores_if_zero(args.threads.unwrap_or(0));
    let server = args.at.unwrap_or(args.server);
    let opts = session::Options {
        server: server.url,
        threads,
        name: args.name.filter(|n| !n.is_empty()),
        exit_when_idle: args.exit_when_idle,
        // A token read from a file may end in a line break.
        token: args
            .token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .or(server.token),
        cpu_percent: args.cpu_percent,
        min_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(30),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crowdfactor-worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(session::run(opts))
}

/// Where to connect, from `--server`.
#[derive(Debug, Clone)]
struct Endpoint {
    /// The WebSocket URL, without any `token` query parameter.
    url: String,
    /// The `token` query parameter, if the URL had one: the page's URL
    /// carries the worker token that way (`/?token=…`), and a volunteer may
    /// paste it as it is.
    token: Option<String>,
}

/// The coordinator's WebSocket URL from what the user typed: `ws://` and
/// `wss://` as given (`/ws` when there is no path), a page URL (`http://`,
/// `https://` or no scheme) mapped to the `ws` beside it, as the page itself
/// connects: `http://h:8080/`, `http://h:8080/dashboard` and `h:8080` all
/// give `ws://h:8080/ws`. A `token` in the query is taken out of the URL
/// (so it is not logged) and used as the worker token. Anything else is
/// refused on the command line instead of being retried forever.
fn ws_url(server: &str) -> Result<Endpoint, UrlError> {
    let server = server.trim();
    let (scheme, rest, page) = match server.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "ws" => ("ws", rest, false),
            "wss" => ("wss", rest, false),
            "http" => ("ws", rest, true),
            "https" => ("wss", rest, true),
            _ => return Err(UrlError::Scheme(scheme.to_owned())),
        },
        None => ("ws", server, true),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (host, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let path = match path.rfind('/') {
        Some(slash) if page => format!("{}ws", &path[..=slash]),
        _ if page || path.is_empty() || path == "/" => "/ws".to_owned(),
        _ => path.to_owned(),
    };
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match form_urlencoded::parse(pair.as_bytes()).next() {
            Some((key, value)) if key == "token" => {
                token = Some(value.into_owned()).filter(|t| !t.is_empty());
            }
            // The page's own parameters mean nothing to the WebSocket.
            _ if page => {}
            _ => kept.push(pair),
        }
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let url = format!("{scheme}://{host}{path}{query}");
    let uri: Uri = url.parse().map_err(|source| UrlError::Invalid {
        given: server.to_owned(),
        source,
    })?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(server.to_owned()));
    }
    // The URI parser takes any text after the host's colon (and the
    // connection would then go to the scheme's default port).
    let authority = uri.authority().map_or("", |a| a.as_str());
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let after_host = authority
        .rsplit_once(']')
        .map_or(authority, |(_, tail)| tail);
    if let Some((_, port)) = after_host.rsplit_once(':') {
        if !port.is_empty() && uri.port_u16().is_none_or(|p| p == 0) {
            return Err(UrlError::Port {
                given: server.to_owned(),
                port: port.to_owned(),
            });
        }
    }
    Ok(Endpoint { url, token })
}

/// Why a `--server` value was refused.
#[derive(Debug, thiserror::Error)]
enum UrlError {
    #[error("unsupported scheme {0}:// (use ws://, wss://, http:// or https://)")]
    Scheme(String),
    #[error("{given:?} is not a valid URL: {source}")]
    Invalid {
        given: String,
        source: tokio_tungstenite::tungstenite::http::uri::InvalidUri,
    },
    #[error("{0:?} names no host")]
    NoHost(String),
    #[error("{given:?}: {port:?} is not a port (1 to 65535)")]
    Port { given: String, port: String },
}

#[cfg(test)]
mod tests {
    use super::ws_url;

    /// The exit codes in `--help` name the protocol versions the worker
    /// speaks (they had stayed "3 to 5" when protocol 6 came).
    #[test]
    fn help_names_the_protocol_versions() {
        use clap::CommandFactory;
        use crowdfactor_protocol::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};
        let help = super::Args::command().render_long_help().to_string();
        let versions = format!("versions, {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}:");
        assert!(help.contains(&versions), "{versions} not in\n{help}");
    }

    #[test]
    fn server_urls_are_normalised() {
        for (given, want, token) in [
            ("HTTPS://h", "wss://h/ws", None),
            ("wss://h:8443/ws", "wss://h:8443/ws", None),
            ("[::1]:8080", "ws://[::1]:8080/ws", None),
            ("ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8080/ws", None),
            ("ws://127.0.0.1:8080/", "ws://127.0.0.1:8080/ws", None),
            ("ws://h/socket", "ws://h/socket", None),
            ("http://127.0.0.1:8080/", "ws://127.0.0.1:8080/ws", None),
            ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws", None),
            ("http://h:8080/dashboard", "ws://h:8080/ws", None),
            ("https://h/crowdfactor/", "wss://h/crowdfactor/ws", None),
            (
                "https://factor.example.org",
                "wss://factor.example.org/ws",
                None,
            ),
            ("coordinator:8080", "ws://coordinator:8080/ws", None),
            ("coordinator:8080/ws", "ws://coordinator:8080/ws", None),
            ("ws://u:p@h:8080/ws", "ws://u:p@h:8080/ws", None),
            ("wss://u:p@h/ws", "wss://u:p@h/ws", None),
            ("[::1]:65535", "ws://[::1]:65535/ws", None),
            // The page's URL for a coordinator with --worker-token.
            (
                "http://h:8080/?token=s3cret",
                "ws://h:8080/ws",
                Some("s3cret"),
            ),
            ("https://h?token=a%2Bb#top", "wss://h/ws", Some("a+b")),
            ("http://h/?lang=en&token=x", "ws://h/ws", Some("x")),
            ("http://h/?token=", "ws://h/ws", None),
            ("ws://h:1/ws?token=x", "ws://h:1/ws", Some("x")),
            (
                "ws://h:1/ws?a=1&token=x&b=%20",
                "ws://h:1/ws?a=1&b=%20",
                Some("x"),
            ),
        ] {
            let got = ws_url(given).expect(given);
            assert_eq!(got.url, want, "{given}");
            assert_eq!(got.token.as_deref(), token, "{given}");
        }
    }

    #[test]
    fn bad_server_urls_are_refused() {
        for (given, why) in [
            ("ftp://h", "unsupported scheme ftp://"),
            ("http://[::1", "not a valid URL"),
            ("http://", "not a valid URL"),
            ("", "not a valid URL"),
            ("h st:80", "not a valid URL"),
            ("localhost:notaport", "\"notaport\" is not a port"),
            ("http://h:65536/", "\"65536\" is not a port"),
            ("ws://[::1]:0/ws", "\"0\" is not a port"),
            ("h:8o8o", "is not a port"),
        ] {
            let err = ws_url(given).expect_err(given).to_string();
            assert!(err.contains(why), "{given}: {err}");
        }
    }
}
