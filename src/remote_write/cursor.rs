//! Durable per-receiver cursors: the spool [`Position`] after the last block a receiver
//! acknowledged, one small file per receiver under `<storage.path>/remote_write/`.
//!
//! A write goes to `<name>.cursor.tmp`, is `fsync`ed, renamed over `<name>.cursor`, and
//! the directory is `fsync`ed, so after a crash the file holds either the previous or the
//! new position, never a torn one. The content is one line, `v1 <segment> <offset>`.
//! A missing file means "never sent anything": the shipper starts at the oldest data. A
//! file that does not parse is reported and treated the same way, which can only resend
//! (at-least-once), never skip.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
