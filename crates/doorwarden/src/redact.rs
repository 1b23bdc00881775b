//! The one place secrets are scrubbed from text that may be shown.
//!
//! Passwords and PINs live in [`crate::config::Secret`], which never prints.
//! What remains is text that *contains* a secret without knowing it: an RTSP
//! URL with `user:password@` inside, or an error message from a library that
//! echoes such a URL. Everything that reaches a log line, an error, an MQTT
//! payload or the audit log and might hold a URL goes through [`text`].

/// Replace the `user:password@` part of every URL in `input` with `***@`.
///
/// Works on any text (log lines, library errors), not only on a bare URL:
/// every `scheme://…@` authority is rewritten, whatever the scheme.
pub fn text(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace; a
        // '@' inside it separates the userinfo we must hide.
        let end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A URL with its userinfo removed and returned separately, for the one
/// library (retina) that wants credentials apart from the URL.
pub fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let user = percent_decode(parsed.username());
            let pass = percent_decode(parsed.password().unwrap_or(""));
            // Both setters only fail for URLs that cannot have credentials,
            // which is not the case for one that had them.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            (parsed.to_string(), Some((user, pass)))
        }
        _ => (url.to_string(), None),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_userinfo_everywhere() {
        let cases = [
            (
                "rtsp://admin:s3cret@porch-camera.local:554/h264",
                "rtsp://***@porch-camera.local:554/h264",
            ),
            (
                "error: connect rtsp://u:p@cam/x failed",
                "error: connect rtsp://***@cam/x failed",
            ),
            ("mqtts://bridge:pw@broker.local", "mqtts://***@broker.local"),
            ("rtsp://cam.local/stream", "rtsp://cam.local/stream"),
            (
                "a rtsp://x:y@h b rtsp://p:q@k",
                "a rtsp://***@h b rtsp://***@k",
            ),
            ("rtsp://we:ird@pass@host/p", "rtsp://***@host/p"),
            ("no url here", "no url here"),
            ("trailing ://", "trailing ://"),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input}");
        }
    }

    #[test]
    fn splits_credentials_from_url() {
        let (url, creds) = split_credentials("rtsp://admin:p%40ss@porch-camera.local:554/s1");
        assert_eq!(url, "rtsp://porch-camera.local:554/s1");
        assert_eq!(creds, Some(("admin".into(), "p@ss".into())));
        let (url, creds) = split_credentials("rtsp://porch-camera.local/s1");
        assert_eq!(url, "rtsp://porch-camera.local/s1");
        assert_eq!(creds, None);
    }
}
