use crate::Result;
use crate::transport::parse::{Refused, head_end, refusal_for};
use bytes::{Buf, Bytes, BytesMut};
use internal::Finish;
use sip_types::Headers;
use sip_types::msg::{Line, MessageLine, PullParser};
use sip_types::parse::Parse;
use std::io;
use std::str::from_utf8;
use tokio_util::codec::Decoder;

#[allow(clippy::large_enum_variant)]
pub(crate) enum Item {
    DecodedMessage(DecodedMessage),
    /// PATCH(milliwatt): see `parse::Refused`
    Refused(Refused),
    KeepAliveRequest,
    KeepAliveResponse,
}

pub(crate) struct DecodedMessage {
    pub line: MessageLine,
    pub headers: Headers,
    pub body: Bytes,

    pub buffer: Bytes,
}

pub(crate) struct StreamingDecoder {
    head_progress: usize,
    /// PATCH(milliwatt): `MessageLimits::max_message_bytes`
    max: usize,
    /// PATCH(milliwatt): body bytes of a message refused as too large, still to be skipped
    skip: usize,
}

impl Default for StreamingDecoder {
    fn default() -> Self {
        Self::new(u16::MAX as usize)
    }
}

impl StreamingDecoder {
    /// PATCH(milliwatt): a decoder accepting messages of up to `max` bytes
    pub(crate) fn new(max: usize) -> Self {
        StreamingDecoder {
            head_progress: 0,
            max,
            skip: 0,
        }
    }
}

impl Decoder for StreamingDecoder {
    type Item = Item;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        // PATCH(milliwatt): the body of a message answered 513 is skipped as it arrives
        if self.skip > 0 {
            let n = self.skip.min(src.len());
            src.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }

        // strip leading newlines
        let whitespace_count = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if whitespace_count > 0 {
            let is_keep_alive_request = src.starts_with(b"\r\n\r\n");
            let is_keep_alive_response = src.starts_with(b"\r\n");

            src.advance(whitespace_count);

            if is_keep_alive_request {
                return Ok(Some(Item::KeepAliveRequest));
            } else if is_keep_alive_response {
                return Ok(Some(Item::KeepAliveResponse));
            }
        }

        // PATCH(milliwatt): the first pass only checks that the head is complete, resuming
        // where the last call stopped; the second pass below parses it from the start. Before,
        // the first pass also looked for Content-Length, but only in the lines after the saved
        // progress: when a head arrived in several reads and Content-Length came in an earlier
        // one, the body was taken as empty and its bytes as the next message (RFC 3261 18.3:
        // on a stream, Content-Length frames the message).
        let mut parser = PullParser::new(src, self.head_progress);
        for line in &mut parser {
            if line.is_err() {
                // PATCH(milliwatt): limit message size: a head that alone is larger than the
                // limit ends the connection (was 65535 bytes of buffer, head or not)
                if src.len() > self.max {
                    src.clear();

                    return Err(message_too_large());
                }

                // cannot parse complete message head yet
                self.head_progress = parser.progress();
                return Ok(None);
            }
        }

        // PATCH(milliwatt): parse the head once, on the buffer the check above ran on, keeping
        // each line's position; before, the head was parsed again on the message's bytes alone,
        // where a parser that needs bytes after a line end could fail, and that failure was an
        // `expect` (a head ending in LF CRLF panicked the connection's task).
        let mut parser = PullParser::new(src, 0);
        let mut lines = Vec::with_capacity(16);
        // PATCH(milliwatt): `None` until a Content-Length line is seen
        let mut content_len: Option<usize> = None;
        loop {
            let begin = parser.progress();
            let line = match parser.next() {
                None => break,
                Some(Ok(line)) => line,
                // the same bytes were complete above
                Some(Err(_)) => return Err(malformed()),
            };
            lines.push(begin..begin + line.len());

            // try to find content-length field
            // so the complete message size can be calculated
            let mut split = line.splitn(2, |&c| c == b':');

            let Some(name) = split.next() else {
                continue;
            };

            let content_length_possible_names = sip_types::Name::CONTENT_LENGTH
                .as_parse_strs()
                .unwrap_or_default();

            if content_length_possible_names
                .iter()
                .any(|str| name.trim_ascii_end().eq_ignore_ascii_case(str.as_bytes()))
            {
                let value = split.next().ok_or_else(malformed)?;
                let value = from_utf8(value).map_err(|_| malformed())?;

                let len = value.trim().parse::<usize>().map_err(|_| malformed())?;

                if len > (u16::MAX as usize) {
                    return Err(message_too_large());
                }

                // PATCH(milliwatt): two Content-Length values that differ leave the message's
                // end unknown (RFC 3261 18.3, 20.14): the stream cannot be framed any more.
                // Before, the last one won silently (a caller's body read as the next message,
                // or the connection waiting for bytes that never come).
                if content_len.is_some_and(|seen| seen != len) {
                    return Err(malformed());
                }
                content_len = Some(len);
            }
        }
        let content_len = content_len.unwrap_or(0);

