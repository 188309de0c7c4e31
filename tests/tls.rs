//! TLS through the real binary: certificates made here with rcgen (a test
//! CA, server certificates for `localhost`, client certificates), clients
//! that are curl, Python's `ssl` and rustls. Served over TLS 1.2 and 1.3
//! with `https` as the scheme; client certificates with `--cert-reqs`;
//! plain HTTP to the TLS port; certificate reload on HUP; bad files at the
//! start; stalled and trickled handshakes under the header timeout; TLS
//! and plain binds side by side (`--bind http://...`).

mod support;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::server::Address;
use support::{wait_until, ServerBuilder, TempDir};

/// A test certificate authority and the files made with it.
struct Pki {
    dir: TempDir,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A certificate and its key, as PEM.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new(label: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "rgunicorn test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let pki = Pki {
            dir: TempDir::new(label),
            ca: Issuer::new(params, key),
            ca_pem,
        };
        std::fs::write(pki.path("ca.pem"), &pki.ca_pem).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server certificate for localhost and 127.0.0.1 with `cn`.
    fn server(&self, cn: &str) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params)
    }

    /// A client certificate with subject `O=organisation, CN=cn`.
    fn client(&self, cn: &str, organisation: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, organisation);
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes `issued` as `NAME.crt` and `NAME.key`; returns the paths.
    fn write(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (cert, key)
    }

    /// A rustls client that trusts the CA, optionally with a client
    /// certificate, offering `versions`.
    fn client_config(
        &self,
        client: Option<&Issued>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let roots = config_roots(self);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some(issued) => {
                let key: PrivateKeyDer<'static> =
                    rustls::pki_types::pem::PemObject::from_pem_slice(issued.key_pem.as_bytes())
                        .unwrap();
                builder
                    .with_client_auth_cert(vec![CertificateDer::from(issued.der.clone())], key)
                    .unwrap()
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// One HTTPS exchange's outcome.
struct Exchange {
    /// Everything the server sent, decrypted.
    text: String,
    /// The certificate the server presented.
    server_cert: Vec<u8>,
    alpn: Option<Vec<u8>>,
    /// Whether the session was resumed from a ticket.
    resumed: bool,
}

impl Exchange {
    fn status(&self) -> &str {
        self.text.get(9..12).unwrap_or("")
    }

    /// The echo app's value of environ `key` (its `ascii()` form).
    fn environ(&self, key: &str) -> Option<&str> {
        self.text.lines().find_map(|line| {
            let mut fields = line.splitn(3, '\t');
            (fields.next() == Some(key)).then(|| fields.nth(1).unwrap_or(""))
        })
    }
}

fn tcp_address(server: &support::Server) -> SocketAddr {
    match server.address() {
        Address::Tcp(addr) => *addr,
        Address::Unix(_) => panic!("TLS tests use TCP"),
    }
}

/// Sends `requests` (the last should close) over one TLS connection and
/// reads until the server closes.
fn https(addr: SocketAddr, config: &Arc<ClientConfig>, requests: &[u8]) -> io::Result<Exchange> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(support::READ_TIMEOUT))?;
    tcp.set_write_timeout(Some(support::READ_TIMEOUT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(requests)?;
    let mut received = Vec::new();
    match tls.read_to_end(&mut received) {
        Ok(_) => {}
        // The server's close without close_notify after a full response.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !received.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(Exchange {
        text: String::from_utf8_lossy(&received).into_owned(),
        server_cert: tls
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.to_vec())
            .unwrap_or_default(),
        alpn: tls.conn.alpn_protocol().map(<[u8]>::to_vec),
        resumed: tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    })
}

fn get(addr: SocketAddr, config: &Arc<ClientConfig>, path: &str) -> io::Result<Exchange> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    https(addr, config, request.as_bytes())
}

/// A server of the echo app with the server certificate `cert`/`key`.
fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> ServerBuilder {
    let mut builder = ServerBuilder::new("echo:application")
        .arg("--certfile")
        .arg(cert.display().to_string())
        .arg("--keyfile")
        .arg(key.display().to_string());
    for arg in extra {
        builder = builder.arg(*arg);
    }
    builder
}

