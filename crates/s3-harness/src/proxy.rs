//! [`Proxy`]: a TCP proxy in front of the test S3 server whose behaviour a test switches while
//! it runs, to make a bucket slow or dead deterministically (no sleeps, no process signals that
//! would stop the server every other test of the process shares).

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What a [`Proxy`] does with the requests it receives from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Every request goes through.
    Pass = 0,
    /// Requests that upload a part of a multipart upload (`UploadPart`: a query with
    /// `partNumber=`) are held for ever (never reach the server, never get an answer); the
    /// rest go through: an upload that never ends, while aborting it works.
    HoldParts = 1,
    /// Every request is held for ever (connections are still accepted, as the kernel of a
    /// stopped server accepts them): a bucket that does not answer.
    Silent = 2,
    /// The next `CompleteMultipartUpload` (a `POST` with `uploadId=`) reaches the server, but
    /// its answer never reaches the client: the connection is closed when the answer comes (a
    /// connection that broke after the server acted), so the client retries. Then the proxy is
    /// back in [`ProxyMode::Pass`] by itself.
    LoseOneCompletionAnswer = 3,
}

/// A proxy on 127.0.0.1 to the server at a port. Its threads live as long as the test process
/// (or their connections).
#[derive(Debug, Clone)]
pub struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    counters: Counters,
}

/// The markers counted, each with its count.
type Counters = Arc<Mutex<Vec<(&'static [u8], Arc<AtomicUsize>)>>>;

/// Longest marker a [`Proxy::counter`] counts (a marker straddling two reads is still seen).
const MARKER_MAX: usize = 64;

/// How many times a marker went through a [`Proxy`] toward the server since
/// [`Proxy::counter`] made it.
#[derive(Debug, Clone)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    /// The count now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, in [`ProxyMode::Pass`].
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy's port");
        let port = listener.local_addr().expect("the proxy's address").port();
        let mode = Arc::new(AtomicU8::new(ProxyMode::Pass as u8));
        let counters = Counters::default();
        let (shared, shared_counters) = (Arc::clone(&mode), Arc::clone(&counters));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (mode, counters) = (Arc::clone(&shared), Arc::clone(&shared_counters));
                std::thread::spawn(move || relay(client, upstream, &mode, &counters));
            }
        });
        Proxy { port, mode, counters }
    }

    /// Counts, from now on, the times `marker` (at most 64 bytes) goes through toward the
    /// server: with a marker only a request's first line holds (`list-type=2` for
    /// `ListObjectsV2`), the requests of that kind. (A body holding the marker would count too.)
    ///
    /// # Panics
    /// When the marker is empty or longer than 64 bytes.
    pub fn counter(&self, marker: &'static str) -> Counter {
        assert!((1..=MARKER_MAX).contains(&marker.len()), "a marker of 1 to {MARKER_MAX} bytes");
        let count = Arc::new(AtomicUsize::new(0));
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.push((marker.as_bytes(), Arc::clone(&count)));
        Counter(count)
    }

    /// `http://127.0.0.1:PORT`: the endpoint to give clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Switches what the proxy does with the requests it receives from now on (a request held
    /// stays held).
    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

/// Copies `client`'s requests to the server and its answers back, holding what the mode says.
fn relay(mut client: TcpStream, upstream: u16, mode: &AtomicU8, counters: &Counters) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else { return };
    let (Ok(mut client_back), Ok(mut server_back)) = (client.try_clone(), server.try_clone()) else { return };
    // Set once the next answer on this connection is to be lost: the connection to the client
    // is closed when it comes, instead of passing it on.
    let lose = Arc::new(AtomicBool::new(false));
    let losing = Arc::clone(&lose);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match server_back.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if losing.load(Ordering::SeqCst) || client_back.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = client_back.shutdown(Shutdown::Both);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    // The end of the previous read: a marker may straddle two reads.
    let mut tail: Vec<u8> = Vec::new();
    let mut holding = false;
    // The end of what was counted: a counted marker may straddle two reads.
    let mut counted_tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        // Markers that end in this read (one that began in the previous read included).
        let mut window = std::mem::take(&mut counted_tail);
        let before = window.len();
        window.extend_from_slice(chunk);
        for (marker, count) in counters.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let found = window
                .windows(marker.len())
                .enumerate()
                .filter(|(start, w)| start + marker.len() > before && w == marker)
                .count();
            count.fetch_add(found, Ordering::SeqCst);
        }
        counted_tail = window[window.len().saturating_sub(MARKER_MAX - 1)..].to_vec();
        if !holding {
            let mut seen = std::mem::take(&mut tail);
            seen.extend_from_slice(chunk);
            holding = match mode.load(Ordering::SeqCst) {
                m if m == ProxyMode::Silent as u8 => true,
                m if m == ProxyMode::HoldParts as u8 => contains(&seen, b"partNumber="),
                m if m == ProxyMode::LoseOneCompletionAnswer as u8 => {
                    // A request's first line (a read starts with it: the client writes each
                    // request's head at once): `POST /bucket/key?uploadId=... HTTP/1.1`.
                    let first_line = chunk.split(|c| *c == b'\n').next().unwrap_or_default();
                    if first_line.starts_with(b"POST ")
                        && contains(first_line, b"uploadId=")
                        && mode.compare_exchange(m, ProxyMode::Pass as u8, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                    {
                        lose.store(true, Ordering::SeqCst);
                    }
                    false
                }
                _ => false,
            };
            tail = seen[seen.len().saturating_sub(16)..].to_vec();
        }
        // A held connection reads on (the client may close it) and forwards nothing.
        if !holding && server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
