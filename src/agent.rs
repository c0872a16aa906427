//! The agent's lifecycle: what `scrapewheel run` starts, in which order, and how it stops.
//!
//! Start: config → spool (recovering a torn tail) → remote-write shippers (resuming from
//! their cursors) → append buffer + flusher → workers → wheel → web → signals →
//! coordinator (which starts the discovery providers; first sync at once).
//!
//! Stop (SIGTERM, SIGINT or /-/quit), each stage only after the one before it is done:
//! coordinator stops discovery and returns → wheel stops dispatching → queued jobs are skipped and in-flight
//! scrapes finish (bounded by their timeouts) → workers join → the flusher writes what
//! is left and fsyncs → the shippers keep delivering for up to `storage.drain_timeout`
//! (what is left stays in the spool for the next start) → signals and web stop. Nothing
//! committed before the signal is lost.

use crate::append::{AppendBuffer, FlushConfig, Flusher};
use crate::budget::MemoryBudget;
use crate::config::{Config, ConfigError};
use crate::coordinator::{Control, Coordinator, TargetsView};
use crate::metrics::{self, Registry};
use crate::remote_write::{RemoteWrite, RemoteWriteError};
use crate::scrape::HttpClient;
use crate::signals::Signals;
use crate::spool::{Spool, SpoolError, SpoolOptions};
use crate::web::{ListenError, Web, WebState};
use crate::wheel::{Dispatch, DueKind, Scheduler, SystemClock};
use crate::worker::{Job, WorkerContext, WorkerMetrics, WorkerPool};
use crossbeam_channel::bounded;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Command-line overrides of config values, so several agents can share one file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen_address: Option<String>,
    pub data_path: Option<PathBuf>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(a) = &self.listen_address {
            cfg.web.listen_address = a.clone();
        }
        if let Some(p) = &self.data_path {
            cfg.storage.path = p.clone();
        }
    }
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the spool: {0}")]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    RemoteWrite(#[from] RemoteWriteError),
    #[error("preparing the work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
}

fn thread_err(name: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
    move |source| AgentError::Thread { name, source }
}

/// The directory of the spool below the data path.
pub fn spool_dir(data: &std::path::Path) -> PathBuf {
    data.join("spool")
}

/// The workers' directory below the data path: bodies kept for staleness markers and
/// streamed scrapes being staged. Nothing in it outlives the process.
pub fn work_dir(data: &std::path::Path) -> PathBuf {
    data.join("work")
}

/// Empties the work directory left by an earlier run (its files are meaningless now).
fn reset_work_dir(dir: &std::path::Path) -> Result<(), AgentError> {
    let io = |source| AgentError::WorkDir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(dir).map_err(io)
}

/// Loads the config with the command-line overrides applied.
pub fn load_config(path: &std::path::Path, ov: &Overrides) -> Result<Config, ConfigError> {
    let mut cfg = Config::load(path)?;
    ov.apply(&mut cfg);
    Ok(cfg)
}

