//! The queue between everyone who publishes and the one task that writes
//! to the broker, in two lanes so that safety never waits behind chatter.
//!
//! - The **safety** lane carries lock commands and delivery events (an
//!   interlock trip, a relock, a forced door). It is always served first.
//! - The **normal** lane carries everything else: states, answers to
//!   courier requests, discovery configs. A flood of answers can fill it,
//!   and then publishers are told (`Full`), but it can never hold back a
//!   relock, which takes the other lane.
//!
//! It owns no connection and knows nothing of MQTT: the link's feeder takes
//! messages out with [`Outbox::next`] and hands them to the client. Locks
//! are held only for a push or a pop, never across an `.await`.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Which lane a message takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Safety,
    Normal,
}

/// One message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub lane: Lane,
    /// A command to a device: only worth sending on the connection it was
    /// accepted on (see [`Outbox::take_commands`]).
    pub command: bool,
}

/// The lane a message was refused from, full at this many messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub capacity: usize,
}

#[derive(Debug)]
struct Lanes {
    safety: VecDeque<Outgoing>,
    normal: VecDeque<Outgoing>,
}

/// Two bounded FIFO lanes. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Outbox {
    lanes: Mutex<Lanes>,
    safety_capacity: usize,
    normal_capacity: usize,
    /// Wakes the feeder when a message arrives.
    ready: Notify,
    /// Wakes publishers waiting for room in the normal lane.
    room: Notify,
}

impl Outbox {
    pub fn new(safety_capacity: usize, normal_capacity: usize) -> Outbox {
        Outbox {
            lanes: Mutex::new(Lanes {
                safety: VecDeque::new(),
                normal: VecDeque::new(),
            }),
            safety_capacity,
            normal_capacity,
            ready: Notify::new(),
            room: Notify::new(),
        }
    }

    pub fn normal_capacity(&self) -> usize {
        self.normal_capacity
    }

    /// Queues `message` at the back of its lane, or says the lane is full.
    pub fn push(&self, message: Outgoing) -> Result<(), Full> {
        self.try_push(message).map_err(|(full, _)| full)
    }

    /// Like [`Outbox::push`], waiting for room instead of refusing.
    pub async fn push_waiting(&self, mut message: Outgoing) {
        loop {
            // Created before trying, so a pop between the try and the wait
            // still wakes this publisher.
            let room = self.room.notified();
            match self.try_push(message) {
                Ok(()) => return,
                Err((_, refused)) => message = refused,
            }
            room.await;
        }
    }

    fn try_push(&self, message: Outgoing) -> Result<(), (Full, Outgoing)> {
        {
            let mut lanes = self.lock();
            let (lane, capacity) = match message.lane {
                Lane::Safety => (&mut lanes.safety, self.safety_capacity),
                Lane::Normal => (&mut lanes.normal, self.normal_capacity),
            };
            if lane.len() >= capacity {
                return Err((Full { capacity }, message));
            }
            lane.push_back(message);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Puts back a message the feeder took but could not hand on, ahead of
    /// everything else in its lane (order is kept; capacity is not checked,
    /// the message had a place a moment ago).
    pub fn give_back(&self, message: Outgoing) {
        {
            let mut lanes = self.lock();
            match message.lane {
                Lane::Safety => lanes.safety.push_front(message),
                Lane::Normal => lanes.normal.push_front(message),
            }
        }
        self.ready.notify_one();
    }

    /// The next message, safety lane first; waits while both are empty.
    pub async fn next(&self) -> Outgoing {
        loop {
            let ready = self.ready.notified();
            if let Some(message) = self.try_next() {
                return message;
            }
            ready.await;
        }
    }

    fn try_next(&self) -> Option<Outgoing> {
        let message = {
            let mut lanes = self.lock();
            lanes
                .safety
                .pop_front()
                .or_else(|| lanes.normal.pop_front())
        }?;
        if message.lane == Lane::Normal {
            self.room.notify_waiters();
        }
        Some(message)
    }

    /// Removes every device command still waiting: the connection they were
    /// accepted on is gone, and an unlock must not reach a lock minutes
    /// later, after a reconnect. The caller decides what each one means.
    pub fn take_commands(&self) -> Vec<Outgoing> {
        let mut lanes = self.lock();
        let (commands, rest): (VecDeque<_>, VecDeque<_>) =
            lanes.safety.drain(..).partition(|m| m.command);
        lanes.safety = rest;
        commands.into()
    }

    /// The next message of the safety lane, without waiting.
    pub fn take_safety(&self) -> Option<Outgoing> {
        self.lock().safety.pop_front()
    }

    /// Messages waiting, both lanes.
    pub fn len(&self) -> usize {
        let lanes = self.lock();
        lanes.safety.len() + lanes.normal.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // A panic while holding this lock leaves two plain queues behind,
        // still consistent: carry on with them rather than poison the link.
        self.lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, lane: Lane, command: bool) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            payload: Vec::new(),
            retain: false,
            lane,
            command,
        }
    }

    #[tokio::test]
    async fn safety_overtakes_a_full_normal_lane() {
        let outbox = Outbox::new(4, 3);
        for n in 0..3 {
            outbox
                .push(msg(&format!("answer/{n}"), Lane::Normal, false))
                .expect("room");
        }
        assert_eq!(
            outbox.push(msg("answer/3", Lane::Normal, false)),
            Err(Full { capacity: 3 })
        );
        outbox
            .push(msg("lock/set", Lane::Safety, true))
            .expect("the safety lane has its own room");
        assert_eq!(outbox.next().await.topic, "lock/set");
        assert_eq!(outbox.next().await.topic, "answer/0");
    }

    #[tokio::test]
    async fn a_message_given_back_goes_out_first_in_its_lane() {
        let outbox = Outbox::new(4, 4);
        outbox.push(msg("a", Lane::Normal, false)).expect("room");
        outbox.push(msg("b", Lane::Normal, false)).expect("room");
        let a = outbox.next().await;
        outbox.give_back(a);
        assert_eq!(outbox.next().await.topic, "a");
        assert_eq!(outbox.next().await.topic, "b");
    }

    #[tokio::test]
    async fn commands_are_taken_out_and_events_stay() {
        let outbox = Outbox::new(4, 4);
        outbox
            .push(msg("event", Lane::Safety, false))
            .expect("room");
        outbox
            .push(msg("lock/set", Lane::Safety, true))
            .expect("room");
        let taken = outbox.take_commands();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].topic, "lock/set");
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.next().await.topic, "event");
    }

    #[tokio::test]
    async fn a_waiting_publisher_gets_in_once_there_is_room() {
        let outbox = std::sync::Arc::new(Outbox::new(1, 1));
        outbox
            .push(msg("first", Lane::Normal, false))
            .expect("room");
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                outbox
                    .push_waiting(msg("second", Lane::Normal, false))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(outbox.next().await.topic, "first");
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("let in")
            .expect("task");
        assert_eq!(outbox.next().await.topic, "second");
    }
}
