//! `bench files [--size-mib N=1024] [--rounds R=5] [--data-dir DIR] [--no-build]`: a download
//! (`GET /files/{path}`) and an upload (`PUT /files/{path}`) of one N MiB file over loopback,
//! against raw loopback TCP copies of the same file in the same run, rounds interleaved.
//!
//! Per round, in this order: a raw copy (the file sent with `sendfile` into a socket, the other
//! end reading into a 256 KiB buffer and dropping the bytes, as `socat`/`nc` into `/dev/null`
//! would), the download; a raw copy, the upload; and a raw copy into a file in the data
//! directory, `fsync`ed at the end (what a durable upload cannot beat on this disk). The HTTP
//! client side is the raw copy's: the download reads the body into the same buffer, the upload
//! sends the file with `sendfile` after its headers; so the ratios measure the server alone.
//! The upload's time runs until the server's answer (after its `fsync` and rename).
//!
//! While the server transfers, its resident memory is sampled every 10 ms; the growth is the
//! highest sample minus the last one before the transfer.
//!
//! Everything reads the source from the page cache (a warm-up round, not counted, first), so the
//! disk only matters where something is written: the upload and the raw copy into a file.
//! `--data-dir` chooses where the server's data directory (and the source file) live: the
//! default is the system's temporary directory; `/dev/shm` (tmpfs) shows the server without a
//! disk behind it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::server::{Server, WorkerConfig, release_binary};
use super::{Args, load_average, machine, median, print};
use crate::Result;

/// Bytes per read on the receiving end of every transfer.
const BUFFER: usize = 256 * 1024;
/// How often the server's resident memory is sampled during a transfer.
const RSS_EVERY: Duration = Duration::from_millis(10);

struct Options {
    size_mib: u64,
    rounds: usize,
    data_dir: Option<PathBuf>,
    build: bool,
}

/// One round's figures: throughputs in MiB/s, RSS growth in MiB.
#[derive(Debug, Clone, Copy)]
struct Round {
    raw_down: f64,
    download: f64,
    raw_up: f64,
    upload: f64,
    raw_file: f64,
    download_rss: f64,
    upload_rss: f64,
}

pub(super) fn main(args: &[&str]) -> Result {
    let mut a = Args::new(args);
    let opts = Options {
        size_mib: a.value("--size-mib", 1024)?,
        rounds: a.value("--rounds", 5)?,
        data_dir: a.value("--data-dir", String::new()).map(|d| (!d.is_empty()).then(|| PathBuf::from(d)))?,
        build: !a.switch("--no-build"),
    };
    a.finish()?;
    if opts.size_mib == 0 || opts.rounds == 0 {
        return Err("--size-mib and --rounds must be at least 1".into());
    }
    eprintln!("bench files: {}\nload average (1, 5, 15 min) at the start: {}", machine(), load_average());
    let bin = release_binary(opts.build)?;
    let dir = match &opts.data_dir {
        Some(parent) => tempfile::tempdir_in(parent)?,
        None => tempfile::tempdir()?,
    };
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let size = opts.size_mib * 1024 * 1024;
    let source = data.join("big.bin");
    eprintln!("writing the {} MiB source file in {}", opts.size_mib, data.display());
    write_source(&source, size)?;
    let database_url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let log = dir.path().join("server.log");
    let config = WorkerConfig::new(&bin, &data, &database_url, &log);
    let server = Server::ffmpeg_worker(&config)?;
    let addr: SocketAddr = server.base().trim_start_matches("http://").parse()?;
    let in_file = dir.path().join("raw.bin");

    eprintln!("warm-up round (not counted)");
    round(&server, addr, &source, &in_file, size).map_err(|e| format!("{e}\n{}", server.log_tail()))?;
    let mut rounds = Vec::new();
    for n in 0..opts.rounds {
        let r = round(&server, addr, &source, &in_file, size).map_err(|e| format!("{e}\n{}", server.log_tail()))?;
        eprintln!(
            "round {}: download {:.0} MiB/s (raw {:.0}, {:.2}x, RSS +{:.1} MiB); upload {:.0} MiB/s (raw {:.0}, {:.2}x; raw into a file {:.0}, {:.2}x; RSS +{:.1} MiB)",
            n + 1,
            r.download,
            r.raw_down,
            r.download / r.raw_down,
            r.download_rss,
            r.upload,
            r.raw_up,
            r.upload / r.raw_up,
            r.raw_file,
            r.upload / r.raw_file,
            r.upload_rss,
        );
        rounds.push(r);
    }
    drop(server);
    print(&report(&opts, &data, &rounds))
}

