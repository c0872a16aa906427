//! The TCP connections under every scrape agent and every remote-write sender: a ureq
//! `Connector` and `Transport` (ureq's `unversioned` transport API) that behave like
//! ureq's own `TcpConnector`, except that a connection holds its I/O buffers only while it
//! is in use, and that a request costs as few system calls as it can: a request's head
//! leaves with its body in one `writev` (or alone just before the response is read), the
//! socket timeouts are set in whole steps so they rarely change ([`TIMEOUT_STEP`]), and a
//! pooled connection is probed with one `recv`. A scrape makes five system calls (wait
//! for the slot, probe, `writev`, `recvfrom`, probe), where a `setsockopt` before each
//! send and each read made seven.
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
//! Starts no threads; a blocking call ends by the deadline of the `NextTimeout` ureq
//! passes in, never before it.

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

/// Socket timeouts are set in whole steps, rounded down. The timeout ureq passes is what is
/// left of the scrape's, different on every call, and setting it on the socket is a system
/// call; rounded down it is the same from one call, and one scrape, to the next, so the
/// call is skipped. A read or write that times out before the real deadline goes on with
/// what is left, so the deadline is neither overshot nor cut short.
const TIMEOUT_STEP: Duration = Duration::from_millis(250);

/// `t` rounded down to a whole number of [`TIMEOUT_STEP`]s; at most one step is kept
/// exact, so the result is never zero when `t` is not.
fn stepped(t: Duration) -> Duration {
    if t <= TIMEOUT_STEP {
        return t;
    }
    let step = TIMEOUT_STEP.as_nanos();
    let over = u64::try_from(t.as_nanos() % step).unwrap_or(0);
    t - Duration::from_nanos(over)
}

/// Bytes of connection buffers currently allocated by all connections of one client.
pub(super) type HeldBytes = Arc<AtomicUsize>;

