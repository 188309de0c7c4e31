//! Behind proxies and load balancers: `--forwarded-allow-ips` with the
//! secure-scheme headers deciding `wsgi.url_scheme`, and `--proxy-protocol`
//! (v1 and v2 headers, written as raw bytes) deciding REMOTE_ADDR and
//! REMOTE_PORT, with `--proxy-allow-from` deciding who may send one.

mod support;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::client::Client;
use support::{Server, ServerBuilder, TempDir};

/// The environ as the `echo` app reports it: key → ascii() repr.
fn environ(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let key = fields.next()?.to_string();
            let _kind = fields.next()?;
            Some((key, fields.next()?.to_string()))
        })
        .collect()
}

/// Reads one response on `client`, asserts 200, and returns its environ.
fn read_environ(client: &mut Client) -> HashMap<String, String> {
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    environ(&response.text())
}

/// Sends `raw` on a new connection and returns the environ the app saw.
fn environ_for(server: &Server, raw: &[u8]) -> HashMap<String, String> {
    let mut client = server.connect();
    client.send(raw);
    read_environ(&mut client)
}

/// A request with `headers` (CRLF-terminated lines), closing the connection.
fn request_with(headers: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: example.com\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

const KEEP_ALIVE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn quoted(value: &str) -> String {
    format!("'{value}'")
}

/// Asserts the server answers 400 and then closes the connection.
fn assert_rejected_with_400(client: &mut Client) {
    let response = client.read_response();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        client.is_closed_within(Duration::from_secs(5)),
        "connection left open after the 400"
    );
}

// --- wsgi.url_scheme ------------------------------------------------------

#[test]
fn trusted_peer_with_x_forwarded_proto_https_gets_url_scheme_https() {
    let server = Server::start("echo:application");
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("https"));
    // No port in Host: the https default, as gunicorn reports it.
    assert_eq!(env["SERVER_PORT"], quoted("443"));
}

#[test]
fn each_default_secure_scheme_header_means_https() {
    let server = Server::start("echo:application");
    for header in [
        "X-Forwarded-Proto: https\r\n",
        "X-Forwarded-Protocol: ssl\r\n",
        "X-Forwarded-Ssl: on\r\n",
        "x-forwarded-ssl: on\r\nX-Forwarded-Proto: https\r\n",
    ] {
        let env = environ_for(&server, &request_with(header));
        assert_eq!(env["wsgi.url_scheme"], quoted("https"), "{header:?}");
    }
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: http\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));
    assert_eq!(env["SERVER_PORT"], quoted("80"));
}

#[test]
fn untrusted_peer_cannot_set_the_scheme() {
    let server = ServerBuilder::new("echo:application")
        .arg("--forwarded-allow-ips")
        .arg("10.0.0.1")
        .start();
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));
    // The header itself still reaches the app.
    assert_eq!(env["HTTP_X_FORWARDED_PROTO"], quoted("https"));
}

#[test]
fn a_cidr_range_or_star_trusts_the_peer() {
    for allowed in ["10.0.0.0/8,127.0.0.0/8", "*"] {
        let server = ServerBuilder::new("echo:application")
            .arg("--forwarded-allow-ips")
            .arg(allowed)
            .start();
        let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
        assert_eq!(env["wsgi.url_scheme"], quoted("https"), "{allowed}");
    }
}

#[test]
fn conflicting_scheme_headers_get_400_and_close() {
    let server = Server::start("echo:application");
    let mut client = server.connect();
    client.send(
        b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n",
    );
    assert_rejected_with_400(&mut client);
}

#[test]
fn conflicting_scheme_headers_from_an_untrusted_peer_are_ignored() {
    let server = ServerBuilder::new("echo:application")
        .arg("--forwarded-allow-ips")
        .arg("10.0.0.1")
        .start();
    let env = environ_for(
        &server,
        &request_with("X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n"),
    );
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));
}

