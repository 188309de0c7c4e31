//! Fuzz target: `rgunicorn::http::parse_head` on arbitrary bytes.
//!
//! Properties checked (any violation panics, which libFuzzer reports):
//! * no panic, whatever the bytes and the limits;
//! * split independence: feeding a prefix, then a longer prefix, then the
//!   whole input to the same `RequestHead` (the resume path) ends with the
//!   outcome a fresh parse of the whole input gives, and a prefix that is
//!   already decided (complete or failed) is decided the same way;
//! * a complete head's length and spans lie inside the input, and an
//!   HTTP/1.1 head always has a host.
//!
//! Input layout: byte 0 picks the limits, bytes 1 and 2 the split points,
//! the rest is the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rgunicorn::http::{parse_head, Limits, RequestHead, Span, Status, Version};

/// Small limits reach the too-long paths with short inputs; the defaults
/// are what the server runs with.
fn limits_from(selector: u8) -> Limits {
    match selector % 4 {
        0 => Limits::default(),
        1 => Limits {
            request_line: 0,
            fields: 0,
            field_size: 0,
            ..Limits::default()
        },
        _ => Limits {
            request_line: usize::from(selector >> 2) + 1,
            fields: usize::from(selector & 0x7),
            field_size: usize::from(selector >> 3) + 2,
            ..Limits::default()
        },
    }
}

fn assert_span_inside(span: Span, len: usize, what: &str) {
    assert!(
        span.start <= span.end && span.end as usize <= len,
        "{what} span {span:?} outside a head of {len} bytes"
    );
}

fn check_complete_head(head: &RequestHead, head_len: usize, input_len: usize) {
    assert!(
        head_len <= input_len,
        "head length {head_len} > input {input_len}"
    );
    for (span, what) in [
        (head.method, "method"),
        (head.target, "target"),
        (head.path, "path"),
        (head.query, "query"),
    ] {
        assert_span_inside(span, head_len, what);
    }
    for field in &head.headers {
        assert_span_inside(field.name, head_len, "header name");
        assert_span_inside(field.value, head_len, "header value");
    }
    if let Some(host) = head.host {
        assert_span_inside(host, head_len, "host");
    }
    assert!(!head.method.is_empty(), "empty method accepted");
    if head.version == Version::Http11 {
        assert!(head.host.is_some(), "HTTP/1.1 head without a host");
    } else {
        assert!(!head.expect_continue, "Expect honoured on HTTP/1.0");
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, first, second, ref input @ ..] = *data else {
        return;
    };
    let limits = limits_from(selector);

    let mut fresh = RequestHead::default();
    let whole = parse_head(input, &mut fresh, &limits);
    if let Ok(Status::Complete(len)) = whole {
        check_complete_head(&fresh, len, input.len());
    }

    // The same bytes arriving in up to three reads, resumed in one head.
    let cut = |at: u8| usize::from(at) * input.len() / 255;
    let (a, b) = (cut(first.min(second)), cut(first.max(second)));
    let mut resumed = RequestHead::default();
    for end in [a, b, input.len()] {
        let outcome = parse_head(&input[..end], &mut resumed, &limits);
        if outcome == Ok(Status::Partial) {
            assert!(
                end < input.len() || whole == Ok(Status::Partial),
                "whole input partial when resumed, {whole:?} fresh"
            );
            continue;
        }
        assert_eq!(outcome, whole, "prefix of {end} bytes decided differently");
        if let Ok(Status::Complete(_)) = outcome {
            assert_eq!(
                format!("{resumed:?}"),
                format!("{fresh:?}"),
                "resumed head differs from a fresh parse"
            );
        }
        break;
    }
});
