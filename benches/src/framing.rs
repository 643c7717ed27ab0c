//! What the load generator sends on a connection and how it counts what comes back: an echo
//! (a reply is as many bytes as the request) or HTTP/1.1 keep-alive (a reply is one whole
//! response, its end found by its `Content-Length`, so replies are counted exactly however the
//! bytes arrive).

/// B10's request: the same for every server.
pub const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// How replies are delimited on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The server echoes each request of this many bytes.
    Echo(usize),
    /// Each request is [`HTTP_REQUEST`]; each reply an HTTP/1.1 response with a
    /// `Content-Length`.
    Http,
}

impl Framing {
    /// The bytes of one request.
    pub fn request(self) -> Vec<u8> {
        match self {
            Framing::Echo(size) => vec![0x5a; size],
            Framing::Http => HTTP_REQUEST.to_vec(),
        }
    }
}

/// Counts the replies completed on one connection as its bytes arrive.
#[derive(Debug)]
pub struct Replies {
    framing: Framing,
    /// Echo: bytes of the reply in progress. HTTP: the bytes of responses not yet complete.
    received: usize,
    buffered: Vec<u8>,
}

impl Replies {
    /// A counter for a connection speaking `framing`.
    pub fn new(framing: Framing) -> Replies {
        Replies {
            framing,
            received: 0,
            buffered: Vec::new(),
        }
    }

    /// Takes the next `bytes` read from the connection; returns how many replies they
    /// completed.
    ///
    /// # Errors
    ///
    /// An HTTP response that is not `200`, or has no `Content-Length` the counter can read
    /// (chunked bodies are not expected from a fixed-body handler).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<u64, String> {
        match self.framing {
            Framing::Echo(size) => {
                self.received += bytes.len();
                let complete = self.received / size.max(1);
                self.received %= size.max(1);
                Ok(complete as u64)
            }
            Framing::Http => self.feed_http(bytes),
        }
    }

    fn feed_http(&mut self, bytes: &[u8]) -> Result<u64, String> {
        self.buffered.extend_from_slice(bytes);
        let mut complete = 0;
        let mut consumed = 0;
        while let Some(head_len) = find(&self.buffered[consumed..], b"\r\n\r\n") {
            let head = &self.buffered[consumed..consumed + head_len];
            if !head.starts_with(b"HTTP/1.1 200 ") {
                let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                return Err(format!(
                    "unexpected response: {}",
                    String::from_utf8_lossy(line)
                ));
            }
            let total = head_len + 4 + content_length(head)?;
            if self.buffered.len() - consumed < total {
                break;
            }
            consumed += total;
            complete += 1;
        }
        self.buffered.drain(..consumed);
        Ok(complete)
    }
}

/// The `Content-Length` of a response head (any case).
fn content_length(head: &[u8]) -> Result<usize, String> {
    head.split(|&b| b == b'\n')
        .find_map(|line| {
            let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
            name.eq_ignore_ascii_case(b"content-length").then(|| {
                String::from_utf8_lossy(&value[1..])
                    .trim()
                    .parse::<usize>()
                    .map_err(|e| format!("a bad Content-Length: {e}"))
            })
        })
        .unwrap_or_else(|| Err("a response without Content-Length".to_string()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\ndate: Wed, 02 Dec 2026 14:00:00 GMT\r\n\r\nHello, World!";

    #[test]
    fn echo_replies_are_counted_by_size_across_reads() {
        let mut replies = Replies::new(Framing::Echo(4));
        assert_eq!(replies.feed(b"abc"), Ok(0));
        assert_eq!(replies.feed(b"defghijk"), Ok(2));
        assert_eq!(replies.feed(b"l"), Ok(1));
    }

    #[test]
    fn http_responses_are_counted_exactly_however_the_bytes_are_split() {
        let stream: Vec<u8> = RESPONSE.repeat(5);
        for chunk in [1, 7, RESPONSE.len() - 1, RESPONSE.len(), 64, stream.len()] {
            let mut replies = Replies::new(Framing::Http);
            let total: u64 = stream
                .chunks(chunk)
                .map(|c| replies.feed(c).expect("valid responses"))
                .sum();
            assert_eq!(total, 5, "chunks of {chunk}");
            assert!(replies.buffered.is_empty());
        }
    }

    #[test]
    fn a_body_is_not_mistaken_for_a_response_and_a_head_waits_for_its_body() {
        let mut replies = Replies::new(Framing::Http);
        let head_only = &RESPONSE[..RESPONSE.len() - 13];
        assert_eq!(replies.feed(head_only), Ok(0));
        assert_eq!(replies.feed(b"Hello, World"), Ok(0));
        assert_eq!(replies.feed(b"!"), Ok(1));
        let mut other = Replies::new(Framing::Http);
        let odd = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        assert_eq!(other.feed(odd), Ok(1));
    }

    #[test]
    fn a_response_without_a_length_or_not_200_is_an_error() {
        let mut replies = Replies::new(Framing::Http);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(replies.feed(chunked).is_err());
        let mut replies = Replies::new(Framing::Http);
        let missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert!(replies.feed(missing).unwrap_err().contains("404"));
    }
}