#[test]
fn forwarded_allow_ips_is_read_from_the_environment_and_the_flag_wins() {
    let from_env = ServerBuilder::new("echo:application")
        .env("FORWARDED_ALLOW_IPS", "10.0.0.1")
        .start();
    let env = environ_for(&from_env, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));

    let flag_wins = ServerBuilder::new("echo:application")
        .env("FORWARDED_ALLOW_IPS", "10.0.0.1")
        .arg("--forwarded-allow-ips")
        .arg("127.0.0.1")
        .start();
    let env = environ_for(&flag_wins, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("https"));
}

#[test]
fn an_empty_forwarded_allow_ips_trusts_no_tcp_peer() {
    let server = ServerBuilder::new("echo:application")
        .env("FORWARDED_ALLOW_IPS", "")
        .start();
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));
}

#[test]
fn secure_scheme_headers_can_be_replaced() {
    let server = ServerBuilder::new("echo:application")
        .arg("--secure-scheme-headers")
        .arg("X-Scheme=https")
        .start();
    let env = environ_for(&server, &request_with("X-Scheme: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("https"));
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("http"));
}

#[test]
fn unix_socket_peers_are_trusted() {
    let dir = TempDir::new("proxies-unix");
    let server = ServerBuilder::new("echo:application")
        .unix_socket(&dir.join("sock"))
        .arg("--forwarded-allow-ips")
        .arg("10.0.0.1")
        .start();
    let env = environ_for(&server, &request_with("X-Forwarded-Proto: https\r\n"));
    assert_eq!(env["wsgi.url_scheme"], quoted("https"));
}

#[test]
fn each_request_of_a_connection_gets_its_own_scheme() {
    let server = Server::start("echo:application");
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: https\r\n\r\n");
    assert_eq!(
        read_environ(&mut client)["wsgi.url_scheme"],
        quoted("https")
    );
    client.send(KEEP_ALIVE_REQUEST);
    assert_eq!(read_environ(&mut client)["wsgi.url_scheme"], quoted("http"));
}

// --- PROXY protocol -------------------------------------------------------

fn proxy_server() -> Server {
    ServerBuilder::new("echo:application")
        .arg("--proxy-protocol")
        .start()
}

/// A v2 header: version/command byte, family byte, payload.
fn v2_header(version_command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(version_command);
    header.push(family);
    header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    header.extend_from_slice(payload);
    header
}

/// A v2 PROXY TCP4 header from 192.0.2.7:54321 to 10.0.0.1:443, with a TLV
/// after the addresses.
fn v2_tcp4() -> Vec<u8> {
    let mut payload = vec![192, 0, 2, 7, 10, 0, 0, 1];
    payload.extend_from_slice(&54321u16.to_be_bytes());
    payload.extend_from_slice(&443u16.to_be_bytes());
    payload.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
    v2_header(0x21, 0x11, &payload)
}

/// A v2 PROXY TCP6 header from [2001:db8::7]:1234 to [2001:db8::1]:443.
fn v2_tcp6() -> Vec<u8> {
    let source: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut payload = source.octets().to_vec();
    payload.extend_from_slice(&destination.octets());
    payload.extend_from_slice(&1234u16.to_be_bytes());
    payload.extend_from_slice(&443u16.to_be_bytes());
    v2_header(0x21, 0x21, &payload)
}

/// Sends `header`, then two requests on the kept-alive connection, and
/// asserts both saw the client the header names.
fn assert_every_request_comes_from(server: &Server, header: &[u8], addr: &str, port: &str) {
    let mut client = server.connect();
    let mut first = header.to_vec();
    first.extend_from_slice(KEEP_ALIVE_REQUEST);
    client.send(&first);
    for request in 0..2 {
        let env = read_environ(&mut client);
        assert_eq!(env["REMOTE_ADDR"], quoted(addr), "request {request}");
        assert_eq!(env["REMOTE_PORT"], quoted(port), "request {request}");
        client.send(KEEP_ALIVE_REQUEST);
    }
}

#[test]
fn proxy_v1_tcp4_sets_the_remote_address_of_every_request() {
    let server = proxy_server();
    assert_every_request_comes_from(
        &server,
        b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n",
        "192.0.2.7",
        "54321",
    );
}

#[test]
fn proxy_v1_tcp6_sets_the_remote_address_of_every_request() {
    let server = proxy_server();
    assert_every_request_comes_from(
        &server,
        b"PROXY TCP6 2001:db8::7 2001:db8::1 1234 443\r\n",
        "2001:db8::7",
        "1234",
    );
}

#[test]
fn proxy_v2_tcp4_and_tcp6_set_the_remote_address_of_every_request() {
    let server = proxy_server();
    assert_every_request_comes_from(&server, &v2_tcp4(), "192.0.2.7", "54321");
    assert_every_request_comes_from(&server, &v2_tcp6(), "2001:db8::7", "1234");
}

#[test]
fn proxy_unknown_and_local_keep_the_real_peer() {
    let server = proxy_server();
    for header in [b"PROXY UNKNOWN\r\n".to_vec(), v2_header(0x20, 0x00, &[])] {
        let mut client = server.connect();
        let mut bytes = header.clone();
        bytes.extend_from_slice(&request_with(""));
        client.send(&bytes);
        let env = read_environ(&mut client);
        assert_eq!(env["REMOTE_ADDR"], quoted("127.0.0.1"), "{header:?}");
        assert_eq!(
            env["REMOTE_PORT"],
            quoted(&client.local_port().to_string()),
            "{header:?}"
        );
    }
}

#[test]
fn a_proxy_header_split_across_writes_is_reassembled() {
    let server = proxy_server();
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n".to_vec();
    for (header, cuts) in [(v1, vec![3, 6, 20, 41]), (v2_tcp4(), vec![5, 12, 14, 20])] {
        let mut client = server.connect();
        let mut start = 0;
        for cut in cuts {
            client.send(&header[start..cut]);
            start = cut;
            // Give the worker time to read each piece on its own.
            thread::sleep(Duration::from_millis(60));
        }
        client.send(&header[start..]);
        client.send(KEEP_ALIVE_REQUEST);
        let env = read_environ(&mut client);
        assert_eq!(env["REMOTE_ADDR"], quoted("192.0.2.7"));
        assert_eq!(env["REMOTE_PORT"], quoted("54321"));
    }
}

#[test]
fn a_connection_without_a_proxy_header_gets_400_and_close() {
    let server = proxy_server();
    let mut client = server.connect();
    client.send(KEEP_ALIVE_REQUEST);
    assert_rejected_with_400(&mut client);
    assert!(server.wait_for_log(
        "Refused PROXY protocol connection from 127.0.0.1",
        Duration::from_secs(5)
    ));
    assert!(server.log().contains("no PROXY protocol header"));
}

#[test]
fn a_malformed_proxy_header_gets_400_and_close() {
    let server = proxy_server();
    let mut long_line = b"PROXY UNKNOWN ".to_vec();
    long_line.resize(200, b'x');
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"PROXY TCP4 192.0.2.7 ::1 1 2\r\n".to_vec(), "bad address"),
        (
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 2\r\n".to_vec(),
            "bad port",
        ),
        (
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n".to_vec(),
            "protocol",
        ),
        (long_line, "longer than 107"),
        (v2_header(0x21, 0x12, &[0; 12]), "family"),
        (v2_header(0x11, 0x11, &[0; 12]), "version"),
    ];
    for (header, reason) in cases {
        let mut client = server.connect();
        let mut bytes = header.clone();
        bytes.extend_from_slice(KEEP_ALIVE_REQUEST);
        client.send(&bytes);
        assert_rejected_with_400(&mut client);
        assert!(
            server.wait_for_log(reason, Duration::from_secs(5)),
            "no log line saying {reason:?}"
        );
    }
}

