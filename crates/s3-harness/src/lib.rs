//! A throw-away S3-compatible server for tests: moto's server (PyPI's `moto[server]`, an
//! independent implementation of the S3 API that AWS SDK projects test against), started once
//! per test process as a separate process on 127.0.0.1 and a free port, with a fresh bucket
//! per test ([`S3Server::bucket`]).
//!
//! - **Finding it.** `python3 -m moto.server` (`S3_HARNESS_PYTHON` names another interpreter).
//!   `.ci/run` installs `moto[server]` with pip when it is missing.
//! - **Port.** moto is started with port 0 and prints the port it bound; nothing can take it
//!   between a probe and the start.
//! - **Stopping.** moto runs under a watchdog (`sh`) that holds the read end of a pipe whose
//!   write end only this process has. When this process exits (normally, by a panic, or killed
//!   with SIGKILL) the pipe closes and the watchdog kills moto. Nothing is written to disk: moto
//!   keeps objects in memory.
//! - **Faults.** A [`Proxy`] in front of the server holds requests on demand
//!   ([`ProxyMode`]): an upload that never ends, a bucket that stops answering.
//! - **Credentials.** moto accepts any; [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`] are what the
//!   tests send, in region [`REGION`].
//! - **TLS.** [`shared_tls`] is a second server speaking https with a certificate for
//!   `127.0.0.1` signed by a CA made for it at start ([`S3Server::ca_file`]), and a second,
//!   unrelated CA ([`S3Server::other_ca_file`]) that vouches for nothing it serves. The
//!   certificates are made by Python's `cryptography` (a dependency of moto's).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Access key id the tests use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "testing";
/// Secret access key the tests use.
pub const SECRET_ACCESS_KEY: &str = "testing";
/// Region the tests use.
pub const REGION: &str = "us-east-1";

/// The `Authorization` header of the harness's own raw requests: moto checks no signature, but
/// refuses anonymous reads of private objects.
const AUTHORIZATION: &str = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0";

/// How long moto may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes, in the directory `sys.argv[1]`, `ca.pem` (a CA), `server.pem` + `server.key` (a
/// certificate for 127.0.0.1 and localhost signed by it) and `other-ca.pem` (an unrelated CA).
const MAKE_CERTIFICATES: &str = r#"
import datetime, ipaddress, os, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
def builder(subject, issuer, key):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7)))
def ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False)
    cert = (builder(name(cn), name(cn), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True).sign(key, hashes.SHA256()))
    return key, cert
def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)
ca_key, ca_cert = ca("s3-harness test CA")
_, other = ca("s3-harness unrelated CA")
key = ec.generate_private_key(ec.SECP256R1())
san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
leaf = (builder(name("127.0.0.1"), ca_cert.subject, key)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
open(os.path.join(out, "ca.pem"), "wb").write(pem(ca_cert))
open(os.path.join(out, "other-ca.pem"), "wb").write(pem(other))
open(os.path.join(out, "server.pem"), "wb").write(pem(leaf))
open(os.path.join(out, "server.key"), "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;

/// Creates the bucket `sys.argv[3]` on the https server at port `sys.argv[1]`, trusting the CA
/// in `sys.argv[2]`; prints the answer's status.
const CREATE_BUCKET_TLS: &str = r#"
import http.client, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
connection = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=context, timeout=30)
connection.request("PUT", "/" + sys.argv[3], headers={"Authorization": sys.argv[4], "Content-Length": "0"})
answer = connection.getresponse()
print(answer.status, answer.read().decode("utf-8", "replace"))
"#;

/// The files of a TLS server: its CA's certificate and an unrelated CA's.
#[derive(Debug)]
struct Tls {
    dir: PathBuf,
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running S3-compatible server.
#[derive(Debug)]
pub struct S3Server {
    endpoint: String,
    port: u16,
    tls: Option<Tls>,
    /// Held open for the process's life: its closing tells the watchdog to stop the server.
    _watchdog: (Child, ChildStdin),
    buckets: AtomicU32,
}

/// The server of this test process, started on first use.
///
/// # Panics
/// When the server cannot be started (python3 or moto missing): the message says why.
pub fn shared() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| S3Server::start().unwrap_or_else(|e| panic!("cannot start a test S3 server: {e}")))
}

/// The https server of this test process ([`S3Server::start_tls`]), started on first use.
///
/// # Panics
/// When the server cannot be started (python3, moto or `cryptography` missing).
pub fn shared_tls() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(|| S3Server::start_tls().unwrap_or_else(|e| panic!("cannot start a test S3 server: {e}")))
}

