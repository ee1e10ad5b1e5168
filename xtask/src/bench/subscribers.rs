//! The subscribers of `bench sse`: many server-sent event streams read by ONE thread over
//! non-blocking sockets and epoll (mio), so that the client's own CPU stays small next to the
//! server's and does not blur what is measured (a thread per subscriber woke 1,100 threads for
//! every event and took a large share of the two cores).
//!
//! Each stream is a plain HTTP/1.0 `GET` (so the body is the raw event bytes, no chunking),
//! read until the job's final `status` event (or the end of the stream). For every `progress`
//! event the subscriber notes, per frame (the first block of each frame), two times: when this
//! thread read it (taken right after the `recvmsg` that returned the event's bytes), and when
//! the bytes reached the socket: the kernel's receive time of the data read (`SO_TIMESTAMPNS`;
//! on loopback it is taken as the server's write hands the bytes over, before any wake-up of
//! this thread). The first includes this thread's own delay (one thread reading 1,100 sockets
//! in turn on the cores the server and ffmpeg share); the second is the server's part alone,
//! what a subscriber on another machine would see, less the network. When one read returns
//! several events, the kernel's time is that of the last bytes read: never earlier than the
//! event's own arrival. (The kernel switches receive timestamps on a moment after the first
//! socket asks for them; bytes without one count at their read time, which is later.)

use std::collections::HashSet;
use std::io::{ErrorKind, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::sockopt::ReceiveTimestampns;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt};
use nix::sys::time::TimeSpec;

use crate::Result;

/// How many times opening one stream is tried (a thousand connections at once on a loaded
/// machine may be reset before the server reads them), and the pause between tries.
const TRIES: u32 = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// One stream to open.
pub(super) struct Stream {
    /// The request path (`/jobs/ID/events`, `/events?progress=true`).
    pub(super) path: String,
    /// Whether it is one job's stream (ends after the final status) rather than every job's
    /// (closed here once the job's final status was read).
    pub(super) per_job: bool,
}

/// What one subscriber saw: whether the job's final status arrived, and for the first progress
/// event of each frame, when (ns since the Unix epoch) it reached the socket and when it was
/// read ([`Receipt`]).
#[derive(Default)]
pub(super) struct Seen {
    pub(super) saw_final: bool,
    pub(super) progress: Vec<Receipt>,
    /// Every `progress` event of the job read (not only the first of each frame).
    pub(super) events: usize,
}

/// The first progress event of one frame, as one subscriber received it.
#[derive(Clone, Copy)]
pub(super) struct Receipt {
    /// The frame number the event reports.
    pub(super) frame: u64,
    /// When the bytes reached the socket (the kernel's receive time, ns since the Unix epoch;
    /// the read time if the kernel gave none).
    pub(super) arrived: u128,
    /// When this thread read them (ns since the Unix epoch).
    pub(super) read: u128,
}

/// Shared counters, read by the bench while the client runs.
#[derive(Default)]
pub(super) struct Counters {
    /// Streams whose `200` head was read.
    pub(super) connected: AtomicUsize,
    /// Streams that could not be opened (after [`TRIES`] tries).
    pub(super) failed: AtomicUsize,
    /// The client thread's kernel thread id (for its CPU time in `/proc/self/task/TID/stat`),
    /// 0 until it started.
    pub(super) tid: AtomicUsize,
}

/// What the client thread returns: what each stream saw (in the order of the streams), the
/// thread's own CPU time at its end (seconds, [`thread_cpu_seconds`]) and how many times it
/// slept over its life ([`Ended::sleeps`]).
pub(super) type Outcome = std::result::Result<Ended, String>;

/// The client thread's end ([`Outcome`]).
pub(super) struct Ended {
    /// What each stream saw, in the order of the streams.
    pub(super) seen: Vec<Seen>,
    /// The thread's CPU time (user + system) at its end, in seconds.
    pub(super) cpu_seconds: f64,
    /// How many times the thread blocked over its life (its voluntary context switches: in
    /// `epoll_wait` with nothing to read, or in a pause between polls; each ended by a
    /// wake-up), or 0 if the kernel did not say.
    pub(super) sleeps: u64,
}

