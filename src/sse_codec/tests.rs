//! Unit tests of the SSE reader.
#![allow(
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "test code: a panic is a test failure"
)]

use super::*;
use std::io::BufReader;

#[test]
fn invalid_utf8_cannot_take_an_event_past_the_cap() {
    // 10 bytes of 0xFF read as 10 replacement characters: 30 bytes of text.
    let mut input = b"data: ".to_vec();
    input.extend_from_slice(&[0xFF; 10]);
    input.extend_from_slice(b"\n\ndata: ok\n\n");
    assert!(parse_all(&input, 20).is_err());
    let mut r = SseReader::new(BufReader::new(&input[..]), 20).skip_oversized();
    assert_eq!(r.next_item().unwrap(), Some(SseItem::Idle), "dropped");
    assert!(r.take_oversized().is_some());
    assert_eq!(r.next_event().unwrap().unwrap().data, "ok");
    // Under the cap, the text is kept as read.
    let ev = &parse_all(&input, 64).unwrap()[0];
    assert_eq!(ev.data, "\u{FFFD}".repeat(10));
}

#[test]
fn the_next_item_is_buffered_when_a_complete_event_is_in_memory() {
    let input: &[u8] = b"data: a\n\ndata: b\r\n\r\n: ping\n\ndata: c";
    let mut r = SseReader::new(BufReader::new(input), 1024);
    assert!(!r.next_item_buffered(), "nothing read yet");
    assert_eq!(r.next_event().unwrap().unwrap().data, "a");
    assert!(r.next_item_buffered(), "b is in memory");
    assert_eq!(r.next_event().unwrap().unwrap().data, "b");
    assert!(r.next_item_buffered(), "the comment is in memory");
    assert_eq!(r.next_item().unwrap(), Some(SseItem::Idle));
    // Only the start of an event: reading on may wait.
    assert!(!r.next_item_buffered());
    // Blank lines alone dispatch nothing.
    let mut r = SseReader::new(BufReader::new(&b"\n\n\r\n"[..]), 1024);
    r.inner.fill_buf().unwrap();
    assert!(!r.next_item_buffered());
}

fn parse_all(input: &[u8], cap: usize) -> io::Result<Vec<SseEvent>> {
    // A 1-byte buffer exercises every split point.
    let mut r = SseReader::new(BufReader::with_capacity(1, input), cap);
    let mut out = Vec::new();
    while let Some(ev) = r.next_event()? {
        out.push(ev);
    }
    Ok(out)
}

fn data(ev: &[SseEvent]) -> Vec<&str> {
    ev.iter().map(|e| e.data.as_str()).collect()
}

#[test]
fn lf_crlf_and_cr_endings() {
    for input in [
        &b"data: a\n\ndata: b\n\n"[..],
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        b"data: a\r\rdata: b\r\r",
    ] {
        assert_eq!(
            data(&parse_all(input, 1024).unwrap()),
            ["a", "b"],
            "{input:?}"
        );
    }
}

#[test]
fn comments_multiline_fields() {
    let input =
        b": keep-alive\nevent: message_start\nid: 7\nretry: 500\ndata: {\"a\":\ndata:1}\n\n";
    let ev = parse_all(input, 1024).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].event.as_deref(), Some("message_start"));
    assert_eq!(ev[0].data, "{\"a\":\n1}");
    assert_eq!(ev[0].id.as_deref(), Some("7"));
    assert_eq!(ev[0].retry, Some(500));
}

#[test]
fn priming_event_without_data_is_kept_and_empty_events_dropped() {
    let ev = parse_all(
        b"id: ev-1\nretry: 500\ndata:\n\n: only a comment\n\nevent: x\n\ndata: z\n\n",
        1024,
    )
    .unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].id.as_deref(), Some("ev-1"));
    assert_eq!(ev[0].data, "");
    assert_eq!(ev[1].data, "z");
    assert_eq!(ev[1].kind(), "message");
}

#[test]
fn trailing_event_without_blank_line_is_dropped() {
    assert_eq!(
        data(&parse_all(b"data: a\n\ndata: b", 1024).unwrap()),
        ["a"]
    );
}

#[test]
fn oversized_line_or_event_is_an_error() {
    let long = format!("data: {}\n\n", "x".repeat(100));
    assert!(parse_all(long.as_bytes(), 50).is_err());
    let many = "data: 0123456789\n".repeat(10) + "\n";
    assert!(parse_all(many.as_bytes(), 50).is_err());
}

