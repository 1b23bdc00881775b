//! RTSP authentication as cameras do it: Basic (RFC 7617), or Digest with
//! MD5 and no `qop` (RFC 2069 style, what most IP cameras still send).

use md5::{Digest as _, Md5};

/// Which scheme the simulated camera challenges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimAuthScheme {
    #[default]
    Digest,
    Basic,
}

const REALM: &str = "doorwarden-sim";

/// The credentials a camera demands, and how it checks them.
#[derive(Clone)]
pub(crate) struct Auth {
    scheme: SimAuthScheme,
    username: String,
    password: String,
    nonce: String,
}

// Hand-written so the password never reaches a Debug print.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("scheme", &self.scheme)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(scheme: SimAuthScheme, username: &str, password: &str, nonce: u64) -> Self {
        Auth {
            scheme,
            username: username.to_owned(),
            password: password.to_owned(),
            nonce: format!("{nonce:016x}"),
        }
    }

    /// The `WWW-Authenticate` value of a 401.
    pub(crate) fn challenge(&self) -> String {
        match self.scheme {
            SimAuthScheme::Basic => format!("Basic realm=\"{REALM}\""),
            SimAuthScheme::Digest => {
                format!("Digest realm=\"{REALM}\", nonce=\"{}\"", self.nonce)
            }
        }
    }

    /// Whether a request's `Authorization` value proves the password.
    pub(crate) fn accepts(&self, method: &str, authorization: Option<&str>) -> bool {
        let Some((scheme, rest)) = authorization.and_then(|a| a.trim().split_once(' ')) else {
            return false;
        };
        match self.scheme {
            SimAuthScheme::Basic => {
                let pair = format!("{}:{}", self.username, self.password);
                scheme.eq_ignore_ascii_case("Basic")
                    && rest.trim() == super::rtsp::base64(pair.as_bytes())
            }
            SimAuthScheme::Digest => {
                if !scheme.eq_ignore_ascii_case("Digest") {
                    return false;
                }
                let params = digest_params(rest);
                let param = |name: &str| {
                    params
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.as_str())
                };
                let (Some(username), Some(nonce), Some(uri), Some(response)) = (
                    param("username"),
                    param("nonce"),
                    param("uri"),
                    param("response"),
                ) else {
                    return false;
                };
                if username != self.username || nonce != self.nonce || param("qop").is_some() {
                    return false;
                }
                let ha1 = md5_hex(&format!("{}:{REALM}:{}", self.username, self.password));
                let ha2 = md5_hex(&format!("{method}:{uri}"));
                let expected = md5_hex(&format!("{ha1}:{}:{ha2}", self.nonce));
                response.eq_ignore_ascii_case(&expected)
            }
        }
    }
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `k="v", k2=v2` pairs of a Digest `Authorization` header. Quoted values
/// may hold commas and `\"` escapes; anything malformed ends the list.
fn digest_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim_start();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().to_owned();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                break;
            };
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.push((key, value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_accepts_only_the_right_pair() {
        let auth = Auth::new(SimAuthScheme::Basic, "Aladdin", "open sesame", 1);
        assert_eq!(auth.challenge(), "Basic realm=\"doorwarden-sim\"");
        // RFC 7617's example credentials.
        let right = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
        assert!(auth.accepts("DESCRIBE", Some(right)));
        assert!(!auth.accepts("DESCRIBE", Some("Basic QWxhZGRpbjpvcGVu")));
        assert!(!auth.accepts("DESCRIBE", Some("QWxhZGRpbjpvcGVuIHNlc2FtZQ==")));
        assert!(!auth.accepts("DESCRIBE", None));
    }

    #[test]
    fn digest_checks_the_rfc_2069_response() {
        let auth = Auth::new(SimAuthScheme::Digest, "courier", "s3cret", 0xabc);
        assert_eq!(
            auth.challenge(),
            "Digest realm=\"doorwarden-sim\", nonce=\"0000000000000abc\""
        );
        let uri = "rtsp://127.0.0.1:554/sim/camera";
        let ha1 = md5_hex("courier:doorwarden-sim:s3cret");
        let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
        let response = md5_hex(&format!("{ha1}:0000000000000abc:{ha2}"));
        let header = format!(
            "Digest username=\"courier\", realm=\"doorwarden-sim\", uri=\"{uri}\", \
             nonce=\"0000000000000abc\", response=\"{response}\""
        );
        assert!(auth.accepts("DESCRIBE", Some(&header)));
        assert!(!auth.accepts("SETUP", Some(&header)), "method is signed");
        let wrong_nonce = header.replace("0000000000000abc", "0000000000000abd");
        assert!(!auth.accepts("DESCRIBE", Some(&wrong_nonce)));
        assert!(!auth.accepts("DESCRIBE", Some("Digest username=\"courier")));
        assert!(!auth.accepts("DESCRIBE", Some("Basic Y291cmllcjpzM2NyZXQ=")));
    }

    #[test]
    fn md5_known_answer() {
        // RFC 1321 test suite.
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn digest_params_handle_quotes_commas_and_junk() {
        let p = digest_params(r#"a="x, y", b=z , c="q\"r""#);
        let expected = [("a", "x, y"), ("b", "z"), ("c", "q\"r")];
        assert_eq!(p.len(), 3);
        for ((k, v), (ek, ev)) in p.iter().zip(expected) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
        assert!(digest_params("").is_empty());
        assert_eq!(digest_params("a=\"unterminated").len(), 0);
        let _ = digest_params("=,=\"\\");
    }
}
