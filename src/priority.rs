//! How the kernel schedules the agent's threads: the scrape path (wheel, workers) is woken
//! on time, the remote-write shippers yield to it, the flusher is left alone.
//!
//! # The scrape path: [`scrape_path`]
//!
//! A scrape's phase is set by how soon two threads run after they are woken: the wheel
//! thread at its timer, then the worker it hands the job to. By default a timer may fire
//! up to 50 µs late (timer slack, so the kernel can merge wake-ups), and a woken thread
//! on a busy CPU waits until the running thread's slice ends, up to a few ms. So the wheel
//! and the workers ask for 1 µs of timer slack and, on kernels with EEVDF custom slices
//! (Linux 6.12 and later), the shortest slice there is (100 µs): a task with a shorter
//! slice has an earlier virtual deadline, so it preempts a longer-sliced task when it
//! wakes. They use no more CPU for it, and keep their nice value; older kernels ignore the
//! slice. Measured with `scripts/bench.py --scale 2000x500 --agents scrapewheel`, two
//! runs each, server-side jitter p99 0.84 / 0.85 ms before, 0.62 / 0.64 ms after; the
//! wheel's dispatch lag over 1 ms fell from 12% of slots to 7%, CPU per sample unchanged.
//!
//! # The background: [`lower`]
//!
//! The remote-write shippers run at nice +5. Scrapes are due at fixed phases; shipping is
//! throughput work with slack (the spool is its queue). On a busy host a runnable shipper
//! at +5 gets about a third of a worker's CPU share, so a catch-up after an outage cannot
//! push scrapes off their phase, yet it runs at full speed whenever the workers leave CPU
//! idle, as they mostly do.
//!
//! The flusher must not be lowered: it takes the append stripes' locks that workers
//! commit under, and a flusher preempted while holding one stalls those workers. Measured
//! with `scripts/bench.py --scale 1000x200 --agents scrapewheel`: scrape-phase jitter p99
//! 58–88 ms with the flusher at +5, 0.97 ms at normal priority.
//!
//! Every setting here is per thread (Linux keeps nice values, slices and timer slack per
//! thread, whatever POSIX says about nice) and best effort: a thread whose setting is
//! refused works as before, only less punctually, so outcomes are ignored.
//!
//! Owns nothing; starts no thread.

use std::time::Duration;

/// How much nicer than the agent the background threads run.
const BACKGROUND_NICENESS: libc::c_int = 5;

/// The scrape path's scheduler slice: the shortest the kernel accepts.
pub const SCRAPE_PATH_SLICE: Duration = Duration::from_micros(100);

/// The scrape path's timer slack.
pub const SCRAPE_PATH_TIMER_SLACK: Duration = Duration::from_micros(1);

/// Makes the calling thread 5 steps nicer (`BACKGROUND_NICENESS`); threads it spawns later
/// inherit that.
pub fn lower() {
    // SAFETY: nice(3) takes no pointers and only changes the calling thread's priority.
    // Raising one's nice value needs no privilege, so it does not fail in practice.
    let _ = unsafe { libc::nice(BACKGROUND_NICENESS) };
}

/// Gives the calling thread [`SCRAPE_PATH_TIMER_SLACK`] and [`SCRAPE_PATH_SLICE`], keeping
/// its scheduling policy class (normal) and its nice value.
pub fn scrape_path() {
    // SAFETY: PR_SET_TIMERSLACK takes its value by integer and affects only this thread.
    let _ = unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            SCRAPE_PATH_TIMER_SLACK.as_nanos() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let Some(nice) = own_nice() else { return };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        nice,
        runtime: SCRAPE_PATH_SLICE.as_nanos() as u64,
        ..SchedAttr::default()
    };
    // SAFETY: the kernel reads `size` bytes of a live, properly laid out sched_attr; pid 0
    // is the calling thread. The same nice value needs no privilege; a kernel that does
    // not know custom slices ignores `runtime` for SCHED_OTHER.
    let _ = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
}

/// The calling thread's nice value.
fn own_nice() -> Option<libc::c_int> {
    // getpriority may return -1 as a value, so errors show only in errno.
    // SAFETY: __errno_location returns this thread's errno slot; getpriority takes no
    // pointers.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

/// Linux's `struct sched_attr` (SCHED_ATTR_SIZE_VER1), which libc does not define.
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// For SCHED_OTHER since Linux 6.12: the requested slice, in ns.
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer_slack_ns() -> u64 {
        // SAFETY: PR_GET_TIMERSLACK takes no pointers and returns the value.
        unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) as u64 }
    }

    fn own_attr() -> Option<SchedAttr> {
        let mut attr = SchedAttr::default();
        // SAFETY: the kernel writes at most `size` bytes into the live struct.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                std::mem::size_of::<SchedAttr>() as libc::c_uint,
                0,
            )
        };
        (r == 0).then_some(attr)
    }

    /// Whether the running kernel has EEVDF custom slices (6.12 or later).
    fn has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().ok());
        matches!((parts.next(), parts.next()), (Some(Some(major)), Some(Some(minor))) if (major, minor) >= (6, 12))
    }

    #[test]
    fn the_scrape_path_gets_its_slack_and_slice_and_keeps_its_nice_value() {
        // A thread of its own, so the test runner's threads keep their settings.
        std::thread::spawn(|| {
            // Not the nice value the tests started with (which may be anything), so a
            // reset to it or to 0 shows.
            let started = own_nice().expect("getpriority");
            // SAFETY: as in `lower`.
            let nice = unsafe { libc::nice(if started < 19 { 1 } else { -1 }) };
            assert_ne!(nice, started);
            assert_ne!(timer_slack_ns(), SCRAPE_PATH_TIMER_SLACK.as_nanos() as u64);
            scrape_path();
            assert_eq!(timer_slack_ns(), SCRAPE_PATH_TIMER_SLACK.as_nanos() as u64);
            assert_eq!(own_nice(), Some(nice), "the nice value is kept");
            let attr = own_attr().expect("sched_getattr");
            assert_eq!(attr.policy, libc::SCHED_OTHER as u32);
            assert_eq!(attr.nice, nice);
            if has_custom_slices() {
                assert_eq!(attr.runtime, SCRAPE_PATH_SLICE.as_nanos() as u64);
            }
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn background_threads_are_nicer_than_their_parent() {
        std::thread::spawn(|| {
            let before = own_nice().expect("getpriority");
            lower();
            assert_eq!(own_nice(), Some((before + BACKGROUND_NICENESS).min(19)));
        })
        .join()
        .expect("test thread");
    }
}
