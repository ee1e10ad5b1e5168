//! A few writers per event source for the event streams: once a stream's response head is on
//! the wire, its events are written to its socket by one of the tasks that serve the streams
//! of the same job (or the `/events` streams), not by the stream's own connection task. A
//! source has one writer per core ([`Groups::new`]), its streams dealt to them in turn, so an
//! event reaches a thousand sockets in half the time on two cores: each write to a socket
//! costs the kernel's send path (on loopback also the receiver's), about 10-15 µs.
//!
//! Why: with a connection task per stream, each event woke a thousand tasks, and each went
//! through hyper's connection poll, the body layers and its own `writev` (11-21 µs of the
//! server's CPU per delivered event in `bench sse`, docs/benchmarks.md). One writer reads
//! every stream's next event without waiting ([`TryNext`]) when the source's [`Doorbell`]
//! rings, and writes each to its socket with a non-blocking write.
//!
//! How a connection is handed over, keeping hyper and every layer of the router for the
//! request and its answer:
//! - A connection whose first request asks for a stream is served by hyper over a
//!   [`SharedSocket`] (`connections::serve_on` looks at its first bytes), and its requests
//!   carry a [`HandOffSocket`] extension.
//! - The stream's handler answers with a [`HandOffBody`]: hyper writes the response head as
//!   for any answer (its status, headers, framing: `Transfer-Encoding: chunked` for HTTP/1.1,
//!   close-delimited for HTTP/1.0), then polls the body, which leaves the stream in the
//!   connection's hand-off slot and waits. hyper flushes its buffer (the head) and calls the
//!   socket's flush ([`SharedSocket`]'s `poll_flush`, only once its buffer is written): the
//!   stream joins its writer ([`Groups`]) there, so nothing is written before the head.
//! - The writer writes each event (framed as one chunk for HTTP/1.1) to the socket. When the
//!   stream ends (after the job's final status, or when the server closes streams, once what
//!   was published is written) it ends the body: hyper ends the response (the last chunk, or
//!   closing an HTTP/1.0 connection) and the connection goes on as any other. A write error
//!   fails the body (hyper closes the connection); a body dropped by hyper (the client left)
//!   removes the stream from its writer.
//! - A socket that cannot take a whole event keeps the rest pending and is not read from
//!   until it is written: the stream's channel skips it to the latest state when it falls
//!   behind (`jobs::events`), as before.
//!
//! Requests without the extension (the router called directly, as the tests do) are served
//! by a body stream as before (`streams::feed`).

use std::collections::HashMap;
use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hyper::body::Frame;
use jobs::JobId;
use jobs::events::{AllEvents, Doorbell, JobEvents, TryNext};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a stream reads: one job's events, or every job's.
pub(crate) enum Source {
    /// `GET /jobs/{id}/events`.
    Job(JobEvents),
    /// `GET /events`.
    All(AllEvents),
}

impl Source {
    fn doorbell(&self) -> Doorbell {
        match self {
            Source::Job(events) => events.doorbell(),
            Source::All(events) => events.doorbell(),
        }
    }

    /// The next event's bytes, if one is ready.
    fn try_next(&mut self) -> TryNext<Bytes> {
        match self {
            Source::Job(events) => match events.try_next_published() {
                TryNext::Event(event) => TryNext::Event(crate::streams::job_event_bytes(&event)),
                TryNext::Empty => TryNext::Empty,
                TryNext::Ended => TryNext::Ended,
            },
            Source::All(events) => match events.try_next_published() {
                TryNext::Event(item) => TryNext::Event(crate::streams::all_item_bytes(item)),
                TryNext::Empty => TryNext::Empty,
                TryNext::Ended => TryNext::Ended,
            },
        }
    }
}

/// A connection's socket, shared by hyper (which reads requests and writes response heads
/// through [`SharedSocket`]) and the writer of its stream. Holds the hand-off slot.
pub(crate) struct Connection {
    socket: TcpStream,
    /// A stream waiting for its response head to be flushed ([`HandOffBody`]).
    slot: Mutex<Option<HandOff>>,
}

type HandOff = Box<dyn FnOnce(&Arc<Connection>) + Send>;

