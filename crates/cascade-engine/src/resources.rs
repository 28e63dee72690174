//! The resource manager: job slots, CPU and memory the engine may hand out at once.
//! A task starts only when its weights fit; a task that asks for more than the whole
//! capacity is given the whole capacity (it runs alone) rather than never running.

/// What one task takes while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight {
    /// CPU in millicores.
    pub cpu_milli: u32,
    pub memory_mib: u32,
}

/// What the engine may hand out at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub slots: u32,
    pub cpu_milli: u32,
    pub memory_mib: u32,
}

/// Tracks what is in use.
#[derive(Debug)]
pub struct Resources {
    capacity: Capacity,
    slots: u32,
    cpu_milli: u32,
    memory_mib: u32,
}

impl Resources {
    pub fn new(capacity: Capacity) -> Self {
        Self {
            capacity: Capacity {
                slots: capacity.slots.max(1),
                cpu_milli: capacity.cpu_milli.max(1),
                memory_mib: capacity.memory_mib.max(1),
            },
            slots: 0,
            cpu_milli: 0,
            memory_mib: 0,
        }
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The weight actually taken: capped at the capacity.
    pub fn clamp(&self, weight: Weight) -> Weight {
        Weight {
            cpu_milli: weight.cpu_milli.min(self.capacity.cpu_milli),
            memory_mib: weight.memory_mib.min(self.capacity.memory_mib),
        }
    }

    /// Takes a slot and the weight if they fit.
    pub fn try_acquire(&mut self, weight: Weight) -> bool {
        let w = self.clamp(weight);
        let fits = self.slots < self.capacity.slots
            && self.cpu_milli + w.cpu_milli <= self.capacity.cpu_milli
            && self.memory_mib + w.memory_mib <= self.capacity.memory_mib;
        if fits {
            self.slots += 1;
            self.cpu_milli += w.cpu_milli;
            self.memory_mib += w.memory_mib;
        }
        fits
    }

    pub fn release(&mut self, weight: Weight) {
        let w = self.clamp(weight);
        self.slots = self.slots.saturating_sub(1);
        self.cpu_milli = self.cpu_milli.saturating_sub(w.cpu_milli);
        self.memory_mib = self.memory_mib.saturating_sub(w.memory_mib);
    }

    pub fn in_use(&self) -> Weight {
        Weight {
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
        }
    }

    pub fn running(&self) -> u32 {
        self.slots
    }

    /// Changes the slot count (a `limit` control command); running tasks keep running.
    pub fn set_slots(&mut self, slots: u32) {
        self.capacity.slots = slots.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_more_than_the_capacity() {
        let mut r = Resources::new(Capacity {
            slots: 2,
            cpu_milli: 2000,
            memory_mib: 4096,
        });
        let one = Weight {
            cpu_milli: 1000,
            memory_mib: 1024,
        };
        assert!(r.try_acquire(one));
        assert!(r.try_acquire(one));
        assert!(!r.try_acquire(one), "cpu is full");
        r.release(one);
        assert!(r.try_acquire(Weight {
            cpu_milli: 500,
            memory_mib: 100
        }));
        assert!(
            !r.try_acquire(Weight {
                cpu_milli: 100,
                memory_mib: 100
            }),
            "slots are full"
        );
    }

    #[test]
    fn an_oversized_task_runs_alone() {
        let mut r = Resources::new(Capacity {
            slots: 4,
            cpu_milli: 2000,
            memory_mib: 4096,
        });
        let huge = Weight {
            cpu_milli: 64_000,
            memory_mib: 1,
        };
        assert!(r.try_acquire(huge));
        assert!(!r.try_acquire(Weight {
            cpu_milli: 1,
            memory_mib: 1
        }));
        r.release(huge);
        assert_eq!(
            r.in_use(),
            Weight {
                cpu_milli: 0,
                memory_mib: 0
            }
        );
    }
}
