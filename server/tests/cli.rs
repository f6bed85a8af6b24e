//! The `crowdfactor-server` binary's command line.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crowdfactor-server"))
}

/// A port that was free a moment ago, for a server started as a process.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The owner CLI (`crowdfactor-server <args>`) against `url`, with the API
/// token these tests start their servers with.
fn owner(url: &str, args: &[&str]) -> Command {
    let mut cmd = server();
    cmd.args(args)
        .env("CROWDFACTOR_URL", url)
        .env("CROWDFACTOR_TOKEN", "t0k");
    cmd
}

/// Waits (up to 20 s) until the server at `url` answers the owner CLI.
fn wait_until_serving(url: &str) {
    let start = std::time::Instant::now();
    while owner(url, &["jobs"]).output().unwrap().status.code() != Some(0) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A child process killed when the test ends, also when an assertion fails
/// (a server left running would hold the test's output open).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An empty directory of this test process's own under the temp dir.
fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crowdfactor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server process on `port` with the API token these tests use and
/// `args` besides, killed when dropped.
fn start_server<S: AsRef<std::ffi::OsStr>>(port: u16, args: &[S]) -> Reaped {
    server()
        .args(["--listen", &format!("127.0.0.1:{port}"), "--token", "t0k"])
        .args(args)
        .env("RUST_LOG", "warn")
        .spawn()
        .map(Reaped)
        .unwrap()
}

#[test]
fn help_lists_flags_and_examples() {
    let out = server().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "--db",
        "--token",
        "--worker-token",
        "--max-buffered-input",
        "--max-list-memory",
        "--keep-finished",
        "Examples:",
        "CROWDFACTOR_LISTEN",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn bad_flags_and_busy_ports_fail_with_a_clear_message() {
    /// Runs the server with `args`: it must exit with `code`, saying
    /// `text` on stderr; returns what it said.
    fn refused<S: AsRef<std::ffi::OsStr>>(args: &[S], code: i32, text: &str) -> String {
        let out = server().args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{:?}: {said}", out.status);
        assert!(said.contains(text), "{said}");
        said
    }
    refused(&["--listen", "not-an-address"], 2, "");
    // Below the 16 MiB floor.
    refused(
        &["--max-buffered-input", "8", "--in-memory"],
        2,
        "--max-buffered-input",
    );
    // Zero limits and zero durations would refuse every worker or job, or
    // lapse every lease at once.
    for flag in [
        "--chunk-seconds",
        "--lease-timeout",
        "--ack-timeout",
        "--max-chunk-size",
        "--max-numbers-per-job",
        "--max-list-memory",
        "--max-connections",
        "--max-connections-per-ip",
        "--keep-finished",
    ] {
        refused(
            &[flag, "0", "--in-memory", "--listen", "127.0.0.1:0"],
            2,
            flag,
        );
    }
    // A retention period needs its unit: 30 could be seconds or days.
    refused(
        &["--keep-finished", "30", "--in-memory"],
        2,
        "a positive number and a unit (d, h, m or s)",
    );
    refused(
        &[
            "--db",
            "/no-such-directory/crowdfactor.db",
            "--listen",
            "127.0.0.1:0",
        ],
        1,
        "the directory /no-such-directory does not exist",
    );
    // A token no Authorization header can carry is refused, without
    // printing it.
    for token in ["pässword", "two words"] {
        let said = refused(
            &["--in-memory", "--listen", "127.0.0.1:0", "--token", token],
            2,
            "cannot be sent in an Authorization header",
        );
        assert!(!said.contains(token), "{said}");
    }
    // A directory is no database, and gets no lock file beside it.
    let dir = std::env::temp_dir().join(format!("crowdfactor-db-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    refused(
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--db".as_ref(),
            dir.as_os_str(),
        ],
        1,
        "is a directory: give --db a file's path",
    );
    assert!(!dir.with_extension("lock").exists());
    std::fs::remove_dir(&dir).unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    refused(&["--listen", &addr, "--in-memory"], 1, "cannot listen");
}

#[test]
fn owner_cli_submits_watches_fetches_and_cancels() {
    let port = free_port();
    let srv = start_server(port, &["--in-memory"]);
    let url = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str]| owner(&url, args).output().unwrap();
    wait_until_serving(&url);
    // A token read from a file with its line break still works.
    let crlf = owner(&url, &["jobs"])
        .env("CROWDFACTOR_TOKEN", "t0k\r\n")
        .output()
        .unwrap();
    assert_eq!(crlf.status.code(), Some(0), "{crlf:?}");
    // Nothing to submit, or a range count that is no number: usage errors.
    assert_eq!(cli(&["submit"]).status.code(), Some(2));
    assert_eq!(cli(&["submit", "--range", "5", "x"]).status.code(), Some(2));
    assert_eq!(
        cli(&["submit", "12", "--chunk-size", "0"]).status.code(),
        Some(2)
    );
    let bad = cli(&["submit", "12", "x1"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("numbers[1]"));
    // From a file as editors and spreadsheets write them: a byte-order
    // mark, commas, CRLF line ends.
    let dir = std::env::temp_dir().join(format!("crowdfactor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("numbers.csv");
    std::fs::write(&list, "\u{feff}12,1000000000001\r\n97\r\n").unwrap();
    // A file that cannot be read is named (exit 1), also when reading
    // fails only once the upload has begun (a directory opens).
    for unreadable in [dir.clone(), dir.join("missing.txt")] {
        let failed = cli(&["submit", "--file", unreadable.to_str().unwrap()]);
        assert_eq!(failed.status.code(), Some(1), "{failed:?}");
        assert!(
            String::from_utf8_lossy(&failed.stderr).contains("cannot read"),
            "{failed:?}"
        );
    }
    // The file named without --file: a usage error that names the flag,
    // and nothing submitted.
    let meant_file = cli(&["submit", list.to_str().unwrap()]);
    assert_eq!(meant_file.status.code(), Some(2), "{meant_file:?}");
    assert!(
        String::from_utf8_lossy(&meant_file.stderr).contains("--file"),
        "{meant_file:?}"
    );
    // An item of a file that is no number: named by its line too.
    let typo = dir.join("typo.txt");
    std::fs::write(&typo, "12\r\n15\r\n\r\n97 1O1\r\n").unwrap();
    let refused = cli(&["submit", "--file", typo.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(r#"numbers[3] (line 4): "1O1" is not a decimal integer"#),
        "{refused:?}"
    );
    let ok = cli(&[
        "submit",
        "--file",
        list.to_str().unwrap(),
        "--priority",
        "2",
        "--name",
        "from a file",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let id = String::from_utf8_lossy(&ok.stdout).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&cli(&["jobs"]).stdout).contains("3 priority 2  from a file"),
        "the file's job has its three numbers, priority and name"
    );
    // No worker yet: cancel works on the queued job.
    let second = cli(&[
        "submit",
        "--range",
        "999999999999",
        "20",
        "--step",
        "2",
        "--priority",
        "-5",
        "--name",
        "seed tail",
    ]);
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    let second_id = String::from_utf8_lossy(&second.stdout).trim().to_owned();
    let jobs = cli(&["jobs"]);
    assert!(
        String::from_utf8_lossy(&jobs.stdout).contains("priority -5  seed tail"),
        "{jobs:?}"
    );
    let open = cli(&["jobs", "--state", "open"]);
    assert!(
        String::from_utf8_lossy(&open.stdout).contains("seed tail"),
        "{open:?}"
    );
    let none = cli(&["jobs", "--state", "done,cancelled"]);
    assert_eq!(none.status.code(), Some(0), "{none:?}");
    assert!(
        !String::from_utf8_lossy(&none.stdout).contains("seed tail"),
        "{none:?}"
    );
    // A state that is none: a usage error that names it.
    let typo = cli(&["jobs", "--state", "done,cancled"]);
    assert_eq!(typo.status.code(), Some(2), "{typo:?}");
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("\"cancled\" is no job state"),
        "{typo:?}"
    );
    let unnamed = cli(&["submit", "12", "--name", "two\nlines"]);
    assert_eq!(unnamed.status.code(), Some(3), "{unnamed:?}");
    assert!(
        String::from_utf8_lossy(&unnamed.stderr).contains("control character"),
        "{unnamed:?}"
    );
    assert_eq!(
        cli(&["submit", "12", "--priority", "1001"]).status.code(),
        Some(2)
    );
    let lowered = cli(&["priority", &second_id, "-10"]);
    assert_eq!(lowered.status.code(), Some(0), "{lowered:?}");
    assert!(
        String::from_utf8_lossy(&cli(&["jobs"]).stdout).contains("priority -10"),
        "{lowered:?}"
    );
    assert_eq!(
        cli(&["priority", &second_id, "1001"]).status.code(),
        Some(2)
    );
    assert_eq!(cli(&["priority", "9999", "1"]).status.code(), Some(3));
    assert_eq!(cli(&["cancel", &second_id]).status.code(), Some(0));
    // Its results are the header alone, and the command says why.
    let partial = cli(&["results", &second_id, "--format", "csv"]);
    assert_eq!(partial.status.code(), Some(0), "{partial:?}");
    assert_eq!(String::from_utf8_lossy(&partial.stdout), "n,factors\n");
    assert!(
        String::from_utf8_lossy(&partial.stderr)
            .contains("is cancelled: the results hold 0 of its 20 numbers"),
        "{partial:?}"
    );
    // A worker finishes the first job; watch returns once it is done.
    let worker = Command::new(
        env!("CARGO_BIN_EXE_crowdfactor-server")
            .replace("crowdfactor-server", "crowdfactor-worker"),
    )
    .args([
        "--server",
        &format!("ws://127.0.0.1:{port}/ws"),
        "--threads",
        "1",
    ])
    .env("RUST_LOG", "warn")
    .spawn()
    .map(Reaped);
    if let Ok(w) = worker {
        assert_eq!(cli(&["watch", &id]).status.code(), Some(0));
        let csv = cli(&["results", &id, "--format", "csv"]);
        assert_eq!(csv.status.code(), Some(0), "{csv:?}");
        assert_eq!(
            String::from_utf8_lossy(&csv.stdout),
            "n,factors\n12,2 2 3\n1000000000001,73 137 99990001\n97,97\n"
        );
        // Every format, to stdout and to a file, downloads gzipped and ends
        // cleanly (JSON gets a final newline after the gzip stream).
        let json = cli(&["results", &id]);
        assert_eq!(json.status.code(), Some(0), "{json:?}");
        let text = String::from_utf8_lossy(&json.stdout);
        assert!(text.ends_with("}\n"), "{text:?}");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["results"]["1000000000001"][2], "99990001");
        let ndjson = cli(&["results", &id, "--format", "ndjson"]);
        assert_eq!(ndjson.status.code(), Some(0), "{ndjson:?}");
        assert_eq!(String::from_utf8_lossy(&ndjson.stdout).lines().count(), 3);
        // A reader that stops early (`| head`) ends the command quietly.
        for args in [&["results", &id, "--format", "csv"][..], &["jobs"][..]] {
            let mut child = owner(&url, args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
            assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
        }
        let file = dir.join("results.json");
        let saved = cli(&["results", &id, "-o", file.to_str().unwrap()]);
        assert_eq!(saved.status.code(), Some(0), "{saved:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
        drop(w);
    }
    // Deleting a job: it is gone from the list and its results; a second
    // time (or an unknown id) is exit 3.
    let deleted = cli(&["delete", &second_id]);
    assert_eq!(deleted.status.code(), Some(0), "{deleted:?}");
    assert_eq!(
        String::from_utf8_lossy(&deleted.stdout).trim(),
        format!("job {second_id} deleted")
    );
    let again = cli(&["delete", &second_id]);
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no job with id"),
        "{again:?}"
    );
    assert_eq!(cli(&["results", &second_id]).status.code(), Some(3));
    let listed = String::from_utf8_lossy(&cli(&["jobs"]).stdout).into_owned();
    let ids: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, [id.as_str()], "{listed}");
    std::fs::remove_dir_all(&dir).unwrap();
    let wrong = server()
        .args(["jobs", "--api-token", "nope"])
        .env("CROWDFACTOR_URL", &url)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(3));
    // `--server`, as the worker calls it, names the coordinator too.
    let as_worker = server()
        .args(["jobs", "--server", &url])
        .env_remove("CROWDFACTOR_URL")
        .env("CROWDFACTOR_TOKEN", "t0k")
        .output()
        .unwrap();
    assert_eq!(as_worker.status.code(), Some(0), "{as_worker:?}");
    assert!(
        String::from_utf8_lossy(&as_worker.stdout).contains(&id),
        "{as_worker:?}"
    );
    // A 401 says which token was sent, or why none was.
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("the token given was refused"), "{said}");
    let none = server()
        .args(["jobs"])
        .env("CROWDFACTOR_URL", &url)
        .env_remove("CROWDFACTOR_TOKEN")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(3));
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("no token: none given"), "{said}");
    // The connection flags may come before the subcommand's name too (as
    // the top-level help lists them); serving flags are refused with one.
    let before = server()
        .args(["--url", &url, "--api-token", "t0k", "jobs"])
        .output()
        .unwrap();
    assert_eq!(before.status.code(), Some(0), "{before:?}");
    assert!(String::from_utf8_lossy(&before.stdout).contains(&id));
    let serving = server()
        .args(["--url", &url, "--db", "other.db", "jobs"])
        .output()
        .unwrap();
    assert_eq!(serving.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&serving.stderr).contains("--db is for serving"),
        "{serving:?}"
    );
    // No scheme: http:// (as the worker's --server takes it).
    let bare = server()
        .args([
            "--url",
            url.trim_start_matches("http://"),
            "--api-token",
            "t0k",
            "jobs",
        ])
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(0), "{bare:?}");
    assert!(String::from_utf8_lossy(&bare.stdout).contains(&id));
    // A mistyped URL is a command-line error, not a server out of reach.
    for (bad, why) in [
        ("http://localhost:notaport", "invalid port"),
        ("http://127.0.0.1:65536", "invalid port"),
        ("ftp://127.0.0.1", "unsupported scheme"),
        ("http://127.0.0.1:8080/?token=x", "no ?query"),
    ] {
        let out = server().args(["--url", bad, "jobs"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("--url") && said.contains(why),
            "{bad}: {said}"
        );
    }
    drop(srv);
    let down = cli(&["jobs"]);
    assert_eq!(down.status.code(), Some(4));
}