#[test]
fn curl_and_python_ssl_get_200_with_https_over_tls_1_2_and_1_3() {
    let pki = Pki::new("tls-clients");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &[]).start();
    let url = format!("https://localhost:{}/hello", server.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.port());
    for (flags, protocol) in [
        (["--tlsv1.2", "--tls-max", "1.2"], "'TLSv1.2'"),
        (["--tlsv1.3", "--tls-max", "1.3"], "'TLSv1.3'"),
    ] {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(pki.path("ca.pem"))
            .args(["--resolve", &resolve])
            .args(flags)
            .arg(&url)
            .output()
            .expect("curl is installed (.ci/setup)");
        let body = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "curl {flags:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(body.contains("wsgi.url_scheme\tstr\t'https'"), "{body}");
        assert!(
            body.contains(&format!("SSL_PROTOCOL\tstr\t{protocol}")),
            "{body}"
        );
        assert!(body.contains("HTTPS\tstr\t'on'"), "{body}");
    }
    let script = r#"
import http.client, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = context.maximum_version = version
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=20)
    conn.request("GET", "/py")
    response = conn.getresponse()
    body = response.read().decode()
    print(response.status, conn.sock.version(), "wsgi.url_scheme\tstr\t'https'" in body)
    conn.close()
"#;
    let output = Command::new(support::python())
        .arg("-c")
        .arg(script)
        .arg(server.port().to_string())
        .arg(pki.path("ca.pem"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "200 TLSv1.2 True\n200 TLSv1.3 True\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alpn_is_http_1_1_and_keep_alive_serves_several_requests_on_one_connection() {
    let pki = Pki::new("tls-alpn");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &[]).start();
    let config = pki.client_config(None, BOTH);
    let requests = b"GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n\
                     GET /2 HTTP/1.1\r\nHost: localhost\r\n\r\n\
                     GET /3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let exchange = https(tcp_address(&server), &config, requests).unwrap();
    assert_eq!(exchange.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        exchange.text.matches("HTTP/1.1 200 OK").count(),
        3,
        "{}",
        exchange.text
    );
    for path in ["'/1'", "'/2'", "'/3'"] {
        assert!(exchange.text.contains(&format!("PATH_INFO\tstr\t{path}")));
    }
}

#[test]
fn large_responses_and_file_wrapper_files_arrive_whole_over_tls() {
    let pki = Pki::new("tls-large");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let file = pki.path("payload.bin");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();
    let server = ServerBuilder::new("responses:file_wrapper")
        .arg("--certfile")
        .arg(cert.display().to_string())
        .arg("--keyfile")
        .arg(key.display().to_string())
        .start();
    let config = pki.client_config(None, BOTH);
    for length in ["1", "0"] {
        let path = format!(
            "/?path={}&length={length}",
            support::query_escape(&file.display().to_string())
        );
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let tcp = TcpStream::connect(tcp_address(&server)).unwrap();
        tcp.set_read_timeout(Some(support::READ_TIMEOUT)).unwrap();
        let conn =
            ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        tls.write_all(request.as_bytes()).unwrap();
        let mut received = Vec::new();
        // A slow reader: the server's records wait for the socket.
        let mut chunk = [0u8; 8192];
        loop {
            match tls.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(received.starts_with(b"HTTP/1.1 200 OK"));
        assert!(
            received[head_end..] == payload[..],
            "length={length}: body differs ({} bytes)",
            received.len() - head_end
        );
    }
}

#[test]
fn required_client_certificates_refuse_a_client_without_one_and_give_the_subject_to_the_app() {
    let pki = Pki::new("tls-mtls");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let ca = pki.path("ca.pem").display().to_string();
    let server = tls_server(&cert, &key, &["--ca-certs", &ca, "--cert-reqs", "2"]).start();
    let addr = tcp_address(&server);

    let anonymous = pki.client_config(None, BOTH);
    assert!(
        get(addr, &anonymous, "/").is_err(),
        "a client without a certificate is refused"
    );

    let alice = pki.client("alice", "Example, Inc.");
    let exchange = get(addr, &pki.client_config(Some(&alice), BOTH), "/").unwrap();
    assert_eq!(exchange.status(), "200", "{}", exchange.text);
    assert_eq!(exchange.environ("SSL_CLIENT_VERIFY"), Some("'SUCCESS'"));
    assert_eq!(
        exchange.environ("SSL_CLIENT_S_DN"),
        Some(r"'CN=alice,O=Example\\, Inc.'")
    );
    assert_eq!(
        exchange.environ("SSL_CLIENT_I_DN"),
        Some("'CN=rgunicorn test CA'")
    );

    // A certificate from another CA does not verify.
    let stranger = Pki::new("tls-mtls-stranger");
    let mallory = stranger.client("mallory", "Elsewhere");
    let key: PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(mallory.key_pem.as_bytes()).unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(BOTH)
            .unwrap()
            .with_root_certificates(config_roots(&pki))
            .with_client_auth_cert(vec![CertificateDer::from(mallory.der.clone())], key)
            .unwrap();
    assert!(
        get(addr, &Arc::new(config), "/").is_err(),
        "a certificate from another CA is refused"
    );
}

fn config_roots(pki: &Pki) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let ca: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    roots
}

