//! Where each key and value of a YAML file sits (line and column).
//!
//! serde_yaml gives a position only for the first syntax error, and its
//! `Value` tree keeps none. To point every validation message at the right
//! spot, the file is read a second time with yaml-rust2's event parser, which
//! reports a marker for every node, and each node's path is recorded.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };
}

/// One step of a path into the document: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Dotted form used in messages: `cameras.porch.stall_after`, `deliveries.front.windows[0].from`.
pub fn show_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Positions of every node, by path.
#[derive(Debug, Default)]
pub struct Positions {
    /// Where the key of a mapping entry starts.
    keys: HashMap<Vec<Seg>, Pos>,
    /// Where a value (scalar, mapping or sequence) starts.
    values: HashMap<Vec<Seg>, Pos>,
}

impl Positions {
    /// Index `text`. A file yaml-rust2 cannot read yields an empty index
    /// (every lookup then falls back to the nearest known parent, or 1:1);
    /// the syntax error itself is reported by serde_yaml.
    pub fn index(text: &str) -> Positions {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Positions::default();
        }
        builder.positions
    }

    /// Position of the key at `path`, else of its value, else of the
    /// closest parent that has one.
    pub fn key(&self, path: &[Seg]) -> Pos {
        self.lookup(path, true)
    }

    /// Position of the value at `path`, else of its key, else of the
    /// closest parent that has one.
    pub fn value(&self, path: &[Seg]) -> Pos {
        self.lookup(path, false)
    }

    fn lookup(&self, path: &[Seg], key_first: bool) -> Pos {
        let mut p = path.to_vec();
        loop {
            let (first, second) = if key_first {
                (&self.keys, &self.values)
            } else {
                (&self.values, &self.keys)
            };
            if let Some(pos) = first.get(&p).or_else(|| second.get(&p)) {
                return *pos;
            }
            if p.pop().is_none() {
                return Pos::START;
            }
        }
    }
}

/// What the builder is inside of.
#[derive(Debug)]
enum Frame {
    /// A mapping; `pending_key` is set between a key and its value.
    Map {
        pending_key: Option<String>,
    },
    Seq {
        next: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    positions: Positions,
    stack: Vec<Frame>,
    path: Vec<Seg>,
}

impl Builder {
    /// A node is about to start at `pos`: decide whether it is a key or a
    /// value, and where it lives.
    fn node(&mut self, pos: Pos, scalar: Option<&str>, container: bool) {
        match self.stack.last_mut() {
            None => {
                self.positions.values.insert(Vec::new(), pos);
            }
            Some(Frame::Map { pending_key }) => match pending_key.take() {
                None => {
                    // This node is a key. Only plain scalar keys are tracked;
                    // a complex key gets an unnamed placeholder.
                    let key = scalar.unwrap_or("?").to_string();
                    let mut p = self.path.clone();
                    p.push(Seg::Key(key.clone()));
                    self.positions.keys.insert(p, pos);
                    if container {
                        // A mapping used as a key: its contents are skipped
                        // by giving it a path nobody asks for.
                        self.path.push(Seg::Key(key.clone()));
                    }
                    if let Some(Frame::Map { pending_key }) = self.stack.last_mut() {
                        *pending_key = Some(key);
                    }
                }
                Some(key) => {
                    self.path.push(Seg::Key(key));
                    self.positions.values.insert(self.path.clone(), pos);
                    if !container {
                        self.path.pop();
                    }
                }
            },
            Some(Frame::Seq { next }) => {
                let index = *next;
                *next += 1;
                self.path.push(Seg::Index(index));
                self.positions.values.insert(self.path.clone(), pos);
                if !container {
                    self.path.pop();
                }
            }
        }
    }

    /// A container ended: leave its path segment, if it pushed one.
    fn end(&mut self) {
        self.stack.pop();
        if !self.stack.is_empty() {
            self.path.pop();
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2 counts lines from 1 but columns from 0.
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(value, ..) => self.node(pos, Some(&value), false),
            Event::Alias(_) => self.node(pos, None, false),
            Event::MappingStart(..) => {
                self.node(pos, None, true);
                self.stack.push(Frame::Map { pending_key: None });
            }
            Event::SequenceStart(..) => {
                self.node(pos, None, true);
                self.stack.push(Frame::Seq { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => self.end(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Vec<Seg> {
        parts
            .iter()
            .map(|p| match p.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(p.to_string()),
            })
            .collect()
    }

    #[test]
    fn finds_keys_and_values() {
        let text = "mqtt:\n  url: mqtt://broker.local\ncameras:\n  porch:\n    url: rtsp://x\n    stall_after: 2s\nlocks:\n  front:\n    cameras: [porch, hall]\n    zigbee2mqtt: {topic: z/front}\n";
        let p = Positions::index(text);
        assert_eq!(p.key(&key(&["mqtt", "url"])), Pos { line: 2, col: 3 });
        assert_eq!(p.value(&key(&["mqtt", "url"])), Pos { line: 2, col: 8 });
        assert_eq!(
            p.key(&key(&["cameras", "porch", "stall_after"])),
            Pos { line: 6, col: 5 }
        );
        assert_eq!(
            p.value(&key(&["locks", "front", "cameras", "1"])),
            Pos { line: 9, col: 22 }
        );
        assert_eq!(
            p.value(&key(&["locks", "front", "zigbee2mqtt", "topic"])),
            Pos { line: 10, col: 26 }
        );
        // Unknown paths fall back to the nearest parent.
        assert_eq!(
            p.key(&key(&["cameras", "porch", "nope"])),
            Pos { line: 4, col: 3 }
        );
    }

    #[test]
    fn sequences_of_mappings() {
        let text =
            "windows:\n  - days: [mon]\n    from: \"09:00\"\n  - days: [tue]\n    to: \"10:00\"\n";
        let p = Positions::index(text);
        assert_eq!(
            p.key(&key(&["windows", "0", "from"])),
            Pos { line: 3, col: 5 }
        );
        assert_eq!(
            p.key(&key(&["windows", "1", "to"])),
            Pos { line: 5, col: 5 }
        );
        assert_eq!(show_path(&key(&["windows", "1", "to"])), "windows[1].to");
    }
}
