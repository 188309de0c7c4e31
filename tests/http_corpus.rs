//! Replays the request vectors in `tests/requests/{valid,invalid}` through
//! `rgunicorn::http` as a connection would: parse a head, read its body by
//! Content-Length or with the chunked decoder, then the next request.
//!
//! Every vector is fed whole, a byte at a time, and at pseudo-random split
//! points, and must give its `.expect` outcome each way. A mutation test
//! then checks that, valid or not, the outcome never depends on how the
//! bytes were split. (The format of the files is in `tests/requests/README.md`.)

use rgunicorn::http::{
    parse_head, BodyFraming, ChunkedDecoder, Limits, ParseError, RequestHead, Status,
};
use std::fs;
use std::path::{Path, PathBuf};

/// One request as the connection saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    query: String,
    version: String,
    host: Option<String>,
    keep_alive: bool,
    expect_continue: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// Everything a replay produced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Request>,
    error: Option<ParseError>,
    /// Bytes received but not part of a complete request when input ended.
    unfinished: usize,
}

enum Reading {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// A connection's receive side, fed bytes in arbitrary pieces.
struct Connection {
    received: Vec<u8>,
    /// Where the unconsumed bytes start.
    pos: usize,
    reading: Reading,
    head: RequestHead,
    current: Option<Request>,
    requests: Vec<Request>,
    limits: Limits,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Connection {
    fn new() -> Self {
        Connection {
            received: Vec::new(),
            pos: 0,
            reading: Reading::Head,
            head: RequestHead::default(),
            current: None,
            requests: Vec::new(),
            limits: Limits::default(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), ParseError> {
        self.received.extend_from_slice(bytes);
        while self.advance()? {}
        Ok(())
    }

    /// Makes one step of progress; false when more bytes are needed.
    fn advance(&mut self) -> Result<bool, ParseError> {
        let available = &self.received[self.pos..];
        match &mut self.reading {
            Reading::Head => match parse_head(available, &mut self.head, &self.limits)? {
                Status::Partial => Ok(false),
                Status::Complete(len) => {
                    let head = &self.head;
                    let get = |span: rgunicorn::http::Span| text(span.get(available));
                    self.current = Some(Request {
                        method: get(head.method),
                        path: get(head.path),
                        query: get(head.query),
                        version: head.version.as_str().to_owned(),
                        host: head.host.map(get),
                        keep_alive: head.keep_alive,
                        expect_continue: head.expect_continue,
                        headers: head
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.get(available).to_vec(),
                                    h.value.get(available).to_vec(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    });
                    self.pos += len;
                    self.reading = match head.framing {
                        BodyFraming::None => Reading::Length(0),
                        BodyFraming::Length(n) => Reading::Length(n),
                        BodyFraming::Chunked => Reading::Chunked(ChunkedDecoder::new()),
                    };
                    Ok(true)
                }
            },
            Reading::Length(remaining) => {
                let take = available
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let request = self.current.as_mut().expect("a request is being read");
                request.body.extend_from_slice(&available[..take]);
                self.pos += take;
                *remaining -= take as u64;
                if *remaining == 0 {
                    self.finish_request();
                    return Ok(true);
                }
                Ok(false)
            }
            Reading::Chunked(decoder) => {
                let request = self.current.as_mut().expect("a request is being read");
                self.pos += decoder.decode(available, &mut request.body)?;
                if decoder.is_done() {
                    self.finish_request();
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }

    fn finish_request(&mut self) {
        self.requests.extend(self.current.take());
        self.reading = Reading::Head;
    }
}

/// Feeds `input` in pieces of the given sizes (the last piece takes the rest).
fn replay(input: &[u8], piece_sizes: impl IntoIterator<Item = usize>) -> Outcome {
    let mut connection = Connection::new();
    let mut fed = 0;
    let mut error = None;
    let mut sizes = piece_sizes.into_iter();
    while fed < input.len() {
        let size = sizes
            .next()
            .unwrap_or(input.len())
            .clamp(1, input.len() - fed);
        if let Err(e) = connection.feed(&input[fed..fed + size]) {
            error = Some(e);
            break;
        }
        fed += size;
    }
    let unfinished = match (&error, &connection.reading) {
        (Some(_), _) => 0,
        (None, Reading::Head) => connection.received.len() - connection.pos,
        // A body cut short: count the head as unfinished too.
        (None, _) => connection.received.len() - connection.pos + 1,
    };
    Outcome {
        requests: connection.requests,
        error,
        unfinished,
    }
}

/// A xorshift64 generator: deterministic split points without a dependency.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed_of(name: &str, salt: u64) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Every way a vector is fed: (description, outcome).
fn all_replays(name: &str, input: &[u8]) -> Vec<(String, Outcome)> {
    let mut replays = vec![
        ("whole".to_owned(), replay(input, [input.len()])),
        (
            "byte by byte".to_owned(),
            replay(input, std::iter::repeat(1)),
        ),
    ];
    for salt in 0..4 {
        let seed = seed_of(name, salt);
        let mut rng = XorShift::new(seed);
        let max_piece = [2, 7, 33, 500][salt as usize];
        let pieces: Vec<usize> = (0..input.len())
            .map(|_| 1 + rng.below(max_piece) as usize)
            .collect();
        replays.push((
            format!("random pieces (seed {seed:#x})"),
            replay(input, pieces),
        ));
    }
    replays
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/requests")
        .join(kind);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "http"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let input = fs::read(&path).unwrap();
            let expect = fs::read_to_string(path.with_extension("expect"))
                .unwrap_or_else(|e| panic!("{name}.expect: {e}"));
            (name, input, expect)
        })
        .collect()
}

/// Reverses the escapes of `.expect` values: `\r`, `\n`, `\t`, `\\`, `\xHH`.
fn unescape(value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: String = [bytes.next().unwrap(), bytes.next().unwrap()]
                    .iter()
                    .map(|&b| b as char)
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            other => panic!("bad escape {other:?} in {value:?}"),
        }
    }
    out
}

fn key_values(block: &str) -> impl Iterator<Item = (&str, &str)> {
    block
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line:?}"))
        })
}

/// Checks one request against its `.expect` block.
fn check_request(name: &str, how: &str, request: &Request, block: &str) {
    let context = format!("{name} ({how})");
    for (key, value) in key_values(block) {
        match key {
            "method" => assert_eq!(request.method, value, "{context}: method"),
            "path" => assert_eq!(request.path, value, "{context}: path"),
            "query" => assert_eq!(request.query, value, "{context}: query"),
            "version" => assert_eq!(request.version, value, "{context}: version"),
            "host" => {
                let expected = (value != "-").then(|| value.to_owned());
                assert_eq!(request.host, expected, "{context}: host");
            }
            "keep_alive" => assert_eq!(
                request.keep_alive.to_string(),
                value,
                "{context}: keep_alive"
            ),
            "expect_continue" => {
                assert_eq!(
                    request.expect_continue.to_string(),
                    value,
                    "{context}: expect_continue"
                )
            }
            "body" => assert_eq!(
                text(&request.body),
                text(&unescape(value)),
                "{context}: body"
            ),
            "headers" => assert_eq!(
                request.headers.len().to_string(),
                value,
                "{context}: header count"
            ),
            "header" => {
                let (field, expected) = value
                    .split_once(": ")
                    .unwrap_or((value.trim_end_matches(':'), ""));
                let found = request
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(field.as_bytes()))
                    .map(|(_, v)| v.clone());
                assert_eq!(found, Some(unescape(expected)), "{context}: header {field}");
            }
            other => panic!("{name}.expect: unknown key {other:?}"),
        }
    }
}