/// The request extension that lets a stream's handler take the connection over once its
/// response head is sent (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct HandOffSocket(Arc<Connection>);

/// A TCP connection that hyper serves and a stream's writer can take over (see the [module
/// docs](self)).
pub(crate) struct SharedSocket(Arc<Connection>);

impl SharedSocket {
    pub(crate) fn new(socket: TcpStream) -> SharedSocket {
        SharedSocket(Arc::new(Connection { socket, slot: Mutex::new(None) }))
    }

    /// The extension for this connection's requests.
    pub(crate) fn handle(&self) -> HandOffSocket {
        HandOffSocket(Arc::clone(&self.0))
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl AsyncRead for SharedSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.socket.poll_read_ready(cx))?;
            // Into the buffer's unfilled part as it is: zeroing it first would touch every page of
            // hyper's 8 KiB read buffer of every stream's connection (9 MiB of RSS for 1,100).
            match self.0.socket.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if would_block(&e) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.socket.poll_write_ready(cx))?;
            match self.0.socket.try_write(buf) {
                Err(e) if would_block(&e) => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.socket.poll_write_ready(cx))?;
            match self.0.socket.try_write_vectored(bufs) {
                Err(e) if would_block(&e) => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// hyper calls this once everything it buffered is written: a stream waiting in the slot
    /// has its response head on the wire and joins its writer now.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let handoff = self.0.slot.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(handoff) = handoff {
            handoff(&self.0);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.socket).shutdown(std::net::Shutdown::Write))
    }
}

/// How a stream's body ended, as its writer tells it.
enum End {
    Open,
    Done,
    Failed(Option<io::Error>),
}

/// What a stream's body and its writer share.
struct Shared {
    end: Mutex<End>,
    /// The body's task, woken when the stream ends.
    body: AtomicWaker,
    /// The body was dropped (hyper closed the connection: the client left, or an error).
    gone: AtomicBool,
    /// The writer's task, woken when the body is dropped; set when the stream joins it.
    writer: Mutex<Option<Arc<Notify>>>,
}

impl Shared {
    fn finish(&self, end: End) {
        *self.end.lock().unwrap_or_else(PoisonError::into_inner) = end;
        self.body.wake();
    }
}

/// The body of a stream answered by its writer (see the [module docs](self)): no data of its
/// own; it ends when the writer ends the stream.
pub(crate) struct HandOffBody {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    /// Left in the connection's slot at the first poll (hyper has the head by then).
    handoff: Option<HandOff>,
}

impl HandOffBody {
    /// The body of a stream of `source` on `socket`'s connection, joining its writer in
    /// `groups` once the head is flushed. `chunked`: the response is framed in chunks (an
    /// HTTP/1.1 request; HTTP/1.0 gets a close-delimited body).
    pub(crate) fn new(
        socket: HandOffSocket,
        groups: &Arc<Groups>,
        key: Option<JobId>,
        source: Source,
        chunked: bool,
    ) -> HandOffBody {
        let shared = Arc::new(Shared {
            end: Mutex::new(End::Open),
            body: AtomicWaker::new(),
            gone: AtomicBool::new(false),
            writer: Mutex::new(None),
        });
        let groups = Arc::clone(groups);
        let for_member = Arc::clone(&shared);
        let handoff: HandOff = Box::new(move |connection: &Arc<Connection>| {
            if for_member.gone.load(Ordering::Acquire) {
                return;
            }
            let member = Member {
                connection: Arc::clone(connection),
                source,
                chunked,
                shared: for_member,
                pending: Bytes::new(),
                last_write: Instant::now(),
            };
            groups.join(key, member);
        });
        HandOffBody { shared, connection: socket.0, handoff: Some(handoff) }
    }
}

impl hyper::body::Body for HandOffBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.shared.body.register(cx.waker());
        if let Some(handoff) = self.handoff.take() {
            *self.connection.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(handoff);
            return Poll::Pending;
        }
        match &mut *self.shared.end.lock().unwrap_or_else(PoisonError::into_inner) {
            End::Open => Poll::Pending,
            End::Done => Poll::Ready(None),
            End::Failed(e) => Poll::Ready(Some(Err(e.take().unwrap_or_else(|| io::Error::other("the stream failed"))))),
        }
    }
}

