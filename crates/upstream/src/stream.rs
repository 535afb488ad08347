//! [`StreamReader`]: the events of a backend's HTTP response body, read
//! incrementally from whatever chunks the network delivers, as Server-Sent
//! Events or newline-delimited JSON.

/// How a backend frames its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFormat {
    /// `text/event-stream`: each event's `data:` lines, joined by `\n`
    /// (the WHATWG rules: `CRLF`, `LF` or `CR` end a line, `:` starts a
    /// comment, fields other than `data` are ignored, an event is dispatched
    /// at a blank line, an unfinished event at the end is dropped).
    Sse,
    /// One event per non-empty line (`LF` or `CRLF`); a last line without
    /// a newline counts.
    Ndjson,
}

impl StreamFormat {
    /// The format a response's `Content-Type` names: SSE for
    /// `text/event-stream`, else NDJSON.
    pub fn from_content_type(content_type: &str) -> Self {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            StreamFormat::Sse
        } else {
            StreamFormat::Ndjson
        }
    }
}

/// Why a stream could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A line or an event is longer than the reader's limit.
    #[error("an event of the agent's stream is over {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("the agent's stream is not UTF-8 text")]
    NotUtf8,
}

/// The default limit on one line or event: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads events from a byte stream, chunk by chunk; memory is bounded by
/// the limit on one event (a longer line or event is a
/// [`StreamError::TooLarge`]).
///
/// ```
/// use wsc_upstream::{StreamFormat, StreamReader};
///
/// let mut sse = StreamReader::new(StreamFormat::Sse);
/// assert!(sse.push(b"data: {\"type\":").unwrap().is_empty()); // not complete yet
/// let events = sse.push(b"\"RUN_STARTED\"}\r\n\r\n: a comment\n\ndata: 2\n\n").unwrap();
/// assert_eq!(events, ["{\"type\":\"RUN_STARTED\"}", "2"]);
///
/// let mut ndjson = StreamReader::new(StreamFormat::Ndjson);
/// assert_eq!(ndjson.push(b"{\"a\":1}\n{\"b\"").unwrap(), ["{\"a\":1}"]);
/// assert_eq!(ndjson.finish().unwrap(), ["{\"b\""]);
/// ```
#[derive(Debug)]
pub struct StreamReader {
    format: StreamFormat,
    limit: usize,
    /// The current line, not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with `CR`: a leading `LF` belongs to it.
    after_cr: bool,
    /// SSE: the data of the event being read, and whether it has any.
    data: String,
    has_data: bool,
    /// The stream's first line has been read (a leading BOM is dropped).
    started: bool,
    /// The error that ended the stream (every later call returns it).
    failed: Option<StreamError>,
}

impl StreamReader {
    /// A reader with the default limit ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new(format: StreamFormat) -> Self {
        Self::with_limit(format, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A reader refusing lines and events over `limit` bytes.
    pub fn with_limit(format: StreamFormat, limit: usize) -> Self {
        StreamReader {
            format,
            limit,
            line: Vec::new(),
            after_cr: false,
            data: String::new(),
            has_data: false,
            started: false,
            failed: None,
        }
    }

    /// Reads a whole stream given as `chunks`: its events up to the end,
    /// and the error that ended it early, if one did — the same however
    /// the bytes are cut into chunks.
    ///
    /// ```
    /// use wsc_upstream::{StreamFormat, StreamReader};
    /// let mut reader = StreamReader::new(StreamFormat::Sse);
    /// let (events, error) = reader.read_all([&b"data: {}\n"[..], b"\ndata: [1]\n\n"]);
    /// assert_eq!(events, ["{}", "[1]"]);
    /// assert!(error.is_none());
    /// ```
    pub fn read_all<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<String>, Option<StreamError>) {
        let mut events = Vec::new();
        for chunk in chunks {
            match self.push(chunk) {
                Ok(got) => events.extend(got),
                Err(e) => return (events, Some(e)),
            }
            if let Some(e) = self.error() {
                return (events, Some(e.clone()));
            }
        }
        match self.finish() {
            Ok(got) => events.extend(got),
            Err(e) => return (events, Some(e)),
        }
        (events, None)
    }

