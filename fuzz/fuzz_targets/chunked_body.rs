//! Fuzz target: `rgunicorn::http::ChunkedDecoder` on arbitrary bytes.
//!
//! Properties checked (any violation panics, which libFuzzer reports):
//! * no panic;
//! * split independence: the input fed in two pieces (the second starting
//!   where the first call stopped consuming) gives the same result, body
//!   and completeness as the input fed whole;
//! * the decoder never consumes more than it was given nor produces more
//!   body than it consumed;
//! * whatever it accepts, the body it decoded, re-encoded with
//!   `write_chunk` / `write_last_chunk`, is accepted again, completely,
//!   and decodes to the same body.
//!
//! Input layout: byte 0 picks the split point, byte 1 the chunk size used
//! to re-encode, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rgunicorn::http::{write_chunk, write_last_chunk, ChunkedDecoder, ParseError};

/// (result, body, done) for `input` fed in the given pieces, each piece
/// starting where the previous call stopped consuming.
fn decode_in_pieces(input: &[u8], split: usize) -> (Result<usize, ParseError>, Vec<u8>, bool) {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let first = match decoder.decode(&input[..split], &mut body) {
        Ok(n) => n,
        Err(e) => return (Err(e), body, false),
    };
    assert!(first <= split, "consumed {first} of {split}");
    if first < split {
        assert!(decoder.is_done(), "stopped early without being done");
    }
    let result = decoder
        .decode(&input[first..], &mut body)
        .map(|second| first + second);
    let done = decoder.is_done();
    (result, body, done)
}

fuzz_target!(|data: &[u8]| {
    let [split_at, chunk_size, ref input @ ..] = *data else {
        return;
    };

    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let whole = decoder.decode(input, &mut body);
    let done = decoder.is_done();
    if let Ok(consumed) = whole {
        assert!(
            consumed <= input.len(),
            "consumed {consumed} of {}",
            input.len()
        );
        assert!(
            body.len() <= consumed,
            "body longer than the bytes consumed"
        );
        assert!(
            done || consumed == input.len(),
            "stopped early without being done"
        );
    }

    let split = usize::from(split_at) * input.len() / 255;
    let (pieces, pieces_body, pieces_done) = decode_in_pieces(input, split);
    assert_eq!(pieces, whole, "split at {split} decided differently");
    if whole.is_ok() {
        assert_eq!(pieces_body, body, "split at {split} decoded another body");
        assert_eq!(pieces_done, done, "split at {split} ended differently");

        let mut encoded = Vec::new();
        for piece in body.chunks(usize::from(chunk_size).max(1)) {
            write_chunk(&mut encoded, piece);
        }
        write_last_chunk(&mut encoded);
        let mut again = ChunkedDecoder::new();
        let mut decoded = Vec::new();
        assert_eq!(
            again.decode(&encoded, &mut decoded),
            Ok(encoded.len()),
            "re-encoded body rejected"
        );
        assert!(again.is_done(), "re-encoded body incomplete");
        assert_eq!(decoded, body, "re-encoded body decodes differently");
    }
});
