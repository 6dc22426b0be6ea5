//! Docker's event stream: newline-delimited JSON objects, split at arbitrary chunk
//! boundaries by the transport.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::types::{null_default, string_map};

/// One event of `GET /events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `container`, `network`, `image`, `volume`, `daemon`, ...
    #[serde(rename = "Type", deserialize_with = "null_default")]
    pub kind: String,
    /// `create`, `start`, `die`, `destroy`, `connect`, `disconnect`, ...
    #[serde(rename = "Action", deserialize_with = "null_default")]
    pub action: String,
    /// The object the event is about.
    #[serde(rename = "Actor", deserialize_with = "null_default")]
    pub actor: Actor,
    /// Unix time in seconds.
    #[serde(rename = "time", deserialize_with = "null_default")]
    pub time: i64,
}

/// `Actor` of an [`Event`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Actor {
    /// Id of the container, network, ...
    #[serde(rename = "ID", deserialize_with = "null_default")]
    pub id: String,
    /// Details (`name`, `image`, `container` for network events, `exitCode`, ...).
    #[serde(rename = "Attributes", deserialize_with = "string_map")]
    pub attributes: BTreeMap<String, String>,
}

/// Longest event line accepted; a longer one is dropped (a stream gone wrong, not an event).
pub const MAX_LINE: usize = 1 << 20;

/// Cuts a byte stream into lines, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    // Set while skipping the rest of an over-long line.
    discarding: bool,
}

/// A piece of the stream [`LineSplitter::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its newline (and without a trailing `\r`).
    Text(Vec<u8>),
    /// A line longer than [`MAX_LINE`] was skipped.
    TooLong,
}

impl LineSplitter {
    /// A splitter with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk; returns the lines it completes (blank lines are skipped).
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = chunk.split_at(pos);
            chunk = rest.get(1..).unwrap_or_default();
            if self.discarding {
                self.discarding = false;
                continue;
            }
            if self.buf.len() + head.len() > MAX_LINE {
                self.buf.clear();
                out.push(Line::TooLong);
                continue;
            }
            self.buf.extend_from_slice(head);
            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(Line::Text(line));
            }
        }
        if !self.discarding {
            if self.buf.len() + chunk.len() > MAX_LINE {
                self.buf.clear();
                self.discarding = true;
                out.push(Line::TooLong);
            } else {
                self.buf.extend_from_slice(chunk);
            }
        }
        out
    }

    /// The unterminated rest once the stream ended (Docker ends each event with `\n`, so
    /// normally nothing).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        let discarding = std::mem::take(&mut self.discarding);
        (!discarding && !rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"status":"start","id":"ede54ee1afda366ab42f824e8a5ffd195155d853ceaec74a927f249ea270c743","from":"alpine","Type":"container","Action":"start","Actor":{"ID":"ede54ee1afda366ab42f824e8a5ffd195155d853ceaec74a927f249ea270c743","Attributes":{"image":"alpine","name":"my-container"}},"scope":"local","time":1461943101,"timeNano":1461943101381709551}"#;
    const CONNECT: &str = r#"{"Type":"network","Action":"connect","Actor":{"ID":"7dc8ac97d5d29ef6c31b6052f3938c1e8f2749abbd17d1bd1febf2608db1b474","Attributes":{"container":"ede54ee1afda","name":"weft","type":"weft"}},"scope":"local","time":1461943101,"timeNano":1461943101394865557}"#;

    fn texts(lines: Vec<Line>) -> Vec<String> {
        lines
            .into_iter()
            .map(|l| match l {
                Line::Text(t) => String::from_utf8(t).unwrap(),
                Line::TooLong => "<too long>".to_string(),
            })
            .collect()
    }

    #[test]
    fn events_parse() {
        let e: Event = serde_json::from_str(START).unwrap();
        assert_eq!(e.kind, "container");
        assert_eq!(e.action, "start");
        assert!(e.actor.id.starts_with("ede54ee1"));
        assert_eq!(e.actor.attributes["name"], "my-container");
        assert_eq!(e.time, 1461943101);
        let e: Event = serde_json::from_str(CONNECT).unwrap();
        assert_eq!(e.kind, "network");
        assert_eq!(e.actor.attributes["container"], "ede54ee1afda");
        let e: Event = serde_json::from_str(r#"{"Actor":{"Attributes":null}}"#).unwrap();
        assert_eq!(e, Event::default());
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let stream = format!("{START}\n{CONNECT}\r\n\n{START}\n");
        let bytes = stream.as_bytes();
        for cut in 0..=bytes.len() {
            for cut2 in cut..=bytes.len() {
                let mut s = LineSplitter::new();
                let mut got = texts(s.push(&bytes[..cut]));
                got.extend(texts(s.push(&bytes[cut..cut2])));
                got.extend(texts(s.push(&bytes[cut2..])));
                assert_eq!(got, vec![START, CONNECT, START], "cuts {cut} {cut2}");
                assert_eq!(s.finish(), None);
            }
            if cut > 40 {
                // The pairs above are quadratic; the first 40 cuts cover line 1's inside.
                break;
            }
        }
        // Byte by byte.
        let mut s = LineSplitter::new();
        let got: Vec<String> = bytes.iter().flat_map(|b| texts(s.push(&[*b]))).collect();
        assert_eq!(got, vec![START, CONNECT, START]);
    }

    #[test]
    fn unterminated_rest_and_overlong_lines() {
        let mut s = LineSplitter::new();
        assert!(s.push(b"{\"Type\":").is_empty());
        assert_eq!(s.finish(), Some(b"{\"Type\":".to_vec()));

        let mut s = LineSplitter::new();
        let big = vec![b'x'; MAX_LINE / 2 + 1];
        assert!(s.push(&big).is_empty());
        assert_eq!(s.push(&big), vec![Line::TooLong]);
        // The rest of the long line is dropped, the next line is whole.
        assert!(s.push(b"xxxx").is_empty());
        assert_eq!(texts(s.push(b"yyy\n{}\n")), vec!["{}"]);
        // A long line inside one chunk.
        let mut chunk = vec![b'z'; MAX_LINE + 1];
        chunk.extend_from_slice(b"\nok\n");
        assert_eq!(texts(s.push(&chunk)), vec!["<too long>", "ok"]);
        assert_eq!(s.finish(), None);
    }
}

#[cfg(test)]
mod prop {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// However the stream is cut, the same lines come out.
        #[test]
        fn chunking_does_not_change_lines(
            lines in proptest::collection::vec("[ -~]{1,30}", 0..8),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let stream: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = stream.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.push(0);
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let mut s = LineSplitter::new();
            let mut got = Vec::new();
            for w in cuts.windows(2) {
                got.extend(s.push(&bytes[w[0]..w[1]]));
            }
            let want: Vec<Line> = lines
                .iter()
                .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()))
                .map(|l| Line::Text(l.as_bytes().to_vec()))
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(s.finish(), None);
        }

        #[test]
        fn events_never_panic_on_junk(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut s = LineSplitter::new();
            for line in s.push(&bytes) {
                if let Line::Text(t) = line {
                    let _ = serde_json::from_slice::<Event>(&t);
                }
            }
        }
    }
}