#[test]
fn an_incomplete_proxy_header_gets_400_at_the_header_timeout() {
    let server = ServerBuilder::new("echo:application")
        .arg("--proxy-protocol")
        .arg("--header-timeout")
        .arg("1")
        .start();
    let mut client = server.connect();
    client.send(b"PROXY TCP4 192.0.2.7");
    assert_rejected_with_400(&mut client);
    assert!(server.wait_for_log("incomplete PROXY header", Duration::from_secs(5)));
}

#[test]
fn a_silent_connection_is_closed_at_the_header_timeout_without_a_response() {
    let server = ServerBuilder::new("echo:application")
        .arg("--proxy-protocol")
        .arg("--header-timeout")
        .arg("1")
        .start();
    let mut client = server.connect();
    assert!(client.is_closed_within(Duration::from_secs(5)));
    assert!(client.pending().is_empty());
}

#[test]
fn proxy_allow_from_accepts_a_listed_range_or_star() {
    for allowed in ["10.0.0.0/8,127.0.0.0/8", "*"] {
        let server = ServerBuilder::new("echo:application")
            .arg("--proxy-protocol")
            .arg("--proxy-allow-from")
            .arg(allowed)
            .start();
        let mut client = server.connect();
        let mut bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n".to_vec();
        bytes.extend_from_slice(&request_with(""));
        client.send(&bytes);
        assert_eq!(
            read_environ(&mut client)["REMOTE_ADDR"],
            quoted("192.0.2.7"),
            "{allowed}"
        );
    }
}

