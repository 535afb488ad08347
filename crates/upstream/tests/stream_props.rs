//! Property: the events a `StreamReader` reads do not depend on how the
//! bytes arrive in chunks, in either format, and NDJSON events are exactly
//! the input's non-blank lines.

use proptest::prelude::*;
use wsc_upstream::{StreamFormat, StreamReader};

fn read(format: StreamFormat, chunks: &[&[u8]]) -> Result<Vec<String>, wsc_upstream::StreamError> {
    let mut reader = StreamReader::with_limit(format, 256);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(reader.push(chunk)?);
    }
    out.extend(reader.finish()?);
    Ok(out)
}

/// Text made of the pieces that matter: fields, colons, spaces, every line
/// ending, blank lines.
fn stream_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b":".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        "[a-z{}\"]{1,5}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chunking_never_changes_what_is_read(text in stream_text(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        for p in points {
            chunks.push(&text[at..p]);
            at = p;
        }
        chunks.push(&text[at..]);
        for format in [StreamFormat::Sse, StreamFormat::Ndjson] {
            prop_assert_eq!(read(format, &[&text]), read(format, &chunks), "{:?}", format);
        }
    }

    #[test]
    fn ndjson_events_are_the_non_blank_lines(text in stream_text()) {
        let s = String::from_utf8(text.clone()).unwrap();
        let expected: Vec<String> = s
            .replace("\r\n", "\n")
            .split(['\n', '\r'])
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        prop_assert_eq!(read(StreamFormat::Ndjson, &[&text]).unwrap(), expected);
    }

    #[test]
    fn sse_events_follow_a_plain_reading_of_the_rules(text in stream_text()) {
        prop_assert_eq!(read(StreamFormat::Sse, &[&text]).unwrap(), reference_sse(&text));
    }
}

/// The SSE rules read plainly on the whole text: line endings normalised,
/// data lines joined, dispatched at a blank line, the unfinished rest
/// dropped.
fn reference_sse(text: &[u8]) -> Vec<String> {
    let s = String::from_utf8(text.to_vec()).unwrap();
    let normalised = s.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    let mut lines: Vec<&str> = normalised.split('\n').collect();
    // The text after the last line ending is not a line yet.
    lines.pop();
    for line in lines {
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(d);
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    events
}