        // PATCH(milliwatt): after the empty line, also when it is in another style than the
        // line before it (see `parse::head_end`)
        let head_end = head_end(src, parser.progress(), lines.last().map(|line| line.end));

        // Calculate the complete message size
        let expected_complete_message_size = head_end + content_len;

        // PATCH(milliwatt): a request larger than the limit gets 513 from its head (RFC 3261
        // 21.5.13) and its body is skipped, so the stream goes on after it; anything else that
        // large (a response, an ACK, a head that does not parse) ends the connection.
        if expected_complete_message_size > self.max {
            let head = src.split_to(head_end).freeze();
            self.head_progress = 0;
            self.skip = content_len;
            let mut headers = Headers::new();
            let mut answerable = false;
            for (i, range) in lines.into_iter().enumerate() {
                let line = from_utf8(&head[range]).map_err(|_| malformed())?;
                if i == 0 {
                    answerable = matches!(
                        MessageLine::parse(&head)(line),
                        Ok((_, MessageLine::Request(l))) if l.method != sip_types::Method::ACK
                    );
                } else if let Ok((_, line)) = Line::parse(&head, line).finish() {
                    headers.insert(line.name, line.value);
                }
            }
            if !answerable {
                return Err(message_too_large());
            }
            return Ok(Some(Item::Refused(Refused {
                code: sip_types::StatusCode::MESSAGE_TOO_LARGE,
                reason: format!("Message Too Large (limit {} bytes)", self.max),
                headers,
            })));
        }

        // if the message is not completely inside the buffer, allocate the rest
        // and return
        if src.len() < expected_complete_message_size {
            src.reserve(expected_complete_message_size - src.len());
            return Ok(None);
        }

        // Truncate all bytes which are not related
        // to the current message and are stored inside new_src
        let src_bytes = src.split_to(expected_complete_message_size).freeze();

        // reset state
        self.head_progress = 0;

        let mut message_line = None;
        let mut headers = Headers::new();
        // PATCH(milliwatt): the answer to a start line the parser rejected, see `refusal_for`
        let mut refused = None;

        for range in lines {
            let line = from_utf8(&src_bytes[range]).map_err(|_| malformed())?;

            if message_line.is_none() && refused.is_none() {
                match MessageLine::parse(&src_bytes)(line) {
                    Ok((_, line)) => message_line = Some(line),
                    Err(_) if refusal_for(line).is_some() => refused = refusal_for(line),
                    Err(_) => return Err(malformed()),
                }
            } else {
                match Line::parse(&src_bytes, line).finish() {
                    Ok((_, line)) => headers.insert(line.name, line.value),
                    Err(e) => {
                        log::error!("Incoming SIP message has malformed header line, {e}");
                    }
                }
            }
        }

        if let Some((code, reason)) = refused {
            return Ok(Some(Item::Refused(Refused {
                code,
                reason,
                headers,
            })));
        }

        // slice remaining bytes
        let body = src_bytes.slice(head_end..head_end + content_len);
        assert_eq!(content_len, body.len());

        Ok(Some(Item::DecodedMessage(DecodedMessage {
            line: message_line.ok_or_else(malformed)?,
            headers,
            body,
            buffer: src_bytes,
        })))
    }
}

// PATCH(milliwatt): `InvalidData`, not `Other`: the connection's task tells a message it
// could not frame (counted as dropped malformed) from an I/O error.
fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "receiving message is malformed")
}

fn message_too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "receiving message is too large")
}