    /// The error that ended the stream, once one did: check it after
    /// handling the events of each [`push`](Self::push).
    pub fn error(&self) -> Option<&StreamError> {
        self.failed.as_ref()
    }

    /// The events completed by `chunk`, in order.
    ///
    /// A line or event over the limit, or a line that is not UTF-8, ends
    /// the stream there. The events completed before it are never lost,
    /// however the bytes were chunked: if `chunk` completed some, they are
    /// returned and the error is kept ([`error`](Self::error)) for every
    /// later call.
    ///
    /// # Errors
    /// [`StreamError`] when the stream has ended with one and `chunk`
    /// completed no event before it (or an earlier call found it).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        if let Err(e) = self.read(chunk, &mut out) {
            self.failed = Some(e.clone());
            if out.is_empty() {
                return Err(e);
            }
        }
        Ok(out)
    }

    fn read(&mut self, mut chunk: &[u8], out: &mut Vec<String>) -> Result<(), StreamError> {
        while let Some(&first) = chunk.first() {
            // The LF of a CRLF whose CR ended the previous line.
            if std::mem::replace(&mut self.after_cr, false) && first == b'\n' {
                chunk = &chunk[1..];
                continue;
            }
            let end = memchr::memchr2(b'\n', b'\r', chunk);
            let part = &chunk[..end.unwrap_or(chunk.len())];
            if self.line.len() + part.len() > self.limit {
                return Err(StreamError::TooLarge { limit: self.limit });
            }
            let Some(end) = end else {
                self.line.extend_from_slice(part);
                return Ok(());
            };
            self.after_cr = chunk[end] == b'\r';
            if self.line.is_empty() {
                // The whole line is in this chunk: read in place.
                self.end_line(part, out)?;
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(part);
                let ended = self.end_line(&line, out);
                line.clear();
                self.line = line;
                ended?;
            }
            chunk = &chunk[end + 1..];
        }
        Ok(())
    }

    /// The events still pending when the stream ends: NDJSON's last line
    /// without a newline; for SSE nothing (an event without its blank line
    /// is dropped, as the SSE rules say).
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub fn finish(&mut self) -> Result<Vec<String>, StreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        if self.format == StreamFormat::Ndjson && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, &mut out)?;
        }
        self.line.clear();
        self.data.clear();
        self.has_data = false;
        Ok(out)
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<String>) -> Result<(), StreamError> {
        let mut line = std::str::from_utf8(line).map_err(|_| StreamError::NotUtf8)?;
        if !self.started {
            self.started = true;
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        match self.format {
            StreamFormat::Ndjson => {
                if !line.trim().is_empty() {
                    out.push(line.to_owned());
                }
            }
            StreamFormat::Sse => {
                if line.is_empty() {
                    if self.has_data {
                        out.push(std::mem::take(&mut self.data));
                        self.has_data = false;
                    }
                    return Ok(());
                }
                if line.starts_with(':') {
                    return Ok(());
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line, ""),
                };
                if field == "data" {
                    let extra = value.len() + usize::from(self.has_data);
                    if self.data.len() + extra > self.limit {
                        return Err(StreamError::TooLarge { limit: self.limit });
                    }
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(format: StreamFormat, input: &[u8]) -> Vec<String> {
        let mut r = StreamReader::new(format);
        let mut out = r.push(input).unwrap();
        out.extend(r.finish().unwrap());
        out
    }

    #[test]
    fn sse_follows_the_whatwg_rules() {
        let input =
            b"\xEF\xBB\xBFdata: a\ndata:b\r\nevent: x\nid: 7\r: note\r\rdata\n\n\ndata: tail";
        assert_eq!(all(StreamFormat::Sse, input), ["a\nb", ""]);
        // A blank line with no data dispatches nothing.
        assert_eq!(
            all(StreamFormat::Sse, b"\n\n: only comments\n\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            all(StreamFormat::Sse, b"data:  two spaces\n\n"),
            [" two spaces"]
        );
    }

    #[test]
    fn ndjson_lines_in_any_ending() {
        assert_eq!(
            all(
                StreamFormat::Ndjson,
                b"{\"a\":1}\r\n\n  \n{\"b\":2}\r{\"c\":3}"
            ),
            ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]
        );
    }

    #[test]
    fn a_crlf_split_across_chunks_is_one_line_end() {
        let mut r = StreamReader::new(StreamFormat::Sse);
        assert!(r.push(b"data: x\r").unwrap().is_empty());
        assert!(r.push(b"\n").unwrap().is_empty(), "the LF of the CRLF");
        assert_eq!(r.push(b"\r\n").unwrap(), ["x"], "then a blank line");
    }

    #[test]
    fn limits_and_encoding_are_errors() {
        let mut r = StreamReader::with_limit(StreamFormat::Ndjson, 8);
        assert_eq!(r.push(b"12345678\n").unwrap(), ["12345678"]);
        assert_eq!(
            r.push(b"123456789"),
            Err(StreamError::TooLarge { limit: 8 })
        );
        let mut r = StreamReader::with_limit(StreamFormat::Sse, 8);
        assert_eq!(
            r.push(b"data: 1234\ndata: 5678\n"),
            Err(StreamError::TooLarge { limit: 8 })
        );
        let mut r = StreamReader::new(StreamFormat::Ndjson);
        assert_eq!(r.push(b"\xff\n"), Err(StreamError::NotUtf8));
    }

    #[test]
    fn events_before_an_error_are_kept_whatever_the_chunking() {
        let input = b"data: 1\n\ndata: 2\n\n\xff\n\ndata: 3\n\n";
        let mut r = StreamReader::new(StreamFormat::Sse);
        assert_eq!(r.push(input).unwrap(), ["1", "2"]);
        assert_eq!(r.error(), Some(&StreamError::NotUtf8));
        assert_eq!(r.push(b"data: 4\n\n"), Err(StreamError::NotUtf8));
        assert_eq!(r.finish(), Err(StreamError::NotUtf8));
    }

    proptest::proptest! {
        /// For any bytes (valid events, invalid UTF-8, over-long lines) and
        /// any chunking, a reader gives the same events, then the same
        /// error (or none), as reading them in one piece.
        #[test]
        fn the_events_do_not_depend_on_the_chunking(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "data: [a-z]{0,6}\n\n",
                    "[{]\"n\":[0-9]{1,3}[}]\n",
                    ": [a-z]{0,4}\r\n",
                    "data: [a-z]{0,3}\r\n",
                    proptest::strategy::Just("\r".to_owned()),
                    proptest::strategy::Just("\n".to_owned()),
                    proptest::strategy::Just("\u{0}".to_owned()),
                    proptest::strategy::Just("data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n\n".to_owned()),
                ],
                0..12,
            ),
            bad_at in proptest::option::of(0usize..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            sse in proptest::bool::ANY,
        ) {
            let mut bytes: Vec<u8> = parts.concat().into_bytes();
            if let Some(at) = bad_at {
                let at = at.min(bytes.len());
                bytes.insert(at, 0xff);
            }
            let format = if sse { StreamFormat::Sse } else { StreamFormat::Ndjson };
            let read = |chunks: Vec<&[u8]>| StreamReader::with_limit(format, 24).read_all(chunks);
            let whole = read(vec![&bytes]);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for p in points {
                chunks.push(&bytes[from..p]);
                from = p;
            }
            chunks.push(&bytes[from..]);
            proptest::prop_assert_eq!(read(chunks), whole.clone());
            // Every byte on its own: every line goes through the reader's
            // line buffer (in one piece, lines are read in place).
            proptest::prop_assert_eq!(read(bytes.chunks(1).collect()), whole);
        }
    }

    #[test]
    fn the_content_type_picks_the_format() {
        assert_eq!(
            StreamFormat::from_content_type("text/event-stream; charset=utf-8"),
            StreamFormat::Sse
        );
        assert_eq!(
            StreamFormat::from_content_type("application/x-ndjson"),
            StreamFormat::Ndjson
        );
    }
}
