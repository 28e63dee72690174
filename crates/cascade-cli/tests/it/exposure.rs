//! What a run or a server leaves exposed (DESIGN §8), checked on real processes: the
//! encoded forms of secrets in logs and events, short secrets refused on load, secret
//! values in stored events and DAG definitions, the outputs file's mode and lifetime,
//! terminal control sequences in `cascade logs`, memory under large webhooks, and slow
//! connections.
//!
//! Time bounds here are generous ceilings on a hang, never measurements.

use crate::cascade;
use crate::serve::{Server, http, serve_with_env};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Secrets of the corpus: punctuation that percent-encoding changes, a space, a
/// multi-line value, non-ASCII.
const SECRETS: &[(&str, &str)] = &[
    ("PLAIN", "hunter2-super-secret"),
    ("PUNCT", "p@ss w0rd/&=+?:~*'!"),
    (
        "MULTI",
        "-----BEGIN KEY-----\nline-one-of-key\nline-two-of-key\n-----END KEY-----",
    ),
    ("UNICODE", "sécret-✓-value"),
];

/// A secrets file holding [`SECRETS`].
fn secrets_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut file = String::new();
    for (name, value) in SECRETS {
        if value.contains('\n') {
            file.push_str(&format!("{name}<<EOF\n{value}\nEOF\n"));
        } else {
            file.push_str(&format!("{name}={value}\n"));
        }
    }
    let path = dir.join("secrets.env");
    std::fs::write(&path, file).unwrap();
    path
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Every encoded form of a secret a job could print: hex in both cases, percent-encoded
/// with both cases of hex digit, base64; for each line of a multi-line value too.
pub(crate) fn encoded_forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let hex = bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
        hex
    });
    let percent = |upper: bool| -> String {
        bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let mut forms = vec![
        hex.to_uppercase(),
        hex,
        percent(true),
        percent(false),
        base64(bytes),
    ];
    forms.dedup();
    forms
}

/// Every form checked: the value, its lines, and its encodings.
fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    forms.extend(secret.lines().map(str::to_owned));
    forms.extend(encoded_forms(secret));
    forms.retain(|f| f.len() >= 4);
    forms
}

fn assert_no_secret(text: &str, what: &str) {
    for (name, value) in SECRETS {
        for form in forms(value) {
            assert!(
                !text.contains(&form),
                "secret {name} as {form:?} in {what}:\n{text}"
            );
        }
    }
}

/// A temp dir with a pipeline, run with `cascade run`.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new(pipeline: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ci.yaml"), pipeline).unwrap();
        Self { dir }
    }

    fn cascade(&self, args: &[&str]) -> std::process::Output {
        cascade()
            .current_dir(self.dir.path())
            .args(args)
            .env("CASCADE_DATA_DIR", self.dir.path().join("data"))
            .output()
            .unwrap()
    }
}

#[test]
fn the_encoded_forms_of_secrets_never_reach_a_log_cascade_logs_or_events() {
    let work = Work::new(
        r#"
jobs:
  leak:
    secrets: [PLAIN, PUNCT, MULTI, UNICODE]
    run: |
      for v in "$PLAIN" "$PUNCT" "$MULTI" "$UNICODE"; do
        printf '%s' "$v" | od -An -v -tx1 | tr -d ' \n'; echo
        printf '%s' "$v" | od -An -v -tx1 | tr -d ' \n' | tr a-f A-F; echo
        printf '%s' "$v" | base64 -w0; echo
        jq -rn --arg v "$v" '$v|@uri'
        jq -rn --arg v "$v" '$v|@uri' | sed 's/%../\L&/g'
        printf 'raw: %s\n' "$v"
      done
"#,
    );
    let secrets = secrets_file(work.dir.path());
    let out = work.cascade(&[
        "run",
        "ci.yaml",
        "--output",
        "json",
        "--secrets-file",
        secrets.to_str().unwrap(),
    ]);
    let events = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{events}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secret(&events, "the run's events");
    // The job did print something, masked.
    assert!(events.matches("***").count() >= 10, "{events}");
    let logs = work.cascade(&["logs", "last"]);
    let logs_text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert_eq!(logs.status.code(), Some(0));
    assert!(logs_text.contains("raw: ***"), "{logs_text}");
    assert_no_secret(&logs_text, "cascade logs");
    let json = work.cascade(&["logs", "last", "--output", "json"]);
    assert_no_secret(
        &String::from_utf8_lossy(&json.stdout),
        "cascade logs --output json",
    );
}

