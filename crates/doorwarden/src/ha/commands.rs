//! Command topics: what Home Assistant (or a courier's webhook) asks of a
//! door, turned into a [`crate::core::Command`].
//!
//! # Format
//!
//! | topic | payload |
//! |---|---|
//! | `<base>/<door>/lock/set` | `LOCK` / `UNLOCK` |
//! | `<base>/<door>/delivery/grant/set` | `PRESS`, or `{"minutes": 30, "code": "482913"}` (both optional) |
//! | `<base>/<door>/delivery/end/set` | `PRESS` |
//! | `<base>/<door>/delivery/courier_unlock/set` | `PRESS` |
//! | `<base>/<door>/delivery/grant_minutes/set` | `30` (1..=1440; `30.0` too) |
//! | `<base>/<door>/delivery/code/set` | `482913` (4 to 10 digits) |
//! | `<base>/<door>/delivery/evidence_ack/set` | `PRESS` (the owner has seen a compromised delivery's clips; retention may delete them) |
//! | `<base>/<door>/delivery/request` | `{"code": "482913", "carrier": "DHL"}` (both optional; empty = `{}`) |
//! | `mqtt.ha_status_topic` | `online` / `offline` (Home Assistant's birth and will) |
//!
//! A message on a command topic that arrives **retained** is never acted on
//! ([`CommandParse::RetainedIgnored`]): a retained `UNLOCK` left on the
//! broker must not open a door when doorwarden (re)connects. Reasons in
//! [`CommandParse::Malformed`] describe what was expected and never repeat
//! the payload, which may hold a code.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, Secret};
use crate::core::{Command, RequestChannel};
use crate::intake::{self, Limit};

/// Longest accepted grant, in minutes (a day).
pub const MAX_GRANT_MINUTES: u64 = 1440;
/// Longest text accepted for a carrier name or a requested code.
const MAX_FIELD: usize = 64;

/// What one incoming message means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandParse {
    /// Hand this to the core.
    Command { door: String, command: Command },
    /// The owner acknowledged the door's compromised deliveries' clips:
    /// for the shell's recorders, not the core.
    EvidenceAck { door: String },
    /// Home Assistant's status: on `online`, republish everything.
    HaStatus { online: bool },
    /// A command topic, but the message was retained: dropped (log at warn).
    RetainedIgnored { topic: String },
    /// A command topic with a payload that means nothing: dropped (log at
    /// warn). `reason` holds no part of the payload.
    Malformed { topic: String, reason: String },
    /// Not one of doorwarden's command topics (a lock backend's topic, a
    /// discovery config…): for someone else.
    NotCommand,
}

/// Which command a topic carries, before its door and payload are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Lock,
    Grant,
    End,
    CourierUnlock,
    GrantMinutes,
    Code,
    Request,
    EvidenceAck,
}

/// The command topics of the configured doors.
#[derive(Debug, Clone)]
pub struct CommandTopics {
    base: String,
    ha_status: String,
    doors: BTreeSet<String>,
}

impl CommandTopics {
    pub fn new(config: &Config) -> CommandTopics {
        CommandTopics {
            base: config.mqtt.base_topic.trim_end_matches('/').to_string(),
            ha_status: config.mqtt.ha_status_topic.clone(),
            doors: config.locks.keys().cloned().collect(),
        }
    }

    /// The filters to subscribe to: every command topic of every door (one
    /// wildcard filter per topic shape) and Home Assistant's status topic.
    pub fn subscriptions(&self) -> Vec<String> {
        vec![
            format!("{}/+/lock/set", self.base),
            format!("{}/+/delivery/+/set", self.base),
            format!("{}/+/delivery/request", self.base),
            self.ha_status.clone(),
        ]
    }

    /// What a message on one of [`CommandTopics::subscriptions`] means.
    /// Never panics, whatever the topic and payload.
    pub fn parse(&self, topic: &str, payload: &[u8], retain: bool) -> CommandParse {
        if topic == self.ha_status {
            // Home Assistant's birth message is not retained by default, but
            // a retained one says the same thing and moves no lock.
            return match text(payload).map(str::trim) {
                Some("online") => CommandParse::HaStatus { online: true },
                Some("offline") => CommandParse::HaStatus { online: false },
                _ => malformed(topic, "Home Assistant status must be `online` or `offline`"),
            };
        }
        let Some((door, slot)) = self.slot(topic) else {
            return CommandParse::NotCommand;
        };
        if retain {
            return CommandParse::RetainedIgnored {
                topic: topic.to_string(),
            };
        }
        if !self.doors.contains(door) {
            return malformed(topic, "no door by that name in the config");
        }
        if slot == Slot::EvidenceAck {
            return match text(payload).map(str::trim).map(press) {
                Some(Ok(())) => CommandParse::EvidenceAck {
                    door: door.to_string(),
                },
                _ => malformed(topic, "expected PRESS"),
            };
        }
        match parse_payload(slot, payload) {
            Ok(command) => CommandParse::Command {
                door: door.to_string(),
                command,
            },
            Err(reason) => malformed(topic, reason),
        }
    }

    /// What a message on `topic` counts against for rate limits, and the
    /// limit: the topic itself for a configured door, one shared source per
    /// command shape for doors that do not exist (so made-up door names
    /// cannot grow the table), Home Assistant's status topic. `None` for
    /// topics that are not doorwarden's commands.
    pub fn source(&self, topic: &str) -> Option<(String, Limit)> {
        if topic == self.ha_status {
            return Some((topic.to_string(), intake::HA_STATUS));
        }
        let (door, _) = self.slot(topic)?;
        let source = if self.doors.contains(door) {
            topic.to_string()
        } else {
            let rest = topic
                .strip_prefix(&self.base)
                .and_then(|t| t.strip_prefix('/'))
                .and_then(|t| t.split_once('/'))
                .map_or("", |(_, rest)| rest);
            format!("{}/<unknown door>/{rest}", self.base)
        };
        Some((source, intake::COMMANDS))
    }