fn python() -> String {
    std::env::var("S3_HARNESS_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs the Python program `script` with `args`; its standard output.
fn run_python(script: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python()))?;
    if !output.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl S3Server {
    /// Starts moto's server.
    ///
    /// # Errors
    /// A description of what failed (no python3, no moto, no port printed in time).
    pub fn start() -> Result<S3Server, String> {
        S3Server::launch(None)
    }

    /// Starts moto's server speaking https, with a certificate for 127.0.0.1 signed by a CA
    /// made for it ([`S3Server::ca_file`]).
    ///
    /// # Errors
    /// A description of what failed (no python3, no moto or `cryptography`, no port printed).
    pub fn start_tls() -> Result<S3Server, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("s3-harness-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tls = Tls { dir };
        let dir = path_text(&tls.dir);
        run_python(MAKE_CERTIFICATES, &[dir.as_str()])?;
        S3Server::launch(Some(tls))
    }

    fn launch(tls: Option<Tls>) -> Result<S3Server, String> {
        let python = python();
        // `exec` keeps moto's stderr on our pipe; the watchdog kills it when stdin closes.
        // With TLS, `$1` is the directory of the certificate and key.
        let script = "if [ -n \"$1\" ]; then set -- -c \"$1/server.pem\" -k \"$1/server.key\"; else set --; fi; \
                      \"$0\" -m moto.server -H 127.0.0.1 -p 0 \"$@\" </dev/null 2>&1 & pid=$!; \
                      trap 'kill $pid 2>/dev/null' EXIT; read -r _ || true; kill $pid 2>/dev/null; wait $pid";
        let tls_dir = tls.as_ref().map(|tls| path_text(&tls.dir)).unwrap_or_default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut child = Command::new("sh")
            .args(["-c", script, &python, &tls_dir])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads moto's output for ever (it logs every request; a full pipe would stall it).
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut seen = Vec::new();
            let mut sent = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if sent {
                    continue;
                }
                if let Some(port) = line.split(&format!("{scheme}://127.0.0.1:")).nth(1) {
                    let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(port) = port.parse::<u16>() {
                        let _ = tx.send(Ok(port));
                        sent = true;
                        continue;
                    }
                }
                seen.push(line.trim_end().to_owned());
            }
            if !sent {
                let _ = tx.send(Err(seen.join("\n")));
            }
            // Drain anything left (never reached while moto runs).
            let _ = reader.read_to_end(&mut Vec::new());
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(port)) => port,
            Ok(Err(output)) => {
                return Err(format!(
                    "moto's server exited: {output}\n(install it with `python3 -m pip install 'moto[server]'`)"
                ));
            }
            Err(_) => return Err(format!("moto's server printed no address within {START_TIMEOUT:?}")),
        };
        Ok(S3Server {
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            port,
            tls,
            _watchdog: (child, stdin),
            buckets: AtomicU32::new(0),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`S3Server::start_tls`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port it listens on (127.0.0.1), e.g. for a [`Proxy`] in front of it.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed an https server's certificate.
    ///
    /// # Panics
    /// On a plain-http server.
    pub fn ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("an https server").dir.join("ca.pem")
    }

    /// The PEM file of a CA unrelated to an https server's certificate.
    ///
    /// # Panics
    /// On a plain-http server.
    pub fn other_ca_file(&self) -> PathBuf {
        self.tls.as_ref().expect("an https server").dir.join("other-ca.pem")
    }

    /// Creates a new empty bucket and returns its name (`test-N`).
    ///
    /// # Panics
    /// When the server refuses (the message has its answer).
    pub fn bucket(&self) -> String {
        let n = self.buckets.fetch_add(1, Ordering::Relaxed);
        let name = format!("test-{}-{n}", std::process::id());
        if let Some(tls) = &self.tls {
            let ca = tls.dir.join("ca.pem");
            let (port, ca) = (self.port.to_string(), path_text(&ca));
            let authorization = AUTHORIZATION.trim_start_matches("Authorization: ");
            let answer = run_python(CREATE_BUCKET_TLS, &[port.as_str(), ca.as_str(), name.as_str(), authorization])
                .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
            assert!(answer.starts_with("200"), "creating bucket {name}: {answer}");
            return name;
        }
        let answer = self.request("PUT", &format!("/{name}")).unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating bucket {name}: {answer}"
        );
        name
    }

    /// Every key in `bucket`, in the server's (byte) order, read with a raw `ListObjectsV2`
    /// (not through the code under test).
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        // `encoding-type=url`: any key reads back exactly (XML cannot carry a control character).
        let answer = self
            .request("GET", &format!("/{bucket}?list-type=2&max-keys=1000&encoding-type=url"))
            .expect("listing the bucket");
        tags(&answer, "Key").iter().map(|key| percent_decode(key)).collect()
    }

    /// Puts `body` at `key` in `bucket` with a raw `PutObject`, the key exactly as given, as
    /// another tool may put it (`a//b`, `a/../b`, a control character, a folder marker `dir/`):
    /// every byte but letters, digits, `-`, `_`, `~` and `/` is percent-encoded in the request,
    /// so nothing on the way resolves `.` or `..`. Plain http only, as [`S3Server::keys`].
    ///
    /// # Panics
    /// When the server does not store it.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let path = object_path(bucket, key);
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting");
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTHORIZATION}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .expect("sending");
        stream.write_all(body).expect("sending the body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("reading");
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "putting {key:?}: {answer}");
    }

    /// The multipart uploads started in `bucket` and neither completed nor aborted
    /// (`ListMultipartUploads`): their keys.
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn unfinished_uploads(&self, bucket: &str) -> Vec<String> {
        let answer = self.request("GET", &format!("/{bucket}?uploads")).expect("listing the uploads");
        tags(&answer, "Key")
    }

    /// Starts a multipart upload of `key` in `bucket` (`CreateMultipartUpload`) and leaves it
    /// open; returns its id. The key is sent exactly as given, as [`S3Server::put_object`]
    /// sends it (`a//b`, `a/../b`: another tool's upload).
    ///
    /// # Panics
    /// When the server does not answer with an id.
    pub fn start_upload(&self, bucket: &str, key: &str) -> String {
        let answer =
            self.request("POST", &format!("{}?uploads", object_path(bucket, key))).expect("starting an upload");
        tags(&answer, "UploadId").pop().unwrap_or_else(|| panic!("no upload id: {answer}"))
    }

    /// Deletes `bucket` as another tool would while the code under test uses it: its open
    /// multipart uploads are aborted and its objects deleted (S3 deletes only an empty bucket),
    /// then the bucket itself. Plain http only.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn delete_bucket(&self, bucket: &str) {
        let answer = self.request("GET", &format!("/{bucket}?uploads")).expect("listing the uploads");
        for (key, id) in tags(&answer, "Key").into_iter().zip(tags(&answer, "UploadId")) {
            self.request("DELETE", &format!("{}?uploadId={id}", object_path(bucket, &key))).expect("aborting");
        }
        for key in self.keys(bucket) {
            self.delete_object(bucket, &key);
        }
        let answer = self.request("DELETE", &format!("/{bucket}")).expect("deleting the bucket");
        assert!(
            answer.starts_with("HTTP/1.1 204") || answer.starts_with("HTTP/1.0 204"),
            "deleting bucket {bucket}: {answer}"
        );
    }

    /// Deletes `key` of `bucket` with a raw `DeleteObject`, the key sent as
    /// [`S3Server::put_object`] sends it. Plain http only.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let answer = self.request("DELETE", &object_path(bucket, key)).expect("deleting a key");
        assert!(answer.starts_with("HTTP/1.1 204") || answer.starts_with("HTTP/1.0 204"), "deleting {key:?}: {answer}");
    }

    /// Creates the bucket `name` (again, after [`S3Server::delete_bucket`]). Plain http only.
    ///
    /// # Panics
    /// When the server refuses.
    pub fn create_bucket(&self, name: &str) {
        let answer = self.request("PUT", &format!("/{name}")).unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "creating bucket {name}: {answer}"
        );
    }

    /// The content of `key` in `bucket`, read with a raw `GetObject`; `None` when missing.
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting");
        write!(
            stream,
            "GET /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTHORIZATION}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("sending");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("reading");
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..end]);
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        Some(answer[end + 4..].to_vec())
    }

    /// Sends a bodiless request and returns the whole answer (status line, headers, body).
    /// Plain http only: [`S3Server::keys`], [`S3Server::object`] and
    /// [`S3Server::unfinished_uploads`] read the plain-http server.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(deadline - Instant::now()))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTHORIZATION}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }
}

/// `/BUCKET/KEY`, every byte of the key but letters, digits, `-`, `_`, `~` and `/`
/// percent-encoded, so nothing on the way resolves a `.` or `..` name.
fn object_path(bucket: &str, key: &str) -> String {
    let mut path = format!("/{bucket}/");
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'~' | b'/' => path.push(char::from(byte)),
            _ => path.push_str(&format!("%{byte:02X}")),
        }
    }
    path
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `text` with its `%XX` escapes decoded (as UTF-8, lossily).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The texts of every `<tag>...</tag>` in `xml` (no nesting in what S3 lists).
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        out.push(
            rest[..end]
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'"),
        );
        rest = &rest[end + close.len()..];
    }
    out
}

mod proxy;
pub use proxy::{Proxy, ProxyMode};
