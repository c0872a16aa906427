//! Tests against real loopback HTTP servers written in raw HTTP, so that slow,
//! endless, malformed and hanging responses are under the test's control. Every server
//! stops (and joins its threads) when dropped; every wait is bounded.

use super::*;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;

/// What the handler wants done with the connection after answering.
#[derive(PartialEq)]
enum After {
    KeepAlive,
    Close,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    /// The raw request head, lines separated by `\r\n`, without the final blank line.
    head: String,
    path: String,
}

impl Seen {
    /// Header lines exactly as sent (name casing preserved).
    fn header_lines(&self) -> Vec<&str> {
        self.head.split("\r\n").skip(1).collect()
    }

    /// The value of a header, matched case-insensitively.
    fn header(&self, name: &str) -> Option<&str> {
        self.header_lines().into_iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

type Handler = dyn Fn(&Seen, &mut TcpStream, &AtomicBool) -> After + Send + Sync;

struct TestServer {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(
        handler: impl Fn(&Seen, &mut TcpStream, &AtomicBool) -> After + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let (accepts, seen, stop) = (accepts.clone(), seen.clone(), stop.clone());
            thread::spawn(move || {
                let mut conns = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepts.fetch_add(1, Ordering::SeqCst);
                    let (seen, stop, handler) = (seen.clone(), stop.clone(), handler.clone());
                    conns.push(thread::spawn(move || {
                        serve(stream, &seen, &stop, &*handler)
                    }));
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        TestServer {
            addr,
            accepts,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// Serves one connection: reads request heads, lets the handler answer, until the
/// client closes, the handler asks to close, or the server stops.
fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        };
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let req = Seen { head, path };
        seen.lock().expect("seen lock").push(req.clone());
        if handler(&req, &mut stream, stop) == After::Close {
            return;
        }
    }
}

/// Writes a complete response with `Content-Length`.
fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    let _ = stream.write_all(&bytes);
}

/// Sleeps in small steps until the server stops or `max` passes.
fn idle(stop: &AtomicBool, max: Duration) {
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < max {
        thread::sleep(Duration::from_millis(10));
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).expect("gzip write");
    e.finish().expect("gzip finish")
}

/// How long an "endless" body or a "silent" server lasts at most, so that a broken
/// timeout fails its test instead of hanging it.
const ENDLESS: Duration = Duration::from_secs(5);

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const METRICS: &[u8] = b"# TYPE up gauge\nup 1\nfoo_total{a=\"b\"} 42\n";

fn req(url: String) -> ScrapeRequest {
    ScrapeRequest {
        url,
        accept: accept_header(&Protocol::DEFAULTS),
        accept_encoding_gzip: true,
        timeout: Duration::from_secs(2),
        body_size_limit: 0,
        auth: None,
    }
}

fn ok_server(body: &'static [u8]) -> TestServer {
    TestServer::start(move |_, s, _| {
        respond(s, "200 OK", &[("Content-Type", TEXT)], body);
        After::KeepAlive
    })
}

/// Serves `body` as `Content-Encoding: gzip` with `Content-Length`.
fn gzip_server(compressed: Vec<u8>) -> TestServer {
    TestServer::start(move |_, s, _| {
        respond(
            s,
            "200 OK",
            &[("Content-Type", TEXT), ("Content-Encoding", "gzip")],
            &compressed,
        );
        After::KeepAlive
    })
}

// ---- pure functions ----

#[test]
fn default_accept_header_is_prometheus_byte_for_byte() {
    assert_eq!(
        accept_header(&Protocol::DEFAULTS),
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
         application/openmetrics-text;version=0.0.1;q=0.5,\
         text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
         text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    );
}

#[test]
fn accept_header_follows_configured_order_and_starts_at_point_six() {
    assert_eq!(
        accept_header(&[Protocol::PrometheusText0_0_4]),
        "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"
    );
    assert_eq!(
        accept_header(&[
            Protocol::PrometheusText1_0_0,
            Protocol::OpenMetricsText0_0_1
        ]),
        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,\
         application/openmetrics-text;version=0.0.1;q=0.5,*/*;q=0.4"
    );
    assert_eq!(accept_header(&[]), "*/*;q=0.6");
}

#[test]
fn timeout_header_uses_shortest_decimal_seconds() {
    for (d, want) in [
        (Duration::from_secs(10), "10"),
        (Duration::from_millis(500), "0.5"),
        (Duration::from_millis(1250), "1.25"),
        (Duration::from_millis(100), "0.1"),
        (Duration::from_secs(120), "120"),
        (Duration::from_nanos(1), "0.000000001"),
    ] {
        assert_eq!(timeout_header_value(d), want, "{d:?}");
    }
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (plain, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("user:pass", "dXNlcjpwYXNz"),
    ] {
        let mut out = Vec::new();
        base64_encode(plain.as_bytes(), &mut out);
        assert_eq!(String::from_utf8(out).expect("ascii"), want, "{plain:?}");
    }
}

#[test]
fn redact_url_strips_userinfo_only() {
    assert_eq!(
        redact_url("http://user:secret@host:9100/metrics?x=1"),
        "http://host:9100/metrics?x=1"
    );
    assert_eq!(redact_url("https://tok@h/m"), "https://h/m");
    assert_eq!(
        redact_url("http://host/p@th?a=b@c"),
        "http://host/p@th?a=b@c"
    );
    assert_eq!(redact_url("user:pw@host"), "host");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let auth = Auth::Basic {
        username: "u".into(),
        password: SecretSource::Inline("hunter2".into()),
    };
    let r = ScrapeRequest {
        auth: Some(auth),
        ..req("http://127.0.0.1:1/metrics".into())
    };
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
}

#[test]
fn client_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<HttpClient>();
}

// ---- fetch against loopback servers ----

#[test]
fn plain_200_returns_body_and_content_type() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let mut body = b"stale bytes from the previous scrape".to_vec();
    let got = client
        .fetch(&req(server.url("/metrics")), &mut body)
        .expect("fetch");
    assert_eq!(body, METRICS);
    assert_eq!(
        got,
        Fetched {
            content_type: Some(TEXT.to_owned()),
            body_len: METRICS.len(),
            compressed_len: METRICS.len() as u64,
        }
    );
    assert_eq!(server.seen()[0].path, "/metrics");
}

#[test]
fn an_agent_is_made_only_for_a_host_that_is_scraped() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let made = |c: &HttpClient| c.agents.iter().filter(|a| a.get().is_some()).count();
    assert_eq!(made(&client), 0);
    let mut body = Vec::new();
    for path in ["/metrics", "/other", "/metrics"] {
        client
            .fetch(&req(server.url(path)), &mut body)
            .expect("fetch");
    }
    // One host, one agent, whatever the path.
    assert_eq!(made(&client), 1);
    assert_eq!(client.agents.len(), AGENT_SHARDS);
    // That agent's pool still keeps the idle connections of a host with many targets.
    assert!(client.config.max_idle_connections() >= MIN_IDLE_CONNECTIONS_PER_AGENT);
}

#[test]
fn missing_content_type_is_none_and_empty_body_is_ok() {
    let server = TestServer::start(|_, s, _| {
        respond(s, "200 OK", &[], b"");
        After::KeepAlive
    });
    let mut body = Vec::new();
    let got = HttpClient::new()
        .fetch(&req(server.url("/")), &mut body)
        .expect("fetch");
    assert_eq!(got.content_type, None);
    assert_eq!(got.body_len, 0);
}

#[test]
fn chunked_body_is_dechunked() {
    let server = TestServer::start(|_, s, _| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nup 1\n\r\n6\r\nx 2.5\n\r\n0\r\n\r\n",
        );
        After::KeepAlive
    });
    let mut body = Vec::new();
    let got = HttpClient::new()
        .fetch(&req(server.url("/")), &mut body)
        .expect("fetch");
    assert_eq!(body, b"up 1\nx 2.5\n");
    assert_eq!(got.compressed_len, 11);
}