/// A token file other users can read gets a warning at start; the one the
/// server writes itself does not.
#[cfg(unix)]
#[test]
fn a_token_file_others_can_read_is_warned_about() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("crowdfactor-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db");
    let token = dir.join("t.db.token");
    // Its log up to the line saying it listens.
    let start_log = || {
        let mut child = server()
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(Reaped)
            .unwrap();
        let stderr = child.0.stderr.take().unwrap();
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("listening on") {
                break;
            }
        }
        log
    };
    let first = start_log();
    assert!(first.contains("generated the API token"), "{first}");
    assert!(!first.contains("other users"), "{first}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let second = start_log();
    assert!(
        second.contains("other users can read the API token file"),
        "{second}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `watch` waits out a server that restarts (here killed outright) and
/// follows the job to its end on the new one.
#[test]
fn watch_outlasts_a_server_restart() {
    let port = free_port();
    let dir = fresh_dir("watch");
    let db = dir.join("jobs.db");
    let start_server = || start_server(port, &["--db".as_ref(), db.as_os_str()]);
    let url = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str]| owner(&url, args).output().unwrap();
    let first = start_server();
    wait_until_serving(&url);
    // No worker: the job stays queued.
    let submitted = cli(&["submit", "12", "15"]);
    assert_eq!(submitted.status.code(), Some(0), "{submitted:?}");
    let id = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();
    let watch = owner(&url, &["watch", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(first); // SIGKILL
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _second = start_server();
    wait_until_serving(&url);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(cli(&["cancel", &id]).status.code(), Some(0));
    let out = watch.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("trying again"), "{said}");
    assert!(said.contains("reached the server again"), "{said}");
    assert!(said.contains(&format!("job {id} was cancelled")), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--keep-finished`, a job that ended that long ago is deleted with
/// its results; an open one stays.
#[test]
fn finished_jobs_are_deleted_after_keep_finished() {
    let port = free_port();
    let dir = fresh_dir("keep");
    let db = dir.join("jobs.db");
    let _srv = start_server(
        port,
        &[
            "--keep-finished".as_ref(),
            "2s".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
        ],
    );
    let url = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str]| owner(&url, args).output().unwrap();
    wait_until_serving(&url);
    let submit = |numbers: &[&str]| {
        let out = cli(&[&["submit"], numbers].concat());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // No worker: one job cancelled (it ends now), one left queued.
    let (ended, open) = (submit(&["12", "15"]), submit(&["35"]));
    // The job ends after this, so it is deleted no sooner than 2 s after.
    let before_cancel = std::time::Instant::now();
    assert_eq!(cli(&["cancel", &ended]).status.code(), Some(0));
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let out = cli(&["results", &ended]);
        if out.status.code() == Some(3) {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("no job"),
                "{out:?}"
            );
            assert!(before_cancel.elapsed() >= std::time::Duration::from_secs(2));
            break;
        }
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(
            before_cancel.elapsed() < std::time::Duration::from_secs(20),
            "job {ended} still there"
        );
    }
    let jobs = cli(&["jobs"]);
    let listed = String::from_utf8_lossy(&jobs.stdout);
    let ids: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, vec![open.as_str()], "{listed}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server on loopback that answers each connection with `answer` (after
/// reading the request) and closes it.
fn answering(answer: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut socket in listener.incoming().flatten() {
            let mut request = [0; 4096];
            let _ = socket.read(&mut request);
            let _ = socket.write_all(answer);
        }
    });
    addr.to_string()
}

/// Pointed at something that is not a coordinator, the owner CLI says what
/// answered and what to check, not a decoder's error.
#[test]
fn an_address_that_is_no_coordinator_is_named() {
    let page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n<p>hi</p>";
    let missing = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
    let tls_alert = b"\x15\x03\x03\x00\x02\x02\x32";
    let proxy = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 10\r\n\r\n<p>502</p>";
    for (scheme, answer, code, want) in [
        ("http", &page[..], 3, "is not crowdfactor's API"),
        (
            "http",
            &missing[..],
            3,
            "answered 404 Not Found, not as crowdfactor's API does",
        ),
        ("http", &tls_alert[..], 4, "if it serves TLS, use https://"),
        (
            "http",
            &proxy[..],
            4,
            "502 Bad Gateway: is the coordinator behind it running?",
        ),
        (
            "https",
            &page[..],
            4,
            "does not speak TLS at this address: try http://",
        ),
    ] {
        let url = format!("{scheme}://{}", answering(answer));
        let out = owner(&url, &["jobs"]).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{url}: {said}");
        assert!(said.contains(want), "{url}: {said}");
    }
}

/// `--log-format json`: every log line is one JSON object with the level,
/// the message and the event's fields.
#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let mut srv = server()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--token",
            "t0k",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map(Reaped)
        .unwrap();
    let stderr = srv.0.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let listening = loop {
        let line = lines.next().expect("a log line").unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
        let message = event["message"].as_str().unwrap().to_owned();
        if message.contains("listening on") {
            break event;
        }
    };
    assert!(
        listening["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{listening}"
    );
    assert_eq!(listening["level"], "INFO");
}