#[test]
fn corpus_has_enough_vectors() {
    assert!(corpus("valid").len() >= 15);
    assert!(corpus("invalid").len() >= 40);
}

#[test]
fn valid_vectors_parse_to_their_expected_requests_however_split() {
    for (name, input, expect) in corpus("valid") {
        let blocks: Vec<&str> = expect.split("\n---\n").collect();
        for (how, outcome) in all_replays(&name, &input) {
            assert_eq!(outcome.error, None, "{name} ({how}) failed");
            assert_eq!(outcome.unfinished, 0, "{name} ({how}) left bytes unparsed");
            assert_eq!(
                outcome.requests.len(),
                blocks.len(),
                "{name} ({how}): request count"
            );
            for (request, block) in outcome.requests.iter().zip(&blocks) {
                check_request(&name, &how, request, block);
            }
        }
    }
}

#[test]
fn invalid_vectors_fail_with_their_expected_status_however_split() {
    for (name, input, expect) in corpus("invalid") {
        let first_line = expect.lines().next().unwrap_or_default();
        let status: u16 = first_line
            .strip_prefix("status=")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name}.expect must start with status=NNN"));
        let mut error_name = None;
        let mut valid_before = 0;
        for (key, value) in key_values(&expect).skip(1) {
            match key {
                "error" => error_name = Some(value.to_owned()),
                "valid_before" => valid_before = value.parse().unwrap(),
                other => panic!("{name}.expect: unknown key {other:?}"),
            }
        }
        for (how, outcome) in all_replays(&name, &input) {
            let error = outcome
                .error
                .unwrap_or_else(|| panic!("{name} ({how}) was accepted: {:?}", outcome.requests));
            assert_eq!(error.status(), status, "{name} ({how}): {error:?}");
            if let Some(expected) = &error_name {
                assert_eq!(&format!("{error:?}"), expected, "{name} ({how})");
            }
            assert_eq!(
                outcome.requests.len(),
                valid_before,
                "{name} ({how}): requests before the error"
            );
        }
    }
}