#[test]
fn gzip_body_is_decoded_and_both_sizes_reported() {
    let plain = METRICS.repeat(100);
    let compressed = gzip(&plain);
    let wire_len = compressed.len() as u64;
    let server = gzip_server(compressed);
    let mut body = Vec::new();
    let got = HttpClient::new()
        .fetch(&req(server.url("/")), &mut body)
        .expect("fetch");
    assert_eq!(body, plain);
    assert_eq!(got.body_len, plain.len());
    assert_eq!(got.compressed_len, wire_len);
    assert!(got.compressed_len < got.body_len as u64);
}

#[test]
fn concatenated_gzip_members_are_all_decoded() {
    let mut two = gzip(b"a 1\n");
    two.extend(gzip(b"b 2\n"));
    let server = gzip_server(two);
    let mut body = Vec::new();
    HttpClient::new()
        .fetch(&req(server.url("/")), &mut body)
        .expect("fetch");
    assert_eq!(body, b"a 1\nb 2\n");
}

#[test]
fn body_is_decoded_only_for_exact_gzip_content_encoding() {
    let compressed = gzip(METRICS);
    let sent = compressed.clone();
    let server = TestServer::start(move |_, s, _| {
        respond(s, "200 OK", &[("Content-Encoding", "identity")], &sent);
        After::KeepAlive
    });
    let mut body = Vec::new();
    HttpClient::new()
        .fetch(&req(server.url("/")), &mut body)
        .expect("fetch");
    assert_eq!(
        body, compressed,
        "non-gzip encodings pass through untouched"
    );
}

#[test]
fn empty_gzip_body_is_a_gzip_error() {
    // Go's gzip.NewReader fails with EOF on an empty stream, so Prometheus fails the
    // scrape; a valid gzip stream of nothing is fine.
    let server = gzip_server(Vec::new());
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("empty gzip");
    assert!(matches!(err, ScrapeError::Gzip { .. }), "{err:?}");
    let server = gzip_server(gzip(b""));
    let got = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect("gzip of nothing");
    assert_eq!(got.body_len, 0);
}

