//! The API's trust model on a real `serve` (DESIGN §8): tokens, roles, scopes, TLS, and
//! what an unauthenticated caller gets (nothing but `/healthz` and the signed hooks).

use crate::serve::{Server, auth_line, http, http_as, serve_with};
use crate::{cascade, succeeded};
use serde_json::{Value, json};
use std::time::Duration;

/// Every route that needs a token, with a body where it takes one.
const ROUTES: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/api/v1/dag/execute",
        r#"{"tasks": [{"id": "a", "run": "true"}]}"#,
    ),
    ("GET", "/api/v1/dags", ""),
    ("GET", "/api/v1/dags/x", ""),
    ("GET", "/api/v1/runs/x", ""),
    ("GET", "/api/v1/runs/x/logs", ""),
    ("POST", "/api/v1/runs/x/cancel", ""),
    ("GET", "/api/v1/workers", ""),
    ("GET", "/api/v1/workers/worker-global", ""),
    ("POST", "/api/v1/dispatch", r#"{"event_type": "x"}"#),
    ("GET", "/api/v1/events", ""),
    ("GET", "/api/v1/tokens", ""),
    (
        "POST",
        "/api/v1/tokens",
        r#"{"name": "x", "role": "admin"}"#,
    ),
    ("DELETE", "/api/v1/tokens/admin", ""),
    ("GET", "/metrics", ""),
];

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// `cascade token create` straight in the data dir; the token printed on stdout.
pub(crate) fn create_token(
    data: &std::path::Path,
    name: &str,
    role: &str,
    scopes: &[&str],
) -> String {
    let mut cmd = cascade();
    cmd.args([
        "token",
        "create",
        "--name",
        name,
        "--role",
        role,
        "--data-dir",
    ])
    .arg(data);
    for scope in scopes {
        cmd.args(["--scope", scope]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("cas_"), "{token}");
    token
}

/// The value of a counter series with a label, from the Prometheus text.
fn counter(text: &str, name: &str, label: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<usize>().ok())
        .sum()
}

fn metrics_text(server: &Server) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        auth_line(&server.addr)
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[test]
fn every_api_route_refuses_a_request_without_a_valid_token_and_counts_it() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    assert_eq!(http_as(&server.addr, None, "GET", "/healthz", "").0, 200);
    let forged = format!("cas_{}_{}", "0".repeat(12), "0".repeat(64));
    for (method, path, body) in ROUTES {
        for auth in [
            None,
            Some("Authorization: Basic YWRtaW46YWRtaW4=\r\n".to_owned()),
            Some(bearer("not-a-token")),
            Some(bearer(&forged)),
        ] {
            let (status, answer) = http_as(&server.addr, auth.as_deref(), method, path, body);
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {answer}");
            assert!(
                answer["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("unauthorized"),
                "{answer}"
            );
        }
    }
    // Nothing was queued by the refused submission.
    let (_, dags) = http(&server.addr, "GET", "/api/v1/dags", "");
    assert_eq!(dags["dags"], json!([]));
    let text = metrics_text(&server);
    let routes = ROUTES.len();
    assert_eq!(
        counter(&text, "cascade_auth_failures_total", "reason=\"missing\""),
        routes,
        "{text}"
    );
    assert_eq!(
        counter(&text, "cascade_auth_failures_total", "reason=\"scheme\""),
        routes
    );
    assert_eq!(
        counter(&text, "cascade_auth_failures_total", "reason=\"malformed\""),
        routes
    );
    assert_eq!(
        counter(&text, "cascade_auth_failures_total", "reason=\"unknown\""),
        routes
    );
}