impl Drop for HandOffBody {
    fn drop(&mut self) {
        // A stream still in the slot (its head never flushed) does not join its writer.
        self.shared.gone.store(true, Ordering::Release);
        if let Some(writer) = self.shared.writer.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            writer.notify_one();
        }
    }
}

/// One stream in its writer.
struct Member {
    connection: Arc<Connection>,
    source: Source,
    chunked: bool,
    shared: Arc<Shared>,
    /// The part of the last event the socket has not taken yet.
    pending: Bytes,
    /// When an event (or a keep-alive comment) was last written.
    last_write: Instant,
}

impl Member {
    /// Writes what is ready; `false` once the stream ended (its body is told).
    fn pump(&mut self, now: Instant, closing: bool) -> bool {
        if self.shared.gone.load(Ordering::Acquire) {
            return false;
        }
        if let Err(e) = self.flush() {
            return self.end(End::Failed(Some(e)));
        }
        if !self.pending.is_empty() {
            return true;
        }
        loop {
            let bytes = match self.source.try_next() {
                TryNext::Event(bytes) => bytes,
                TryNext::Empty => break,
                TryNext::Ended => return self.end(End::Done),
            };
            if let Err(e) = self.send(&bytes, now) {
                return self.end(End::Failed(Some(e)));
            }
            if !self.pending.is_empty() {
                return true;
            }
        }
        // What was published went out: the server closes streams now.
        if closing {
            return self.end(End::Done);
        }
        if now >= self.last_write + crate::streams::KEEP_ALIVE
            && let Err(e) = self.send(crate::streams::KEEP_ALIVE_COMMENT, now)
        {
            return self.end(End::Failed(Some(e)));
        }
        true
    }

    fn end(&mut self, end: End) -> bool {
        self.shared.finish(end);
        false
    }

    /// Writes `bytes` (as one chunk when the response is chunked); keeps what the socket did
    /// not take in `pending`.
    fn send(&mut self, bytes: &[u8], now: Instant) -> io::Result<()> {
        self.last_write = now;
        // The chunk's size line (HTTP/1.1 chunked coding), at most 16 hex digits and CRLF.
        let mut size_line = [0u8; 18];
        let mut cursor = io::Cursor::new(&mut size_line[..]);
        if self.chunked {
            let _ = write!(cursor, "{:x}\r\n", bytes.len());
        }
        let head_len = usize::try_from(cursor.position()).unwrap_or(0);
        let head = &size_line[..head_len];
        let tail: &[u8] = if self.chunked { b"\r\n" } else { b"" };
        let parts = [IoSlice::new(head), IoSlice::new(bytes), IoSlice::new(tail)];
        let total = head.len() + bytes.len() + tail.len();
        let written = match self.connection.socket.try_write_vectored(&parts) {
            Ok(n) => n,
            Err(e) if would_block(&e) => 0,
            Err(e) => return Err(e),
        };
        if written < total {
            let mut rest = Vec::with_capacity(total - written);
            let mut skip = written;
            for part in [head, bytes, tail] {
                let from = skip.min(part.len());
                rest.extend_from_slice(&part[from..]);
                skip -= from;
            }
            self.pending = Bytes::from(rest);
        }
        Ok(())
    }

    /// Writes what is pending, as much as the socket takes.
    fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            match self.connection.socket.try_write(&self.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.pending.split_to(n);
                }
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The writers of the streams (see the [module docs](self)): per job that has streams, and
/// for the `/events` streams (job `None`), up to one task per shard. A writer ends when its
/// last stream ends.
pub(crate) struct Groups {
    writers: Mutex<HashMap<WriterKey, Writer>>,
    closing: CancellationToken,
    /// How many writers a source's streams are dealt to.
    shards: usize,
    /// The next stream's shard (modulo `shards`).
    dealt: AtomicUsize,
}

/// A writer's source (a job, or `None` for `/events`) and shard.
type WriterKey = (Option<JobId>, usize);

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Groups").field("writers", &writers).finish_non_exhaustive()
    }
}

