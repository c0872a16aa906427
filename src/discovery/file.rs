//! `file_sd_configs`: target groups from JSON, YAML or TOML files matched by glob patterns.
//!
//! Runs on its provider thread (see the parent module). Every [`POLL`] it expands the
//! patterns and `stat`s each matching file; a file whose modification time, size, inode
//! or device changed since it was last read is read again at once, so an edit or an
//! atomic rename shows up within about a second. Every `refresh_interval` (default 5m)
//! every file is read again whatever its stamp says, as Prometheus's periodic refresh
//! does (it catches an edit that kept size and mtime). A `stat` per file per second is
//! the whole cost of watching; no inotify, so network file systems work too.
//!
//! Semantics, as in Prometheus (`discovery/file`): the format follows the extension
//! (`.json`; `.yml`/`.yaml`; and scrapewheel's `.toml`, a list of `[[groups]]` tables);
//! each group's source is `<path>:<index>` and its labels get `__meta_filepath` = the
//! path as the pattern expanded to; a file that fails to read or parse keeps the groups
//! it last had (the error is logged with `path:line:column` and counted in
//! `prometheus_sd_file_read_errors_total`); a file that disappears takes its groups with
//! it. A file that was never read successfully contributes nothing.
//!
//! Patterns: `*`, `?` and `[…]` classes (as Go's `filepath.Match`) in the last path
//! segment only; the directory part is taken literally. Matches are sorted by name.

use super::{decode_groups, DecodeError, Format, Provider, ProviderContext, TargetGroup};
use crate::config::FileSdConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the files are `stat`ed for changes.
pub const POLL: Duration = Duration::from_secs(1);

/// The meta label naming the file a group came from.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// Why a file's groups could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    /// Opening, reading or `stat`ing the file failed.
    #[error("{}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file is not a valid target-group document; `error` has the line and column.
    #[error("{}", DecodeDisplay(.path, .error))]
    Decode { path: PathBuf, error: DecodeError },
    /// Listing the pattern's directory failed.
    #[error("expanding {}: {source}", .pattern.display())]
    Glob { pattern: PathBuf, source: io::Error },
}

/// `path:line:column: message`, or `path: message` when the parser gave no position.
struct DecodeDisplay<'a>(&'a Path, &'a DecodeError);

