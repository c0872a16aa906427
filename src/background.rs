//! Priorities of the background threads: the remote-write shippers run at nice +5, the
//! scrape path (wheel, workers) and the flusher at the nice value the agent was started
//! with.
//!
//! Scrapes are due at fixed phases; shipping is throughput work with slack (the spool is
//! its queue). On a busy host a runnable shipper at +5 gets about a third of a worker's
//! CPU share, so a catch-up after an outage cannot push scrapes off their phase, yet it
//! runs at full speed whenever the workers leave CPU idle, as they mostly do.
//!
//! The flusher must not be lowered: it takes the append stripes' locks that workers
//! commit under, and a flusher preempted while holding one stalls those workers. Measured
//! with `scripts/bench.py --scale 1000x200 --agents scrapewheel`: scrape-phase jitter p99
//! 58–88 ms with the flusher at +5, 0.97 ms at normal priority.
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
