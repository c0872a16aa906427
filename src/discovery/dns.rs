//! `dns_sd_configs`: targets from DNS SRV, A or AAAA records, looked up every
//! `refresh_interval` (default 30s) by a small synchronous resolver client.
//!
//! Runs on its provider thread (see the parent module). Names are looked up one after
//! the other; each lookup is a UDP exchange (`std::net::UdpSocket`, a fresh socket and
//! random ID per query, answers from other addresses or with another ID or question are
//! ignored) retried over TCP when the answer is truncated, so nothing here needs an
//! async runtime or a resolver library.
//!
//! Semantics, as in Prometheus (`discovery/dns`): each name is one group whose source is
//! the name; each SRV answer becomes `<target without the final dot>:<port>` and each
//! A/AAAA answer `<ip>:<port>` (IPv6 in brackets), with `__meta_dns_name` (the name as
//! configured), `__meta_dns_srv_record_target` (with its final dot) and
//! `__meta_dns_srv_record_port` (both empty, so absent, for A and AAAA); CNAMEs in the
//! answer are skipped. Resolution follows Prometheus's `lookupWithSearchPath`: the
//! search list of /etc/resolv.conf is applied (a name with more than `ndots` labels is
//! tried as-is first); each candidate asks the servers in order until one answers
//! NOERROR or NXDOMAIN; the first NOERROR answer wins, and all-NXDOMAIN means "no
//! records". A name for which some candidate got no viable answer from any server is a
//! lookup failure: it is logged, counted in `prometheus_sd_dns_lookup_failures_total`,
//! and the name keeps its last good group (a new provider starts with none).
//!
//! Nameservers: /etc/resolv.conf (`nameserver`, `search`/`domain`, `options ndots:N
//! timeout:N attempts:N`), re-read at every refresh. scrapewheel extension: a config's
//! `nameservers = ["127.0.0.1:8600"]` asks those servers instead, with names taken as
//! absolute (no search list). Each server gets `attempts` tries (default 2) of `timeout`
//! each (default 5s) before the next one is asked.

use super::{Provider, ProviderContext, TargetGroup};
use crate::config::{DnsRecordType, DnsSdConfig};
use crate::labels::{LabelSet, ADDRESS};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const NAME_LABEL: &str = "__meta_dns_name";
pub const SRV_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
pub const SRV_PORT_LABEL: &str = "__meta_dns_srv_record_port";

/// Where the system's resolver configuration lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;
/// The UDP payload size advertised with EDNS0 (miekg/dns's default, which Prometheus
/// sends).
const EDNS_UDP_SIZE: u16 = 4096;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ATTEMPTS: u32 = 2;

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// /etc/resolv.conf (or the given file) could not be read.
    #[error("could not load {}: {source}", .path.display())]
    ResolvConf { path: PathBuf, source: io::Error },
    /// The resolver configuration names no server.
    #[error("no nameserver configured in {}", .path.display())]
    NoServers { path: PathBuf },
    /// The name cannot be encoded (empty label, label over 63 or name over 255 bytes).
    #[error("invalid DNS name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    /// Sending or receiving failed.
    #[error("{server}: {source}")]
    Io {
        server: SocketAddr,
        source: io::Error,
    },
    /// No matching answer within the timeout.
    #[error("{server}: no answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    /// The answer could not be parsed.
    #[error("{server}: malformed answer: {reason}")]
    Malformed {
        server: SocketAddr,
        reason: &'static str,
    },
    /// Every server failed for one of the name's candidates.
    #[error("could not resolve {name:?}: all servers responded with errors to at least one search domain")]
    Unresolved { name: String },
}