impl fmt::Display for DecodeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.line.is_some() {
            write!(f, "{}:{}", self.0.display(), self.1)
        } else {
            write!(f, "{}: {}", self.0.display(), self.1)
        }
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime_ns: i128,
    size: u64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            size: m.size(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

struct Entry {
    /// The stamp of the last read attempt (successful or not), so a broken file is not
    /// re-read (and re-logged) every poll.
    stamp: Option<Stamp>,
    /// The groups of the last successful read.
    groups: Vec<TargetGroup>,
}

pub(super) struct FileProvider {
    config: FileSdConfig,
    ctx: ProviderContext,
    files: BTreeMap<PathBuf, Entry>,
    next_full: Instant,
    first: bool,
    /// Patterns and files that could not be listed or `stat`ed at the last poll: such an
    /// error is logged and counted when it starts and at each full refresh, not every
    /// second.
    failing: BTreeSet<PathBuf>,
}

impl FileProvider {
    pub(super) fn new(config: FileSdConfig, ctx: ProviderContext) -> FileProvider {
        FileProvider {
            config,
            ctx,
            files: BTreeMap::new(),
            next_full: Instant::now(),
            first: true,
            failing: BTreeSet::new(),
        }
    }

    fn log(&self, e: &FileSdError) {
        crate::error!(
            "file_sd: cannot read target file; keeping its last good targets",
            job = self.ctx.job,
            err = e
        );
    }

    /// Logs and counts a listing or `stat` error of `key` if it is new (or `full`).
    fn poll_error(&self, failing: &mut BTreeSet<PathBuf>, key: &Path, full: bool, e: FileSdError) {
        let new = failing.insert(key.to_owned()) && !self.failing.contains(key);
        if new || full {
            self.ctx.metrics.file_read_errors.inc();
            self.log(&e);
        }
    }

    /// Expands every pattern; a pattern whose directory cannot be listed is logged and
    /// contributes nothing (its files count as gone, as in Prometheus).
    fn list(&self, failing: &mut BTreeSet<PathBuf>, full: bool) -> BTreeSet<PathBuf> {
        let mut out = BTreeSet::new();
        for pattern in &self.config.files {
            match glob(pattern) {
                Ok(paths) => out.extend(paths),
                Err(source) => self.poll_error(
                    failing,
                    pattern,
                    full,
                    FileSdError::Glob {
                        pattern: pattern.clone(),
                        source,
                    },
                ),
            }
        }
        out
    }
}

impl Provider for FileProvider {
    fn step(&mut self) -> (Option<Vec<TargetGroup>>, Duration) {
        let started = Instant::now();
        let full = self.first || started >= self.next_full;
        let mut changed = std::mem::take(&mut self.first);
        let mut failing = BTreeSet::new();
        let listed = self.list(&mut failing, full);

        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listed.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.files.remove(&path);
            self.ctx.metrics.forget_file(&path.to_string_lossy());
            changed = true;
        }

        for path in listed {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Removed between the listing and now: the next poll drops it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    let e = FileSdError::Read {
                        path: path.clone(),
                        source,
                    };
                    self.poll_error(&mut failing, &path, full, e);
                    continue;
                }
            };
            let stamp = Stamp::of(&meta);
            let entry = self.files.entry(path.clone()).or_insert(Entry {
                stamp: None,
                groups: Vec::new(),
            });
            if !full && entry.stamp == Some(stamp) {
                continue;
            }
            entry.stamp = Some(stamp);
            match read_groups(&path) {
                Ok(groups) => {
                    if entry.groups != groups {
                        entry.groups = groups;
                        changed = true;
                    }
                    let mtime = stamp.mtime_ns as f64 / 1e9;
                    self.ctx
                        .metrics
                        .file_mtime(&path.to_string_lossy())
                        .set(mtime.floor());
                }
                Err(e) => {
                    self.ctx.metrics.file_read_errors.inc();
                    self.log(&e);
                }
            }
        }

        self.failing = failing;
        if full {
            self.next_full = Instant::now() + self.config.refresh_interval;
            self.ctx
                .metrics
                .file_scan_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let wait = POLL.min(self.next_full.saturating_duration_since(Instant::now()));
        let view = changed.then(|| {
            self.files
                .values()
                .flat_map(|e| e.groups.iter().cloned())
                .collect()
        });
        (view, wait)
    }
}

/// The format a path's extension selects (the config only accepts these).
fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "json" => Some(Format::Json),
        "yml" | "yaml" => Some(Format::Yaml),
        "toml" => Some(Format::Toml),
        _ => None,
    }
}

/// Reads and decodes one target file.
pub fn read_groups(path: &Path) -> Result<Vec<TargetGroup>, FileSdError> {
    let text = std::fs::read(path).map_err(|source| FileSdError::Read {
        path: path.to_owned(),
        source,
    })?;
    let format = format_of(path).ok_or_else(|| FileSdError::Decode {
        path: path.to_owned(),
        error: DecodeError {
            line: None,
            column: None,
            message: "unknown extension: expected .json, .yml, .yaml or .toml".into(),
        },
    })?;
    let shown = path.to_string_lossy();
    decode_groups(&text, format, &shown, (FILEPATH_LABEL, &shown)).map_err(|error| {
        FileSdError::Decode {
            path: path.to_owned(),
            error,
        }
    })
}