/// Raises the soft open-files limit to the hard one: every keep-alive target holds a
/// socket, and the default soft limit (often 1024) would cap the number of targets.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Runs until a termination request has been fully drained.
pub fn run(config_path: PathBuf, ov: Overrides) -> Result<(), AgentError> {
    let config = Arc::new(load_config(&config_path, &ov)?);
    raise_nofile_limit();
    // Pool syncs run on rayon's global pool: give its threads names like every other
    // thread. It fails only if the pool was already built, which leaves it usable.
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("sw-sync-{i}"))
        .build_global();
    let registry = Registry::new();
    metrics::process::register(&registry);

    let (spool, recovery) = Spool::open(
        &spool_dir(&config.storage.path),
        SpoolOptions {
            segment_size: config.storage.segment_size,
            retention_size: config.storage.retention_size,
            retention_time_ms: config.storage.retention_time.as_millis() as i64,
        },
    )?;
    for p in &recovery.problems {
        crate::warn!("spool recovery", problem = p);
    }
    crate::info!(
        "spool opened",
        path = config.storage.path.display(),
        segments = recovery.segments,
        samples = recovery.samples,
        truncated_bytes = recovery.truncated_bytes
    );
    let remote = RemoteWrite::start(&config, &spool, &registry)?;
    let spool = Arc::new(Mutex::new(spool));
    let budget = MemoryBudget::new(
        config.engine.memory_limit,
        config.engine.stream_threshold as usize,
        config.engine.workers,
        &registry,
    );
    let buffer = AppendBuffer::new(
        config.engine.stripes,
        config.storage.max_block_samples,
        budget.clone(),
    );
    {
        let b = Arc::downgrade(&buffer);
        budget.set_flush_hook(Box::new(move || {
            if let Some(b) = b.upgrade() {
                b.request_flush();
            }
        }));
    }
    let flusher = Flusher::start(
        buffer.clone(),
        spool.clone(),
        FlushConfig {
            interval: config.storage.flush_interval,
        },
        &registry,
    )
    .map_err(thread_err("sw-flusher"))?;

    let (job_tx, job_rx) = crate::queue::bounded::<Job>(config.engine.queue_size);
    register_queue_metrics(&registry, job_rx.clone(), config.engine.queue_size);
    let work_dir = work_dir(&config.storage.path);
    reset_work_dir(&work_dir)?;
    let ctx = Arc::new(WorkerContext {
        client: HttpClient::new(),
        append: buffer,
        metrics: WorkerMetrics::new(&registry),
        stopping: AtomicBool::new(false),
        budget,
        work_dir: Some(work_dir),
    });
    let workers = WorkerPool::start(config.engine.workers, job_rx, ctx.clone())
        .map_err(thread_err("sw-worker"))?;

    let wheel = Scheduler::start(
        Arc::new(SystemClock),
        config.engine.wheel_tick,
        Box::new(move |t: &Arc<crate::target::Target>, due_ns, kind| {
            if kind == DueKind::Scrape
                && t.in_flight
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return Dispatch::Busy;
            }
            match job_tx.try_send(Job {
                target: t.clone(),
                due_ns,
                kind,
            }) {
                Ok(()) => Dispatch::Sent,
                Err(
                    crate::queue::TrySendError::Full(j)
                    | crate::queue::TrySendError::Disconnected(j),
                ) => {
                    if kind == DueKind::Scrape {
                        j.target.in_flight.store(false, Ordering::Release);
                    }
                    Dispatch::QueueFull
                }
            }
        }),
    )
    .map_err(thread_err("sw-wheel"))?;
    register_wheel_metrics(&registry, &wheel);

    let (control_tx, control_rx) = bounded::<Control>(16);
    let view = TargetsView::default();
    let ready = Arc::new(AtomicBool::new(false));
    let web = Web::start(
        &config.web.listen_address,
        WebState {
            registry: registry.clone(),
            targets: view.clone(),
            ready: ready.clone(),
            control: control_tx.clone(),
            enable_lifecycle: config.web.enable_lifecycle,
        },
    )?;
    crate::info!("listening", address = web.local_addr);
    let signals = Signals::start(control_tx.clone()).map_err(thread_err("sw-signals"))?;

    let loader: crate::coordinator::Loader = {
        let path = config_path.clone();
        Box::new(move || load_config(&path, &ov))
    };
    let coordinator =
        Coordinator::new(config.clone(), loader, wheel, registry.clone(), view, ready);
    let coord = std::thread::Builder::new()
        .name("sw-coordinator".into())
        .spawn(move || coordinator.run(control_rx))
        .map_err(thread_err("sw-coordinator"))?;
    crate::info!("scrapewheel started", config = config_path.display());

    let wheel = match coord.join() {
        Ok(w) => w,
        Err(_) => {
            crate::error!("coordinator panicked; draining");
            ctx.stopping.store(true, Ordering::Release);
            return drain_without_wheel(workers, flusher, remote, &config, signals, web);
        }
    };
    ctx.stopping.store(true, Ordering::Release);
    wheel.stop();
    drain_without_wheel(workers, flusher, remote, &config, signals, web)
}

fn drain_without_wheel(
    workers: WorkerPool,
    flusher: Flusher,
    remote: RemoteWrite,
    config: &Config,
    signals: Signals,
    web: Web,
) -> Result<(), AgentError> {
    workers.join();
    flusher.stop();
    remote.drain(config.storage.drain_timeout);
    signals.stop();
    web.stop();
    crate::info!("shutdown complete: every committed sample is in the spool");
    Ok(())
}

fn register_queue_metrics(reg: &Registry, rx: crate::queue::Receiver<Job>, capacity: usize) {
    // A receiver, never a sender: the workers stop when the last sender (the wheel's)
    // drops, and a sender held here would keep them waiting forever.
    reg.gauge_fn(
        "scrapewheel_worker_queue_length",
        "Due scrapes waiting for a free worker.",
        &[],
        move || rx.len() as f64,
    );
    reg.gauge(
        "scrapewheel_worker_queue_capacity",
        "Capacity of the due-scrape queue (engine.queue_size).",
        &[],
    )
    .set(capacity as f64);
}

fn register_wheel_metrics(reg: &Registry, wheel: &Scheduler<crate::target::Target>) {
    let s = wheel.stats();
    let lag = s.clone();
    reg.histogram_fn(
        "scrapewheel_wheel_lag_seconds",
        "Time from a slot's due instant to its dispatch by the wheel thread.",
        &[],
        move || {
            let snap = lag.lag.snapshot();
            metrics::HistogramSnapshot {
                buckets: snap
                    .buckets
                    .iter()
                    .map(|&(le, n)| (le as f64 / 1e9, n))
                    .collect(),
                sum: snap.sum_ns as f64 / 1e9,
                count: snap.count,
            }
        },
    );
    let f = |get: fn(&crate::wheel::WheelStats) -> u64| {
        let s = s.clone();
        move || get(&s) as f64
    };
    reg.counter_fn(
        "scrapewheel_wheel_dispatched_total",
        "Scrapes handed to workers.",
        &[],
        f(|s| s.dispatched.load(Ordering::Relaxed)),
    );
    reg.counter_fn(
        "scrapewheel_wheel_skipped_total",
        "Due slots skipped because the target's previous scrape was still running.",
        &[("reason", "busy")],
        f(|s| s.skipped_busy.load(Ordering::Relaxed)),
    );
    reg.counter_fn(
        "scrapewheel_wheel_skipped_total",
        "Due slots skipped because the target's previous scrape was still running.",
        &[("reason", "queue_full")],
        f(|s| s.skipped_queue_full.load(Ordering::Relaxed)),
    );
    reg.counter_fn(
        "scrapewheel_wheel_missed_slots_total",
        "Slots missed because the wheel thread woke late by more than an interval.",
        &[],
        f(|s| s.missed_slots.load(Ordering::Relaxed)),
    );
}
