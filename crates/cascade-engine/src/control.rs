//! Commands a running engine obeys while it runs ("downward causation"): pause, resume,
//! cancel, and a new limit on tasks at once.
//!
//! The engine does not know where commands come from (a broker, an API, a test): its
//! caller makes a [`channel`], keeps the [`Controller`] and puts the [`Commands`] in
//! [`crate::Options::control`]. The dispatcher applies every command waiting before it
//! starts tasks, so a command sent before the run starts holds from the first task.
//!
//! - [`Command::Pause`]: start no new task until [`Command::Resume`]; running tasks go on.
//! - [`Command::Limit`]: at most that many tasks at once from now on (at least 1); running
//!   tasks are not stopped to get there.
//! - [`Command::Cancel`]: the same as cancelling the run's token. A cancelled run ends
//!   even when paused: its `always()` jobs run.
//!
//! When every [`Controller`] is gone while the run is paused, the run resumes: nobody is
//! left who could resume it.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

/// What the engine is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
    /// At most this many tasks at once.
    Limit(NonZeroUsize),
}

/// The sending side: clone it freely.
#[derive(Debug, Clone)]
pub struct Controller {
    tx: mpsc::Sender<Command>,
}

impl Controller {
    /// Hands `command` to the engine without waiting; `false` when the engine is gone or
    /// `capacity` commands are already waiting.
    pub fn send(&self, command: Command) -> bool {
        self.tx.try_send(command).is_ok()
    }
}

/// The receiving side, for [`crate::Options::control`]. Clones share one receiver, and
/// the first run to start takes it: one run per channel.
#[derive(Debug, Clone)]
pub struct Commands {
    rx: Arc<Mutex<Option<mpsc::Receiver<Command>>>>,
}

impl Commands {
    /// The receiver, if no run took it yet (the engine takes it when a run starts).
    pub fn take(&self) -> Option<mpsc::Receiver<Command>> {
        self.rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A channel holding up to `capacity` commands the engine has not applied yet.
pub fn channel(capacity: usize) -> (Controller, Commands) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        Controller { tx },
        Commands {
            rx: Arc::new(Mutex::new(Some(rx))),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_is_taken_once_and_a_full_channel_refuses() {
        let (controller, commands) = channel(1);
        assert!(controller.send(Command::Pause));
        assert!(!controller.send(Command::Resume), "capacity 1");
        let mut rx = commands.clone().take().unwrap();
        assert!(commands.take().is_none());
        assert_eq!(rx.try_recv().ok(), Some(Command::Pause));
        drop(rx);
        assert!(!controller.send(Command::Resume), "the engine is gone");
    }
}
