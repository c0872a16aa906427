//! The TCP connections under every scrape agent: a ureq `Connector` and `Transport`
//! (ureq's `unversioned` transport API) that behave like ureq's own `TcpConnector`, except
//! that a connection holds its I/O buffers only while it is in use.
//!
//! Why: ureq's transports allocate an input and an output buffer per connection on first
//! use and keep both until the connection is dropped, so every idle keep-alive connection
//! in the pool costs `input + output` bytes (16 KiB with our sizes): ~32 MiB at 2,000
//! targets, most of issue 6's memory budget. Here the output buffer is released as soon as
//! the request has been sent (ureq writes every request from the buffer's start and always
//! transmits all of it), and the input buffer when ureq probes the connection with
//! `is_open` — which it does when it returns a connection to the pool (after checking
//! that no unread input is left) and when it takes one out — so an idle connection holds
//! a socket and ~200 bytes of bookkeeping. A connection in use has both buffers at their
//! configured sizes, exactly like ureq's `LazyBuffers`, so the limits they impose (longest
//! request line or header line ≤ output size; response header ≤ input size) are unchanged.
//! ureq's TLS (`RustlsConnector`) and CONNECT proxy connectors chain onto this transport
//! as they do onto ureq's; a TLS connection additionally keeps rustls's state and ureq's
//! plaintext buffers while idle.
//!
//! [`LiteralResolver`] keeps ureq from spawning a thread per request to resolve an IP
//! address.
//!
//! Starts no threads; a blocking call is bounded by the `NextTimeout` ureq passes in.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, NextTimeout, ShutdownHandle, Transport,
};
use ureq::Timeout;

/// The smallest time given to one address of a host with several, so that a nearly spent
/// deadline still makes a real attempt (ureq uses the same floor).
const MIN_PER_ADDRESS: Duration = Duration::from_millis(10);

/// Bytes of connection buffers currently allocated by all connections of one client.
pub(super) type HeldBytes = Arc<AtomicUsize>;

/// Opens plain TCP connections whose buffers are released while idle; passes an already
/// made transport (a CONNECT proxy tunnel) through untouched.
pub(super) struct TcpConnector {
    pub(super) held: HeldBytes,
}

impl fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConnector").finish()
    }
}

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(t) = chained {
            return Ok(Some(Either::A(t)));
        }
        let config = details.config;
        let stream = connect(&details.addrs, details.timeout)?;
        if config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let stream = Arc::new(stream);
        let handle: Weak<dyn ShutdownHandle> = Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>;
        (details.register_shutdown)(handle)?;
        Ok(Some(Either::B(TcpTransport {
            stream,
            buffers: IdleFreeBuffers::new(
                config.input_buffer_size(),
                config.output_buffer_size(),
                self.held.clone(),
            ),
            read_timeout: None,
            write_timeout: None,
        })))
    }
}

/// Tries the resolved addresses in order. Each gets an equal share of the time left, so
/// that one unreachable address cannot use up the whole scrape timeout.
fn connect(addrs: &[SocketAddr], timeout: NextTimeout) -> Result<TcpStream, ureq::Error> {
    let deadline = timeout.not_zero().map(|t| Instant::now() + *t);
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = match deadline {
            None => TcpStream::connect(addr),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ureq::Error::Timeout(Timeout::Connect));
                }
                let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
                TcpStream::connect_timeout(addr, share.max(MIN_PER_ADDRESS))
            }
        };
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if is_timeout(&e) => ureq::Error::Timeout(Timeout::Connect),
        Some(e) => ureq::Error::Io(e),
        None => ureq::Error::Io(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "no address to connect to",
        )),
    })
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// One TCP connection; see the module docs for its buffers.
pub(super) struct TcpTransport {
    /// Shared with the weak shutdown handle registered with the agent.
    stream: Arc<TcpStream>,
    buffers: IdleFreeBuffers,
    /// The socket timeouts last set, to skip a syscall when unchanged.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// Sets a socket timeout unless it is already the one in force.
fn set_timeout(
    stream: &TcpStream,
    current: &mut Option<Duration>,
    wanted: Option<Duration>,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    if *current != wanted {
        set(stream, wanted)?;
        *current = wanted;
    }
    Ok(())
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let wanted = timeout.not_zero().map(|t| *t);
        set_timeout(
            &self.stream,
            &mut self.write_timeout,
            wanted,
            TcpStream::set_write_timeout,
        )?;
        let output = self.buffers.output();
        let result = (&*self.stream).write_all(&output[..amount.min(output.len())]);
        // ureq writes each piece of the request from the buffer's start: nothing in it is
        // needed once it is sent.
        self.buffers.release_output();
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => Err(ureq::Error::Timeout(timeout.reason)),
            Err(e) => Err(e.into()),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let wanted = timeout.not_zero().map(|t| *t);
        set_timeout(
            &self.stream,
            &mut self.read_timeout,
            wanted,
            TcpStream::set_read_timeout,
        )?;
        let started = Instant::now();
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&*self.stream).read(input) {
                // Linux does not restart a socket read with SO_RCVTIMEO after a signal;
                // retry within what is left of the timeout.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let Some(limit) = wanted else {
                        return Err(e.into());
                    };
                    let left = limit.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(ureq::Error::Timeout(timeout.reason));
                    }
                    self.stream.set_read_timeout(Some(left))?;
                    self.read_timeout = Some(left);
                }
                Err(e) if is_timeout(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
                Err(e) => return Err(e.into()),
                Ok(n) => break n,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    /// Probes the socket the way ureq's own transport does (a non-blocking read that must
    /// find nothing), then releases the buffers: ureq calls this when the connection goes
    /// back to the pool and when it is taken out, before any request is written.
    fn is_open(&mut self) -> bool {
        let open = probe(&self.stream);
        self.buffers.release_idle();
        open
    }
}

