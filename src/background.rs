//! Priorities of the background threads: the flusher and the remote-write shippers run
//! at nice +5, the scrape path (wheel, workers) at the nice value the agent was started
//! with.
//!
//! Scrapes are due at fixed phases; flushing and shipping are throughput work with slack
//! (a flush interval, a queue in the spool). On a busy host a runnable background thread
//! at +5 gets about a third of a worker's CPU share, so a catch-up after an outage or a
//! large flush cannot push scrapes off their phase, yet background work runs at full
//! speed whenever the workers leave CPU idle, as they mostly do.
//!
//! Owns nothing; starts no thread.

/// How much nicer than the agent the background threads run.
const BACKGROUND_NICENESS: libc::c_int = 5;

/// Makes the calling thread [`BACKGROUND_NICENESS`] nicer; threads it spawns later
/// inherit that. Linux keeps a nice value per thread (POSIX says per process), so the
/// rest of the agent keeps its own.
pub fn lower_priority() {
    // SAFETY: nice(3) takes no pointers and only changes the calling thread's priority.
    // Raising one's nice value needs no privilege, so it does not fail in practice, and a
    // background thread at normal priority still works: the outcome is ignored.
    let _ = unsafe { libc::nice(BACKGROUND_NICENESS) };
}