/// `size` bytes of xorshift noise (nothing a file system or a network path could compress).
fn write_source(path: &Path, size: u64) -> Result {
    let mut file = std::io::BufWriter::with_capacity(BUFFER, std::fs::File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; BUFFER];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left.min(BUFFER as u64))?;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// One round: raw, download, raw, upload, raw into a file.
fn round(server: &Server, addr: SocketAddr, source: &Path, in_file: &Path, size: u64) -> Result<Round> {
    let mib = |seconds: f64| size as f64 / 1024.0 / 1024.0 / seconds;
    let raw_down = mib(raw_copy(source, None, size)?);
    let (seconds, download_rss) = with_rss(server, || download(addr, "/files/big.bin", size))?;
    let download = mib(seconds);
    let raw_up = mib(raw_copy(source, None, size)?);
    let (seconds, upload_rss) = with_rss(server, || upload(addr, "/files/up/copy.bin", source, size))?;
    let upload = mib(seconds);
    let raw_file = mib(raw_copy(source, Some(in_file), size)?);
    std::fs::remove_file(in_file)?;
    Ok(Round { raw_down, download, raw_up, upload, raw_file, download_rss, upload_rss })
}

/// Runs `transfer` while sampling the server's resident memory; returns its seconds and the
/// growth in MiB.
fn with_rss(server: &Server, transfer: impl FnOnce() -> Result<f64>) -> Result<(f64, f64)> {
    let before = server.memory()?.rss_kib;
    let pid = server.pid();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut highest = 0u64;
            while !done.load(Ordering::SeqCst) {
                highest = highest.max(rss_kib(pid));
                std::thread::sleep(RSS_EVERY);
            }
            highest.max(rss_kib(pid))
        })
    };
    let seconds = transfer();
    done.store(true, Ordering::SeqCst);
    let highest = sampler.join().map_err(|_| "the RSS sampler panicked")?;
    Ok((seconds?, highest.saturating_sub(before) as f64 / 1024.0))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `stream` to its end into a [`BUFFER`], into `sink` when given (then `fsync`ed);
/// returns the bytes read.
fn drain(mut stream: impl std::io::Read, mut sink: Option<std::fs::File>) -> std::io::Result<u64> {
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(file) = sink.as_mut() {
            file.write_all(&buf[..n])?;
        }
        total += n as u64;
    }
    if let Some(file) = sink {
        file.sync_all()?;
    }
    Ok(total)
}

/// A raw loopback copy of `source`: `sendfile` into a socket, the other end reading it to its
/// end (into `into` when given, `fsync`ed). Returns the seconds until the last byte was read
/// (and synced).
fn raw_copy(source: &Path, into: Option<&Path>, size: u64) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = into.map(std::fs::File::create).transpose()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (stream, _) = listener.accept()?;
        drain(stream, sink)
    });
    let start = Instant::now();
    let mut file = std::fs::File::open(source)?;
    let mut stream = TcpStream::connect(addr)?;
    // std copies a file into a socket with `sendfile` on Linux.
    std::io::copy(&mut file, &mut stream)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let received = receiver.join().map_err(|_| "the raw receiver panicked")??;
    let seconds = start.elapsed().as_secs_f64();
    if received != size {
        return Err(format!("the raw copy received {received} of {size} bytes").into());
    }
    Ok(seconds)
}

