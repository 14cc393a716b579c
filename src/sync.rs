//! Locks that survive a panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not. Every lock in the crate guards state that each operation
/// leaves consistent before it can panic (a map, a counter, a buffer), so a panic elsewhere
/// while it was held does not make the state unusable; refusing it would turn one failed
/// request into a cache that fails every request after it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
