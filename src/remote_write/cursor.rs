//! Durable per-receiver cursors: the spool [`Position`] after the last block a receiver
//! acknowledged, one small file per receiver under `<storage.path>/remote_write/`.
//!
//! A write goes to `<name>.cursor.tmp`, is `fsync`ed, renamed over `<name>.cursor`, and
//! the directory is `fsync`ed, so after a crash the file holds either the previous or the
//! new position, never a torn one. The content is one line, `v1 <segment> <offset>`.
//! A missing file means "never sent anything": the shipper starts at the oldest data. A
//! file that does not parse is reported and treated the same way, which can only resend
//! (at-least-once), never skip.
//!
//! A store costs two fsyncs (a few milliseconds), which would cap a receiver at a few
//! hundred blocks a second if the dispatcher waited for it. So each receiver has a
//! [`CursorWriter`] thread (`sw-rw-<i>-cursor`) that persists every acknowledged position
//! at most every 200 ms, skipping to the newest: the file is never more than 200 ms and
//! one store behind, and on stop the last position is written before the thread is
//! joined.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Stores are at least this far apart: each costs two fsyncs, and one per acknowledged
/// block was a tenth of the agent's CPU at 100k samples/s. A crash resends at most what
/// was acknowledged in this long (delivery is at-least-once either way).
const MIN_STORE_INTERVAL: Duration = Duration::from_millis(200);

use crate::spool::Position;

/// Where cursor files live below the data directory.
pub fn cursor_dir(data: &Path) -> PathBuf {
    data.join("remote_write")
}

/// A cursor-file failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// An I/O call on the cursor file or its directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file exists but is not a cursor this build wrote.
    #[error("{}: not a cursor file ({content:?}); starting from the oldest spooled data", path.display())]
    Malformed { path: PathBuf, content: String },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CursorError + 'a {
    move |source| CursorError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The cursor file of one receiver.
#[derive(Debug)]
pub struct CursorFile {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    /// The last position written, so an unchanged position costs no fsync.
    last: Option<Position>,
}