#[test]
fn bad_retry_ignored_and_no_space_after_colon() {
    let ev = parse_all(b"retry: 5x\ndata:a\n\n", 1024).unwrap();
    assert_eq!(ev[0].retry, None);
    assert_eq!(ev[0].data, "a");
}

#[test]
fn comments_are_idle_ticks_and_a_partial_event_survives_them() {
    let input = b": keep-alive\ndata: a\n: ping\ndata: b\n\n";
    let mut r = SseReader::new(BufReader::with_capacity(1, &input[..]), 1024);
    let mut items = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        items.push(item);
    }
    let ev = SseEvent {
        data: "a\nb".into(),
        ..SseEvent::default()
    };
    assert_eq!(items, [SseItem::Idle, SseItem::Idle, SseItem::Event(ev)]);
}

#[test]
fn trickled_bytes_give_idle_ticks_without_losing_the_line() {
    /// Hands out one byte per read, slowly.
    struct Slow(Vec<u8>, usize);
    impl io::Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(3));
            match (self.0.get(self.1), buf.first_mut()) {
                (Some(b), Some(slot)) => {
                    *slot = *b;
                    self.1 += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
    let slow = Slow(b"data: hello world\n\n".to_vec(), 0);
    let mut r = SseReader::new(BufReader::with_capacity(1, slow), 1024)
        .with_idle_tick(Duration::from_millis(10));
    let (mut idle, mut events) = (0, Vec::new());
    while let Some(item) = r.next_item().unwrap() {
        match item {
            SseItem::Idle => idle += 1,
            SseItem::Event(ev) => events.push(ev.data),
        }
    }
    assert!(idle >= 2, "{idle}");
    assert_eq!(events, ["hello world"]);
}

#[test]
fn a_read_error_loses_nothing_and_reading_goes_on() {
    /// Gives its pieces in order, with a timeout between any two.
    struct Gappy(Vec<&'static [u8]>, bool);
    impl io::Read for Gappy {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "tick"));
            }
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            buf[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }
    // Cut inside a field name, inside a value, between the lines of one event, and
    // between a CR and its LF.
    let pieces: Vec<&[u8]> = vec![b"da", b"ta: hel", b"lo\r", b"\ndata: w", b"orld\n", b"\n"];
    let mut r = SseReader::new(BufReader::new(Gappy(pieces, false)), 1024);
    let (mut errors, mut events) = (0, Vec::new());
    loop {
        match r.next_item() {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => errors += 1,
            Err(e) => panic!("{e}"),
            Ok(Some(SseItem::Event(ev))) => events.push(ev.data),
            Ok(Some(SseItem::Idle)) => {}
            Ok(None) => break,
        }
    }
    assert_eq!(errors, 7);
    assert_eq!(events, ["hello\nworld"]);
}

#[test]
fn a_comment_flood_does_not_count_towards_the_event_cap() {
    let input = ": keep-alive\n\n".repeat(100) + "data: x\n\n";
    assert_eq!(data(&parse_all(input.as_bytes(), 50).unwrap()), ["x"]);
}

#[test]
fn oversized_events_can_be_skipped_keeping_their_ends() {
    let big = "y".repeat(5000);
    let input = format!(
        "data: small\n\ndata: {{\"id\":3,\"r\":\"{big}\"}}\n\ndata: a\ndata: {big}\ndata: end\n\ndata: after\n\n"
    );
    let mut r = SseReader::new(input.as_bytes(), 1000).skip_oversized();
    let mut seen = Vec::new();
    let mut dropped = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        match item {
            SseItem::Event(ev) => seen.push(ev.data),
            SseItem::Idle => dropped.extend(r.take_oversized()),
        }
    }
    assert_eq!(seen, ["small", "after"]);
    assert_eq!(dropped.len(), 2);
    assert!(
        dropped[0].0.starts_with(b"{\"id\":3,"),
        "{:?}",
        String::from_utf8_lossy(&dropped[0].0)
    );
    assert!(dropped[0].1.ends_with(b"yy\"}"));
    assert!(dropped[0].0.len() <= OVERSIZED_KEEP && dropped[0].1.len() <= OVERSIZED_KEEP);
    assert!(dropped[1].0.starts_with(b"a"));
    assert!(dropped[1].1.ends_with(b"end"));
    // Without the opt-in it is still an error.
    let mut strict = SseReader::new(input.as_bytes(), 1000);
    assert_eq!(strict.next_event().unwrap().unwrap().data, "small");
    assert!(strict.next_event().is_err());
}