/// Starts the client thread: opens every stream of `streams` on `addr` and reads them until
/// each ended or `deadline` passed. With a `pause` (not zero), after a poll that found bytes to
/// read the thread sleeps that long before it polls again, so that the events written while it
/// sleeps are read in one go (one wake-up for many streams instead of one per write); a poll
/// that finds nothing still waits for the next bytes as they come. Each event is then read up
/// to `pause` later than it could be (the read times include that; the kernel's arrival times
/// do not change).
pub(super) fn start(
    addr: SocketAddr,
    job: String,
    streams: Vec<Stream>,
    counters: Arc<Counters>,
    deadline: Duration,
    pause: Duration,
) -> Result<std::thread::JoinHandle<Outcome>> {
    let handle = std::thread::Builder::new().name("sse-subscribers".to_owned()).spawn(move || {
        let tid = thread_id();
        counters.tid.store(tid, Ordering::SeqCst);
        let seen = run(addr, &job, &streams, &counters, deadline, pause).map_err(|e| e.to_string())?;
        Ok(Ended { seen, cpu_seconds: thread_cpu_seconds(tid).unwrap_or(0.0), sleeps: own_sleeps().unwrap_or(0) })
    })?;
    Ok(handle)
}

/// The calling thread's voluntary context switches so far (`/proc/thread-self/status`).
fn own_sleeps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("voluntary_ctxt_switches:")).and_then(|n| n.trim().parse().ok())
}

/// This thread's kernel id, from `/proc/thread-self` (a link to `PID/task/TID`).
fn thread_id() -> usize {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time (user + system) of thread `tid` of this process so far, in seconds; `None` once
/// the thread ended (its `stat` is gone).
pub(super) fn thread_cpu_seconds(tid: usize) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    Some(stat_cpu_seconds(&text, false))
}

/// CPU time (user + system) of process `pid` so far, in seconds; with `children`, the CPU
/// time of its children it waited for instead (ffmpeg and its wrapper, once reaped).
pub(super) fn process_cpu_seconds(pid: u32, children: bool) -> f64 {
    cpu_seconds(&format!("/proc/{pid}/stat"), children)
}

/// Fields 14-17 of a `stat` file (utime, stime, cutime, cstime, in clock ticks of 1/100 s,
/// Linux's `USER_HZ`), after the command name (which may hold spaces).
fn cpu_seconds(path: &str, children: bool) -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string(path).unwrap_or_default(), children)
}

/// [`cpu_seconds`] of a `stat` file's text.
fn stat_cpu_seconds(text: &str, children: bool) -> f64 {
    let Some((_, rest)) = text.rsplit_once(')') else { return 0.0 };
    // `rest` starts at field 3 (state): utime is field 14, i.e. index 11 here.
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = match (children, fields.as_slice()) {
        (false, [utime, stime, ..]) => utime + stime,
        (true, [_, _, cutime, cstime]) => cutime + cstime,
        _ => 0,
    };
    ticks as f64 / 100.0
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[derive(PartialEq)]
enum Phase {
    /// Waiting to retry at this time.
    Waiting(Instant),
    /// Connecting; the request is not written yet.
    Connecting,
    /// Request written, reading the response head.
    Head,
    /// Reading events.
    Body,
    /// Ended (stream over, or closed here).
    Done,
}

struct Sub {
    stream: Option<TcpStream>,
    phase: Phase,
    tries: u32,
    /// Bytes read and not yet parsed.
    pending: Vec<u8>,
    /// The current event's name.
    event: String,
    frames: HashSet<u64>,
    seen: Seen,
}

fn run(
    addr: SocketAddr,
    job: &str,
    streams: &[Stream],
    counters: &Counters,
    deadline: Duration,
    pause: Duration,
) -> Result<Vec<Seen>> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let requests: Vec<Vec<u8>> = streams
        .iter()
        .map(|s| format!("GET {} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n", s.path).into_bytes())
        .collect();
    let mut subs: Vec<Sub> = streams
        .iter()
        .map(|_| Sub {
            stream: None,
            phase: Phase::Waiting(start),
            tries: 0,
            pending: Vec::new(),
            event: String::new(),
            frames: HashSet::new(),
            seen: Seen::default(),
        })
        .collect();
    let mut open = subs.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut errors: Vec<String> = Vec::new();
    while open > 0 {
        if start.elapsed() > deadline {
            return Err(format!("{open} streams still open after {deadline:?}").into());
        }
        // Connections due (first tries, and retries after their pause).
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        for (i, sub) in subs.iter_mut().enumerate() {
            if let Phase::Waiting(at) = sub.phase {
                if at <= now {
                    sub.tries += 1;
                    let mut stream = TcpStream::connect(addr)?;
                    setsockopt(&stream, ReceiveTimestampns, &true)?;
                    poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
                    sub.stream = Some(stream);
                    sub.phase = Phase::Connecting;
                } else {
                    next_due = Some(next_due.map_or(at, |n| n.min(at)));
                }
            }
        }
        let timeout = next_due.map_or(Duration::from_millis(100), |at| at.saturating_duration_since(now));
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let i = event.token().0;
            let sub = &mut subs[i];
            let closed = event.is_read_closed() || event.is_error();
            let outcome = step(sub, &requests[i], streams[i].per_job, job, &mut buf, counters, closed);
            match outcome {
                Step::Continue => {}
                Step::Ended => {
                    close(&poll, sub);
                    sub.phase = Phase::Done;
                    open -= 1;
                }
                Step::Retry(reason) => {
                    close(&poll, sub);
                    if sub.tries >= TRIES {
                        counters.failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("{}: {reason} (after {} tries)", streams[i].path, sub.tries));
                        sub.phase = Phase::Done;
                        open -= 1;
                    } else {
                        sub.phase = Phase::Waiting(Instant::now() + RETRY_PAUSE);
                    }
                }
            }
        }
        if !pause.is_zero() && !events.is_empty() {
            std::thread::sleep(pause);
        }
    }
    if !errors.is_empty() {
        let shown: Vec<&String> = errors.iter().take(5).collect();
        return Err(format!("{} subscribers could not open their stream: {shown:?}", errors.len()).into());
    }
    Ok(subs.into_iter().map(|s| s.seen).collect())
}