#[test]
fn optional_client_certificates_serve_clients_with_and_without_one() {
    let pki = Pki::new("tls-optional");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let ca = pki.path("ca.pem").display().to_string();
    let server = tls_server(&cert, &key, &["--ca-certs", &ca, "--cert-reqs", "1"]).start();
    let addr = tcp_address(&server);
    let anonymous = get(addr, &pki.client_config(None, BOTH), "/").unwrap();
    assert_eq!(anonymous.status(), "200");
    assert_eq!(anonymous.environ("SSL_CLIENT_VERIFY"), Some("'NONE'"));
    assert_eq!(anonymous.environ("SSL_CLIENT_S_DN"), None);
    let bob = pki.client("bob", "Example");
    let known = get(addr, &pki.client_config(Some(&bob), BOTH), "/").unwrap();
    assert_eq!(known.environ("SSL_CLIENT_S_DN"), Some("'CN=bob,O=Example'"));
}

#[test]
fn plain_http_to_the_tls_port_gets_400_and_a_clean_close() {
    let pki = Pki::new("tls-plain");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &[]).start();
    let mut client = server.connect();
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 400);
    assert!(client.is_closed_within(Duration::from_secs(5)));
}

#[test]
fn tls_min_version_1_3_refuses_a_tls_1_2_client_and_ciphers_choose_the_suite() {
    let pki = Pki::new("tls-versions");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(
        &cert,
        &key,
        &[
            "--tls-min-version",
            "1.3",
            "--ciphers",
            "TLS13_CHACHA20_POLY1305_SHA256",
        ],
    )
    .start();
    let addr = tcp_address(&server);
    let tls12 = pki.client_config(None, &[&rustls::version::TLS12]);
    assert!(get(addr, &tls12, "/").is_err());
    let exchange = get(addr, &pki.client_config(None, BOTH), "/").unwrap();
    assert_eq!(exchange.environ("SSL_PROTOCOL"), Some("'TLSv1.3'"));
    assert_eq!(
        exchange.environ("SSL_CIPHER"),
        Some("'TLS13_CHACHA20_POLY1305_SHA256'")
    );
}

#[test]
fn an_http_bind_stays_plain_beside_a_tls_bind_of_the_same_server() {
    let pki = Pki::new("tls-mixed");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let plain = support::server::free_port();
    let server = tls_server(&cert, &key, &["--bind", &format!("http://{plain}")]).start();
    let tls_addr = tcp_address(&server);
    let log = server.log();
    assert!(
        log.contains(&format!("Listening at: https://{tls_addr}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("Listening at: http://{plain} ")),
        "{log}"
    );

    let exchange = get(tls_addr, &pki.client_config(None, BOTH), "/").unwrap();
    assert!(
        exchange.text.starts_with("HTTP/1.1 200"),
        "{}",
        exchange.text
    );
    assert_eq!(exchange.environ("wsgi.url_scheme"), Some("'https'"));
    assert_eq!(exchange.environ("HTTPS"), Some("'on'"));

    let mut client = support::Client::connect(&Address::Tcp(plain));
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    let text = response.text();
    assert!(text.contains("wsgi.url_scheme\tstr\t'http'\n"), "{text}");
    assert!(!text.contains("HTTPS\t"), "{text}");
    assert!(!text.contains("SSL_PROTOCOL\t"), "{text}");
}

#[test]
fn an_http_bind_matches_a_systemd_socket_and_keeps_it_plain() {
    let pki = Pki::new("tls-systemd-mixed");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let bind = format!("http://{addr}");
    let args = ["--certfile", &cert, "--keyfile", &key, "--bind", &bind];
    let mut server = support::Server::socket_activated(&listener, &args, "echo:application");
    drop(listener);
    server.wait_ready();
    let log = server.log();
    assert!(
        log.contains(&format!("Listening at: http://{addr} ")),
        "{log}"
    );
    let mut client = support::Client::connect(&Address::Tcp(addr));
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.text().contains("wsgi.url_scheme\tstr\t'http'\n"));
}

/// Stops the master a USR2 upgrade started (it names itself in
/// `pid_file`), by pid, when the test ends.
struct NewMasterGuard {
    pid_file: PathBuf,
    old_master: i32,
}

impl NewMasterGuard {
    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(&self.pid_file).ok()?;
        text.trim()
            .parse()
            .ok()
            .filter(|pid| *pid != self.old_master)
    }
}