/// Resolver settings: the servers to ask and how names are expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverConfig {
    pub servers: Vec<SocketAddr>,
    /// Suffixes tried per `ndots` (see [`ResolverConfig::candidates`]).
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl ResolverConfig {
    /// Explicit servers, names taken as absolute.
    pub fn with_servers(servers: Vec<SocketAddr>) -> ResolverConfig {
        ResolverConfig {
            servers,
            search: Vec::new(),
            ndots: 0,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// Reads a resolv.conf file.
    pub fn load(path: &Path) -> Result<ResolverConfig, DnsError> {
        let text = std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf {
            path: path.to_owned(),
            source,
        })?;
        let c = Self::parse(&text);
        if c.servers.is_empty() {
            return Err(DnsError::NoServers {
                path: path.to_owned(),
            });
        }
        Ok(c)
    }

    /// Parses resolv.conf text; unknown lines and options are ignored, as by glibc.
    pub fn parse(text: &str) -> ResolverConfig {
        let mut c = ResolverConfig {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A link-local IPv6 server may carry a zone (`fe80::1%eth0`), which
                    // std cannot express in a SocketAddr; such servers are skipped.
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        c.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                // The last of `search` and `domain` wins, as in glibc.
                Some("search") => c.search = words.map(fqdn).collect(),
                Some("domain") => c.search = words.next().map(fqdn).into_iter().collect(),
                Some("options") => {
                    for opt in words {
                        let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                        let n = v.parse::<u32>().ok();
                        match (k, n) {
                            ("ndots", Some(n)) => c.ndots = n.min(15) as usize,
                            ("timeout", Some(n)) => {
                                c.timeout = Duration::from_secs(u64::from(n.clamp(1, 30)))
                            }
                            ("attempts", Some(n)) => c.attempts = n.clamp(1, 5),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// The absolute names to try for `name`, as miekg/dns's `NameList`: an absolute name
    /// alone; otherwise with each search suffix, and the name itself first if it has
    /// more than `ndots` labels, last if not.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_string()];
        }
        let labels = name.split('.').filter(|l| !l.is_empty()).count();
        let has_ndots = labels > self.ndots;
        let abs = fqdn(name);
        let mut out = Vec::with_capacity(self.search.len() + 1);
        if has_ndots {
            out.push(abs.clone());
        }
        for s in &self.search {
            out.push(format!("{abs}{s}"));
        }
        if !has_ndots {
            out.push(abs);
        }
        out
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// One answer record's data.
#[derive(Debug, Clone, PartialEq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        /// Absolute, with its final dot.
        target: String,
    },
    Cname(String),
    Other(u16),
}

/// The parts of a response discovery uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: u16,
    pub truncated: bool,
    pub rcode: u8,
    /// (name, type) of each question.
    pub questions: Vec<(String, u16)>,
    pub answers: Vec<RData>,
}

/// Encodes a recursive query for `name` (absolute or not) with an EDNS0 OPT record when
/// `edns` is set.
pub fn build_query(id: u16, name: &str, qtype: u16, edns: bool) -> Result<Vec<u8>, DnsError> {
    let bad = |reason| DnsError::Name {
        name: name.to_string(),
        reason,
    };
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0, 0, 0, 0]); // ANCOUNT, NSCOUNT
    q.extend_from_slice(&u16::from(edns).to_be_bytes()); // ARCOUNT
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut encoded = 1; // the root label
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(bad("empty label"));
            }
            if label.len() > 63 {
                return Err(bad("label longer than 63 bytes"));
            }
            encoded += 1 + label.len();
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
    }
    if encoded > 255 {
        return Err(bad("name longer than 255 bytes"));
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        q.push(0); // root owner
        q.extend_from_slice(&TYPE_OPT.to_be_bytes());
        q.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes()); // CLASS: UDP payload size
        q.extend_from_slice(&[0, 0, 0, 0]); // TTL: extended RCODE, version, flags
        q.extend_from_slice(&[0, 0]); // RDLENGTH
    }
    Ok(q)
}

/// A bounds-checked reader over a message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

type ParseResult<T> = Result<T, &'static str>;