/// Opens plain TCP connections whose buffers are released while idle; passes an already
/// made transport (a CONNECT proxy tunnel) through untouched. The default counts its
/// buffers in a counter of its own (the remote-write sender's, which nothing reads).
#[derive(Default)]
pub(crate) struct TcpConnector {
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
            head: Vec::new(),
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
pub(crate) struct TcpTransport {
    /// Shared with the weak shutdown handle registered with the agent.
    stream: Arc<TcpStream>,
    buffers: IdleFreeBuffers,
    /// The socket timeouts in force (stepped), to skip a syscall when unchanged.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// A request head not sent yet: it goes out with the body in one write, or alone just
    /// before the response is awaited (see [`HEAD_MAX`]).
    head: Vec<u8>,
}

/// Pieces of output up to this size are held back until the next piece or the first
/// read. A request head and its body then leave in one `writev`, one segment: sent apart,
/// the body's segment arrives while the receiver is already awake reading the head, and
/// both sides pay for it (two wake-ups, contention on the receiver's socket lock; with a
/// loopback receiver that was most of the remote-write sender's kernel time).
const HEAD_MAX: usize = 4096;

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

/// Writes both pieces, in order, with as few `writev` calls as the socket allows.
fn write_all(
    stream: &TcpStream,
    in_force: &mut Option<Duration>,
    deadline: &Deadline,
    reason: Timeout,
    pieces: [&[u8]; 2],
) -> Result<(), ureq::Error> {
    let mut slices = pieces.map(io::IoSlice::new);
    let mut left: &mut [io::IoSlice<'_>] = &mut slices;
    while left.iter().any(|s| !s.is_empty()) {
        set_timeout(
            stream,
            in_force,
            deadline.socket_timeout(),
            TcpStream::set_write_timeout,
        )?;
        match (&*stream).write_vectored(left) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => io::IoSlice::advance_slices(&mut left, n),
            Err(e) if deadline.goes_on(&e) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                return Err(ureq::Error::Timeout(reason))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The end of one blocking call's time, as ureq gave it (`None`: no limit).
struct Deadline(Option<Instant>);

impl Deadline {
    fn new(after: Option<Duration>) -> Self {
        Deadline(after.map(|t| Instant::now() + t))
    }

    /// What to set on the socket now: the time left, stepped.
    fn socket_timeout(&self) -> Option<Duration> {
        self.0.map(|end| {
            let left = end.saturating_duration_since(Instant::now());
            // Zero would mean "no timeout" to the socket; a nanosecond times out at once.
            stepped(left).max(Duration::from_nanos(1))
        })
    }

    /// Whether a call that failed with `e` should be made again: it was interrupted by a
    /// signal, or its stepped timeout ran out before the deadline.
    fn goes_on(&self, e: &io::Error) -> bool {
        let early = |end: Instant| Instant::now() < end;
        match e.kind() {
            io::ErrorKind::Interrupted => self.0.is_none_or(early),
            _ if is_timeout(e) => self.0.is_some_and(early),
            _ => false,
        }
    }
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
        let output = self.buffers.output();
        let piece = &output[..amount.min(output.len())];
        let result = if self.head.is_empty() && piece.len() <= HEAD_MAX {
            if self.head.capacity() == 0 {
                self.head = spare::take_head();
            }
            self.head.extend_from_slice(piece);
            Ok(())
        } else {
            let deadline = Deadline::new(timeout.not_zero().map(|t| *t));
            let sent = write_all(
                &self.stream,
                &mut self.write_timeout,
                &deadline,
                timeout.reason,
                [&self.head, piece],
            );
            self.head.clear();
            sent
        };
        // ureq writes each piece of the request from the buffer's start: nothing in it is
        // needed once it is sent (or copied).
        self.buffers.release_output();
        result
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let deadline = Deadline::new(timeout.not_zero().map(|t| *t));
        if !self.head.is_empty() {
            let sent = write_all(
                &self.stream,
                &mut self.write_timeout,
                &deadline,
                timeout.reason,
                [&self.head, &[]],
            );
            self.head.clear();
            sent?;
        }
        let amount = loop {
            set_timeout(
                &self.stream,
                &mut self.read_timeout,
                deadline.socket_timeout(),
                TcpStream::set_read_timeout,
            )?;
            let input = self.buffers.input_append_buf();
            match (&*self.stream).read(input) {
                Ok(n) => break n,
                // A stepped timeout that ran out early, or a signal (Linux does not restart
                // a socket read with SO_RCVTIMEO after one): go on with what is left.
                Err(e) if deadline.goes_on(&e) => {}
                Err(e) if is_timeout(&e) => return Err(ureq::Error::Timeout(timeout.reason)),
                Err(e) => return Err(e.into()),
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
        // Empty between requests: its allocation goes back to the thread for the next
        // request, rather than staying with an idle connection.
        spare::park_head(std::mem::take(&mut self.head));
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

/// Released connection buffers kept for the thread's next connection: two, so a thread
/// holds at most one input and one output buffer beyond its connections in flight, and
/// threads that stop scraping hold nothing more than that. The two may have the same size
/// (remote-write connections use ureq's default of 128 KiB for both; keeping only one
/// re-allocated and zeroed the other on every send), but a size parked twice gives way to
/// a new size, so a scraper's pair of sizes always fits.
mod spare {
    use std::cell::{Cell, RefCell};

    thread_local! {
        static SPARE: RefCell<[Vec<u8>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
        /// The allocation of the last held-back request head (see `HEAD_MAX`).
        static HEAD: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    /// An empty buffer for a request head: the thread's parked one, or a new one.
    pub(super) fn take_head() -> Vec<u8> {
        HEAD.try_with(Cell::take).unwrap_or_default()
    }

    /// Keeps `buf`'s allocation for the thread's next request head.
    pub(super) fn park_head(mut buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        // During thread exit the thread-local may be gone: the buffer is then dropped.
        let _ = HEAD.try_with(|h| h.set(buf));
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

    /// Keeps `buf` in a free slot, or in place of one of two parked buffers of the same
    /// size; drops it otherwise.
    pub(super) fn park(buf: Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        // During thread exit the thread-local may be gone: the buffer is then dropped.
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            let [a, b] = &mut *s;
            if a.is_empty() || a.len() == b.len() {
                *a = buf;
            } else if b.is_empty() {
                *b = buf;
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
    use super::{probe, spare, stepped, Deadline, IdleFreeBuffers, TcpTransport, TIMEOUT_STEP};
    use std::sync::Arc;
    use ureq::unversioned::transport::{Buffers, NextTimeout, Transport};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn socket_timeouts_are_whole_steps_rounded_down_and_never_zero() {
        assert_eq!(TIMEOUT_STEP, ms(250));
        assert_eq!(stepped(ms(9_990)), ms(9_750));
        assert_eq!(stepped(ms(10_000)), ms(10_000));
        assert_eq!(stepped(ms(600)), ms(500));
        // The last step is kept exact: rounding it down would make it zero.
        assert_eq!(stepped(ms(240)), ms(240));
        assert_eq!(stepped(Duration::from_nanos(1)), Duration::from_nanos(1));
        let past = Deadline(Some(Instant::now() - ms(1)));
        assert_eq!(past.socket_timeout(), Some(Duration::from_nanos(1)));
        assert_eq!(Deadline(None).socket_timeout(), None);
    }

    #[test]
    fn a_call_goes_on_after_an_early_timeout_or_a_signal_and_not_past_its_deadline() {
        let timed_out = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        let signal = std::io::Error::from(std::io::ErrorKind::Interrupted);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let ahead = Deadline(Some(Instant::now() + ms(60_000)));
        let past = Deadline(Some(Instant::now() - ms(1)));
        assert!(ahead.goes_on(&timed_out) && ahead.goes_on(&signal));
        assert!(!past.goes_on(&timed_out) && !past.goes_on(&signal));
        assert!(!ahead.goes_on(&reset));
        // Without a deadline a socket never times out; a signal is simply retried.
        assert!(Deadline(None).goes_on(&signal) && !Deadline(None).goes_on(&timed_out));
    }

    /// A transport on a loopback connection, and the peer's end of it.
    fn connected() -> (TcpTransport, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        (transport(stream), peer)
    }

    fn transport(stream: TcpStream) -> TcpTransport {
        TcpTransport {
            stream: Arc::new(stream),
            buffers: IdleFreeBuffers::new(16384, 16384, Arc::default()),
            read_timeout: None,
            write_timeout: None,
            head: Vec::new(),
        }
    }

    fn budget(after: Duration) -> NextTimeout {
        NextTimeout {
            after: after.into(),
            reason: ureq::Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    #[test]
    fn the_socket_timeout_stays_put_from_call_to_call() {
        let (mut t, mut peer) = connected();
        peer.write_all(b"ab").expect("write");
        assert!(t.await_input(budget(ms(9_990))).expect("read"));
        assert_eq!(t.read_timeout, Some(ms(9_750)));
        t.buffers.input_consume(t.buffers.input().len());
        peer.write_all(b"cd").expect("write");
        // Less time left on the next call: the same step, so nothing to set.
        assert!(t.await_input(budget(ms(9_980))).expect("read"));
        assert_eq!(t.read_timeout, Some(ms(9_750)));
        send(&mut t, &[b'x'; 8000], ms(9_900));
        assert_eq!(t.write_timeout, Some(ms(9_750)));
        // The kernel keeps it in its own ticks: what it reads back is within one of them.
        let kept = t.stream.read_timeout().expect("getsockopt").expect("set");
        assert!(kept.abs_diff(ms(9_750)) < ms(20), "{kept:?}");
    }

    /// Puts `piece` in the transport's output buffer and transmits it, as ureq does.
    fn send(t: &mut TcpTransport, piece: &[u8], within: Duration) {
        t.buffers.output()[..piece.len()].copy_from_slice(piece);
        t.transmit_output(piece.len(), budget(within))
            .expect("transmit");
    }

    #[test]
    fn a_request_head_waits_for_its_body_and_leaves_with_it() {
        let (mut t, mut peer) = connected();
        send(&mut t, b"POST / HTTP/1.1\r\n\r\n", ms(5_000));
        peer.set_nonblocking(true).expect("nonblocking");
        let mut got = Vec::new();
        let held = std::io::Read::read_to_end(&mut peer, &mut got);
        assert!(got.is_empty(), "the head went out alone: {held:?} {got:?}");
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        send(&mut t, &body, ms(5_000));
        peer.set_nonblocking(false).expect("blocking");
        let mut got = vec![0u8; 19 + body.len()];
        std::io::Read::read_exact(&mut peer, &mut got).expect("head and body");
        assert_eq!(&got[..19], b"POST / HTTP/1.1\r\n\r\n");
        assert_eq!(&got[19..], &body[..]);
    }

    #[test]
    fn a_held_head_is_sent_before_the_response_is_awaited() {
        let (mut t, mut peer) = connected();
        let server = std::thread::spawn(move || {
            let mut head = [0u8; 18];
            std::io::Read::read_exact(&mut peer, &mut head).expect("request");
            peer.write_all(b"HTTP/1.1 204 \r\n\r\n").expect("response");
            head
        });
        send(&mut t, b"GET / HTTP/1.1\r\n\r\n", ms(5_000));
        // Were the head still held back, this would wait out its 5 s and fail.
        assert!(t.await_input(budget(ms(5_000))).expect("response"));
        assert_eq!(&server.join().expect("server"), b"GET / HTTP/1.1\r\n\r\n");
        assert!(t.head.is_empty());
    }

    #[test]
    fn a_connection_going_idle_leaves_its_head_buffer_to_the_threads_next_request() {
        std::thread::spawn(|| {
            let (mut t, mut peer) = connected();
            send(&mut t, b"GET / HTTP/1.1\r\n\r\n", ms(5_000));
            let used = t.head.as_ptr();
            peer.write_all(b"HTTP/1.1 204 \r\n\r\n").expect("response");
            assert!(t.await_input(budget(ms(5_000))).expect("response"));
            t.is_open();
            assert_eq!(
                t.head.capacity(),
                0,
                "an idle connection holds no head buffer"
            );
            let parked = spare::take_head();
            assert_eq!((parked.as_ptr(), parked.is_empty()), (used, true));
            spare::park_head(parked);
            let (mut next, _peer) = connected();
            send(&mut next, b"GET / HTTP/1.1\r\n\r\n", ms(5_000));
            assert_eq!(next.head.as_ptr(), used);
        })
        .join()
        .expect("test thread");
    }

    #[test]
    fn a_read_times_out_at_its_deadline_not_at_the_stepped_socket_timeout() {
        let (mut t, _silent) = connected();
        let started = Instant::now();
        // The socket gets 250 ms at first; the read must go on for the other 50.
        let err = t.await_input(budget(ms(300))).expect_err("nothing to read");
        assert!(
            matches!(err, ureq::Error::Timeout(ureq::Timeout::Global)),
            "{err:?}"
        );
        assert!(started.elapsed() >= ms(300), "{:?}", started.elapsed());
    }

    #[test]
    fn a_released_buffer_is_reused_by_the_threads_next_connection() {
        std::thread::spawn(|| {
            let mut input = vec![7u8; 4096];
            let ptr = input.as_ptr();
            input[0] = 1;
            spare::park(input);
            spare::park(vec![0u8; 512]);
            spare::park(vec![0u8; 100]); // no free slot: dropped
            let again = spare::take(4096).expect("parked");
            assert_eq!((again.as_ptr(), again.len(), again[0]), (ptr, 4096, 1));
            assert!(spare::take(4096).is_none());
            assert_eq!(spare::take(512).map(|b| b.len()), Some(512));
            assert!(spare::take(100).is_none());
            // Two of one size (a remote-write connection's input and output) are both
            // kept, and give way to a new size, which then stays.
            spare::park(vec![0u8; 4096]);
            spare::park(vec![0u8; 4096]);
            assert!(spare::take(4096).is_some() && spare::take(4096).is_some());
            spare::park(vec![0u8; 4096]);
            spare::park(vec![0u8; 4096]);
            spare::park(vec![0u8; 512]);
            spare::park(vec![0u8; 4096]); // no free slot, no size twice: dropped
            assert_eq!(spare::take(512).map(|b| b.len()), Some(512));
            assert!(spare::take(4096).is_some() && spare::take(4096).is_none());
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