    /// The door level and command of a topic under `<base>/`, if it has the
    /// shape of a command topic.
    fn slot<'t>(&self, topic: &'t str) -> Option<(&'t str, Slot)> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let levels: Vec<&str> = rest.split('/').collect();
        let slot = match levels.as_slice() {
            [_, "lock", "set"] => Slot::Lock,
            [_, "delivery", "request"] => Slot::Request,
            [_, "delivery", name, "set"] => match *name {
                "grant" => Slot::Grant,
                "end" => Slot::End,
                "courier_unlock" => Slot::CourierUnlock,
                "grant_minutes" => Slot::GrantMinutes,
                "code" => Slot::Code,
                "evidence_ack" => Slot::EvidenceAck,
                _ => return None,
            },
            _ => return None,
        };
        Some((levels[0], slot))
    }
}

fn malformed(topic: &str, reason: &str) -> CommandParse {
    CommandParse::Malformed {
        // Topics come from outside too; keep a log line a sane length.
        topic: topic.chars().take(200).collect(),
        reason: reason.to_string(),
    }
}

fn text(payload: &[u8]) -> Option<&str> {
    std::str::from_utf8(payload).ok()
}

fn parse_payload(slot: Slot, payload: &[u8]) -> Result<Command, &'static str> {
    let text = text(payload).ok_or("payload is not UTF-8 text")?.trim();
    match slot {
        Slot::Lock => match text {
            "LOCK" => Ok(Command::OwnerLock),
            "UNLOCK" => Ok(Command::OwnerUnlock),
            _ => Err("expected LOCK or UNLOCK"),
        },
        Slot::End => press(text).map(|()| Command::EndDelivery),
        Slot::CourierUnlock => press(text).map(|()| Command::CourierUnlock {
            code: None,
            carrier: None,
            via: RequestChannel::Button,
        }),
        Slot::Grant => {
            if text == "PRESS" {
                return Ok(Command::Grant {
                    duration: None,
                    code: None,
                });
            }
            let fields = object(
                text,
                "expected PRESS or a JSON object {\"minutes\", \"code\"}",
            )?;
            let mut duration = None;
            let mut code = None;
            for (key, value) in fields {
                match key.as_str() {
                    "minutes" => duration = Some(minutes(&value)?),
                    "code" => {
                        let digits = value.as_str().ok_or("`code` must be a string of digits")?;
                        code = Some(delivery_code(digits)?);
                    }
                    _ => return Err("unknown field in grant (expected minutes, code)"),
                }
            }
            Ok(Command::Grant { duration, code })
        }
        Slot::GrantMinutes => {
            let number: f64 = text
                .parse()
                .map_err(|_| "expected a number of minutes, 1 to 1440")?;
            minutes(&Value::from(number)).map(Command::SetGrantDuration)
        }
        Slot::Code => delivery_code(text).map(Command::SetCode),
        // Handled before the core's commands (see `CommandTopics::parse`).
        Slot::EvidenceAck => Err("not a door command"),
        Slot::Request => {
            let fields = if text.is_empty() {
                serde_json::Map::new()
            } else {
                object(text, "expected a JSON object {\"code\", \"carrier\"}")?
            };
            let mut code = None;
            let mut carrier = None;
            for (key, value) in fields {
                match key.as_str() {
                    "code" => {
                        let s = value.as_str().ok_or("`code` must be a string")?;
                        if s.is_empty() || s.chars().count() > MAX_FIELD {
                            return Err("`code` must be 1 to 64 characters");
                        }
                        code = Some(Secret::new(s));
                    }
                    "carrier" => {
                        let s = value.as_str().ok_or("`carrier` must be a string")?;
                        if s.chars().count() > MAX_FIELD || s.chars().any(char::is_control) {
                            return Err("`carrier` must be at most 64 printable characters");
                        }
                        carrier = Some(s.to_string()).filter(|s| !s.is_empty());
                    }
                    _ => return Err("unknown field in request (expected code, carrier)"),
                }
            }
            Ok(Command::CourierUnlock {
                code,
                carrier,
                via: RequestChannel::Mqtt,
            })
        }
    }
}

fn press(text: &str) -> Result<(), &'static str> {
    if text == "PRESS" {
        Ok(())
    } else {
        Err("expected PRESS")
    }
}

/// A JSON object, or `expected`. serde_json's own message is not used: it
/// can quote the offending input.
fn object(
    text: &str,
    expected: &'static str,
) -> Result<serde_json::Map<String, Value>, &'static str> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(expected),
    }
}

fn minutes(value: &Value) -> Result<Duration, &'static str> {
    const BAD: &str = "minutes must be a whole number from 1 to 1440";
    let n = value.as_f64().ok_or(BAD)?;
    if n.fract() != 0.0 || !(1.0..=MAX_GRANT_MINUTES as f64).contains(&n) {
        return Err(BAD);
    }
    // Whole and within 1..=1440, so the conversion is exact.
    Ok(Duration::from_secs(n as u64 * 60))
}

fn delivery_code(text: &str) -> Result<Secret, &'static str> {
    let text = text.trim();
    if (4..=10).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Secret::new(text))
    } else {
        Err("a delivery code is 4 to 10 digits")
    }
}