/// True when the peer has neither closed the connection nor sent unexpected bytes: a
/// non-blocking peek must find nothing to read. One `recv` with `MSG_DONTWAIT`, where
/// switching the socket to non-blocking and back would cost two more system calls, twice
/// per scrape (ureq probes on checkout and on return).
fn probe(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: the descriptor is open for the life of `stream`, and the buffer is one
    // valid, writable byte that outlives the call.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_DONTWAIT | libc::MSG_PEEK,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// ureq's buffer contract (`Buffers`), with both buffers allocated on demand at their
/// configured sizes and released by [`release_output`](Self::release_output) and
/// [`release_idle`](Self::release_idle). The bytes allocated are added to `held`.
struct IdleFreeBuffers {
    input_size: usize,
    output_size: usize,
    /// Empty, or `input_size` (more only while sending a request body) bytes of which
    /// `consumed..filled` are unread input.
    input: Vec<u8>,
    filled: usize,
    consumed: usize,
    /// Empty, or `output_size` bytes.
    output: Vec<u8>,
    /// Whether the last `input_consume` took any bytes (ureq's progress rule).
    progress: bool,
    held: HeldBytes,
}

impl IdleFreeBuffers {
    fn new(input_size: usize, output_size: usize, held: HeldBytes) -> Self {
        IdleFreeBuffers {
            input_size: input_size.max(1),
            output_size: output_size.max(1),
            input: Vec::new(),
            filled: 0,
            consumed: 0,
            output: Vec::new(),
            progress: false,
            held,
        }
    }

    /// Resizes `buf` to `len` bytes, keeping `held` in step. A released buffer is parked
    /// in the thread's spares and a new one taken from there: zeroing and freeing 72 KiB
    /// per scrape was a few per cent of the agent's CPU. Growth is zeroed; a reused
    /// buffer's old bytes are never read (ureq reads only what it was told was filled).
    fn resize(held: &AtomicUsize, buf: &mut Vec<u8>, len: usize) {
        let before = buf.len();
        if len == 0 {
            spare::park(std::mem::take(buf));
        } else if buf.is_empty() {
            // One zeroed allocation (calloc), where growing element by element is a loop
            // over every byte in an unoptimised build.
            *buf = spare::take(len).unwrap_or_else(|| vec![0; len]);
        } else {
            buf.resize(len, 0);
        }
        if len > before {
            held.fetch_add(len - before, Ordering::Relaxed);
        } else {
            held.fetch_sub(before - len, Ordering::Relaxed);
        }
    }

    fn ensure_output(&mut self) {
        if self.output.len() < self.output_size {
            Self::resize(&self.held, &mut self.output, self.output_size);
        }
    }

    fn ensure_input(&mut self) {
        if self.input.len() < self.input_size {
            Self::resize(&self.held, &mut self.input, self.input_size);
        }
    }

    /// Moves unread input to the buffer's start once it is past the middle, so that the
    /// free space at the end stays large (ureq's `ConsumeBuf` rule).
    fn compact(&mut self) {
        if self.consumed == self.filled {
            self.consumed = 0;
            self.filled = 0;
        } else if self.consumed > 0 && self.filled > self.input.len() / 2 {
            self.input.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
    }

    fn release_output(&mut self) {
        Self::resize(&self.held, &mut self.output, 0);
    }

    /// Releases the output buffer, and the input buffer unless it holds unread bytes.
    fn release_idle(&mut self) {
        self.release_output();
        if self.consumed == self.filled {
            Self::resize(&self.held, &mut self.input, 0);
            self.consumed = 0;
            self.filled = 0;
        }
    }
}

/// Released connection buffers kept for the thread's next connection: one of each of
/// the two sizes in use (input and output), so a thread holds at most one pair beyond
/// its connections in flight, and threads that stop scraping hold nothing more than that.
mod spare {
    use std::cell::RefCell;

    const SLOTS: usize = 2;

    thread_local! {
        static SPARE: RefCell<[Vec<u8>; SLOTS]> = const { RefCell::new([Vec::new(), Vec::new()]) };
    }

    /// A parked buffer of exactly `len` bytes, if the thread has one.
    pub(super) fn take(len: usize) -> Option<Vec<u8>> {
        SPARE
            .try_with(|s| {
                let mut s = s.borrow_mut();
                let slot = s.iter_mut().find(|b| b.len() == len)?;
                Some(std::mem::take(slot))
            })
            .ok()
            .flatten()
    }

    /// Keeps `buf` if a slot is free and no parked buffer has its size; drops it otherwise.
    pub(super) fn park(buf: Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        // During thread exit the thread-local may be gone: the buffer is then dropped.
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.iter().any(|b| b.len() == buf.len()) {
                return;
            }
            if let Some(slot) = s.iter_mut().find(|b| b.is_empty()) {
                *slot = buf;
            }
        });
    }
}