#[test]
fn invalid_gzip_is_a_gzip_error() {
    let server = gzip_server(b"this is not gzip at all".to_vec());
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("bad gzip");
    assert!(matches!(err, ScrapeError::Gzip { .. }), "{err:?}");
}

#[test]
fn truncated_gzip_is_a_gzip_error() {
    let mut compressed = gzip(&METRICS.repeat(50));
    compressed.truncate(compressed.len() / 2);
    let server = gzip_server(compressed);
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("truncated gzip");
    assert!(matches!(err, ScrapeError::Gzip { .. }), "{err:?}");
}

#[test]
fn gzip_bomb_stops_at_the_decompressed_limit() {
    // 8 MiB of zeros compress to ~8 KiB; the limit is on decompressed bytes.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    let server = gzip_server(bomb);
    let limit = 1 << 20;
    let mut body = Vec::new();
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(
            &ScrapeRequest {
                body_size_limit: limit,
                ..req(server.url("/"))
            },
            &mut body,
        )
        .expect_err("bomb");
    assert!(err.is_body_size_limit(), "{err:?}");
    assert!(!err.is_timeout());
    assert_eq!(body.len() as u64, limit, "reading stops at the limit");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string().contains("body size limit exceeded"),
        "{err}"
    );
}

#[test]
fn body_exactly_at_limit_fails_and_one_under_passes() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let n = METRICS.len() as u64;
    let at = client
        .fetch(
            &ScrapeRequest {
                body_size_limit: n,
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect_err("body == limit");
    assert!(at.is_body_size_limit(), "{at:?}");
    let mut body = Vec::new();
    client
        .fetch(
            &ScrapeRequest {
                body_size_limit: n + 1,
                ..req(server.url("/"))
            },
            &mut body,
        )
        .expect("body == limit - 1");
    assert_eq!(body, METRICS);
}

#[test]
fn gzip_limit_counts_decompressed_bytes_exactly() {
    let plain = METRICS.repeat(20);
    let server = gzip_server(gzip(&plain));
    let client = HttpClient::new();
    let n = plain.len() as u64;
    let err = client
        .fetch(
            &ScrapeRequest {
                body_size_limit: n,
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect_err("decompressed == limit");
    assert!(err.is_body_size_limit(), "{err:?}");
    client
        .fetch(
            &ScrapeRequest {
                body_size_limit: n + 1,
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect("decompressed < limit");
}

#[test]
fn status_500_is_an_error_with_prometheus_wording() {
    let server = TestServer::start(|_, s, _| {
        respond(s, "500 Internal Server Error", &[], b"boom");
        After::KeepAlive
    });
    let err = HttpClient::new()
        .fetch(&req(server.url("/metrics")), &mut Vec::new())
        .expect_err("500");
    match &err {
        ScrapeError::Status { status, reason, .. } => {
            assert_eq!(*status, 500);
            assert_eq!(reason, "Internal Server Error");
        }
        other => panic!("want Status, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "Get {:?}: server returned HTTP status 500 Internal Server Error",
            server.url("/metrics")
        )
    );
}

#[test]
fn status_404_and_other_non_200_statuses_are_errors() {
    let server = TestServer::start(|r, s, _| {
        let status = match r.path.as_str() {
            "/404" => "404 Not Found",
            "/204" => "204 No Content",
            _ => "299 Whatever",
        };
        respond(s, status, &[], b"");
        After::KeepAlive
    });
    let client = HttpClient::new();
    for (path, code, text) in [
        ("/404", 404, "404 Not Found"),
        ("/204", 204, "204 No Content"),
        ("/299", 299, "299"),
    ] {
        let err = client
            .fetch(&req(server.url(path)), &mut Vec::new())
            .expect_err(path);
        assert!(
            matches!(err, ScrapeError::Status { status, .. } if status == code),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .ends_with(&format!("server returned HTTP status {text}")),
            "{err}"
        );
    }
}

#[test]
fn error_status_with_endless_body_fails_without_waiting_for_the_timeout() {
    let server = TestServer::start(|_, s, stop| {
        let _ =
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n");
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < ENDLESS {
            if s.write_all(b"1\r\nx\r\n").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        After::Close
    });
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("503");
    assert!(
        matches!(err, ScrapeError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn silent_server_times_out_before_headers() {
    let server = TestServer::start(|_, _, stop| {
        idle(stop, ENDLESS);
        After::Close
    });
    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(
            &ScrapeRequest {
                timeout,
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect_err("hang");
    let took = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        matches!(
            err,
            ScrapeError::Timeout {
                phase: TimeoutPhase::Headers,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(700), "{took:?}");
}

#[test]
fn trickling_body_times_out_at_the_scrape_deadline() {
    let server = TestServer::start(|_, s, stop| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        // Close-delimited body, one line every 20 ms, forever.
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < ENDLESS {
            if s.write_all(b"x 1\n").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        After::Close
    });
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let mut body = Vec::new();
    let err = HttpClient::new()
        .fetch(
            &ScrapeRequest {
                timeout,
                ..req(server.url("/"))
            },
            &mut body,
        )
        .expect_err("trickle");
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            ScrapeError::Timeout {
                phase: TimeoutPhase::Body,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !body.is_empty(),
        "part of the body was read before the deadline"
    );
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(700), "{took:?}");
}

#[test]
fn slow_headers_count_against_the_same_deadline_as_the_body() {
    // Headers after 250 ms, then the body trickles: 250 ms + body must fit in 400 ms.
    let server = TestServer::start(|_, s, stop| {
        idle(stop, Duration::from_millis(250));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < ENDLESS {
            if s.write_all(b"y 1\n").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        After::Close
    });
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(
            &ScrapeRequest {
                timeout,
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect_err("deadline");
    let took = start.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(took < timeout + Duration::from_millis(300), "{took:?}");
}

#[test]
fn connection_refused_is_a_quick_connect_error() {
    // Bind then drop to get a loopback port with nothing listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(
            &req(format!("http://127.0.0.1:{port}/metrics")),
            &mut Vec::new(),
        )
        .expect_err("refused");
    assert!(matches!(err, ScrapeError::Connect { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn tls_handshake_failure_is_a_connect_error() {
    // A plain-HTTP peer answering a TLS ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            thread::sleep(Duration::from_millis(50));
        }
    });
    let start = Instant::now();
    let err = HttpClient::new()
        .fetch(&req(format!("https://{addr}/metrics")), &mut Vec::new())
        .expect_err("not TLS");
    let _ = peer.join();
    assert!(matches!(err, ScrapeError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn server_closing_without_answer_is_a_request_error() {
    let server = TestServer::start(|_, _, _| After::Close);
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("closed");
    assert!(matches!(err, ScrapeError::Request { .. }), "{err:?}");
}

#[test]
fn body_shorter_than_content_length_is_a_read_error() {
    let server = TestServer::start(|_, s, _| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup 1\n");
        After::Close
    });
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("short body");
    assert!(matches!(err, ScrapeError::Read { .. }), "{err:?}");
}

#[test]
fn oversized_response_header_is_rejected() {
    let server = TestServer::start(|_, s, _| {
        let big = "a".repeat(MAX_RESPONSE_HEADER_SIZE * 2);
        respond(s, "200 OK", &[("X-Big", &big)], b"up 1\n");
        After::Close
    });
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("big header");
    assert!(matches!(err, ScrapeError::Request { .. }), "{err:?}");
    assert!(err.to_string().contains("too big"), "{err}");
}

#[test]
fn request_headers_are_exactly_prometheus_headers() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let r = ScrapeRequest {
        timeout: Duration::from_millis(1500),
        ..req(server.url("/metrics?module=a&x=%20"))
    };
    client.fetch(&r, &mut Vec::new()).expect("fetch");
    let seen = &server.seen()[0];
    assert!(
        seen.head
            .starts_with("GET /metrics?module=a&x=%20 HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    let lines = seen.header_lines();
    for want in [
        format!("Accept: {}", accept_header(&Protocol::DEFAULTS)),
        "Accept-Encoding: gzip".to_owned(),
        format!("User-Agent: scrapewheel/{}", env!("CARGO_PKG_VERSION")),
        "X-Prometheus-Scrape-Timeout-Seconds: 1.5".to_owned(),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "missing {want:?} in {lines:?}"
        );
    }
    assert_eq!(seen.header("authorization"), None);
    // Nothing else but Host.
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(seen.header("host").is_some());

    client
        .fetch(
            &ScrapeRequest {
                accept_encoding_gzip: false,
                ..r
            },
            &mut Vec::new(),
        )
        .expect("fetch");
    assert_eq!(server.seen()[1].header("accept-encoding"), Some("identity"));
}

#[test]
fn basic_auth_inline_header() {
    let server = ok_server(METRICS);
    let r = ScrapeRequest {
        auth: Some(Auth::Basic {
            username: "user".into(),
            password: SecretSource::Inline("pass".into()),
        }),
        ..req(server.url("/"))
    };
    HttpClient::new().fetch(&r, &mut Vec::new()).expect("fetch");
    assert!(server.seen()[0]
        .header_lines()
        .contains(&"Authorization: Basic dXNlcjpwYXNz"));
}

#[test]
fn basic_auth_password_file_is_trimmed_and_reread_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("password");
    std::fs::write(&path, "pass\n").expect("write");
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let r = ScrapeRequest {
        auth: Some(Auth::Basic {
            username: "user".into(),
            password: SecretSource::File(path.clone()),
        }),
        ..req(server.url("/"))
    };
    client.fetch(&r, &mut Vec::new()).expect("fetch 1");
    std::fs::write(&path, "  rotated \r\n").expect("rewrite");
    client.fetch(&r, &mut Vec::new()).expect("fetch 2");
    let seen = server.seen();
    // "user:pass" and "user:rotated".
    assert_eq!(seen[0].header("authorization"), Some("Basic dXNlcjpwYXNz"));
    assert_eq!(
        seen[1].header("authorization"),
        Some("Basic dXNlcjpyb3RhdGVk")
    );
}

#[test]
fn bearer_inline_custom_type_and_credentials_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "\tfile-token\n\n").expect("write");
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    for auth in [
        Auth::Bearer {
            kind: "Bearer".into(),
            credentials: SecretSource::Inline("inline-token".into()),
        },
        Auth::Bearer {
            kind: "Custom".into(),
            credentials: SecretSource::Inline("abc".into()),
        },
        Auth::Bearer {
            kind: "Bearer".into(),
            credentials: SecretSource::File(path),
        },
    ] {
        let r = ScrapeRequest {
            auth: Some(auth),
            ..req(server.url("/"))
        };
        client.fetch(&r, &mut Vec::new()).expect("fetch");
    }
    let got: Vec<String> = server
        .seen()
        .iter()
        .map(|s| {
            s.header_lines()
                .into_iter()
                .find(|l| l.starts_with("Authorization: "))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        got,
        [
            "Authorization: Bearer inline-token",
            "Authorization: Custom abc",
            "Authorization: Bearer file-token",
        ]
    );
}

#[test]
fn unreadable_secret_file_names_the_file_and_sends_nothing() {
    let server = ok_server(METRICS);
    let r = ScrapeRequest {
        auth: Some(Auth::Bearer {
            kind: "Bearer".into(),
            credentials: SecretSource::File("/nonexistent/scrapewheel/token".into()),
        }),
        ..req(server.url("/"))
    };
    let err = HttpClient::new()
        .fetch(&r, &mut Vec::new())
        .expect_err("missing file");
    assert!(matches!(err, ScrapeError::Secret { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/scrapewheel/token"),
        "{err}"
    );
    assert_eq!(server.accepts(), 0);
}

#[test]
fn credentials_unfit_for_a_header_fail_without_showing_them() {
    let server = ok_server(METRICS);
    let r = ScrapeRequest {
        auth: Some(Auth::Bearer {
            kind: "Bearer".into(),
            credentials: SecretSource::Inline("sec\nret".into()),
        }),
        ..req(server.url("/"))
    };
    let err = HttpClient::new()
        .fetch(&r, &mut Vec::new())
        .expect_err("newline in token");
    assert!(
        matches!(
            err,
            ScrapeError::InvalidHeader {
                name: "Authorization",
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("sec"), "{shown}");
}

#[test]
fn invalid_accept_value_is_rejected_before_any_io() {
    let server = ok_server(METRICS);
    let err = HttpClient::new()
        .fetch(
            &ScrapeRequest {
                accept: "text/plain\r\nX-Injected: 1".into(),
                ..req(server.url("/"))
            },
            &mut Vec::new(),
        )
        .expect_err("CRLF in Accept");
    assert!(
        matches!(err, ScrapeError::InvalidHeader { name: "Accept", .. }),
        "{err:?}"
    );
    assert_eq!(server.accepts(), 0);
}

#[test]
fn userinfo_never_reaches_error_messages() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = HttpClient::new()
        .fetch(
            &req(format!("http://admin:s3cr3t@127.0.0.1:{port}/metrics")),
            &mut Vec::new(),
        )
        .expect_err("refused");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("s3cr3t") && !shown.contains("admin"),
        "{shown}"
    );
    assert_eq!(err.url(), format!("http://127.0.0.1:{port}/metrics"));
}

#[test]
fn invalid_urls_are_rejected_before_any_io() {
    let client = HttpClient::new();
    for url in [
        "ftp://host/metrics",
        "/metrics",
        "http://",
        "http://host:notaport/",
        "not a url",
    ] {
        let err = client
            .fetch(&req(url.to_owned()), &mut Vec::new())
            .expect_err(url);
        assert!(
            matches!(err, ScrapeError::InvalidUrl { .. }),
            "{url}: {err:?}"
        );
    }
}

#[test]
fn valid_url_forms_parse() {
    for url in [
        "http://host/metrics",
        "https://host:9100/metrics?a=b",
        "http://[::1]:9100/metrics",
        "http://[::1]/metrics",
        "http://u:p@host:80/",
    ] {
        assert!(parse_url(url).is_ok(), "{url}");
    }
}

#[test]
fn unresolvable_host_is_a_connect_error() {
    let err = HttpClient::new()
        .fetch(
            &req("http://scrapewheel-test.invalid:9100/metrics".to_owned()),
            &mut Vec::new(),
        )
        .expect_err("no such host");
    // A resolver that cannot reach its DNS server at all ends in the timeout instead.
    assert!(
        matches!(err, ScrapeError::Connect { .. }) || err.is_timeout(),
        "{err:?}"
    );
}

#[test]
fn keep_alive_reuses_one_connection_across_scrapes() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let r = req(server.url("/metrics"));
    let mut body = Vec::new();
    for _ in 0..3 {
        client.fetch(&r, &mut body).expect("fetch");
        assert_eq!(body, METRICS);
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(server.seen().len(), 3);
}

#[test]
fn keep_alive_survives_gzip_bodies_and_small_error_pages() {
    let compressed = gzip(METRICS);
    let server = TestServer::start(move |r, s, _| {
        if r.path == "/missing" {
            respond(s, "404 Not Found", &[], b"404 page not found\n");
        } else {
            respond(s, "200 OK", &[("Content-Encoding", "gzip")], &compressed);
        }
        After::KeepAlive
    });
    let client = HttpClient::new();
    client
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect("gzip");
    client
        .fetch(&req(server.url("/missing")), &mut Vec::new())
        .expect_err("404");
    client
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect("gzip again");
    assert_eq!(server.accepts(), 1);
}

#[test]
fn a_body_over_the_limit_drops_the_connection_and_the_next_scrape_reconnects() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let small = ScrapeRequest {
        body_size_limit: 4,
        ..req(server.url("/"))
    };
    client
        .fetch(&small, &mut Vec::new())
        .expect_err("over limit");
    let mut body = Vec::new();
    client
        .fetch(&req(server.url("/")), &mut body)
        .expect("fresh connection");
    assert_eq!(body, METRICS);
}

#[test]
fn redirects_are_followed_with_headers_and_same_host_auth() {
    let server = TestServer::start(|r, s, _| {
        match r.path.as_str() {
            "/old" => respond(s, "301 Moved Permanently", &[("Location", "/mid")], b""),
            "/mid" => respond(s, "302 Found", &[("Location", "/metrics")], b""),
            _ => respond(s, "200 OK", &[("Content-Type", TEXT)], METRICS),
        }
        After::KeepAlive
    });
    let r = ScrapeRequest {
        auth: Some(Auth::Bearer {
            kind: "Bearer".into(),
            credentials: SecretSource::Inline("t".into()),
        }),
        ..req(server.url("/old"))
    };
    let mut body = Vec::new();
    let got = HttpClient::new().fetch(&r, &mut body).expect("redirected");
    assert_eq!(body, METRICS);
    assert_eq!(got.content_type.as_deref(), Some(TEXT));
    let seen = server.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/old", "/mid", "/metrics"]);
    let last = &seen[2];
    assert_eq!(last.header("authorization"), Some("Bearer t"));
    assert_eq!(
        last.header("x-prometheus-scrape-timeout-seconds"),
        Some("2")
    );
    assert_eq!(last.header("accept"), Some(r.accept.as_str()));
}

#[test]
fn redirect_loops_stop_with_an_error() {
    let server = TestServer::start(|_, s, _| {
        respond(s, "302 Found", &[("Location", "/again")], b"");
        After::KeepAlive
    });
    let err = HttpClient::new()
        .fetch(&req(server.url("/")), &mut Vec::new())
        .expect_err("loop");
    assert!(matches!(err, ScrapeError::Request { .. }), "{err:?}");
    assert!(err.to_string().contains("redirects"), "{err}");
    assert_eq!(
        server.seen().len(),
        11,
        "the first request and 10 redirects"
    );
}

#[test]
fn one_client_serves_many_workers_and_hosts() {
    let servers: Vec<TestServer> = (0..8).map(|_| ok_server(METRICS)).collect();
    let client = HttpClient::new();
    thread::scope(|scope| {
        for w in 0..4 {
            let (client, servers) = (&client, &servers);
            scope.spawn(move || {
                let mut body = Vec::new();
                for i in 0..16 {
                    let s = &servers[(w + i) % servers.len()];
                    client.fetch(&req(s.url("/")), &mut body).expect("fetch");
                    assert_eq!(body, METRICS);
                }
            });
        }
    });
    for s in &servers {
        // Concurrent scrapes of one host may each need a connection, never more.
        assert!(s.accepts() <= 4, "{}", s.accepts());
    }
}

// ---- open + BodyStream ----

#[test]
fn body_stream_is_send() {
    fn check<T: Send + 'static>() {}
    check::<BodyStream>();
}

/// A metrics body of about `size` bytes with varied label values and numbers.
fn big_exposition(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut i = 0u64;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                "http_requests_total{{code=\"{}\",handler=\"/api/v1/h{}\",instance=\"10.0.{}.{}:9100\"}} {}\n",
                200 + i % 7,
                i % 113,
                i % 251,
                i % 241,
                i.wrapping_mul(2_654_435_761) % 1_000_003
            )
            .as_bytes(),
        );
        i += 1;
    }
    out
}

#[test]
fn streamed_gzip_body_in_pieces_equals_fetch() {
    let plain = big_exposition(20 << 20);
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(&plain).expect("gzip write");
    let server = gzip_server(e.finish().expect("gzip finish"));
    let client = HttpClient::new();
    let r = req(server.url("/metrics"));

    let mut fetched_body = Vec::new();
    let fetched = client.fetch(&r, &mut fetched_body).expect("fetch");
    assert!(fetched_body == plain, "fetch decoded the body");

    const PIECE: usize = 1 << 20;
    let mut stream = client.open(&r).expect("open");
    assert_eq!(stream.content_type(), Some(TEXT));
    let mut streamed = Vec::with_capacity(plain.len());
    let mut piece = Vec::with_capacity(PIECE);
    let mut pieces = 0;
    loop {
        piece.clear();
        let n = stream.read_into(&mut piece, PIECE).expect("piece");
        assert_eq!(n, piece.len());
        if n == 0 {
            break;
        }
        assert!(n <= PIECE);
        assert!(
            n == PIECE || streamed.len() + n == plain.len(),
            "only the last piece is short"
        );
        assert_eq!(piece.capacity(), PIECE, "a reused piece buffer never grows");
        streamed.extend_from_slice(&piece);
        pieces += 1;
    }
    assert!(streamed == fetched_body, "streamed body equals fetch's");
    assert_eq!(pieces, plain.len().div_ceil(PIECE));
    assert_eq!(stream.body_len(), fetched.body_len);
    assert_eq!(stream.compressed_len(), fetched.compressed_len);
    assert!(stream.compressed_len() < plain.len() as u64 / 3);
    assert_eq!(stream.read_into(&mut piece, PIECE).expect("after end"), 0);
    drop(stream);
    assert_eq!(
        server.accepts(),
        1,
        "fetch and stream shared one connection"
    );
}

#[test]
fn body_size_limit_is_hit_in_the_middle_of_a_stream() {
    let body: &'static [u8] = Box::leak(vec![b'x'; 10_000].into_boxed_slice());
    let server = ok_server(body);
    let client = HttpClient::new();
    let mut stream = client
        .open(&ScrapeRequest {
            body_size_limit: 3_500,
            ..req(server.url("/"))
        })
        .expect("open");
    let mut buf = Vec::new();
    for _ in 0..3 {
        assert_eq!(
            stream.read_into(&mut buf, 1_000).expect("under limit"),
            1_000
        );
    }
    let err = stream.read_into(&mut buf, 1_000).expect_err("limit");
    assert!(err.is_body_size_limit(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Get {:?}: body size limit exceeded (limit 3500 bytes)",
            server.url("/")
        )
    );
    assert_eq!(buf.len(), 3_500, "reading stops exactly at the limit");
    assert_eq!(stream.body_len(), 3_500);
}

#[test]
fn a_body_stalling_mid_stream_times_out_in_the_body_phase() {
    let server = TestServer::start(|_, s, stop| {
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        head.extend_from_slice(&[b'y'; 1_000]);
        let _ = s.write_all(&head);
        idle(stop, ENDLESS);
        After::Close
    });
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    let mut stream = HttpClient::new()
        .open(&ScrapeRequest {
            timeout,
            ..req(server.url("/"))
        })
        .expect("headers arrive");
    let mut buf = Vec::new();
    assert_eq!(
        stream.read_into(&mut buf, 1_000).expect("first piece"),
        1_000
    );
    let err = stream.read_into(&mut buf, 1_000).expect_err("stall");
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            ScrapeError::Timeout {
                phase: TimeoutPhase::Body,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with("exceeded while reading the body"),
        "{err}"
    );
    // One deadline from `open`, not one per read.
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + Duration::from_millis(700), "{took:?}");
}

#[test]
fn keep_alive_survives_fully_streamed_bodies() {
    // Piece sizes that end exactly on the body's end and ones that do not, over
    // Content-Length and chunked bodies.
    let server = TestServer::start(|r, s, _| {
        if r.path == "/chunked" {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5\r\nup 1\n\r\n6\r\nx 2.5\n\r\n0\r\n\r\n",
            );
        } else {
            respond(s, "200 OK", &[("Content-Type", TEXT)], METRICS);
        }
        After::KeepAlive
    });
    let client = HttpClient::new();
    let cases: [(&str, &[u8]); 2] = [("/", METRICS), ("/chunked", b"up 1\nx 2.5\n")];
    for (path, want) in cases {
        for piece in [1, 7, want.len(), want.len() + 1] {
            let mut stream = client.open(&req(server.url(path))).expect("open");
            let mut body = Vec::new();
            while stream.read_into(&mut body, piece).expect("read") > 0 {}
            assert_eq!(body, want, "{path} in pieces of {piece}");
            assert_eq!(stream.body_len(), want.len());
        }
    }
    assert_eq!(server.accepts(), 1, "every stream returned the connection");
}

// ---- connection buffers ----

#[test]
fn idle_pooled_connections_hold_no_buffers() {
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let r = req(server.url("/metrics"));
    assert_eq!(client.connection_buffer_bytes(), 0);
    let mut stream = client.open(&r).expect("open");
    assert!(
        client.connection_buffer_bytes() > 0,
        "a connection in use has its input buffer"
    );
    let mut body = Vec::new();
    while stream.read_into(&mut body, 1 << 20).expect("read") > 0 {}
    drop(stream);
    assert_eq!(client.connection_buffer_bytes(), 0, "released when pooled");
    client
        .fetch(&r, &mut body)
        .expect("fetch on the pooled connection");
    assert_eq!(body, METRICS);
    assert_eq!(client.connection_buffer_bytes(), 0);
    assert_eq!(server.accepts(), 1, "the connection was kept");
    // A connection dropped mid-body (limit hit) gives its buffers back too.
    let body_big: &'static [u8] = Box::leak(vec![b'z'; 100_000].into_boxed_slice());
    let big = ok_server(body_big);
    client
        .fetch(
            &ScrapeRequest {
                body_size_limit: 10,
                ..req(big.url("/"))
            },
            &mut body,
        )
        .expect_err("limit");
    assert_eq!(client.connection_buffer_bytes(), 0);
}

#[test]
fn long_request_lines_and_headers_are_sent_whole() {
    // Each line alone is well over half the output buffer; together far over it.
    let server = ok_server(METRICS);
    let client = HttpClient::new();
    let query = "x".repeat(OUTPUT_BUFFER_SIZE - 1_024);
    let token = "t".repeat(OUTPUT_BUFFER_SIZE - 1_024);
    let url = server.url(&format!("/metrics?q={query}"));
    let mut body = Vec::new();
    for _ in 0..2 {
        client
            .fetch(
                &ScrapeRequest {
                    auth: Some(Auth::Bearer {
                        kind: "Bearer".into(),
                        credentials: SecretSource::Inline(token.clone()),
                    }),
                    ..req(url.clone())
                },
                &mut body,
            )
            .expect("long request");
        assert_eq!(body, METRICS);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.path, format!("/metrics?q={query}"));
        assert_eq!(
            s.header("Authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
    assert_eq!(server.accepts(), 1);
}

#[test]
fn response_header_just_under_the_limit_is_accepted() {
    let server = TestServer::start(|_, s, _| {
        // Status line + Content-Length + padding + blank line = MAX_RESPONSE_HEADER_SIZE.
        let fixed = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Pad: \r\n\r\n",
            METRICS.len()
        );
        let pad = "p".repeat(MAX_RESPONSE_HEADER_SIZE - fixed.len());
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Pad: {pad}\r\n\r\n",
            METRICS.len()
        )
        .into_bytes();
        assert_eq!(out.len(), MAX_RESPONSE_HEADER_SIZE);
        out.extend_from_slice(METRICS);
        let _ = s.write_all(&out);
        After::KeepAlive
    });
    let client = HttpClient::new();
    let mut body = Vec::new();
    for _ in 0..2 {
        client
            .fetch(&req(server.url("/")), &mut body)
            .expect("largest allowed header");
        assert_eq!(body, METRICS);
    }
    assert_eq!(server.accepts(), 1);
}

/// Copies `from` to `to` until either side closes or the server stops; `from` has a
/// short read timeout so that the stop flag is seen.
fn pipe(mut from: TcpStream, mut to: TcpStream, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn connect_proxy_tunnels_through_the_idle_free_transport() {
    let target = ok_server(METRICS);
    let proxy = TestServer::start(|r, s, stop| {
        let dest = r.head.split(' ').nth(1).unwrap_or_default().to_owned();
        let Ok(upstream) = TcpStream::connect(&dest) else {
            respond(s, "502 Bad Gateway", &[], b"");
            return After::Close;
        };
        let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        let (Ok(client_side), Ok(upstream_side)) = (s.try_clone(), upstream.try_clone()) else {
            return After::Close;
        };
        thread::scope(|scope| {
            scope.spawn(|| pipe(client_side, upstream, stop));
            let Ok(client_write) = s.try_clone() else {
                return;
            };
            pipe(upstream_side, client_write, stop);
        });
        After::Close
    });
    let t = Transport::new(None, Some(&format!("http://{}", proxy.addr))).expect("proxy");
    let client = HttpClient::with_transport(t);
    let mut body = Vec::new();
    for _ in 0..2 {
        client
            .fetch(&req(target.url("/metrics")), &mut body)
            .expect("through the proxy");
        assert_eq!(body, METRICS);
    }
    assert!(proxy.seen()[0].head.starts_with("CONNECT 127.0.0.1:"));
    assert_eq!(proxy.accepts(), 1, "the tunnel was kept alive");
    assert_eq!(target.accepts(), 1);
    assert_eq!(client.connection_buffer_bytes(), 0);
}
