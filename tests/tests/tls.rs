//! The native worker over TLS: a coordinator behind a TLS-terminating proxy
//! (how it is deployed on the internet), reached with `--server https://…`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crowdfactor_e2e::*;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

/// A proxy on 127.0.0.1 that terminates TLS with a fresh self-signed
/// certificate for `localhost` (files in `dir`, read as the server reads
/// `--tls-cert`/`--tls-key`) and forwards to `backend`. Returns its port and
/// the certificate's file, which the worker is told to trust.
async fn tls_proxy(backend: std::net::SocketAddr, dir: &Path) -> (u16, PathBuf) {
    let (cert, key) = self_signed_localhost(dir);
    let files = crowdfactor_server::tls::CertFiles::open(&cert, &key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(files.server_config().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    (port, cert)
}

/// `crowdfactor-worker --server https://localhost:<port>/`, trusting the
/// certificates in `ca_file`.
fn worker_over_tls(port: u16, ca_file: &Path, threads: &str, stderr: Stdio) -> WorkerProc {
    WorkerProc(
        Command::new(bin("crowdfactor-worker"))
            .args(["--server", &format!("https://localhost:{port}/")])
            .args(["--threads", threads, "--exit-when-idle"])
            .env("SSL_CERT_FILE", ca_file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_factors_a_job_through_tls() {
    let server = TestServer::start(Config::default()).await;
    let dir = temp_dir("tls");
    let (port, ca) = tls_proxy(server.addr, &dir).await;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 500, "step": 2}}))
        .await;

    // Not trusting the certificate: no connection, no work done, and the
    // log says why (it keeps retrying: the certificate may be renewed).
    let untrusted = dir.join("empty.pem");
    std::fs::write(&untrusted, "").unwrap();
    let log = dir.join("untrusted.log");
    let stderr = Stdio::from(std::fs::File::create(&log).unwrap());
    let mut refused = worker_over_tls(port, &untrusted, "1", stderr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(refused.wait(Duration::ZERO), None, "still retrying");
    drop(refused);
    assert_eq!(server.job(&id).await["done"], 0);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.to_lowercase().contains("certificate"), "{said}");

    // Trusting it (a private CA through SSL_CERT_FILE): the job completes.
    let mut worker = worker_over_tls(port, &ca, "2", Stdio::inherit());
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["done"], 500);
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    assert_matches_gnu(&range(999_999_999_999, 500, 2), &server.results(&id).await);
    let _ = std::fs::remove_dir_all(dir);
    server.shutdown().await;
}

/// The coordinator terminating TLS itself (`Config::tls`, what
/// `--tls-cert`/`--tls-key` set): the job API over https, a native worker
/// over wss; plain http on that port gets no HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_https_and_wss_itself() {
    let dir = temp_dir("tls-server");
    let (server, ca) = TestServer::start_tls(Config::default(), &dir).await;
    let id = server
        .submit(json!({"range": {"start": "999999999999", "count": 500, "step": 2}}))
        .await;
    let mut worker = worker_over_tls(server.addr.port(), &ca, "2", Stdio::inherit());
    let job = server.wait_done(&id, Duration::from_secs(60)).await;
    assert_eq!(job["done"], 500);
    assert_eq!(worker.wait(Duration::from_secs(30)), Some(0));
    assert_matches_gnu(&range(999_999_999_999, 500, 2), &server.results(&id).await);
    let (status, workers) = server.get("/api/workers").await;
    assert_eq!(status, 200, "{workers}");
    // Without --redirect-http, browsers are not told to keep to https.
    let https = client_trusting(&std::fs::read(&ca).unwrap());
    let page = https.get(server.url()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("strict-transport-security").is_none());

    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/status",
            server.addr.port()
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain http answered: {plain:?}");
    // A client that connects and never starts the handshake holds up nobody.
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let (status, _) = server.get("/api/status").await;
    assert_eq!(status, 200);
    let _ = std::fs::remove_dir_all(dir);
    server.shutdown().await;
}