impl Reader<'_> {
    fn u8(&mut self) -> ParseResult<u8> {
        let b = *self.buf.get(self.pos).ok_or("message too short")?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> ParseResult<u16> {
        Ok(u16::from(self.u8()?) << 8 | u16::from(self.u8()?))
    }
    fn u32(&mut self) -> ParseResult<u32> {
        Ok(u32::from(self.u16()?) << 16 | u32::from(self.u16()?))
    }
    fn bytes(&mut self, n: usize) -> ParseResult<&[u8]> {
        let end = self.pos.checked_add(n).ok_or("message too short")?;
        let s = self.buf.get(self.pos..end).ok_or("message too short")?;
        self.pos = end;
        Ok(s)
    }

    /// A possibly compressed name at the current position, as absolute text with its
    /// final dot. Pointers must point backwards, which also rules out loops.
    fn name(&mut self) -> ParseResult<String> {
        let mut out = String::new();
        let mut pos = self.pos;
        let mut resume: Option<usize> = None;
        let mut total = 0usize;
        loop {
            let len = *self.buf.get(pos).ok_or("name runs past the message")?;
            match len & 0xC0 {
                0x00 => {
                    pos += 1;
                    if len == 0 {
                        break;
                    }
                    let label = self
                        .buf
                        .get(pos..pos + usize::from(len))
                        .ok_or("label runs past the message")?;
                    total += 1 + label.len();
                    if total > 255 {
                        return Err("name longer than 255 bytes");
                    }
                    push_label(&mut out, label);
                    pos += usize::from(len);
                }
                0xC0 => {
                    let lo = *self
                        .buf
                        .get(pos + 1)
                        .ok_or("pointer runs past the message")?;
                    let target = usize::from(len & 0x3F) << 8 | usize::from(lo);
                    if target >= pos {
                        return Err("compression pointer does not point backwards");
                    }
                    if resume.is_none() {
                        resume = Some(pos + 2);
                    }
                    pos = target;
                }
                _ => return Err("unsupported label type"),
            }
        }
        self.pos = resume.unwrap_or(pos);
        if out.is_empty() {
            out.push('.');
        }
        Ok(out)
    }
}

/// Appends a label and its dot, escaping dots, backslashes and unprintable bytes as
/// miekg/dns prints them (`\.`, `\\`, `\DDD`).
fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x21..=0x7E => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('.');
}

/// Parses a response: header, questions and the answer section (authority and
/// additional records are not needed).
pub fn parse_message(buf: &[u8]) -> ParseResult<Message> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err("not a response");
    }
    let qd = r.u16()?;
    let an = r.u16()?;
    let _ns = r.u16()?;
    let _ar = r.u16()?;
    let mut questions = Vec::with_capacity(usize::from(qd.min(4)));
    for _ in 0..qd {
        let name = r.name()?;
        let qtype = r.u16()?;
        let _class = r.u16()?;
        questions.push((name, qtype));
    }
    let mut answers = Vec::with_capacity(usize::from(an.min(64)));
    for _ in 0..an {
        let _owner = r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        let _ttl = r.u32()?;
        let rdlen = usize::from(r.u16()?);
        let start = r.pos;
        let end = start + rdlen;
        if end > buf.len() {
            return Err("record data runs past the message");
        }
        let data = match rtype {
            TYPE_A => {
                let b = r.bytes(rdlen)?;
                let b: [u8; 4] = b.try_into().map_err(|_| "A record is not 4 bytes")?;
                RData::A(Ipv4Addr::from(b))
            }
            TYPE_AAAA => {
                let b = r.bytes(rdlen)?;
                let b: [u8; 16] = b.try_into().map_err(|_| "AAAA record is not 16 bytes")?;
                RData::Aaaa(Ipv6Addr::from(b))
            }
            TYPE_SRV => {
                let priority = r.u16()?;
                let weight = r.u16()?;
                let port = r.u16()?;
                let target = r.name()?;
                if r.pos != end {
                    return Err("SRV record length mismatch");
                }
                RData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                }
            }
            TYPE_CNAME => {
                let target = r.name()?;
                if r.pos != end {
                    return Err("CNAME record length mismatch");
                }
                RData::Cname(target)
            }
            other => {
                r.pos = end;
                RData::Other(other)
            }
        };
        answers.push(data);
    }
    Ok(Message {
        id,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x000F) as u8,
        questions,
        answers,
    })
}