impl CursorFile {
    /// The cursor of the receiver called `name` (any string: it is escaped into a file
    /// name). Creates the directory.
    pub fn new(data: &Path, name: &str) -> Result<CursorFile, CursorError> {
        let dir = cursor_dir(data);
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let file = file_name(name);
        Ok(CursorFile {
            path: dir.join(format!("{file}.cursor")),
            tmp: dir.join(format!("{file}.cursor.tmp")),
            dir,
            last: None,
        })
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted position: `Ok(None)` when there is none yet.
    pub fn load(&mut self) -> Result<Option<Position>, CursorError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &self.path)(e)),
        };
        let text = String::from_utf8_lossy(&text);
        let malformed = || CursorError::Malformed {
            path: self.path.clone(),
            content: text.chars().take(80).collect(),
        };
        let mut words = text.split_ascii_whitespace();
        if words.next() != Some("v1") {
            return Err(malformed());
        }
        let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
        let (Some(segment), Some(offset)) = (num(), num()) else {
            return Err(malformed());
        };
        if words.next().is_some() {
            return Err(malformed());
        }
        let pos = Position { segment, offset };
        self.last = Some(pos);
        Ok(Some(pos))
    }

    /// Durably replaces the persisted position with `pos`.
    pub fn store(&mut self, pos: Position) -> Result<(), CursorError> {
        if self.last == Some(pos) {
            return Ok(());
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.tmp)
                .map_err(io_err("create", &self.tmp))?;
            f.write_all(format!("v1 {} {}\n", pos.segment, pos.offset).as_bytes())
                .map_err(io_err("write", &self.tmp))?;
            f.sync_data().map_err(io_err("fdatasync", &self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(io_err("rename to", &self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))?;
        self.last = Some(pos);
        Ok(())
    }
}

/// The thread that persists a receiver's acknowledged positions; see the module docs.
pub struct CursorWriter {
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

/// The newest position not yet stored: a one-value mailbox, since only the newest
/// matters. A mutex and condition variable, not a channel: a channel's receive spins and
/// yields before it sleeps, hundreds of times a second for a thread that stores five.
struct Slot {
    state: Mutex<SlotState>,
    wake: Condvar,
}

struct SlotState {
    pos: Option<Position>,
    closed: bool,
    /// The thread waits for a first position (not for the next store to be due), so
    /// an update must wake it; otherwise its timed wait ends by itself.
    idle: bool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next position to store, once one is there and the store is due (at once
    /// when closing); `None` when closed with nothing left.
    fn next(&self, due: Instant) -> Option<Position> {
        let mut g = self.lock();
        while g.pos.is_none() && !g.closed {
            g.idle = true;
            g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            g.idle = false;
        }
        while !g.closed {
            let now = Instant::now();
            if now >= due {
                break;
            }
            g = match self.wake.wait_timeout(g, due - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        g.pos.take()
    }
}

impl CursorWriter {
    /// Starts the writer thread for `file`; `name` is the receiver's, for log lines.
    pub fn start(mut file: CursorFile, name: String, thread: String) -> io::Result<Self> {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                pos: None,
                closed: false,
                idle: false,
            }),
            wake: Condvar::new(),
        });
        let theirs = slot.clone();
        let thread = std::thread::Builder::new().name(thread).spawn(move || {
            let mut logged = HashSet::new();
            let mut next_store = Instant::now();
            while let Some(pos) = theirs.next(next_store) {
                next_store = Instant::now() + MIN_STORE_INTERVAL;
                if let Err(e) = file.store(pos) {
                    let msg = e.to_string();
                    if logged.len() < 64 && logged.insert(msg.clone()) {
                        crate::error!(
                            "remote write cannot persist its cursor; a restart resends from the last persisted position",
                            remote_name = name,
                            err = msg
                        );
                    }
                }
            }
        })?;
        Ok(CursorWriter {
            slot,
            thread: Some(thread),
        })
    }

    /// Hands `pos` over for persisting without waiting.
    pub fn update(&mut self, pos: Position) {
        let mut g = self.slot.lock();
        g.pos = Some(pos);
        let wake = g.idle;
        drop(g);
        if wake {
            self.slot.wake.notify_one();
        }
    }

    /// Persists the last position and joins the thread.
    pub fn finish(mut self) {
        self.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn close(&self) {
        self.slot.lock().closed = true;
        self.slot.wake.notify_one();
    }
}

impl Drop for CursorWriter {
    /// Without `finish` (a panic unwinding the shipper), the thread still stores the
    /// last position and exits; nothing waits for it.
    fn drop(&mut self) {
        self.close();
    }
}

/// A receiver name as a file name: ASCII letters, digits, `-` and `_` are kept, every
/// other byte becomes `%XX`, so distinct names give distinct files and none can climb
/// out of the directory.
fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = CursorFile::new(dir.path(), "main").expect("new");
        assert_eq!(c.load().expect("load"), None);
        let p = Position {
            segment: 3,
            offset: 4096,
        };
        c.store(p).expect("store");
        let mut again = CursorFile::new(dir.path(), "main").expect("new");
        assert_eq!(again.load().expect("load"), Some(p));
        assert!(!dir.path().join("remote_write/main.cursor.tmp").exists());
    }

    #[test]
    fn the_writer_persists_the_newest_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CursorFile::new(dir.path(), "w").expect("new");
        let mut w = CursorWriter::start(file, "w".into(), "test-cursor".into()).expect("start");
        for offset in 16..2000 {
            w.update(Position { segment: 1, offset });
        }
        w.finish();
        let mut c = CursorFile::new(dir.path(), "w").expect("new");
        assert_eq!(
            c.load().expect("load"),
            Some(Position {
                segment: 1,
                offset: 1999
            })
        );
    }

    /// Stores are at least MIN_STORE_INTERVAL apart, the first comes without waiting
    /// for one, and a writer dropped without `finish` still stores its last position.
    #[test]
    fn stores_are_paced_and_a_dropped_writer_still_stores() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = CursorFile::new(dir.path(), "p").expect("new");
        let mut w = CursorWriter::start(file, "p".into(), "test-cursor".into()).expect("start");
        let load = || {
            CursorFile::new(dir.path(), "p")
                .expect("new")
                .load()
                .expect("load")
        };
        let at = |offset| Position { segment: 2, offset };
        w.update(at(100));
        let deadline = Instant::now() + Duration::from_secs(10);
        while load() != Some(at(100)) {
            assert!(
                Instant::now() < deadline,
                "the first position was never stored"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let first = Instant::now();
        w.update(at(200));
        while load() != Some(at(200)) {
            assert!(
                Instant::now() < deadline,
                "the second position was never stored"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        // Measured from after the first store was seen, so the gap can only be shorter
        // than the real one.
        assert!(
            first.elapsed() >= MIN_STORE_INTERVAL / 2,
            "{:?}",
            first.elapsed()
        );
        w.update(at(300));
        drop(w);
        while load() != Some(at(300)) {
            assert!(
                Instant::now() < deadline,
                "a dropped writer lost its last position"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn malformed_files_are_errors_not_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = CursorFile::new(dir.path(), "x").expect("new");
        for bad in ["", "v2 1 2", "v1 1", "v1 a b", "v1 1 2 3", "\u{0}\u{0}"] {
            std::fs::write(c.path(), bad).expect("write");
            assert!(
                matches!(c.load(), Err(CursorError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_escaped_into_distinct_safe_files() {
        assert_eq!(file_name("vm-1_a"), "vm-1_a");
        assert_eq!(file_name("../x"), "%2E%2E%2Fx");
        assert_eq!(file_name("a.b"), "a%2Eb");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
        assert_eq!(file_name(""), "%");
    }
}
