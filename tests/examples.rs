//! Every example under `examples/` served from the repository root as
//! `examples.NAME:...`, checked for the output it promises.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::{Server, ServerBuilder};

fn serve_example(spec: &str) -> Server {
    ServerBuilder::new(spec).in_repo_root().start()
}

fn gunzip(data: &[u8]) -> String {
    let mut child = Command::new(support::python())
        .args([
            "-c",
            "import sys,gzip; sys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "not gzip data");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn hello_example_says_hello_world() {
    let server = serve_example("examples.hello:application");
    let response = server.get("/");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello, World!\n");
}

#[test]
fn app_class_example_iterates_its_instance() {
    let server = serve_example("examples.app_class:AppClass");
    let response = server.get("/some/path");
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(
        response.text(),
        "Hello from a class instance!\nYou asked for /some/path\n"
    );
}

#[test]
fn showenv_example_renders_an_escaped_html_table() {
    let server = serve_example("examples.showenv:application");
    let response = server.request(b"GET /env HTTP/1.1\r\nHost: x\r\nX-Probe: <script>alert(1)</script>\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(
        response.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let page = response.text();
    assert!(
        page.contains("<tr><td>REQUEST_METHOD</td><td>GET</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>PATH_INFO</td><td>/env</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<script>"),
        "unescaped header value in the page"
    );
}

#[test]
fn middleware_example_tags_search_engine_visitors() {
    let server = serve_example("examples.middleware:application");
    let response = server.request(
        b"GET / HTTP/1.1\r\nHost: x\r\nReferer: https://www.google.com/search?q=rgunicorn\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.header("X-Search-Engine"), Some("google"));
    assert!(response
        .text()
        .starts_with("Welcome, visitor from google!\n"));

    let plain = server.get("/");
    assert_eq!(plain.header("X-Search-Engine"), None);
    assert!(plain.text().starts_with("Welcome!\n"));
}

#[test]
fn middleware_example_gzips_when_the_client_accepts_it() {
    let server = serve_example("examples.middleware:application");
    let response = server.request(
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, deflate\r\nReferer: https://duckduckgo.com/?q=x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.header("Content-Encoding"), Some("gzip"));
    assert_eq!(response.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(&response.body[..2], b"\x1f\x8b");
    let text = gunzip(&response.body);
    assert!(
        text.starts_with("Welcome, visitor from duckduckgo!\n"),
        "{text}"
    );
    assert!(response.body.len() < text.len());

    let identity = server.get("/");
    assert_eq!(identity.header("Content-Encoding"), None);
}

#[test]
fn flask_example_serves_its_routes() {
    let server = serve_example("examples.flask_app:app");
    let index = server.get("/");
    assert_eq!(index.status, 200, "{}", server.log());
    assert_eq!(index.text(), "Hello from Flask on rgunicorn!\n");
    assert_eq!(server.get("/hello/world").text(), "Hello, world!\n");
    assert_eq!(server.get("/missing").status, 404);
    let json = server.get("/json");
    assert_eq!(json.header("Content-Type"), Some("application/json"));
    assert!(
        json.text().contains(r#""message":"Hello, World!""#),
        "{}",
        json.text()
    );
}

#[test]
fn flask_example_echoes_a_json_post() {
    let server = serve_example("examples.flask_app:app");
    let body = br#"{"name": "rgunicorn", "workers": 2}"#;
    let mut raw = format!(
        "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let response = server.request(&raw);
    assert_eq!(response.status, 200, "{}", server.log());
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let text = response.text();
    assert!(text.contains(r#""keys":2"#), "{text}");
    assert!(text.contains(r#""name":"rgunicorn""#), "{text}");

    let bad = server.post("/api/echo", b"not json");
    assert_eq!(bad.status, 400);
}

#[test]
fn readme_command_serves_the_hello_example_from_the_repo_root() {
    // As `target/release/rgunicorn examples.hello:application` does: no
    // --chdir, the working directory is the repository root.
    let server = ServerBuilder::new("examples.hello:application")
        .in_repo_root()
        .without_chdir()
        .start();
    assert_eq!(server.get("/").text(), "Hello, World!\n");
}