/// The binary's flags: `--tls-cert`/`--tls-key` serve https (the client
/// subcommands reach it with the certificate in `SSL_CERT_FILE`); a key that
/// is not a key, or a flag without the other, stops it with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_flags_of_the_binary() {
    let dir = temp_dir("tls-flags");
    let (cert, key) = self_signed_localhost(&dir);
    let server_cmd = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(bin("crowdfactor-server"));
        cmd.args(["--in-memory", "--token", "tls-token"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    };

    let not_a_key = dir.join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let out = server_cmd(&["--tls-cert".as_ref(), cert.as_os_str()])
        .arg("--tls-key")
        .arg(&not_a_key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("private key") && err.contains("not-a-key.pem"),
        "{err}"
    );
    let out = server_cmd(&["--tls-cert".as_ref(), cert.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--tls-cert without --tls-key");

    let port = free_port();
    // Killed when the test ends, also on a failed assertion.
    let server = WorkerProc(
        server_cmd(&[
            "--listen".as_ref(),
            format!("127.0.0.1:{port}").as_ref(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // The job-owner subcommand `args`, trusting the certificate(s) in `ca`.
    let client_trusting = |ca: &Path, args: &[&str]| {
        Command::new(bin("crowdfactor-server"))
            .args(args)
            .args(["--url", &format!("https://localhost:{port}")])
            .args(["--api-token", "tls-token"])
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap()
    };
    let first_ca = dir.join("first-ca.pem");
    std::fs::copy(&cert, &first_ca).unwrap();
    let client = |args: &[&str]| client_trusting(&first_ca, args);
    let submitted = eventually(Duration::from_secs(20), async || {
        let out = client(&["submit", "12", "13"]);
        if out.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await;
    let id = String::from_utf8_lossy(&submitted.stdout).trim().to_owned();
    let jobs = client(&["jobs"]);
    assert!(jobs.status.success());
    assert!(String::from_utf8_lossy(&jobs.stdout).contains(&id));
    // Without trusting the certificate the client is refused.
    let untrusted = client_trusting(&not_a_key, &["jobs"]);
    assert_eq!(untrusted.status.code(), Some(4));
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(err.contains("certificate"), "{err}");

    // Renewed (a new certificate and key in the same files) and SIGHUP: new
    // connections get the new certificate, without a restart.
    let renewed = dir.join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (new_cert, new_key) = self_signed_localhost(&renewed);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let hup = || send_signal(server.0.id(), "-HUP");
    hup();
    eventually(Duration::from_secs(20), async || {
        if client_trusting(&new_cert, &["jobs"]).status.success() {
            Ok(())
        } else {
            Err("the renewed certificate is not served")
        }
    })
    .await;
    assert_eq!(
        client(&["jobs"]).status.code(),
        Some(4),
        "the old one is gone"
    );
    // A reload that fails (the key file broken mid-renewal) keeps serving
    // the certificate it had.
    std::fs::write(&key, "not a key").unwrap();
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = client_trusting(&new_cert, &["jobs"]);
    assert!(
        still.status.success(),
        "{}",
        String::from_utf8_lossy(&still.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Clients that connect and never start the handshake: at most
/// `max_connections_per_ip` wait from one address, one more is closed at
/// once, and when they go https answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_tls_clients_from_one_address_are_capped() {
    use tokio::io::AsyncReadExt;
    let dir = temp_dir("tls-silent");
    let config = Config {
        max_connections_per_ip: 3,
        ..Config::default()
    };
    let (server, _ca) = TestServer::start_tls(config, &dir).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte))
        .await
        .expect("closed at once, not left waiting for the deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(silent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = server.get("/api/status").await;
    assert_eq!(status, 200);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `--redirect-http`: plain http on a second address answers with a 308 to
/// the same host, path and query over https on the TLS port, and a browser
/// (a client following redirects) lands on the page; it needs TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_https() {
    let dir = temp_dir("tls-redirect");
    let (cert, key) = self_signed_localhost(&dir);
    let out = Command::new(bin("crowdfactor-server"))
        .args(["--in-memory", "--redirect-http", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--redirect-http without TLS");

    let (https, http) = (free_port(), free_port());
    let _server = WorkerProc(
        Command::new(bin("crowdfactor-server"))
            .args(["--in-memory", "--token", "t"])
            .args(["--listen", &format!("127.0.0.1:{https}")])
            .args(["--redirect-http", &format!("127.0.0.1:{http}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = eventually(Duration::from_secs(20), async || {
        no_follow
            .post(format!("http://127.0.0.1:{http}/api/jobs?x=1"))
            .send()
            .await
    })
    .await;
    assert_eq!(resp.status().as_u16(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://127.0.0.1:{https}/api/jobs?x=1").as_str()
    );

    let browser = client_trusting(&std::fs::read(&cert).unwrap());
    let page = browser
        .get(format!("http://localhost:{http}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.url().as_str(), format!("https://localhost:{https}/"));
    // The host is https-only now: browsers are told to remember that.
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert!(page.text().await.unwrap().contains("crowdfactor"));
    let _ = std::fs::remove_dir_all(dir);
}