impl Drop for NewMasterGuard {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let Some(pid) = self.pid() else { return };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = kill(pid, Signal::SIGTERM);
        if !wait_until(Duration::from_secs(10), || kill(pid, None).is_err()) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

#[test]
fn after_a_usr2_upgrade_the_http_bind_is_still_plain_and_the_other_tls() {
    let pki = Pki::new("tls-mixed-usr2");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let plain = support::server::free_port();
    let pid_file = pki.path("rgunicorn.pid");
    let mut server = tls_server(
        &cert,
        &key,
        &[
            "--bind",
            &format!("http://{plain}"),
            "--pid",
            &pid_file.display().to_string(),
        ],
    )
    .start();
    let tls_addr = tcp_address(&server);
    let guard = NewMasterGuard {
        pid_file: pid_file.clone(),
        old_master: server.pid() as i32,
    };
    server.signal(nix::sys::signal::Signal::SIGUSR2);
    assert!(
        wait_until(Duration::from_secs(20), || guard.pid().is_some()),
        "no new master; log:\n{}",
        server.log()
    );
    assert!(server.wait_for_log_count("Booting worker", 2, Duration::from_secs(20)));
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    // Only the new master serves now.
    let log = server.log();
    assert_eq!(
        log.matches(&format!("Listening at: http://{plain} "))
            .count(),
        2,
        "{log}"
    );
    let tls_listening = format!("Listening at: https://{tls_addr} ");
    assert_eq!(log.matches(&tls_listening).count(), 2, "{log}");

    let exchange = get(tls_addr, &pki.client_config(None, BOTH), "/").unwrap();
    assert_eq!(exchange.environ("wsgi.url_scheme"), Some("'https'"));
    let mut client = support::Client::connect(&Address::Tcp(plain));
    client.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200);
    assert!(response.text().contains("wsgi.url_scheme\tstr\t'http'\n"));
}

#[test]
fn an_https_bind_without_a_certfile_stops_the_start_with_one_line() {
    let bind = format!("https://{}", support::server::free_port());
    let (code, log) = failed_start(
        ServerBuilder::new("echo:application")
            .arg("--bind")
            .arg(&bind),
    );
    assert_eq!(code, Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("--bind") && l.contains("--certfile"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&bind), "{line}");
    assert!(!log.contains("Listening at"), "{log}");
}

/// Starts a server expected to fail, returns its exit code and log.
fn failed_start(builder: ServerBuilder) -> (Option<i32>, String) {
    let mut server = builder.spawn();
    let code = server.wait_exit(Duration::from_secs(20));
    (code.and_then(|status| status.code()), server.log())
}

#[test]
fn a_bad_certificate_path_or_a_mismatched_key_stops_the_start_with_one_line_naming_the_file() {
    let pki = Pki::new("tls-bad-start");
    let (cert, _) = pki.write("server", &pki.server("localhost"));
    let (_, other_key) = pki.write("other", &pki.server("other"));
    let missing = pki.path("missing.crt");

    let (code, log) = failed_start(tls_server(&missing, &other_key, &[]));
    assert_eq!(code, Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("--certfile"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&missing.display().to_string()), "{line}");

    let (code, log) = failed_start(tls_server(&cert, &other_key, &[]));
    assert_eq!(code, Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("--keyfile"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(&other_key.display().to_string()), "{line}");

    let (code, log) = failed_start(tls_server(&cert, &other_key, &["--ciphers", "HIGH:!aNULL"]));
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("--ciphers") && log.contains("TLS13_AES_128_GCM_SHA256"),
        "{log}"
    );

    let (code, log) = failed_start(tls_server(&cert, &other_key, &["--cert-reqs", "2"]));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("--ca-certs"), "{log}");
}

