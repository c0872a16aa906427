//! A minimal Chrome DevTools Protocol client for tests: Debian's headless Chromium driven
//! over `--remote-debugging-pipe` (JSON messages, NUL-terminated, on fds 3 and 4), so no
//! websocket and no port are needed. Enough to load a page, run script in it, click with
//! real mouse events and take a screenshot.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};

/// Debian's Chromium, if installed.
pub fn find_chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A headless Chromium with one page attached. Killed on drop.
pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    session: String,
    next_id: u64,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts Chromium with its profile in `profile_dir` and opens a blank page.
    /// `stderr_path` receives Chromium's own log, for when a test fails.
    pub fn launch(exe: &Path, profile_dir: &Path, stderr_path: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        let (browser_reads, we_write) = pipe();
        let (we_read, browser_writes) = pipe();
        let (r, w) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr_path).expect("chromium log file"));
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The
        // fds are first copied above 10 so that dup2 onto 3 and 4 cannot clobber one of
        // them, and the copies (unlike the originals) survive exec without O_CLOEXEC.
        unsafe {
            cmd.pre_exec(move || {
                let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        // Our copies of the browser's ends must close, or we would never see EOF.
        drop(browser_reads);
        drop(browser_writes);
        let (tx, rx) = sync_channel::<Value>(4096);
        std::thread::Builder::new()
            .name("cdp-reader".into())
            .spawn(move || {
                let mut reader = BufReader::new(we_read);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(0, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            if buf.last() == Some(&0) {
                                buf.pop();
                            }
                            if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                                if tx.send(v).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawn reader");
        let mut b = Browser {
            child,
            to_browser: we_write,
            from_browser: rx,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call_raw(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call_raw(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    fn call_raw(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = Value::from(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("sending {method} to chromium: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to {method} from chromium: {e}"));
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return v["result"].clone();
            }
            // Events and answers to nobody: not needed by these tests.
        }
    }

    /// A command on the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.call_raw(Some(&s), method, params)
    }

    /// Runs `expr` in the page and returns its value (JSON-serialisable results only).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("script {expr:?} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Loads `url` and waits until its load event has fired.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let state = self.eval("document.readyState + ' ' + location.href");
            let s = state.as_str().unwrap_or_default();
            if s.starts_with("complete ") && !s.ends_with("about:blank") {
                return;
            }
            assert!(Instant::now() < deadline, "{url} did not load: {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A left click, with real mouse events, at the centre of the first element matching
    /// `selector` (which must be visible).
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).expect("json");
        let rect = self.eval(&format!(
            "(function(){{var e=document.querySelector({sel}); if(!e) return null; e.scrollIntoView({{block:'center'}}); var r=e.getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2, r.width, r.height];}})()"
        ));
        let r = rect
            .as_array()
            .unwrap_or_else(|| panic!("no element matches {selector}"));
        let (x, y) = (r[0].as_f64().expect("x"), r[1].as_f64().expect("y"));
        assert!(
            r[2].as_f64() > Some(0.0) && r[3].as_f64() > Some(0.0),
            "{selector} is not visible: {rect}"
        );
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// A PNG of the whole page at 1280 px wide.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let h = self
            .eval("Math.max(600, document.documentElement.scrollHeight)")
            .as_f64()
            .expect("height");
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": h as u64, "deviceScaleFactor": 1, "mobile": false}),
        );
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (RFC 4648) with padding, as CDP sends binary data.
pub fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | if c == b'=' { 0 } else { val(c) };
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..4 - pad]);
    }
    out
}