/// A random query ID (from the kernel; a clock-derived value if that fails).
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: b is valid for writes of b.len() bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 2 {
        return u16::from_ne_bytes(b);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

/// Whether `m` answers our query (same ID and question; names compare case-insensitively).
fn answers_query(m: &Message, id: u16, name: &str, qtype: u16) -> bool {
    m.id == id
        && m.questions.len() == 1
        && m.questions[0].1 == qtype
        && m.questions[0].0.eq_ignore_ascii_case(&fqdn(name))
}

/// One query to one server: UDP, then TCP if the answer is truncated.
pub fn exchange(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let io_err = |source| DnsError::Io { server, source };
    let id = random_id();
    let query = build_query(id, name, qtype, true)?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).map_err(io_err)?;
    sock.connect(server).map_err(io_err)?;
    sock.send(&query).map_err(io_err)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DnsError::Timeout { server, timeout });
        }
        sock.set_read_timeout(Some(left)).map_err(io_err)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(DnsError::Timeout { server, timeout })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        // Anything that is not an answer to this query (a late answer to an earlier
        // one, garbage) is ignored, as a stub resolver does.
        let Ok(m) = parse_message(&buf[..n]) else {
            continue;
        };
        if !answers_query(&m, id, name, qtype) {
            continue;
        }
        if m.truncated {
            let left = deadline.saturating_duration_since(Instant::now());
            return exchange_tcp(server, name, qtype, left.max(Duration::from_millis(100)));
        }
        return Ok(m);
    }
}

/// The same query over TCP (length-prefixed, no EDNS0), for truncated UDP answers.
fn exchange_tcp(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let io_err = |source: io::Error| match source.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            DnsError::Timeout { server, timeout }
        }
        _ => DnsError::Io { server, source },
    };
    let id = random_id();
    let query = build_query(id, name, qtype, false)?;
    let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(&query);
    stream.write_all(&framed).map_err(io_err)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(io_err)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).map_err(io_err)?;
    let m = parse_message(&buf).map_err(|reason| DnsError::Malformed { server, reason })?;
    if !answers_query(&m, id, name, qtype) {
        return Err(DnsError::Malformed {
            server,
            reason: "answer does not match the question",
        });
    }
    if m.truncated {
        return Err(DnsError::Malformed {
            server,
            reason: "truncated answer over TCP",
        });
    }
    Ok(m)
}

/// Looks `name` up as Prometheus's `lookupWithSearchPath` does (see the module docs).
/// `warn` is told about each server that failed.
pub fn lookup(
    conf: &ResolverConfig,
    name: &str,
    qtype: u16,
    warn: &mut dyn FnMut(&DnsError),
) -> Result<Message, DnsError> {
    let mut all_valid = true;
    for candidate in conf.candidates(name) {
        match lookup_any_server(conf, &candidate, qtype, warn) {
            Some(m) if m.rcode == RCODE_NOERROR => return Ok(m),
            Some(_) => {} // NXDOMAIN: try the next candidate
            None => all_valid = false,
        }
    }
    if all_valid {
        return Ok(Message {
            id: 0,
            truncated: false,
            rcode: RCODE_NXDOMAIN,
            questions: Vec::new(),
            answers: Vec::new(),
        });
    }
    Err(DnsError::Unresolved {
        name: name.to_string(),
    })
}

/// The first viable answer (NOERROR or NXDOMAIN) from the servers in order.
fn lookup_any_server(
    conf: &ResolverConfig,
    name: &str,
    qtype: u16,
    warn: &mut dyn FnMut(&DnsError),
) -> Option<Message> {
    for server in &conf.servers {
        for _ in 0..conf.attempts.max(1) {
            match exchange(*server, name, qtype, conf.timeout) {
                Ok(m) if m.rcode == RCODE_NOERROR || m.rcode == RCODE_NXDOMAIN => return Some(m),
                // SERVFAIL, REFUSED, …: this server has no viable answer; next server.
                Ok(_) => break,
                // A lost datagram is worth another try; a bad name is not.
                Err(e @ DnsError::Name { .. }) => {
                    warn(&e);
                    return None;
                }
                Err(e) => warn(&e),
            }
        }
    }
    None
}

/// `host:port`, with IPv6 hosts in brackets (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The group for one name's answer.
pub fn group_for(name: &str, answers: &[RData], port: u16) -> TargetGroup {
    let mut targets = Vec::with_capacity(answers.len());
    for a in answers {
        let (address, srv_target, srv_port) = match a {
            RData::Srv {
                port: p, target, ..
            } => (
                join_host_port(target.trim_end_matches('.'), *p),
                target.clone(),
                p.to_string(),
            ),
            RData::A(ip) => (
                join_host_port(&ip.to_string(), port),
                String::new(),
                String::new(),
            ),
            RData::Aaaa(ip) => (
                join_host_port(&ip.to_string(), port),
                String::new(),
                String::new(),
            ),
            // CNAMEs come with A/AAAA answers for aliases; other types are not targets.
            RData::Cname(_) | RData::Other(_) => continue,
        };
        targets.push(LabelSet::from_pairs([
            (ADDRESS, address),
            (NAME_LABEL, name.to_string()),
            (SRV_TARGET_LABEL, srv_target),
            (SRV_PORT_LABEL, srv_port),
        ]));
    }
    TargetGroup {
        source: name.to_string(),
        targets,
        labels: LabelSet::new(),
    }
}