/// Requests in a loop on fresh connections until `stop`; counts failures
/// and remembers the certificates seen.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, config: Arc<ClientConfig>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, failures, done, seen) =
                (stop.clone(), failures.clone(), done.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(addr, &config, "/") {
                        Ok(exchange) if exchange.status() == "200" => {
                            let mut seen = seen.lock().unwrap();
                            if !seen.contains(&exchange.server_cert) {
                                seen.push(exchange.server_cert);
                            }
                        }
                        Ok(exchange) => {
                            eprintln!("bad response: {}", exchange.text);
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Load {
            stop,
            failures,
            done,
            seen,
            thread: Some(thread),
        }
    }

    fn has_seen(&self, der: &[u8]) -> bool {
        self.seen.lock().unwrap().iter().any(|c| c == der)
    }

    /// Stops the load; returns (requests, failures).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        (
            self.done.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_session_resumes_on_a_worker_other_than_the_one_that_issued_its_ticket() {
    let pki = Pki::new("tls-resume");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    // Each worker is replaced after one request, so a later connection is
    // served by a worker that did not issue the client's ticket.
    let server = tls_server(&cert, &key, &["--max-requests", "1"]).start();
    let config = pki.client_config(None, &[&rustls::version::TLS13]);
    let first = get(tcp_address(&server), &config, "/").unwrap();
    assert_eq!(first.status(), "200", "{}", first.text);
    assert!(!first.resumed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let other = loop {
        let next = get(tcp_address(&server), &config, "/").unwrap();
        assert_eq!(next.status(), "200", "{}", next.text);
        if next.environ("PID") != first.environ("PID") {
            break next;
        }
        assert!(
            Instant::now() < deadline,
            "no other worker; log:\n{}",
            server.log()
        );
    };
    assert!(
        other.resumed,
        "a full handshake with worker {:?} after worker {:?}; log:\n{}",
        other.environ("PID"),
        first.environ("PID"),
        server.log()
    );
}

#[test]
fn hup_swaps_the_certificate_with_no_request_failed_under_load() {
    let pki = Pki::new("tls-hup");
    let first = pki.server("first");
    let second = pki.server("second");
    let (cert, key) = pki.write("server", &first);
    let server = tls_server(&cert, &key, &[]).workers(2).start();
    let load = Load::start(tcp_address(&server), pki.client_config(None, BOTH));
    assert!(wait_until(Duration::from_secs(20), || load.has_seen(&first.der)));

    pki.write("server", &second);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(40), || load.has_seen(&second.der)),
        "the new certificate is never served; log:\n{}",
        server.log()
    );
    let before = load.done.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(20), || load
        .done
        .load(Ordering::Relaxed)
        > before + 5));
    let (requests, failures) = load.finish();
    assert_eq!(
        failures,
        0,
        "{failures} of {requests} requests failed; log:\n{}",
        server.log()
    );
    assert!(server.log().contains("TLS certificates reloaded"));
}

#[test]
fn a_bad_certificate_on_hup_keeps_the_old_one() {
    let pki = Pki::new("tls-hup-bad");
    let first = pki.server("first");
    let (cert, key) = pki.write("server", &first);
    let server = tls_server(&cert, &key, &[]).start();
    let config = pki.client_config(None, BOTH);
    assert_eq!(
        get(tcp_address(&server), &config, "/").unwrap().server_cert,
        first.der
    );

    let old_worker = nix::unistd::Pid::from_raw(server.worker_pids()[0]);
    std::fs::write(&cert, "not a certificate\n").unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(server.wait_for_log(
        "Cannot reload the TLS certificates",
        Duration::from_secs(20)
    ));
    // The new worker boots with the old configuration and serves it once
    // the old worker is gone.
    assert!(server.wait_for_log_count("Booting worker with pid", 2, Duration::from_secs(30)));
    assert!(wait_until(Duration::from_secs(40), || {
        nix::sys::signal::kill(old_worker, None).is_err()
    }));
    let exchange = get(tcp_address(&server), &config, "/").unwrap();
    assert_eq!(exchange.status(), "200");
    assert_eq!(exchange.server_cert, first.der);
    let line = server
        .wait_for_log_line("Cannot reload the TLS certificates", Duration::ZERO)
        .unwrap();
    assert!(line.contains(&cert.display().to_string()), "{line}");
}