/// Bytes that steer the grammar somewhere interesting when swapped in.
const MUTATIONS: &[u8] = b"\r\n \t:;,0aAfF_-/?#*\"@[]\x00\x01\x0b\x7f\x80\xff";

#[test]
fn mutated_vectors_give_the_same_outcome_however_split() {
    let mut all = corpus("valid");
    all.extend(
        corpus("invalid")
            .into_iter()
            .filter(|(_, input, _)| input.len() < 2000),
    );
    for (name, input, _) in all {
        let mut rng = XorShift::new(seed_of(&name, 99));
        for round in 0..40 {
            let mut mutated = input.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(mutated.len() as u64) as usize;
                let choice = rng.below(MUTATIONS.len() as u64 + 2) as usize;
                match MUTATIONS.get(choice) {
                    Some(&b) => mutated[at] = b,
                    None if choice == MUTATIONS.len() => {
                        mutated.remove(at);
                    }
                    None => mutated.insert(at, rng.next() as u8),
                }
            }
            let replays = all_replays(&format!("{name}{round}"), &mutated);
            let (_, whole) = &replays[0];
            for (how, outcome) in &replays[1..] {
                assert_eq!(
                    outcome,
                    whole,
                    "{name} mutation {round} ({how}) differs from whole: {:?}",
                    text(&mutated)
                );
            }
        }
    }
}

/// Counts heap allocations made by the current thread, so a test can prove
/// the hot path allocates nothing while other tests run in parallel.
mod allocation_counter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator; the
    // counter is a const-initialised thread-local, which never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller upholds `alloc`'s contract for `layout`.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System.alloc` with this `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller upholds `realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Allocations made by this thread while running `f`.
    pub fn count(f: impl FnOnce()) -> usize {
        let before = ALLOCATIONS.with(Cell::get);
        f();
        ALLOCATIONS.with(Cell::get) - before
    }
}

#[global_allocator]
static ALLOCATOR: allocation_counter::Counting = allocation_counter::Counting;

#[test]
fn the_hot_path_allocates_nothing_once_buffers_are_warm() {
    let mut request =
        b"POST /upload?x=1 HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
            .to_vec();
    for i in 0..60 {
        request.extend_from_slice(format!("X-Header-{i}: value {i}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n";
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let mut decoded = Vec::with_capacity(64);
    let mut out = Vec::with_capacity(4096);
    let app_headers: [(&[u8], &[u8]); 2] =
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"11")];
    // Warm up: the header storage grows once.
    parse_head(&request, &mut head, &limits).unwrap();

    let allocations = allocation_counter::count(|| {
        for _ in 0..100 {
            assert!(matches!(
                parse_head(&request, &mut head, &limits),
                Ok(Status::Complete(_))
            ));
            // Byte-at-a-time growth resumes without allocating either.
            for end in (0..request.len()).step_by(7) {
                assert_eq!(
                    parse_head(&request[..end], &mut head, &limits),
                    Ok(Status::Partial)
                );
            }
            let mut decoder = ChunkedDecoder::new();
            decoded.clear();
            assert_eq!(decoder.decode(body, &mut decoded), Ok(body.len()));
            out.clear();
            let response = rgunicorn::http::begin_response(
                &mut out,
                rgunicorn::http::Version::Http11,
                b"200 OK",
                app_headers.iter().copied(),
                false,
                true,
                b"Sun, 06 Nov 1994 08:49:37 GMT",
            );
            assert!(response.is_ok());
            rgunicorn::http::write_chunk(&mut out, b"data");
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(decoded, b"hello world");
}