#[test]
fn the_admin_token_is_written_once_private_and_the_data_dir_is_closed() {
    use std::os::unix::fs::PermissionsExt as _;
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let file = data.path().join("admin.token");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(data.path()), 0o700);
    let first = server.token.clone();
    drop(server);
    // A restart keeps the token.
    let server = serve_with(data.path(), &[]);
    assert_eq!(server.token, first);
    assert_eq!(http(&server.addr, "GET", "/api/v1/workers", "").0, 200);
    // The command line without a token is told where to find one.
    let url = format!("http://{}", server.addr);
    let out = cascade()
        .args(["dag", "list", "--server", &url])
        .env_remove("CASCADE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unauthorized") && stderr.contains("--token or CASCADE_TOKEN"),
        "{stderr}"
    );
    // `--data-dir` names where the admin token is, so the server's own admin needs no flag.
    succeeded(
        cascade()
            .args([
                "dag",
                "list",
                "--output",
                "json",
                "--server",
                &url,
                "--data-dir",
            ])
            .arg(data.path())
            .env_remove("CASCADE_TOKEN"),
    );
}

fn dag(dag_id: &str, project: &str) -> String {
    json!({"dag_id": dag_id, "tasks": [{"id": "t", "run": "sleep 30", "env": {"PROJECT_ID": project}}]})
        .to_string()
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn roles_and_scopes_limit_what_a_token_sees_and_does() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let read_a = bearer(&create_token(data.path(), "read-a", "read", &["project:a"]));
    let submit_a = bearer(&create_token(
        data.path(),
        "submit-a",
        "submit",
        &["project:a"],
    ));
    let submit_all = bearer(&create_token(data.path(), "submit-all", "submit", &[]));
    let addr = server.addr.as_str();

    // Another scope's DAG, submitted by the admin.
    let (status, b) = http(
        addr,
        "POST",
        "/api/v1/dag/execute",
        &dag("proj-b-nightly", "b"),
    );
    assert_eq!(status, 202, "{b}");
    let b_run = b["run_id"].as_str().unwrap().to_owned();

    // read: sees, never submits.
    let (status, answer) = http_as(
        addr,
        Some(&read_a),
        "POST",
        "/api/v1/dag/execute",
        &dag("proj-a-x", "a"),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("needs `submit`"),
        "{answer}"
    );
    // submit in its own scope: yes; in another: no.
    let (status, a) = http_as(
        addr,
        Some(&submit_a),
        "POST",
        "/api/v1/dag/execute",
        &dag("proj-a-x", "a"),
    );
    assert_eq!(
        (status, a["scope"].as_str()),
        (202, Some("project:a")),
        "{a}"
    );
    let a_run = a["run_id"].as_str().unwrap().to_owned();
    let (status, answer) = http_as(
        addr,
        Some(&submit_a),
        "POST",
        "/api/v1/dag/execute",
        &dag("proj-b-other", "b"),
    );
    assert_eq!(status, 403, "{answer}");
    // A DAG id of another scope cannot be taken over, even by naming its own scope.
    let takeover = json!({"dag_id": "proj-b-nightly", "scope": "project:a", "tasks": [{"id": "t", "run": "id"}]});
    let (status, answer) = http_as(
        addr,
        Some(&submit_a),
        "POST",
        "/api/v1/dag/execute",
        &takeover.to_string(),
    );
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("belongs to scope `project:b`"),
        "{answer}"
    );
    let (_, still) = http(addr, "GET", "/api/v1/dags/proj-b-nightly", "");
    assert_eq!(still["scope"], "project:b");
    assert!(
        still["definition"].to_string().contains("sleep 30"),
        "{still}"
    );

    // Reads of another scope are refused; of its own, answered.
    for path in [
        format!("/api/v1/runs/{b_run}"),
        format!("/api/v1/runs/{b_run}/logs"),
        "/api/v1/dags/proj-b-nightly".to_owned(),
        "/api/v1/dags?scope=project:b".to_owned(),
    ] {
        assert_eq!(
            http_as(addr, Some(&read_a), "GET", &path, "").0,
            403,
            "{path}"
        );
    }
    for path in [
        format!("/api/v1/runs/{a_run}"),
        format!("/api/v1/runs/{a_run}/logs"),
        "/api/v1/dags/proj-a-x".to_owned(),
    ] {
        assert_eq!(
            http_as(addr, Some(&read_a), "GET", &path, "").0,
            200,
            "{path}"
        );
    }
    let (_, listed) = http_as(addr, Some(&read_a), "GET", "/api/v1/dags", "");
    let ids: Vec<&str> = listed["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["proj-a-x"]);
    let (_, all) = http_as(addr, Some(&submit_all), "GET", "/api/v1/dags", "");
    assert_eq!(all["dags"].as_array().unwrap().len(), 2);

    // Cancel: another scope's run is refused, and stays queued.
    let cancel_b = format!("/api/v1/runs/{b_run}/cancel");
    assert_eq!(http_as(addr, Some(&submit_a), "POST", &cancel_b, "").0, 403);
    assert_eq!(
        http_as(
            addr,
            Some(&read_a),
            "POST",
            &format!("/api/v1/runs/{a_run}/cancel"),
            ""
        )
        .0,
        403
    );
    let (_, run) = http(addr, "GET", &format!("/api/v1/runs/{b_run}"), "");
    assert!(
        matches!(run["run"]["status"].as_str(), Some("queued" | "running")),
        "{run}"
    );
    let (status, answer) = http_as(
        addr,
        Some(&submit_a),
        "POST",
        &format!("/api/v1/runs/{a_run}/cancel"),
        "",
    );
    assert!(matches!(status, 200 | 202), "{status} {answer}");

    // Workers (with their pids), metrics and tokens are for admins only.
    for (method, path) in [
        ("GET", "/api/v1/workers"),
        ("GET", "/api/v1/workers/worker-global"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/tokens"),
    ] {
        assert_eq!(
            http_as(addr, Some(&submit_all), method, path, "").0,
            403,
            "{path}"
        );
    }
    let (status, _) = http_as(
        addr,
        Some(&submit_all),
        "POST",
        "/api/v1/tokens",
        r#"{"name": "mine", "role": "admin"}"#,
    );
    assert_eq!(status, 403);
}

#[test]
fn an_empty_token_listing_is_an_empty_list() {
    let data = tempfile::tempdir().unwrap();
    let out = cascade()
        .args(["token", "list", "--output", "json", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn tokens_are_shown_once_listed_without_secrets_and_stop_at_revocation_and_expiry() {
    let data = tempfile::tempdir().unwrap();
    let server = serve_with(data.path(), &[]);
    let url = format!("http://{}", server.addr);
    let token_cmd = |args: &[&str]| {
        let out = cascade()
            .arg("token")
            .args(args)
            .args(["--server", &url, "--output", "json"])
            .env("CASCADE_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = token_cmd(&[
        "create",
        "--name",
        "ci",
        "--role",
        "read",
        "--scope",
        "project:web",
    ]);
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(
        (created["role"].as_str(), created["scopes"].clone()),
        (Some("read"), json!(["project:web"]))
    );
    let short = token_cmd(&[
        "create",
        "--name",
        "short",
        "--role",
        "read",
        "--expires",
        "1s",
    ]);
    let short = short["token"].as_str().unwrap().to_owned();
    let listed = token_cmd(&["list"]);
    let text = listed.to_string();
    assert!(
        !text.contains(&token[10..]) && !text.contains("\"token\""),
        "{text}"
    );
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ci") && names.contains(&"admin"),
        "{names:?}"
    );
    // The database holds no token text either.
    let db = std::fs::read(data.path().join("cascade.db")).unwrap();
    let wal = std::fs::read(data.path().join("cascade.db-wal")).unwrap_or_default();
    let secret = token.rsplit('_').next().unwrap();
    for bytes in [db, wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    assert_eq!(
        http_as(
            &server.addr,
            Some(&bearer(&token)),
            "GET",
            "/api/v1/dags",
            ""
        )
        .0,
        200
    );
    let revoked = token_cmd(&["revoke", "ci"]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let (status, answer) = http_as(
        &server.addr,
        Some(&bearer(&token)),
        "GET",
        "/api/v1/dags",
        "",
    );
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    // A revocation straight in the data dir reaches the server within its cache time.
    let other = create_token(data.path(), "other", "read", &[]);
    assert_eq!(
        http_as(
            &server.addr,
            Some(&bearer(&other)),
            "GET",
            "/api/v1/dags",
            ""
        )
        .0,
        200
    );
    let out = cascade()
        .args(["token", "revoke", "other", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while http_as(
        &server.addr,
        Some(&bearer(&other)),
        "GET",
        "/api/v1/dags",
        "",
    )
    .0 != 401
    {
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked token still works"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    std::thread::sleep(Duration::from_millis(1500));
    let (status, answer) = http_as(
        &server.addr,
        Some(&bearer(&short)),
        "GET",
        "/api/v1/dags",
        "",
    );
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
    // A bad request names the field.
    let out = cascade()
        .args([
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "root",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `read`, `submit` or `admin`"));
    // An admin limited to scopes would not be limited (it can make any token).
    let out = cascade()
        .args([
            "token",
            "create",
            "--name",
            "x",
            "--role",
            "admin",
            "--scope",
            "project:a",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("an admin token acts on every scope"));
}

/// `serve` with these flags; its exit code and stderr when it refuses to start.
fn refused(data: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = cascade()
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("CASCADE_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plain_http_off_loopback_and_open_metrics_off_loopback_refuse_to_start() {
    let data = tempfile::tempdir().unwrap();
    let (code, stderr) = refused(data.path(), &["--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to serve plain HTTP on 0.0.0.0:0")
            && stderr.contains("--tls-cert and --tls-key, or --behind-proxy"),
        "{stderr}"
    );
    let (code, stderr) = refused(
        data.path(),
        &["--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("is not a loopback address"), "{stderr}");
    // Told that a proxy ends TLS, it starts (and still wants tokens).
    let server = serve_with(data.path(), &["--listen", "0.0.0.0:0", "--behind-proxy"]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let local = format!("127.0.0.1:{port}");
    assert_eq!(http_as(&local, None, "GET", "/api/v1/dags", "").0, 401);
    assert_eq!(http_as(&local, None, "GET", "/healthz", "").0, 200);
}

#[test]
fn metrics_listen_serves_metrics_without_a_token_on_loopback_only() {
    let data = tempfile::tempdir().unwrap();
    let port = cascade_test::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let server = serve_with(data.path(), &["--metrics-listen", &metrics]);
    let (status, _) = http_as(&metrics, None, "GET", "/metrics", "");
    assert_eq!(status, 200);
    // Only /metrics is there.
    assert_eq!(http_as(&metrics, None, "GET", "/api/v1/dags", "").0, 404);
    assert_eq!(http_as(&server.addr, None, "GET", "/metrics", "").0, 401);
}

/// A CA and a server certificate for `localhost` and 127.0.0.1, made with openssl.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cascade test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_serves_the_api_over_https_and_plain_http_gets_nothing() {
    use std::io::{Read, Write};
    let data = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cert = certs.path().join("server.pem");
    let key = certs.path().join("server.key");
    let server = serve_with(
        data.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}");
    let list = |ca: Option<&std::path::Path>, token: &str| {
        let mut cmd = cascade();
        cmd.args(["dag", "list", "--output", "json", "--server", &url])
            .env("CASCADE_TOKEN", token);
        if let Some(ca) = ca {
            cmd.env("CASCADE_CA_CERT", ca);
        }
        cmd.output().unwrap()
    };
    let ca = certs.path().join("ca.pem");
    let out = list(Some(&ca), &server.token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    // Over TLS a token is still needed.
    let out = list(Some(&ca), "cas_nope");
    assert_eq!(out.status.code(), Some(1));
    // A client that does not trust the CA does not talk to it.
    let out = list(None, &server.token);
    assert_eq!(out.status.code(), Some(1));
    // Plain HTTP on the TLS port gets no answer of the API.
    let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));
}