#[test]
fn a_unix_socket_peer_may_send_a_proxy_header() {
    let dir = TempDir::new("proxies-unix-pp");
    let server = ServerBuilder::new("echo:application")
        .unix_socket(&dir.join("sock"))
        .arg("--proxy-protocol")
        .arg("--proxy-allow-from")
        .arg("10.0.0.1")
        .start();
    let mut client = server.connect();
    let mut bytes = v2_tcp6();
    bytes.extend_from_slice(&request_with(""));
    client.send(&bytes);
    let env = read_environ(&mut client);
    assert_eq!(env["REMOTE_ADDR"], quoted("2001:db8::7"));
    assert_eq!(env["REMOTE_PORT"], quoted("1234"));
}

#[test]
fn a_peer_not_in_proxy_allow_from_gets_400_and_close() {
    let server = ServerBuilder::new("echo:application")
        .arg("--proxy-protocol")
        .arg("--proxy-allow-from")
        .arg("10.0.0.0/8")
        .start();
    let mut client = server.connect();
    let mut bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n".to_vec();
    bytes.extend_from_slice(KEEP_ALIVE_REQUEST);
    client.send(&bytes);
    assert_rejected_with_400(&mut client);
    assert!(server.wait_for_log(
        "Refused PROXY protocol connection from 127.0.0.1",
        Duration::from_secs(5)
    ));
    assert!(server.log().contains("not in --proxy-allow-from"));
}

#[test]
fn proxy_protocol_and_forwarded_headers_work_together() {
    // The socket peer (the proxy, 127.0.0.1) is what --forwarded-allow-ips
    // judges, not the client the PROXY header names.
    let server = proxy_server();
    let mut client = server.connect();
    let mut bytes = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\n".to_vec();
    bytes.extend_from_slice(&request_with("X-Forwarded-Proto: https\r\n"));
    client.send(&bytes);
    let env = read_environ(&mut client);
    assert_eq!(env["REMOTE_ADDR"], quoted("192.0.2.7"));
    assert_eq!(env["wsgi.url_scheme"], quoted("https"));
}

// --- settings ---------------------------------------------------------------

/// Runs the binary with `args` (it must exit on its own within 10 s) and
/// returns its exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rgunicorn"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rgunicorn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rgunicorn {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn a_bad_allow_list_exits_with_one_line_naming_the_flag() {
    for (flag, value) in [
        ("--forwarded-allow-ips", "localhost"),
        ("--proxy-allow-from", "10.0.0.0/33"),
        ("--secure-scheme-headers", "X-Forwarded-Proto"),
    ] {
        let (code, stderr) =
            run_to_exit(&[flag, value, "--bind", "127.0.0.1:1", "echo:application"]);
        assert_ne!(code, Some(0), "{flag} {value}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(stderr.contains(value), "{stderr}");
    }
}
