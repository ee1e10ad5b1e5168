//! One webhook attempt over HTTP: the request (body, Standard Webhooks headers, signature), and
//! the address rules enforced on the connection itself.
//!
//! Two reqwest clients, neither following redirects nor taking a proxy from the environment,
//! each with a per-request timeout:
//! - `checked`, for jobs' own URLs: its DNS resolver is [`CheckedResolver`], which resolves a
//!   name and refuses it unless every address is public ([`address::check_addrs`]); reqwest
//!   then connects to exactly those addresses, so no second lookup can answer differently
//!   between the check and the connection (DNS rebinding). A URL with an address literal
//!   needs no lookup and is checked before the request.
//! - `trusted`, for the server's own `WEBHOOK_URL` (and for every URL when
//!   `WEBHOOK_ALLOW_PRIVATE=true`): the system resolver, no address rules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jobs::webhook::address::{self, WebhookUrlError};
use jobs::webhook::{AttemptResult, Delivery, SubscriptionSource};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::sign::Secret;

/// The kind of an attempt's result, for the `result` label of the attempts counter (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptKind {
    /// 2xx.
    Success,
    /// 410 Gone.
    Gone,
    /// Any other status.
    HttpError,
    /// No answer within the timeout.
    Timeout,
    /// The address rules refused the host.
    Refused,
    /// Connection refused or reset, TLS failure, name not found, ...
    Network,
}

impl AttemptKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Success => "success",
            AttemptKind::Gone => "gone",
            AttemptKind::HttpError => "http_error",
            AttemptKind::Timeout => "timeout",
            AttemptKind::Refused => "refused",
            AttemptKind::Network => "network",
        }
    }

    /// Every label value.
    pub const ALL: [AttemptKind; 6] = [
        AttemptKind::Success,
        AttemptKind::Gone,
        AttemptKind::HttpError,
        AttemptKind::Timeout,
        AttemptKind::Refused,
        AttemptKind::Network,
    ];
}

/// Sends attempts (see the [module docs](self)).
#[derive(Debug)]
pub struct Sender {
    checked: reqwest::Client,
    trusted: reqwest::Client,
    allow_private: bool,
    timeout: Duration,
}

/// Resolves names for the `checked` client, refusing any that has a non-public address.
#[derive(Debug)]
struct CheckedResolver;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            // reqwest sets the URL's port on the addresses it gets.
            let addrs = address::resolve(name.as_str(), 0).await?;
            address::check_addrs(name.as_str(), &addrs, false)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn client(timeout: Duration, resolver: Option<Arc<CheckedResolver>>) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("ffmpeg-worker/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    builder.build()
}

impl Sender {
    /// Clients with a per-request `timeout`; `allow_private` lifts the address rules.
    ///
    /// # Errors
    /// reqwest cannot build a client (its TLS backend failed to initialise).
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Sender, reqwest::Error> {
        Ok(Sender {
            checked: client(timeout, Some(Arc::new(CheckedResolver)))?,
            trusted: client(timeout, None)?,
            allow_private,
            timeout,
        })
    }

    /// One attempt of `delivery`, signed with `secret`, with `body` (the payload).
    pub async fn send(&self, delivery: &Delivery, body: Vec<u8>, secret: &Secret) -> (AttemptResult, AttemptKind) {
        let refused = |e: WebhookUrlError| (AttemptResult::Refused(format!("refused: {e}")), AttemptKind::Refused);
        let url = match address::parse(&delivery.url) {
            Ok(url) => url,
            Err(e) => return refused(e),
        };
        let checked = delivery.source == SubscriptionSource::Job && !self.allow_private;
        if checked && let Err(e) = check_literal(&url) {
            return refused(e);
        }
        let client = if checked { &self.checked } else { &self.trusted };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = secret.sign(delivery.id.as_str(), timestamp, &body);
        let request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", delivery.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let code = response.status().as_u16();
                let kind = match code {
                    200..=299 => AttemptKind::Success,
                    410 => AttemptKind::Gone,
                    _ => AttemptKind::HttpError,
                };
                (AttemptResult::Status(code), kind)
            }
            Err(e) => self.describe(&e),
        }
    }

    /// A short reason for a request that got no answer.
    fn describe(&self, e: &reqwest::Error) -> (AttemptResult, AttemptKind) {
        if e.is_timeout() {
            let reason = format!("no answer within {}", humantime::format_duration(self.timeout));
            return (AttemptResult::Error(reason), AttemptKind::Timeout);
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut innermost = e.to_string();
        while let Some(s) = source {
            if let Some(refusal) = s.downcast_ref::<WebhookUrlError>() {
                return (AttemptResult::Refused(format!("refused: {refusal}")), AttemptKind::Refused);
            }
            innermost = s.to_string();
            source = s.source();
        }
        (AttemptResult::Error(format!("connection failed: {innermost}")), AttemptKind::Network)
    }
}

/// A URL whose host is an address literal is checked here (reqwest does not resolve it);
/// names are checked by the resolver.
fn check_literal(url: &Url) -> Result<(), WebhookUrlError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, ip) = match url.host() {
        Some(Host::Ipv4(ip)) => (ip.to_string(), std::net::IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => (ip.to_string(), std::net::IpAddr::V6(ip)),
        _ => return Ok(()),
    };
    address::check_addrs(&host, &[SocketAddr::new(ip, port)], false)
}