fn close(poll: &Poll, sub: &mut Sub) {
    if let Some(mut stream) = sub.stream.take() {
        let _ = poll.registry().deregister(&mut stream);
    }
    sub.pending.clear();
}

enum Step {
    Continue,
    /// The stream is over (or no longer needed).
    Ended,
    /// Opening failed (refused, reset, closed before the head, an answer other than 200: the
    /// server may be busy accepting the others); tried again up to [`TRIES`] times.
    Retry(String),
}

/// Handles readiness of one subscriber: writes the request once connected, reads whatever
/// arrived and parses it. The poll is edge-triggered, so the socket is read until it would
/// block, except that a read that did not fill the buffer drained it (a TCP socket hands over
/// all it holds), and the next edge comes with the next bytes: one `read` per event instead of
/// two. When the peer closed (`closed`: an end of stream that arrived with the last bytes
/// raises no new edge) it is read to its end.
fn step(
    sub: &mut Sub,
    request: &[u8],
    per_job: bool,
    job: &str,
    buf: &mut [u8],
    counters: &Counters,
    closed: bool,
) -> Step {
    if sub.phase == Phase::Connecting {
        let Some(stream) = sub.stream.as_mut() else { return Step::Continue };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Step::Retry(e.to_string()),
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return Step::Continue,
            Err(e) => return Step::Retry(e.to_string()),
        }
        // A request this small goes out in one write on a fresh connection.
        match stream.write(request) {
            Ok(n) if n == request.len() => sub.phase = Phase::Head,
            Ok(n) => return Step::Retry(format!("wrote only {n} of {} request bytes", request.len())),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Continue,
            Err(e) => return Step::Retry(e.to_string()),
        }
    }
    loop {
        let Some(stream) = sub.stream.as_mut() else { return Step::Continue };
        match read_stamped(stream, buf) {
            Ok((0, _)) => {
                return if sub.phase == Phase::Head {
                    Step::Retry("closed before the response head".to_owned())
                } else {
                    Step::Ended
                };
            }
            Ok((n, arrived)) => {
                let read = now_ns();
                sub.pending.extend_from_slice(&buf[..n]);
                match parse(sub, per_job, job, Times { arrived: arrived.unwrap_or(read), read }, counters) {
                    Step::Continue if n < buf.len() && !closed && sub.phase == Phase::Body => return Step::Continue,
                    Step::Continue => {}
                    other => return other,
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if sub.phase == Phase::Head => return Step::Retry(e.to_string()),
            Err(_) => return Step::Ended,
        }
    }
}

/// Reads what `stream` holds into `buf` (`recvmsg`): the number of bytes, and the kernel's
/// receive time of the last of them (ns since the Unix epoch), when it gave one.
fn read_stamped(stream: &impl std::os::fd::AsRawFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<u128>)> {
    let mut control = nix::cmsg_space!(TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(control.as_mut_slice()), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let arrived = message.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampns(at) => {
                Some(u128::try_from(at.tv_sec()).ok()? * 1_000_000_000 + u128::try_from(at.tv_nsec()).ok()?)
            }
            _ => None,
        })
    });
    Ok((message.bytes, arrived))
}

