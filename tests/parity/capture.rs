//! What each agent sent, as one ordered stream of samples per agent: each agent
//! remote-writes to its own receiver on loopback ("parity-receiver" thread) that decodes
//! every request (snappy block format, then the `WriteRequest` protobuf with
//! scrapewheel's own decoder) and appends its samples in arrival order. With one shard
//! (Prometheus) or one sender (scrapewheel), arrival order is commit order.

use scrapewheel::wire;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One sample as sent: labels sorted by name, the exact value bits, the timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Captured {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub ts: i64,
}

impl Captured {
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A remote-write receiver that keeps every sample it is sent.
pub struct Receiver {
    pub url: String,
    samples: Arc<Mutex<Vec<Captured>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("receiver listens");
        let url = format!(
            "http://{}/api/v1/write",
            server.server_addr().to_ip().expect("ip listener")
        );
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, e, st) = (samples.clone(), errors.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("parity-receiver".into())
            .spawn(move || {
                while !st.load(Ordering::SeqCst) {
                    let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(100)) else {
                        continue;
                    };
                    let mut body = Vec::new();
                    let status = match std::io::Read::read_to_end(req.as_reader(), &mut body)
                        .map_err(|e| e.to_string())
                        .and_then(|_| decode(&body).map_err(|err| err.to_string()))
                    {
                        Ok(batch) => {
                            s.lock().expect("samples").extend(batch);
                            204
                        }
                        Err(err) => {
                            e.lock().expect("errors").push(err);
                            400
                        }
                    };
                    let _ = req.respond(tiny_http::Response::empty(status));
                }
            })
            .expect("spawn receiver");
        Receiver {
            url,
            samples,
            errors,
            stop,
            thread: Some(thread),
        }
    }

    pub fn samples(&self) -> Vec<Captured> {
        self.samples.lock().expect("samples").clone()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors").clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Decodes one remote-write request body.
fn decode(body: &[u8]) -> Result<Vec<Captured>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    let mut out = Vec::new();
    wire::decode_write_request(&raw, |series| {
        let mut labels: Vec<(String, String)> = series
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        labels.sort();
        for (value, ts) in &series.samples {
            out.push(Captured {
                labels: labels.clone(),
                value: *value,
                ts: *ts,
            });
        }
    })
    .map_err(|e| format!("protobuf: {e}"))?;
    Ok(out)
}
