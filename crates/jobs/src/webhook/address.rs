//! Which webhook URLs may be called: only `http` and `https`, and only hosts whose every
//! address is public. A URL is a server-side request forgery vector: without these rules a
//! client could make the server call its own loopback services, the private network, or a
//! cloud metadata endpoint (`169.254.169.254`) and read the answer's status in
//! `GET /jobs/{id}/webhooks`.
//!
//! URLs are parsed by the WHATWG rules (the `url` crate, which reqwest uses too), so every
//! spelling of an address reaches [`forbidden_range`] in one canonical form: decimal
//! (`http://2130706433/`), octal (`0177.0.0.1`), hex (`0x7f.1`), shortened (`127.1`),
//! IPv4-mapped and -compatible IPv6 (`[::ffff:127.0.0.1]`), NAT64 (`[64:ff9b::7f00:1]`), 6to4,
//! a trailing dot (`localhost.`, resolved like `localhost`). Names are resolved and refused
//! when *any* of their addresses is forbidden. The checks run at submit and again at each
//! delivery, where the connection goes to the addresses this check returned (no second
//! lookup between check and connect for an attacker's DNS to answer differently).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Longest wait for a host name's addresses (a submission waits for them).
pub const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a webhook URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookUrlError {
    /// Longer than [`MAX_URL_BYTES`].
    #[error("webhook_url is {0} bytes long; at most {MAX_URL_BYTES} are allowed")]
    TooLong(usize),
    /// Not a URL.
    #[error("webhook_url `{url}` is not a valid URL: {source}")]
    Parse {
        /// The text given.
        url: String,
        /// What the parser said.
        #[source]
        source: url::ParseError,
    },
    /// A scheme other than `http` or `https`.
    #[error("webhook_url `{url}`: scheme `{scheme}` is not allowed (use http or https)")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No host.
    #[error("webhook_url `{0}` has no host")]
    NoHost(String),
    /// The host name does not resolve (or resolves to nothing).
    #[error("webhook_url host `{host}` does not resolve: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// What the resolver said.
        #[source]
        source: std::io::Error,
    },
    /// The host is, or resolves to, an address the rules refuse.
    #[error(
        "webhook_url host `{host}` is {range} address {addr}; webhooks go to public addresses only \
         (the operator can allow private ones with WEBHOOK_ALLOW_PRIVATE=true)"
    )]
    Forbidden {
        /// The host as written.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// What kind of address it is ("a loopback", "a private", ...).
        range: &'static str,
    },
}

/// Parses a webhook URL: at most [`MAX_URL_BYTES`], `http` or `https`, with a host. Does not
/// look at the host's addresses ([`check`] does).
///
/// # Errors
/// [`WebhookUrlError::TooLong`], [`WebhookUrlError::Parse`], [`WebhookUrlError::Scheme`],
/// [`WebhookUrlError::NoHost`].
pub fn parse(url: &str) -> Result<Url, WebhookUrlError> {
    if url.len() > MAX_URL_BYTES {
        return Err(WebhookUrlError::TooLong(url.len()));
    }
    let parsed = Url::parse(url).map_err(|source| WebhookUrlError::Parse { url: url.to_owned(), source })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookUrlError::Scheme { url: url.to_owned(), scheme: parsed.scheme().to_owned() });
    }
    if parsed.host().is_none() {
        return Err(WebhookUrlError::NoHost(url.to_owned()));
    }
    Ok(parsed)
}

/// The addresses to connect to for `url`, each allowed by the rules (unless `allow_private`):
/// the literal address, or every address the name resolves to (tokio's resolver, the system's
/// `getaddrinfo`, on the blocking pool).
///
/// # Errors
/// [`WebhookUrlError::Resolve`] for a name that does not resolve; [`WebhookUrlError::Forbidden`]
/// when an address is refused.
pub async fn check(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, WebhookUrlError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let (name, addrs) = match url.host() {
        None => return Err(WebhookUrlError::NoHost(url.to_string())),
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(Host::Domain(name)) => (name.to_owned(), resolve(name, port).await?),
    };
    check_addrs(&name, &addrs, allow_private)?;
    Ok(addrs)
}

/// Resolves `name` (a trailing dot is the same name) to its addresses, waiting at most
/// [`RESOLVE_TIMEOUT`].
///
/// # Errors
/// [`WebhookUrlError::Resolve`].
pub async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, WebhookUrlError> {
    let host = name.strip_suffix('.').unwrap_or(name);
    let resolve_error = |source| WebhookUrlError::Resolve { host: name.to_owned(), source };
    let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer from the resolver within 5 s");
    let addrs: Vec<SocketAddr> = lookup.map_err(|_| resolve_error(timed_out()))?.map_err(resolve_error)?.collect();
    if addrs.is_empty() {
        return Err(resolve_error(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")));
    }
    Ok(addrs)
}

/// Refuses `addrs` (of host `name`) when any is forbidden, unless `allow_private`.
///
/// # Errors
/// [`WebhookUrlError::Forbidden`] naming the first refused address.
pub fn check_addrs(name: &str, addrs: &[SocketAddr], allow_private: bool) -> Result<(), WebhookUrlError> {
    if allow_private {
        return Ok(());
    }
    for addr in addrs {
        if let Some(range) = forbidden_range(addr.ip()) {
            return Err(WebhookUrlError::Forbidden { host: name.to_owned(), addr: addr.ip(), range });
        }
    }
    Ok(())
}

/// What kind of non-public address `ip` is ("a loopback", "a private", "a link-local",
/// "a metadata", ...), or `None` for a public unicast address. IPv6 addresses that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the embedded one.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "a loopback",
        (0, ..) => "an unspecified (\"this network\")",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "a private",
        (169, 254, _) if ip == Ipv4Addr::new(169, 254, 169, 254) => "a metadata",
        (169, 254, _) => "a link-local",
        // Carrier-grade NAT, also where some clouds put metadata (100.100.100.200).
        (100, 64..=127, _) => "a shared (carrier-grade NAT)",
        (192, 0, 0) => "an IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation",
        (198, 18..=19, _) => "a benchmarking",
        (192, 88, 99) => "a 6to4 relay",
        _ if ip.is_multicast() => "a multicast",
        (240..=255, ..) => "a reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        // An embedded address is judged as itself: public stays public.
        return forbidden_v4(v4);
    }
    Some(match segments[0] {
        _ if ip.is_loopback() => "a loopback",
        _ if ip.is_unspecified() => "an unspecified",
        _ if ip.is_multicast() => "a multicast",
        s if s & 0xfe00 == 0xfc00 => "a private (unique local)",
        s if s & 0xffc0 == 0xfe80 => "a link-local",
        s if s & 0xffc0 == 0xfec0 => "a site-local",
        0x2001 if segments[1] == 0x0db8 => "a documentation",
        0x0100 if segments[1..4] == [0, 0, 0] => "a discard-only",
        // Outside 2000::/3 nothing is global unicast.
        s if s & 0xe000 != 0x2000 => "a reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated, but some stacks still route it), NAT64 (`64:ff9b::a.b.c.d`,
/// `64:ff9b:1::/48`) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // `::` and `::1` are themselves (unspecified, loopback), not embedded addresses.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}
