//! Reassembly of fragmented WebSocket messages (RFC 6455 §5.4).
//!
//! A client, or a proxy on its way, may split one message into a first frame and continuation
//! frames, with control frames between them; the message means the same as if it came whole. The
//! size limit applies to the whole message, and text is checked as UTF-8 while it arrives, so a
//! message that can no longer become valid fails the connection at once (§8.1), not only at its
//! end.

use actix_http::ws::Item;
use actix_web::web::Bytes;

/// What a fragment completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// More fragments are due.
    Pending,
    /// A whole text message.
    Text(String),
    /// A whole binary message (its content does not matter: binary messages are refused).
    Binary,
}

/// Why a fragment fails the connection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("the message is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the text is not valid UTF-8")]
    InvalidUtf8,
    #[error("a continuation frame without a message to continue")]
    NotStarted,
    #[error("a new message began before the previous one ended")]
    AlreadyStarted,
}

/// The kind of the message being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// The message being reassembled, if any.
#[derive(Debug)]
pub struct Reassembly {
    kind: Option<Kind>,
    buffer: Vec<u8>,
    /// How far `buffer` is known to be valid UTF-8 (always on a character boundary).
    checked: usize,
    limit: usize,
}

impl Reassembly {
    /// Reassembles messages of at most `limit` bytes.
    pub fn new(limit: usize) -> Reassembly {
        Reassembly {
            kind: None,
            buffer: Vec::new(),
            checked: 0,
            limit,
        }
    }

    /// Whether a fragmented message has begun and not ended: a new data frame is then an error.
    pub fn in_progress(&self) -> bool {
        self.kind.is_some()
    }

    /// Takes one fragment. After an error the reassembly is reset; the caller closes anyway.
    pub fn push(&mut self, item: Item) -> Result<Assembled, FragmentError> {
        let result = self.take(item);
        if !matches!(result, Ok(Assembled::Pending)) {
            self.reset();
        }
        result
    }

    fn take(&mut self, item: Item) -> Result<Assembled, FragmentError> {
        let (bytes, last) = match item {
            Item::FirstText(bytes) => (self.begin(Kind::Text, bytes)?, false),
            Item::FirstBinary(bytes) => (self.begin(Kind::Binary, bytes)?, false),
            Item::Continue(bytes) => (self.continued(bytes)?, false),
            Item::Last(bytes) => (self.continued(bytes)?, true),
        };
        if self.buffer.len() + bytes.len() > self.limit {
            return Err(FragmentError::TooLarge(self.limit));
        }
        self.buffer.extend_from_slice(&bytes);
        if self.kind == Some(Kind::Text) {
            self.check_utf8(last)?;
        }
        if !last {
            return Ok(Assembled::Pending);
        }
        match self.kind {
            Some(Kind::Text) => {
                let text = String::from_utf8(std::mem::take(&mut self.buffer))
                    .map_err(|_| FragmentError::InvalidUtf8)?;
                Ok(Assembled::Text(text))
            }
            _ => Ok(Assembled::Binary),
        }
    }

    fn begin(&mut self, kind: Kind, bytes: Bytes) -> Result<Bytes, FragmentError> {
        if self.in_progress() {
            return Err(FragmentError::AlreadyStarted);
        }
        self.kind = Some(kind);
        Ok(bytes)
    }

    fn continued(&self, bytes: Bytes) -> Result<Bytes, FragmentError> {
        match self.in_progress() {
            true => Ok(bytes),
            false => Err(FragmentError::NotStarted),
        }
    }

    /// Checks the bytes after `checked`: an incomplete character may end a fragment, but not the
    /// message, and nothing invalid may appear anywhere.
    fn check_utf8(&mut self, last: bool) -> Result<(), FragmentError> {
        match std::str::from_utf8(&self.buffer[self.checked..]) {
            Ok(_) => {
                self.checked = self.buffer.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !last => {
                self.checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(FragmentError::InvalidUtf8),
        }
    }

    fn reset(&mut self) {
        self.kind = None;
        self.buffer = Vec::new();
        self.checked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn fragments_make_one_text_message() {
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(Item::FirstText(text(b"{\"ty"))),
            Ok(Assembled::Pending)
        );
        assert!(r.in_progress());
        assert_eq!(
            r.push(Item::Continue(text(b"pe\":"))),
            Ok(Assembled::Pending)
        );
        assert_eq!(
            r.push(Item::Last(text(b"\"ping\"}"))),
            Ok(Assembled::Text("{\"type\":\"ping\"}".into()))
        );
        assert!(!r.in_progress(), "ready for the next message");
    }

    #[test]
    fn a_character_split_across_fragments_is_valid() {
        let mut r = Reassembly::new(100);
        // "é" is 0xC3 0xA9.
        assert_eq!(
            r.push(Item::FirstText(text(b"caf\xC3"))),
            Ok(Assembled::Pending)
        );
        assert_eq!(
            r.push(Item::Last(text(b"\xA9"))),
            Ok(Assembled::Text("café".into()))
        );
    }

    #[test]
    fn invalid_utf8_fails_at_the_fragment_that_holds_it() {
        let mut r = Reassembly::new(100);
        assert_eq!(r.push(Item::FirstText(text(b"ok"))), Ok(Assembled::Pending));
        assert_eq!(
            r.push(Item::Continue(text(b"\xFF"))),
            Err(FragmentError::InvalidUtf8),
            "fails fast, before the last fragment"
        );
        assert!(!r.in_progress());
    }

    #[test]
    fn an_unfinished_character_at_the_end_is_invalid() {
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(Item::FirstText(text(b"caf"))),
            Ok(Assembled::Pending)
        );
        assert_eq!(
            r.push(Item::Last(text(b"\xC3"))),
            Err(FragmentError::InvalidUtf8)
        );
    }

    #[test]
    fn the_limit_is_on_the_whole_message() {
        let mut r = Reassembly::new(8);
        assert_eq!(
            r.push(Item::FirstText(text(b"12345"))),
            Ok(Assembled::Pending)
        );
        assert_eq!(
            r.push(Item::Continue(text(b"6789"))),
            Err(FragmentError::TooLarge(8))
        );
    }

    #[test]
    fn binary_messages_are_reassembled_without_a_utf8_check() {
        let mut r = Reassembly::new(8);
        assert_eq!(
            r.push(Item::FirstBinary(text(b"\xFF"))),
            Ok(Assembled::Pending)
        );
        assert_eq!(r.push(Item::Last(text(b"\xFE"))), Ok(Assembled::Binary));
    }

    #[test]
    fn continuations_out_of_place_are_errors() {
        let mut r = Reassembly::new(8);
        assert_eq!(
            r.push(Item::Continue(text(b"x"))),
            Err(FragmentError::NotStarted)
        );
        assert_eq!(
            r.push(Item::Last(text(b"x"))),
            Err(FragmentError::NotStarted)
        );
        assert_eq!(r.push(Item::FirstText(text(b"x"))), Ok(Assembled::Pending));
        assert_eq!(
            r.push(Item::FirstBinary(text(b"x"))),
            Err(FragmentError::AlreadyStarted)
        );
    }
}