impl Drop for IdleFreeBuffers {
    fn drop(&mut self) {
        self.held
            .fetch_sub(self.input.len() + self.output.len(), Ordering::Relaxed);
        spare::park(std::mem::take(&mut self.input));
        spare::park(std::mem::take(&mut self.output));
    }
}

impl Buffers for IdleFreeBuffers {
    fn output(&mut self) -> &mut [u8] {
        self.ensure_output();
        &mut self.output
    }

    fn input(&self) -> &[u8] {
        &self.input[self.consumed..self.filled]
    }

    fn input_append_buf(&mut self) -> &mut [u8] {
        self.ensure_input();
        self.compact();
        &mut self.input[self.filled..]
    }

    fn input_appended(&mut self, amount: usize) {
        self.filled = (self.filled + amount).min(self.input.len());
    }

    fn input_consume(&mut self, amount: usize) {
        self.progress = amount > 0;
        self.consumed = (self.consumed + amount).min(self.filled);
    }

    fn tmp_and_output(&mut self) -> (&mut [u8], &mut [u8]) {
        // Only used to send a request body (scrapes have none): ureq reads the body into
        // the input buffer's free space, which must be at least 10 KiB like ureq's own.
        const MIN_TMP: usize = 10 * 1024;
        self.ensure_input();
        self.ensure_output();
        self.compact();
        let free = self.input.len() - self.filled;
        if free < MIN_TMP {
            let len = self.input.len() + MIN_TMP - free;
            Self::resize(&self.held, &mut self.input, len);
        }
        (&mut self.input[self.filled..], &mut self.output)
    }

    fn can_use_input(&self) -> bool {
        self.filled > self.consumed && self.progress
    }
}

/// ureq resolves the URL's host on every request, pooled connection or not, and with a
/// timeout set (always, for us) its default resolver spawns a thread per request to bound
/// the lookup: a thread spawn per scrape, most of them for hosts that are IP literals
/// (pod IPs, loopback). This resolver answers IP literals itself and leaves names to
/// ureq's default.
#[derive(Debug, Default)]
pub struct LiteralResolver(DefaultResolver);

impl Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let literal = uri.host().and_then(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .ok()
        });
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => None,
        });
        match (literal, port) {
            (Some(ip), Some(port)) => {
                let mut addrs = self.empty();
                addrs.push(SocketAddr::new(ip, port));
                Ok(addrs)
            }
            _ => self.0.resolve(uri, config, timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{probe, spare};

    #[test]
    fn a_released_buffer_is_reused_by_the_threads_next_connection() {
        std::thread::spawn(|| {
            let mut input = vec![7u8; 4096];
            let ptr = input.as_ptr();
            input[0] = 1;
            spare::park(input);
            spare::park(vec![0u8; 4096]); // same size: dropped, the first stays
            spare::park(vec![0u8; 512]);
            spare::park(vec![0u8; 100]); // no free slot: dropped
            let again = spare::take(4096).expect("parked");
            assert_eq!((again.as_ptr(), again.len(), again[0]), (ptr, 4096, 1));
            assert!(spare::take(4096).is_none());
            assert_eq!(spare::take(512).map(|b| b.len()), Some(512));
            assert!(spare::take(100).is_none());
            // Another thread has spares of its own.
            spare::park(again);
            std::thread::spawn(|| assert!(spare::take(4096).is_none()))
                .join()
                .expect("other thread");
        })
        .join()
        .expect("test thread");
    }
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    /// Polls `probe` until it gives `want` (a peer's close or bytes take a moment to
    /// arrive on loopback), failing after 5 s.
    fn until(stream: &TcpStream, want: bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while probe(stream) != want {
            assert!(Instant::now() < deadline, "probe never gave {want}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn probe_tells_open_from_closed_or_unexpected_bytes_and_never_blocks() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");

        let quiet = TcpStream::connect(addr).expect("connect");
        let (_peer, _) = listener.accept().expect("accept");
        assert!(probe(&quiet), "an idle open connection is open");
        // The probe left the socket blocking: a read with a timeout waits, finds nothing.
        quiet
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        assert!(std::io::Read::read(&mut &quiet, &mut [0u8; 1]).is_err());

        let chatty = TcpStream::connect(addr).expect("connect");
        let (mut peer, _) = listener.accept().expect("accept");
        peer.write_all(b"x").expect("write");
        until(&chatty, false);

        let closed = TcpStream::connect(addr).expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        drop(peer);
        until(&closed, false);
    }
}