/// Reads an HTTP/1.1 answer's head; returns the status and `Content-Length`.
fn read_head(reader: &mut impl std::io::BufRead) -> Result<(u16, Option<u64>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).ok_or("no status line")?.parse()?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse()?);
        }
    }
    Ok((status, length))
}

/// `GET path`, the body read into a [`BUFFER`] and dropped; the seconds until its last byte.
fn download(addr: SocketAddr, path: &str, size: u64) -> Result<f64> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reader = BufReader::with_capacity(BUFFER, stream);
    let (status, length) = read_head(&mut reader)?;
    if status != 200 || length != Some(size) {
        return Err(format!("GET {path}: {status}, Content-Length {length:?} (expected 200, {size})").into());
    }
    // What the head's buffer already holds, then the rest.
    let buffered = reader.buffer().len() as u64;
    reader.consume(reader.buffer().len());
    let received = buffered + drain(reader.into_inner(), None)?;
    let seconds = start.elapsed().as_secs_f64();
    if received != size {
        return Err(format!("GET {path}: received {received} of {size} bytes").into());
    }
    Ok(seconds)
}

/// `PUT path` with `source` as the body (sent with `sendfile`); the seconds until the answer.
fn upload(addr: SocketAddr, path: &str, source: &Path, size: u64) -> Result<f64> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    )?;
    std::io::copy(&mut std::fs::File::open(source)?, &mut stream)?;
    let mut reader = BufReader::new(stream);
    let (status, _) = read_head(&mut reader)?;
    let mut body = String::new();
    reader.read_to_string(&mut body)?;
    let seconds = start.elapsed().as_secs_f64();
    let stored: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if !matches!(status, 200 | 201) || stored["size_bytes"] != size {
        return Err(format!("PUT {path}: {status} {body}").into());
    }
    Ok(seconds)
}

fn report(opts: &Options, data: &Path, rounds: &[Round]) -> String {
    let column = |f: fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let highest = |f: fn(&Round) -> f64| rounds.iter().map(f).fold(0.0, f64::max);
    let mut out = format!(
        "\n### `cargo xtask bench files` ({} MiB, {} rounds, data directory in {})\n\n{}; load average at the end {}\n\n",
        opts.size_mib,
        rounds.len(),
        data.parent().and_then(Path::parent).unwrap_or(data).display(),
        machine(),
        load_average()
    );
    out.push_str("| | median MiB/s | median ratio | server RSS growth (median / max) |\n|---|---|---|---|\n");
    out.push_str(&format!("| raw copy (before the download) | {:.0} | | |\n", column(|r| r.raw_down)));
    out.push_str(&format!(
        "| download `GET /files` | {:.0} | {:.2}x raw | {:.1} / {:.1} MiB |\n",
        column(|r| r.download),
        column(|r| r.download / r.raw_down),
        column(|r| r.download_rss),
        highest(|r| r.download_rss)
    ));
    out.push_str(&format!("| raw copy (before the upload) | {:.0} | | |\n", column(|r| r.raw_up)));
    out.push_str(&format!(
        "| upload `PUT /files` (hashed, fsynced, renamed) | {:.0} | {:.2}x raw | {:.1} / {:.1} MiB |\n",
        column(|r| r.upload),
        column(|r| r.upload / r.raw_up),
        column(|r| r.upload_rss),
        highest(|r| r.upload_rss)
    ));
    out.push_str(&format!(
        "| raw copy into a file, fsynced | {:.0} | upload {:.2}x this | |\n",
        column(|r| r.raw_file),
        column(|r| r.upload / r.raw_file)
    ));
    out.push_str("\nPer round (MiB/s): raw, download, raw, upload, raw into a file\n\n");
    for (n, r) in rounds.iter().enumerate() {
        out.push_str(&format!(
            "- {}: {:.0}, {:.0}, {:.0}, {:.0}, {:.0}\n",
            n + 1,
            r.raw_down,
            r.download,
            r.raw_up,
            r.upload,
            r.raw_file
        ));
    }
    out
}
