//! Settling a received message with its broker once the gateway is done
//! with it: an AMQP ack (or a requeue), a Kafka offset stored for commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Messages of one broker-side subscription that may be in hand, received
/// but not yet settled, at once: the AMQP prefetch and the Kafka reading
/// window. A consumer that holds messages (a route whose target is down)
/// makes the broker keep the rest.
pub const IN_HAND_LIMIT: u16 = 1_000;

/// What to tell the broker: `true` to acknowledge, `false` to give the
/// message back (or leave it for the broker to send again).
type SettleFn = Box<dyn FnOnce(bool) + Send>;

/// The broker's acknowledgement of one received message, shared by every
/// consumer that must be done with the message before the broker may
/// forget it: a route, once its target broker has taken the message. Each
/// clone is one such holder. When the last holder is gone the message is
/// acknowledged if every holder said [`Settle::done`], and given back if
/// any was dropped without saying so.
pub struct Settle {
    shared: Arc<Shared>,
    done: bool,
}

struct Shared {
    tell: Mutex<Option<SettleFn>>,
    abandoned: AtomicBool,
}

impl Settle {
    /// The first holder of a message that `tell` settles at the broker.
    /// Whatever `tell` owns (a permit of a reading window) lives until the
    /// message is settled.
    pub fn new(tell: impl FnOnce(bool) + Send + 'static) -> Self {
        let shared = Shared {
            tell: Mutex::new(Some(Box::new(tell))),
            abandoned: AtomicBool::new(false),
        };
        Self {
            shared: Arc::new(shared),
            done: false,
        }
    }

    /// This holder is done with the message.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Clone for Settle {
    /// Another holder, not yet done.
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            done: false,
        }
    }
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Settle")
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.done {
            self.shared.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let tell = self
            .tell
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tell) = tell {
            tell(!*self.abandoned.get_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched() -> (Settle, Arc<Mutex<Option<bool>>>) {
        let told = Arc::new(Mutex::new(None));
        let sink = told.clone();
        let settle = Settle::new(move |ack| *sink.lock().expect("lock") = Some(ack));
        (settle, told)
    }

    #[test]
    fn acknowledged_once_every_holder_is_done() {
        let (settle, told) = watched();
        let other = settle.clone();
        settle.done();
        assert_eq!(*told.lock().expect("lock"), None, "one holder is left");
        other.done();
        assert_eq!(*told.lock().expect("lock"), Some(true));
    }

    #[test]
    fn given_back_when_a_holder_lets_go_without_finishing() {
        let (settle, told) = watched();
        let other = settle.clone();
        drop(other);
        settle.done();
        assert_eq!(*told.lock().expect("lock"), Some(false));
    }
}