pub(super) struct DnsProvider {
    config: DnsSdConfig,
    ctx: ProviderContext,
    qtype: u16,
    /// Per configured name, its last good group.
    last: Vec<Option<TargetGroup>>,
}

impl DnsProvider {
    pub(super) fn new(config: DnsSdConfig, ctx: ProviderContext) -> DnsProvider {
        let qtype = match config.record_type {
            DnsRecordType::Srv => TYPE_SRV,
            DnsRecordType::A => TYPE_A,
            DnsRecordType::Aaaa => TYPE_AAAA,
        };
        let last = vec![None; config.names.len()];
        DnsProvider {
            config,
            ctx,
            qtype,
            last,
        }
    }

    fn resolver(&self) -> Result<ResolverConfig, DnsError> {
        if self.config.nameservers.is_empty() {
            ResolverConfig::load(Path::new(RESOLV_CONF))
        } else {
            Ok(ResolverConfig::with_servers(
                self.config.nameservers.clone(),
            ))
        }
    }
}

impl Provider for DnsProvider {
    fn step(&mut self) -> (Option<Vec<TargetGroup>>, Duration) {
        let started = Instant::now();
        let resolver = self.resolver();
        let job = &self.ctx.job;
        for (i, name) in self.config.names.iter().enumerate() {
            self.ctx.metrics.dns_lookups.inc();
            let result = match &resolver {
                Ok(r) => lookup(r, name, self.qtype, &mut |e| {
                    crate::warn!(
                        "dns_sd: DNS resolution failed",
                        job = job,
                        name = name,
                        err = e
                    )
                }),
                Err(e) => Err(DnsError::ResolvConf {
                    path: PathBuf::from(RESOLV_CONF),
                    source: io::Error::other(e.to_string()),
                }),
            };
            match result {
                Ok(m) => self.last[i] = Some(group_for(name, &m.answers, self.config.port)),
                Err(e) => {
                    self.ctx.metrics.dns_lookup_failures.inc();
                    crate::error!(
                        "dns_sd: lookup failed; keeping the name's last good targets",
                        job = job,
                        name = name,
                        err = e
                    );
                }
            }
        }
        self.ctx
            .refresh_duration
            .observe(started.elapsed().as_secs_f64());
        let groups = self.last.iter().flatten().cloned().collect();
        (Some(groups), self.config.refresh_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response to `query` with the given answer records (already encoded).
    fn response(query: &[u8], rcode: u8, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut m = query.to_vec();
        m.truncate(12 + question_len(query));
        m[2] |= 0x80; // QR
        m[3] = (m[3] & 0xF0) | rcode;
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        m[10..12].copy_from_slice(&[0, 0]);
        for a in answers {
            m.extend_from_slice(a);
        }
        m
    }

    fn question_len(query: &[u8]) -> usize {
        let mut i = 12;
        while query[i] != 0 {
            i += 1 + usize::from(query[i]);
        }
        i + 1 + 4 - 12
    }

    fn record(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    #[test]
    fn queries_encode_names_and_edns() {
        let q = build_query(0xBEEF, "_node._tcp.example.com", TYPE_SRV, true).expect("query");
        assert_eq!(&q[..2], &[0xBE, 0xEF]);
        assert_eq!(&q[2..4], &[0x01, 0x00], "recursion desired");
        assert_eq!(&q[10..12], &[0, 1], "one additional: OPT");
        assert_eq!(&q[12..12 + 24], b"\x05_node\x04_tcp\x07example\x03com\x00");
        assert_eq!(&q[36..40], &[0, 33, 0, 1]);
        assert_eq!(&q[40..], &[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let abs = build_query(1, "a.b.", TYPE_A, false).expect("abs");
        assert_eq!(&abs[12..], b"\x01a\x01b\x00\x00\x01\x00\x01");
        assert!(build_query(1, "a..b", TYPE_A, false).is_err());
        assert!(build_query(1, &"x".repeat(64), TYPE_A, false).is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(build_query(1, &long, TYPE_A, false).is_err());
    }

    #[test]
    fn answers_parse_with_name_compression() {
        let q = build_query(7, "_m._tcp.sd.test", TYPE_SRV, false).expect("query");
        // Owner: pointer to the question name (offset 12). Target "node1" + pointer to
        // "sd.test" inside the question (offset 12 + 3 + 5 = 20).
        let mut srv = vec![0, 10, 0, 5, 0x23, 0x82];
        srv.extend_from_slice(b"\x05node1\xC0\x14");
        let a = [127, 0, 0, 1];
        let resp = response(
            &q,
            0,
            &[
                record(&[0xC0, 12], TYPE_SRV, &srv),
                record(&[0xC0, 12], TYPE_A, &a),
                record(&[0xC0, 12], 16, b"\x03txt"),
            ],
        );
        let m = parse_message(&resp).expect("parse");
        assert_eq!(m.id, 7);
        assert_eq!(m.rcode, 0);
        assert!(!m.truncated);
        assert_eq!(m.questions, [("_m._tcp.sd.test.".to_string(), TYPE_SRV)]);
        assert_eq!(
            m.answers,
            [
                RData::Srv {
                    priority: 10,
                    weight: 5,
                    port: 9090,
                    target: "node1.sd.test.".into()
                },
                RData::A(Ipv4Addr::LOCALHOST),
                RData::Other(16),
            ]
        );
        assert!(answers_query(&m, 7, "_M._tcp.SD.test", TYPE_SRV));
        assert!(!answers_query(&m, 8, "_m._tcp.sd.test", TYPE_SRV));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let q = build_query(7, "a.test", TYPE_A, false).expect("query");
        let good = response(&q, 0, &[record(&[0xC0, 12], TYPE_A, &[1, 2, 3, 4])]);
        for cut in 0..good.len() {
            assert!(parse_message(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A pointer to itself, and one forward.
        let mut looped = response(&q, 0, &[record(&[0xC0, 0], TYPE_A, &[1, 2, 3, 4])]);
        let owner = 12 + question_len(&q);
        looped[owner..owner + 2].copy_from_slice(&[0xC0, owner as u8]);
        assert!(parse_message(&looped).is_err());
        let wrong_len = response(&q, 0, &[record(&[0xC0, 12], TYPE_A, &[1, 2, 3])]);
        assert!(parse_message(&wrong_len).is_err());
        let mut garbage = vec![0xFFu8; 300];
        garbage[2] = 0x80;
        assert!(parse_message(&garbage).is_err());
    }

    #[test]
    fn resolv_conf_and_search_candidates_follow_miekg() {
        let c = ResolverConfig::parse(
            "# comment\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\n\
             search corp.example. example.org\noptions ndots:2 timeout:1 attempts:3 rotate\n",
        );
        assert_eq!(
            c.servers,
            [
                "10.0.0.2:53".parse::<SocketAddr>().expect("v4"),
                "[::1]:53".parse().expect("v6")
            ]
        );
        assert_eq!(c.search, ["corp.example.", "example.org."]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (2, Duration::from_secs(1), 3)
        );
        assert_eq!(
            c.candidates("web"),
            ["web.corp.example.", "web.example.org.", "web."]
        );
        assert_eq!(
            c.candidates("a.b.c"),
            ["a.b.c.", "a.b.c.corp.example.", "a.b.c.example.org."]
        );
        assert_eq!(c.candidates("abs.name."), ["abs.name."]);
        let explicit = ResolverConfig::with_servers(vec![]);
        assert_eq!(explicit.candidates("web"), ["web."]);
    }

    #[test]
    fn groups_carry_prometheus_meta_labels() {
        let g = group_for(
            "_m._tcp.sd.test",
            &[
                RData::Srv {
                    priority: 0,
                    weight: 0,
                    port: 9100,
                    target: "node1.sd.test.".into(),
                },
                RData::Cname("x.".into()),
            ],
            0,
        );
        assert_eq!(g.source, "_m._tcp.sd.test");
        let t = &g.targets[0];
        assert_eq!(t.get(ADDRESS), Some("node1.sd.test:9100"));
        assert_eq!(t.get(NAME_LABEL), Some("_m._tcp.sd.test"));
        assert_eq!(t.get(SRV_TARGET_LABEL), Some("node1.sd.test."));
        assert_eq!(t.get(SRV_PORT_LABEL), Some("9100"));
        assert_eq!(g.targets.len(), 1, "CNAMEs are skipped");

        let g = group_for(
            "n.sd.test",
            &[
                RData::A(Ipv4Addr::new(10, 0, 0, 1)),
                RData::Aaaa(Ipv6Addr::LOCALHOST),
            ],
            9100,
        );
        assert_eq!(g.targets[0].get(ADDRESS), Some("10.0.0.1:9100"));
        assert_eq!(g.targets[1].get(ADDRESS), Some("[::1]:9100"));
        assert_eq!(g.targets[0].get(SRV_TARGET_LABEL), None);
    }

    /// A one-shot UDP server that answers the first query with `reply(query)`.
    fn serve_once(reply: impl FnOnce(&[u8]) -> Vec<u8> + Send + 'static) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&reply(&buf[..n]), peer);
            }
        });
        addr
    }

    #[test]
    fn exchange_ignores_mismatched_ids_and_falls_back_to_tcp_when_truncated() {
        // The UDP answer is truncated; the TCP server answers fully.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp bind");
        let addr = tcp.local_addr().expect("addr");
        let udp = UdpSocket::bind(addr).expect("same port over UDP");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                let q = buf[..n].to_vec();
                let mut wrong = response(&q, 0, &[]);
                wrong[0] ^= 0xFF;
                let _ = udp.send_to(&wrong, peer);
                let mut tc = response(&q, 0, &[]);
                tc[2] |= 0x02;
                let _ = udp.send_to(&tc, peer);
            }
        });
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = tcp.accept() {
                let mut len = [0u8; 2];
                let _ = s.read_exact(&mut len);
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let _ = s.read_exact(&mut q);
                let r = response(&q, 0, &[record(&[0xC0, 12], TYPE_A, &[127, 0, 0, 9])]);
                let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&r);
                let _ = s.write_all(&framed);
            }
        });
        let m = exchange(addr, "big.test", TYPE_A, Duration::from_secs(5)).expect("exchange");
        assert_eq!(m.answers, [RData::A(Ipv4Addr::new(127, 0, 0, 9))]);
    }