/// When the bytes being parsed reached the socket, and when they were read (ns since the Unix
/// epoch).
#[derive(Clone, Copy)]
struct Times {
    arrived: u128,
    read: u128,
}

/// Parses what `sub` has pending: the response head, then event lines.
fn parse(sub: &mut Sub, per_job: bool, job: &str, at: Times, counters: &Counters) -> Step {
    if sub.phase == Phase::Head {
        let Some(end) = sub.pending.windows(4).position(|w| w == b"\r\n\r\n") else { return Step::Continue };
        let head = String::from_utf8_lossy(&sub.pending[..end]).into_owned();
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200 ") {
            return Step::Retry(format!("answered {status:?}"));
        }
        sub.pending.drain(..end + 4);
        sub.phase = Phase::Body;
        counters.connected.fetch_add(1, Ordering::SeqCst);
    }
    let mut used = 0;
    while let Some(nl) = sub.pending[used..].iter().position(|&b| b == b'\n') {
        let line = &sub.pending[used..used + nl];
        used += nl + 1;
        let line = std::str::from_utf8(line).unwrap_or_default().trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("event: ") {
            sub.event.clear();
            sub.event.push_str(name.trim());
        } else if let Some(data) = line.strip_prefix("data: ") {
            if !data.contains(job) {
                continue;
            }
            if sub.event == "progress" {
                sub.seen.events += 1;
                if let Some(frame) = number_after(data, "\"frame\":")
                    && sub.frames.insert(frame)
                {
                    sub.seen.progress.push(Receipt { frame, arrived: at.arrived, read: at.read });
                }
            } else if sub.event == "status"
                && ["completed", "failed", "cancelled"].iter().any(|s| data.contains(&format!("\"status\":\"{s}\"")))
            {
                sub.seen.saw_final = true;
                if !per_job {
                    return Step::Ended;
                }
            }
        }
    }
    sub.pending.drain(..used);
    Step::Continue
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn reads_cpu_times_after_a_command_name_with_spaces() -> Result {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("stat");
        std::fs::write(&path, "42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 50 30 20 20 0\n")?;
        let path = path.to_str().ok_or("not UTF-8")?;
        assert!((cpu_seconds(path, false) - 2.0).abs() < 1e-9);
        assert!((cpu_seconds(path, true) - 0.5).abs() < 1e-9);
        assert!(thread_id() > 0);
        assert!(thread_cpu_seconds(thread_id()).is_some_and(|s| s >= 0.0));
        Ok(())
    }

    #[test]
    fn a_read_carries_the_kernels_receive_time_of_the_bytes() -> Result {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        setsockopt(&client, ReceiveTimestampns, &true)?;
        let (mut server, _) = listener.accept()?;
        // The kernel turns receive timestamps on a moment after the first socket asks for them
        // (a deferred switch): bytes that arrive before carry none. Poll with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let before = now_ns();
            server.write_all(b"event: progress\n\n")?;
            std::thread::sleep(Duration::from_millis(30));
            let mut buf = [0u8; 64];
            let (n, arrived) = read_stamped(&client, &mut buf)?;
            let read = now_ns();
            assert_eq!(&buf[..n], b"event: progress\n\n");
            let Some(arrived) = arrived else {
                assert!(Instant::now() < deadline, "no SO_TIMESTAMPNS control message in 10 s");
                continue;
            };
            assert!(before <= arrived, "arrived {arrived} before the write at {before}");
            // The bytes waited in the socket for the 30 ms sleep: the kernel's time is the arrival.
            assert!(read - arrived >= 30_000_000, "arrived {arrived}, read {read}");
            return Ok(());
        }
    }
}
