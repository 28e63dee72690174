//! The in-process event bus: the engine emits [`Event`]s, subscribers (the terminal view,
//! the store, telemetry) receive every one, in order. A subscriber must not block: it
//! hands the event to its own queue or thread.

use cascade_plan::Event;
use std::sync::Arc;

/// Receives every event of a run.
pub trait Subscriber: Send + Sync {
    fn on_event(&self, event: &Event);
}

/// Fans events out to subscribers, in the order they were added.
#[derive(Clone, Default)]
pub struct Bus {
    subscribers: Vec<Arc<dyn Subscriber>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with(mut self, subscriber: Arc<dyn Subscriber>) -> Self {
        self.subscribers.push(subscriber);
        self
    }

    pub fn emit(&self, event: &Event) {
        for s in &self.subscribers {
            s.on_event(event);
        }
    }
}

/// A subscriber that keeps every event (tests, and the summary at the end of a run).
#[derive(Debug, Default)]
pub struct Recorder {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Subscriber for Recorder {
    fn on_event(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
    }
}
