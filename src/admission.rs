//! Admission of WebSocket connections: the one place that counts them against `--max-connections`.
//!
//! An admitted connection holds a [`ConnectionPermit`] for as long as it lives; dropping the permit
//! (the connection actor is gone, or its upgrade failed) gives the slot back, so no code path has
//! to remember to. Like mini-redis's connection limit, this is a semaphore permit. A graceful stop
//! closes admission: later upgrades are refused before they become connections.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::metrics;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("this instance has reached its connection limit")]
    Full,
    #[error("this instance is shutting down")]
    ShuttingDown,
}

/// The connection slots of one instance. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Admission {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Admission {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Takes a slot, or says why there is none.
    pub fn try_admit(&self) -> Result<ConnectionPermit, AdmissionError> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                ::metrics::gauge!(metrics::CONNECTIONS).increment(1.0);
                Ok(ConnectionPermit { _slot: permit })
            }
            Err(TryAcquireError::NoPermits) => Err(AdmissionError::Full),
            Err(TryAcquireError::Closed) => Err(AdmissionError::ShuttingDown),
        }
    }

    /// Admits no one from now on (graceful stop). Connections already admitted keep their slots.
    pub fn close(&self) {
        self.slots.close();
    }

    /// Connections admitted and not yet gone.
    pub fn open(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

/// One admitted connection's slot; given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: OwnedSemaphorePermit,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::CONNECTIONS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_permit_gives_its_slot_back() {
        let admission = Admission::new(2);
        let a = admission.try_admit().expect("first slot");
        let _b = admission.try_admit().expect("second slot");
        assert_eq!(admission.try_admit().err(), Some(AdmissionError::Full));
        assert_eq!(admission.open(), 2);
        drop(a);
        assert_eq!(admission.open(), 1);
        assert!(
            admission.try_admit().is_ok(),
            "the freed slot is taken again"
        );
    }

    #[test]
    fn a_closed_admission_refuses_with_shutting_down_and_keeps_admitted_slots() {
        let admission = Admission::new(2);
        let kept = admission.try_admit().expect("slot");
        admission.close();
        assert_eq!(
            admission.try_admit().err(),
            Some(AdmissionError::ShuttingDown)
        );
        assert_eq!(admission.open(), 1);
        drop(kept);
    }
}
