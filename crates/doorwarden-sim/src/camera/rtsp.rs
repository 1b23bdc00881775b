//! The RTSP/1.0 wire format, as far as the simulated camera needs it:
//! reading requests out of a byte buffer (skipping interleaved data a
//! client may send), and writing responses.
//!
//! Anything a client sends that does not parse becomes an error value, never
//! a panic: the camera answers `400 Bad Request` and hangs up.

/// Requests larger than this are refused: no real client sends one, and it
/// bounds what a misbehaving client can make the camera buffer.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) uri: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn cseq(&self) -> Option<&str> {
        self.header("CSeq")
    }
}

/// What [`next_request`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Not a whole message yet; read more.
    Incomplete,
    /// A complete request, and how many bytes it took.
    Request(Request, usize),
    /// Interleaved binary data (e.g. an RTCP receiver report): skip this many
    /// bytes.
    Interleaved(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("request head over {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("request head is not UTF-8")]
    NotText,
    #[error("malformed request line {0:?}")]
    RequestLine(String),
    #[error("malformed header line {0:?}")]
    HeaderLine(String),
    #[error("bad Content-Length {0:?}")]
    ContentLength(String),
}

/// Reads the message at the front of `buf`, if complete.
pub(crate) fn next_request(buf: &[u8]) -> Result<Parsed, ParseError> {
    if buf.first() == Some(&b'$') {
        let Some(len) = buf.get(2..4) else {
            return Ok(Parsed::Incomplete);
        };
        let total = 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
        return Ok(if buf.len() >= total {
            Parsed::Interleaved(total)
        } else {
            Parsed::Incomplete
        });
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_REQUEST_BYTES {
            Err(ParseError::TooLarge)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if head_end > MAX_REQUEST_BYTES {
        return Err(ParseError::TooLarge);
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseError::NotText)?;
    // Stray CRLFs between messages are allowed (RFC 2326 follows HTTP here).
    let head = head.trim_start_matches("\r\n");
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(uri), Some("RTSP/1.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::RequestLine(request_line.to_owned()));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(ParseError::RequestLine(request_line.to_owned()));
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::HeaderLine(line.to_owned()));
        };
        if name.is_empty() || name.contains(' ') {
            return Err(ParseError::HeaderLine(line.to_owned()));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let request = Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        headers,
    };
    let body_len = match request.header("Content-Length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= MAX_REQUEST_BYTES)
            .ok_or_else(|| ParseError::ContentLength(v.to_owned()))?,
    };
    let total = head_end + 4 + body_len;
    Ok(if buf.len() >= total {
        Parsed::Request(request, total)
    } else {
        Parsed::Incomplete
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A response under construction.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response that echoes the request's `CSeq`, as every RTSP response
    /// must.
    pub(crate) fn to(request: Option<&Request>, status: u16, reason: &'static str) -> Self {
        let mut response = Response {
            status,
            reason,
            headers: Vec::new(),
            body: Vec::new(),
        };
        if let Some(cseq) = request.and_then(Request::cseq) {
            response.headers.push(("CSeq", cseq.to_owned()));
        }
        response
            .headers
            .push(("Server", "doorwarden-sim-camera".to_owned()));
        response
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(mut self, content_type: &'static str, body: Vec<u8>) -> Self {
        self.headers.push(("Content-Type", content_type.to_owned()));
        self.body = body;
        self
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("RTSP/1.0 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Standard base64 with padding (RFC 4648), for `sprop-parameter-sets` and
/// Basic credentials.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_request_with_headers() {
        let raw =
            b"OPTIONS rtsp://127.0.0.1:554/cam RTSP/1.0\r\nCSeq: 7\r\nUser-Agent: x\r\n\r\nrest";
        let Parsed::Request(req, used) = next_request(raw).unwrap() else {
            panic!("expected a request");
        };
        assert_eq!(req.method, "OPTIONS");
        assert_eq!(req.uri, "rtsp://127.0.0.1:554/cam");
        assert_eq!(req.cseq(), Some("7"));
        assert_eq!(req.header("user-agent"), Some("x"));
        assert_eq!(&raw[used..], b"rest");
    }

    #[test]
    fn waits_for_the_rest_of_a_request_and_its_body() {
        assert_eq!(
            next_request(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n").unwrap(),
            Parsed::Incomplete
        );
        let raw = b"SET_PARAMETER * RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nab";
        assert_eq!(next_request(raw).unwrap(), Parsed::Incomplete);
        let mut full = raw.to_vec();
        full.extend_from_slice(b"cd");
        assert!(matches!(next_request(&full).unwrap(), Parsed::Request(_, n) if n == full.len()));
    }

    #[test]
    fn skips_interleaved_data() {
        assert_eq!(next_request(b"$\x01\x00").unwrap(), Parsed::Incomplete);
        assert_eq!(
            next_request(b"$\x01\x00\x02ab").unwrap(),
            Parsed::Interleaved(6)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: [&[u8]; 6] = [
            b"\x00\xff\xfe\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nno colon here\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\nContent-Length: lots\r\n\r\n",
            b"\xc3\x28 * RTSP/1.0\r\n\r\n",
        ];
        for raw in cases {
            assert!(next_request(raw).is_err(), "{raw:?}");
        }
        assert_eq!(
            next_request(&[b'A'; MAX_REQUEST_BYTES + 1]),
            Err(ParseError::TooLarge)
        );
    }

    #[test]
    fn responses_echo_cseq_and_count_the_body() {
        let Parsed::Request(req, _) =
            next_request(b"DESCRIBE rtsp://h/c RTSP/1.0\r\ncseq: 3\r\n\r\n").unwrap()
        else {
            panic!("expected a request");
        };
        let bytes = Response::to(Some(&req), 200, "OK")
            .header("Content-Base", "rtsp://h/c/")
            .body("application/sdp", b"v=0\r\n".to_vec())
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("RTSP/1.0 200 OK\r\nCSeq: 3\r\n"));
        assert!(text.contains("Content-Base: rtsp://h/c/\r\n"));
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