#[test]
fn a_secret_under_four_characters_is_refused_when_loaded_by_name_not_value() {
    let work = Work::new("jobs:\n  a:\n    secrets: [PIN]\n    run: echo \"$PIN\"\n");
    std::fs::write(
        work.dir.path().join("secrets.env"),
        "OK=long-enough\nPIN=q7z\n",
    )
    .unwrap();
    let out = work.cascade(&["run", "ci.yaml", "--secrets-file", "secrets.env"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`PIN`") && stderr.contains("shorter than 4"),
        "{stderr}"
    );
    assert!(!stderr.contains("q7z"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("q7z"));
    // From the environment as well.
    let out = cascade()
        .current_dir(work.dir.path())
        .args(["run", "ci.yaml"])
        .env("CASCADE_DATA_DIR", work.dir.path().join("data"))
        .env("PIN", "x9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`PIN`") && !stderr.contains("x9"),
        "{stderr}"
    );
    // `serve` refuses such a file at start.
    let mut serve = cascade()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(work.dir.path().join("data"))
        .arg("--secrets-file")
        .arg(work.dir.path().join("secrets.env"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = serve.kill();
            panic!("serve started with a 3-character secret");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    serve
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`PIN`") && !stderr.contains("q7z"),
        "{stderr}"
    );
}

#[test]
fn the_outputs_file_is_private_while_the_job_runs_and_gone_after() {
    let work = Work::new(
        r#"
jobs:
  write:
    secrets: [PLAIN]
    outputs: { v: file }
    run: |
      echo "v=$PLAIN" >> "$CASCADE_OUTPUT"
      stat -c 'mode=%a' "$CASCADE_OUTPUT"
      stat -c 'dir=%a' "$(dirname "$CASCADE_OUTPUT")"
      echo "path=$CASCADE_OUTPUT"
  failing:
    run: |
      echo "x=1" >> "$CASCADE_OUTPUT"
      echo "path=$CASCADE_OUTPUT"
      exit 3
"#,
    );
    let secrets = secrets_file(work.dir.path());
    let out = work.cascade(&[
        "run",
        "ci.yaml",
        "--secrets-file",
        secrets.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let logs = String::from_utf8_lossy(&work.cascade(&["logs", "last"]).stdout).into_owned();
    assert!(logs.contains("mode=600"), "{logs}");
    assert!(logs.contains("dir=700"), "{logs}");
    let paths: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split_once("path=").map(|(_, p)| p))
        .collect();
    assert_eq!(paths.len(), 2, "{logs}");
    for path in paths {
        let path = std::path::Path::new(path);
        assert!(!path.exists(), "{} is left after the run", path.display());
        assert!(!path.parent().unwrap().exists(), "the run dir is left");
    }
}

#[test]
fn cascade_logs_escapes_terminal_control_sequences_unless_raw() {
    let work = Work::new(
        "jobs:\n  evil:\n    run: printf 'title\\033]0;pwned\\007\\033[2J end\\tok\\n'\n",
    );
    let out = work.cascade(&["run", "ci.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    let logs = work.cascade(&["logs", "last"]);
    let text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(
        text.contains("title\\x1b]0;pwned\\x07\\x1b[2J end\tok"),
        "{text:?}"
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    let raw = work.cascade(&["logs", "last", "--raw"]);
    let raw = String::from_utf8_lossy(&raw.stdout).into_owned();
    assert!(
        raw.contains("title\u{1b}]0;pwned\u{7}\u{1b}[2J end\tok"),
        "{raw:?}"
    );
}

/// `serve` with the corpus as its secrets file and a webhook secret.
fn serve(dir: &std::path::Path) -> Server {
    let secrets = secrets_file(dir);
    serve_with_env(
        &dir.join("data"),
        &["--secrets-file", secrets.to_str().unwrap()],
        &[("CASCADE_WEBHOOK_SECRET", "webhook-secret-value")],
    )
}

#[test]
fn stored_events_and_dag_definitions_answer_a_known_secret_masked() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let (status, body) = http(
        &server.addr,
        "POST",
        "/api/v1/dispatch",
        &serde_json::json!({
            "event_type": "exposure:test",
            "client_payload": {"task_id": "t-1", "note": "token hunter2-super-secret here", "hex": encoded_forms("sécret-✓-value")[0]},
        })
        .to_string(),
    );
    assert_eq!(status, 202, "{body}");
    let (status, events) = http(&server.addr, "GET", "/api/v1/events?task_id=t-1", "");
    assert_eq!(status, 200, "{events}");
    let text = events.to_string();
    assert!(text.contains("token *** here"), "{text}");
    assert_no_secret(&text, "GET /api/v1/events");

    let dag = serde_json::json!({"dag_id": "exposed", "tasks": [{"id": "t", "run": "true", "env": {"PASSWORD": "hunter2-super-secret", "URL": "https://u:p%40ss%20w0rd%2F%26%3D%2B%3F%3A~%2A%27%21@h/"}}]});
    crate::workers::submit(&server, &dag);
    let (status, answer) = http(&server.addr, "GET", "/api/v1/dags/exposed", "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["definition"]["tasks"][0]["env"]["PASSWORD"], "***",
        "{answer}"
    );
    assert_eq!(
        answer["definition"]["tasks"][0]["env"]["URL"], "https://u:***@h/",
        "{answer}"
    );
    assert_no_secret(&answer.to_string(), "GET /api/v1/dags/{id}");
    // Not in the database file either (nor its WAL).
    for file in ["cascade.db", "cascade.db-wal"] {
        let bytes = std::fs::read(dir.path().join("data").join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("hunter2-super-secret"), "{file}");
    }
}

/// Serve's resident memory now and at its peak, in KiB (`/proc/PID/status`).
fn memory_kib(server: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const MIB: usize = 1 << 20;
const BIG: usize = 25 * MIB;

/// Posts a 25 MB webhook with `headers`, writing the body even if the server answers
/// first (a refusal may close the connection mid-body: that is no failure here), and
/// returns the status it answered.
fn big_hook(addr: &str, headers: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    write!(
        stream,
        "POST /hooks/github HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {BIG}\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut reader = stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; MIB];
        for _ in 0..BIG / MIB {
            if stream.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        response.extend_from_slice(&buf[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    drop(reader);
    let _ = writer.join();
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn eight_at_once(addr: &str, headers: &str) -> Vec<u16> {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let addr = addr.to_owned();
            let headers = headers.replace("{i}", &i.to_string());
            std::thread::spawn(move || big_hook(&addr, &headers))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn large_webhooks_are_refused_or_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let (base, _) = memory_kib(&server);
    // Unsigned: refused from the headers, so no body is buffered at all. Bound: the
    // base plus 32 MiB (hyper's read buffers and allocator slack), far below one body.
    let statuses = eight_at_once(
        &server.addr,
        "X-GitHub-Event: push\r\nX-GitHub-Delivery: u-{i}\r\n",
    );
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let (_, peak) = memory_kib(&server);
    let unsigned_bound = base + 32 * 1024;
    assert!(
        peak < unsigned_bound,
        "unsigned: peak {peak} KiB, base {base} KiB"
    );
    // Wrongly signed: read (the signature is over the body), four at a time at most.
    // Bound: base + 4 × 25 MiB + 40 MiB slack; all eight at once would be 200 MiB.
    let bad = format!("sha256={}", "0".repeat(64));
    let statuses = eight_at_once(
        &server.addr,
        &format!(
            "X-GitHub-Event: push\r\nX-GitHub-Delivery: b-{{i}}\r\nX-Hub-Signature-256: {bad}\r\n"
        ),
    );
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    let (now, peak) = memory_kib(&server);
    let signed_bound = base + (4 * 25 + 40) * 1024;
    assert!(
        peak < signed_bound,
        "wrongly signed: peak {peak} KiB, base {base} KiB, now {now} KiB"
    );
    eprintln!(
        "memory (KiB): base {base}, peak {peak}, after {now}; bounds {unsigned_bound} and {signed_bound}"
    );
    // A body declared over 25 MiB is refused before it is sent.
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: too-big\r\nX-Hub-Signature-256: {bad}\r\nConnection: close\r\n\r\n",
        BIG * 2
    )
    .unwrap();
    let mut response = [0u8; 12];
    stream.read_exact(&mut response).unwrap();
    assert_eq!(&response, b"HTTP/1.1 413");
    // The server is still well.
    assert_eq!(http(&server.addr, "GET", "/healthz", "").0, 200);
}

#[test]
fn two_hundred_slow_connections_do_not_delay_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nX-")
                .unwrap();
            s
        })
        .collect();
    // Each connection sends one more byte of its headers now and then, never finishing.
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(3) {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        let asked = Instant::now();
        let (status, _) = http(&server.addr, "GET", "/healthz", "");
        assert_eq!(status, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "healthz took {:?}",
            asked.elapsed()
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered >= 3);
    drop(slow);
    let _: Value = http(&server.addr, "GET", "/healthz", "").1;
}

#[test]
fn a_connection_that_never_finishes_its_request_head_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // The server's header timeout is 10 s; far more than that means it never closes.
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "the half-sent request was kept open: {read:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{answer:?}"
    );
    // And the server still answers others.
    assert_eq!(http(&server.addr, "GET", "/healthz", "").0, 200);
}