    #[test]
    fn lookup_follows_the_viable_answer_rules() {
        // SERVFAIL from the only server: the name is unresolved.
        let servfail = serve_once(|q| response(q, 2, &[]));
        let conf = ResolverConfig {
            attempts: 1,
            timeout: Duration::from_secs(5),
            ..ResolverConfig::with_servers(vec![servfail])
        };
        let mut warned = 0;
        let e = lookup(&conf, "x.test", TYPE_A, &mut |_| warned += 1).expect_err("servfail");
        assert!(matches!(e, DnsError::Unresolved { .. }), "{e}");

        // NXDOMAIN: a valid answer with no records.
        let nx = serve_once(|q| response(q, RCODE_NXDOMAIN, &[]));
        let conf = ResolverConfig {
            attempts: 1,
            ..ResolverConfig::with_servers(vec![nx])
        };
        let m = lookup(&conf, "x.test", TYPE_A, &mut |_| {}).expect("nxdomain");
        assert!(m.answers.is_empty());

        // A silent first server times out; the second answers.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ok = serve_once(|q| response(q, 0, &[record(&[0xC0, 12], TYPE_A, &[1, 1, 1, 1])]));
        let conf = ResolverConfig {
            attempts: 1,
            timeout: Duration::from_millis(200),
            ..ResolverConfig::with_servers(vec![silent.local_addr().expect("addr"), ok])
        };
        let mut warnings = Vec::new();
        let m = lookup(&conf, "x.test", TYPE_A, &mut |e| {
            warnings.push(e.to_string())
        })
        .expect("second server");
        assert_eq!(m.answers, [RData::A(Ipv4Addr::new(1, 1, 1, 1))]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no answer within"), "{warnings:?}");
    }
}