/// The first half of a real ClientHello.
fn half_client_hello(pki: &Pki) -> Vec<u8> {
    let mut conn = ClientConnection::new(
        pki.client_config(None, BOTH),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello.truncate(hello.len() / 2);
    hello
}

#[test]
fn a_stalled_handshake_is_closed_at_the_header_timeout() {
    let pki = Pki::new("tls-stall");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &["--header-timeout", "2"]).start();
    let mut silent = server.connect();
    let mut trickling = server.connect();
    let hello = half_client_hello(&pki);
    trickling.send(&hello[..10]);
    let started = Instant::now();
    assert!(silent.is_closed_within(Duration::from_secs(15)));
    assert!(trickling.is_closed_within(Duration::from_secs(15)));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed before the header timeout"
    );
}

#[test]
fn a_flood_of_half_client_hellos_does_not_delay_a_normal_request() {
    let pki = Pki::new("tls-flood");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &["--header-timeout", "30"])
        .workers(1)
        .start();
    let hello = half_client_hello(&pki);
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut client = server.connect();
        client.send(&hello);
        flood.push(client);
    }
    let config = pki.client_config(None, BOTH);
    // Warm: the worker has taken every flood connection once this is served.
    get(tcp_address(&server), &config, "/").unwrap();
    let started = Instant::now();
    let exchange = get(tcp_address(&server), &config, "/").unwrap();
    let elapsed = started.elapsed();
    assert_eq!(exchange.status(), "200");
    assert!(
        elapsed < Duration::from_secs(1),
        "a normal request took {elapsed:?} behind the flood"
    );
    drop(flood);
}

#[test]
fn a_proxy_protocol_header_comes_before_the_handshake() {
    let pki = Pki::new("tls-proxy");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let server = tls_server(&cert, &key, &["--proxy-protocol"]).start();
    let tcp = TcpStream::connect(tcp_address(&server)).unwrap();
    tcp.set_read_timeout(Some(support::READ_TIMEOUT)).unwrap();
    (&tcp)
        .write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 443\r\n")
        .unwrap();
    let conn = ClientConnection::new(
        pki.client_config(None, BOTH),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let _ = tls.read_to_end(&mut received);
    let exchange = Exchange {
        text: String::from_utf8_lossy(&received).into_owned(),
        server_cert: Vec::new(),
        alpn: None,
        resumed: false,
    };
    assert_eq!(exchange.status(), "200", "{}", exchange.text);
    assert_eq!(exchange.environ("REMOTE_ADDR"), Some("'203.0.113.7'"));
    assert_eq!(exchange.environ("wsgi.url_scheme"), Some("'https'"));
}

#[test]
fn the_config_file_takes_gunicorns_tls_keys() {
    let pki = Pki::new("tls-config-file");
    let (cert, key) = pki.write("server", &pki.server("localhost"));
    let config = pki.path("rgunicorn.toml");
    std::fs::write(
        &config,
        format!(
            "certfile = {:?}\nkeyfile = {:?}\nca_certs = {:?}\ncert_reqs = 1\n\
             ciphers = \"TLS13_AES_128_GCM_SHA256:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"\n\
             tls_min_version = \"1.2\"\ndo_handshake_on_connect = true\nsuppress_ragged_eofs = true\n",
            cert.display().to_string(),
            key.display().to_string(),
            pki.path("ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    let server = ServerBuilder::new("echo:application")
        .arg("-c")
        .arg(config.display().to_string())
        .start();
    let exchange = get(tcp_address(&server), &pki.client_config(None, BOTH), "/").unwrap();
    assert_eq!(exchange.status(), "200", "{}", exchange.text);
    assert_eq!(
        exchange.environ("SSL_CIPHER"),
        Some("'TLS13_AES_128_GCM_SHA256'")
    );
}