/// At most this many writers per source, whatever the number of cores.
const MAX_SHARDS: usize = 16;

struct Writer {
    joins: mpsc::UnboundedSender<Member>,
    wake: Arc<Notify>,
}

impl Groups {
    /// No writer yet; streams end once `closing` fires (and what was published is written).
    /// A source's streams are dealt to as many writers as the machine has cores (the
    /// runtime's worker threads run them side by side).
    pub(crate) fn new(closing: CancellationToken) -> Groups {
        let shards = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(MAX_SHARDS);
        Groups { writers: Mutex::new(HashMap::new()), closing, shards, dealt: AtomicUsize::new(0) }
    }

    fn join(self: &Arc<Self>, source: Option<JobId>, member: Member) {
        let key = (source, self.dealt.fetch_add(1, Ordering::Relaxed) % self.shards);
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = writers.get(&key) {
            *member.shared.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&writer.wake));
            // Under the lock: a writer leaves only under it, after seeing no join waiting.
            if let Err(mpsc::error::SendError(member)) = writer.joins.send(member) {
                member.shared.finish(End::Failed(None));
            }
            return;
        }
        let (joins, receiver) = mpsc::unbounded_channel();
        let wake = Arc::new(Notify::new());
        *member.shared.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&wake));
        writers.insert(key.clone(), Writer { joins, wake: Arc::clone(&wake) });
        drop(writers);
        tokio::spawn(Arc::clone(self).write(key, receiver, member, wake));
    }

    /// Whether the writer of `key` may end: no stream waits to join it (checked under the
    /// lock that joins take), and it is removed.
    fn leave(&self, key: &WriterKey, joins: &mut mpsc::UnboundedReceiver<Member>) -> Option<Member> {
        let mut writers = self.writers.lock().unwrap_or_else(PoisonError::into_inner);
        match joins.try_recv() {
            Ok(member) => Some(member),
            Err(_) => {
                writers.remove(key);
                None
            }
        }
    }

    /// The writer's task: waits for its source's doorbell, a stream joining or leaving, a
    /// socket taking pending bytes, the next keep-alive or the server closing streams, then
    /// writes what each stream has ready.
    async fn write(
        self: Arc<Self>,
        key: WriterKey,
        mut joins: mpsc::UnboundedReceiver<Member>,
        first: Member,
        wake: Arc<Notify>,
    ) {
        let mut doorbell = first.source.doorbell();
        let mut bell_open = true;
        let mut members = vec![first];
        loop {
            while let Ok(member) = joins.try_recv() {
                members.push(member);
            }
            let closing = self.closing.is_cancelled();
            let now = Instant::now();
            members.retain_mut(|member| member.pump(now, closing));
            if members.is_empty() {
                match self.leave(&key, &mut joins) {
                    Some(member) => {
                        // The first source's channel may be gone with its streams.
                        doorbell = member.source.doorbell();
                        bell_open = true;
                        members.push(member);
                        continue;
                    }
                    None => return,
                }
            }
            // A stream with pending bytes waits for its socket, not for a keep-alive.
            let idle_since = members.iter().filter(|m| m.pending.is_empty()).map(|m| m.last_write).min();
            let keep_alive = idle_since.unwrap_or(now) + crate::streams::KEEP_ALIVE;
            let joined = tokio::select! {
                biased;
                () = self.closing.cancelled(), if !closing => None,
                Some(member) = joins.recv() => Some(member),
                () = wake.notified() => None,
                open = doorbell.rung(), if bell_open => {
                    bell_open = open;
                    None
                }
                () = writable(&members) => None,
                () = tokio::time::sleep_until(keep_alive) => None,
            };
            members.extend(joined);
        }
    }
}

/// Ready once a socket with pending bytes can take more.
async fn writable(members: &[Member]) {
    std::future::poll_fn(|cx| {
        let mut ready = false;
        for member in members.iter().filter(|m| !m.pending.is_empty()) {
            ready |= member.connection.socket.poll_write_ready(cx).is_ready();
        }
        if ready { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
}