/// Expands a pattern whose last segment may hold `*`, `?` and `[…]`; sorted. A pattern
/// without them names one file, returned if it exists. A missing directory matches
/// nothing (as Go's `filepath.Glob`).
pub fn glob(pattern: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    if !name.contains(['*', '?', '[', '\\']) {
        return Ok(if pattern.exists() {
            vec![pattern.to_owned()]
        } else {
            Vec::new()
        });
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        if let Some(n) = file_name.to_str() {
            if matches(name, n) {
                out.push(pattern.with_file_name(n));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Go's `filepath.Match` for one path segment: `*` any run, `?` one character, `[…]` a
/// class (`^` negates, `a-z` ranges), `\` escapes. A malformed class matches nothing.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative wildcard matching with one backtrack point (the last `*`).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some(_) => {
                if let Some((len, ok)) = match_one(&p[pi..], n[ni]) {
                    if ok {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                } else {
                    return false;
                }
            }
            None => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches one pattern element (not `*`) against `c`: (its length in the pattern, whether
/// it matched), or `None` for a malformed element.
fn match_one(p: &[char], c: char) -> Option<(usize, bool)> {
    match p.first()? {
        '?' => Some((1, true)),
        '\\' => {
            let lit = *p.get(1)?;
            Some((2, lit == c))
        }
        '[' => {
            let mut i = 1;
            let negate = p.get(i) == Some(&'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            let mut first = true;
            loop {
                let lo = *p.get(i)?;
                if lo == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let lo = if lo == '\\' {
                    i += 1;
                    *p.get(i)?
                } else {
                    lo
                };
                i += 1;
                let hi = if p.get(i) == Some(&'-') && p.get(i + 1) != Some(&']') {
                    i += 1;
                    let hi = *p.get(i)?;
                    let hi = if hi == '\\' {
                        i += 1;
                        *p.get(i)?
                    } else {
                        hi
                    };
                    i += 1;
                    hi
                } else {
                    lo
                };
                if lo <= c && c <= hi {
                    hit = true;
                }
            }
            Some((i, hit != negate))
        }
        lit => Some((1, *lit == c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_patterns_match_like_go() {
        assert!(matches("*.json", "a.json"));
        assert!(
            matches("*.json", ".hidden.json"),
            "Go's * matches a leading dot"
        );
        assert!(!matches("*.json", "a.yml"));
        assert!(matches("node-*.yml", "node-1.yml"));
        assert!(matches("node-?.yml", "node-1.yml"));
        assert!(!matches("node-?.yml", "node-12.yml"));
        assert!(matches("n[0-9].json", "n5.json"));
        assert!(!matches("n[^0-9].json", "n5.json"));
        assert!(matches("n[^0-9].json", "nx.json"));
        assert!(matches("a\\*.json", "a*.json"));
        assert!(!matches("a\\*.json", "ab.json"));
        assert!(matches("*a*b*.json", "xxaybzz.json"));
        assert!(!matches("n[0-9.json", "n5.json"), "malformed class");
    }

    #[test]
    fn glob_lists_sorted_matches_and_tolerates_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["b.json", "a.json", "c.yml"] {
            std::fs::write(dir.path().join(f), "[]").expect("write");
        }
        let got = glob(&dir.path().join("*.json")).expect("glob");
        assert_eq!(got, [dir.path().join("a.json"), dir.path().join("b.json")]);
        assert_eq!(
            glob(&dir.path().join("c.yml")).expect("literal"),
            [dir.path().join("c.yml")]
        );
        assert!(glob(&dir.path().join("none.yml"))
            .expect("missing")
            .is_empty());
        assert!(glob(&dir.path().join("nodir/*.json"))
            .expect("missing dir")
            .is_empty());
    }

    #[test]
    fn read_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bad.yml");
        std::fs::write(
            &p,
            "- targets: [a:1]\n  labels: {env: prod}\n- targets: 7\n",
        )
        .expect("write");
        let e = read_groups(&p).expect_err("bad");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{}:3:", p.display())), "{shown}");
        let ok = dir.path().join("ok.json");
        std::fs::write(&ok, r#"[{"targets": ["h:1"]}]"#).expect("write");
        let g = read_groups(&ok).expect("ok");
        assert_eq!(
            g[0].labels.get(FILEPATH_LABEL),
            Some(ok.to_string_lossy().as_ref())
        );
        assert_eq!(g[0].source, format!("{}:0", ok.display()));
    }
}
