//! Sentences rendered straight into a writer, so that the core can ask
//! "would this still say the same?" without building the sentence.
//!
//! Owns no state. A reason that the core both shows (a door's state) and
//! re-checks on every event (each camera frame) is written once, as a
//! `write_*` function that takes a [`fmt::Write`] and says whether there is
//! anything to say; [`owned`] turns that into the `Option<String>` the
//! actions carry, and [`same`] compares it with what was last shown, with
//! no allocation.

use std::fmt;

/// A `write_*` function's answer: whether it had something to say.
pub type Said = Result<bool, fmt::Error>;

/// What `render` says, as an owned string; `None` when it says nothing.
pub fn owned(render: impl FnOnce(&mut dyn fmt::Write) -> Said) -> Option<String> {
    let mut text = String::new();
    match render(&mut text) {
        Ok(true) => Some(text),
        // Writing to a `String` cannot fail; nothing said is `None`.
        Ok(false) | Err(_) => None,
    }
}

/// Whether `render` says exactly `shown` (`None`: says nothing).
pub fn same(shown: Option<&str>, render: impl FnOnce(&mut dyn fmt::Write) -> Said) -> bool {
    let mut rest = Rest(shown.unwrap_or(""));
    match render(&mut rest) {
        Ok(said) => said == shown.is_some() && rest.0.is_empty(),
        // The first piece that differs stops the rendering.
        Err(_) => false,
    }
}

/// Whether `value` displays exactly as `shown`.
pub fn displays_as(shown: Option<&str>, value: Option<&dyn fmt::Display>) -> bool {
    same(shown, |w| match value {
        Some(v) => write!(w, "{v}").map(|()| true),
        None => Ok(false),
    })
}

/// The part of the expected text not yet matched.
struct Rest<'a>(&'a str);

impl fmt::Write for Rest<'_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        match self.0.strip_prefix(piece) {
            Some(rest) => {
                self.0 = rest;
                Ok(())
            }
            None => Err(fmt::Error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(n: Option<u32>) -> impl FnOnce(&mut dyn fmt::Write) -> Said {
        move |w| match n {
            Some(n) => write!(w, "no frame for {n} s").map(|()| true),
            None => Ok(false),
        }
    }

    #[test]
    fn owned_and_same_agree() {
        assert_eq!(owned(reason(Some(3))).as_deref(), Some("no frame for 3 s"));
        assert_eq!(owned(reason(None)), None);
        assert!(same(Some("no frame for 3 s"), reason(Some(3))));
        assert!(same(None, reason(None)));
        assert!(!same(Some("no frame for 3 s"), reason(Some(4))));
        assert!(!same(Some("no frame for 3 s"), reason(Some(31))));
        assert!(!same(Some("no frame for 3 s extra"), reason(Some(3))));
        assert!(!same(Some(""), reason(None)));
        assert!(!same(None, reason(Some(3))));
        assert!(displays_as(Some("7"), Some(&7)));
        assert!(!displays_as(Some("7"), None));
        assert!(displays_as(None, None));
    }
}
