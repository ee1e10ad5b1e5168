//! The bucket's settings ([`S3Config`], from `STORAGE_URL` and the `AWS_*` settings) and
//! building the client over them ([`S3Storage::new`], [`S3Storage::check`]).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use ffmpeg_core::sandbox::Sandbox;
use object_store::RetryConfig;
use object_store::aws::AmazonS3Builder;
use object_store::client::{ClientOptions, HttpConnector as _};

use super::http::{Connector, S3Timeouts, read_ca_bundle};
use super::raw::Raw;
use super::{COPY_MAX_BYTES, S3Storage};
use crate::storage::StorageError;

/// Where the bucket is and how to reach it: `STORAGE_URL=s3://bucket/prefix` and the usual
/// `AWS_*` settings.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// Key prefix under which the files live (no leading or trailing `/`; empty: the whole
    /// bucket).
    pub prefix: String,
    /// The service's URL (`http://127.0.0.1:9000` for MinIO, an R2 account URL, ...); `None`:
    /// AWS S3 of [`S3Config::region`].
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when the server ignores regions).
    pub region: String,
    /// Access key id; `None` with no secret: the instance's or container's credentials (IMDS,
    /// ECS, web identity), as the AWS SDKs find them.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Address the bucket as `https://BUCKET.endpoint/KEY` (virtual-hosted style) instead of
    /// `https://endpoint/BUCKET/KEY` (path style, what most self-hosted servers expect).
    pub virtual_hosted_style: bool,
    /// How long a request may wait for the bucket ([`S3Timeouts`]).
    pub timeouts: S3Timeouts,
    /// A PEM file of CA certificates trusted for an `https://` endpoint besides the built-in
    /// web roots (`AWS_CA_BUNDLE`, the AWS CLI's name): a server with a private CA.
    pub ca_bundle: Option<PathBuf>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret or the token.
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("timeouts", &self.timeouts)
            .field("ca_bundle", &self.ca_bundle)
            .finish_non_exhaustive()
    }
}

/// A `STORAGE_URL` that is not `s3://BUCKET[/PREFIX]`, or a client that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("storage URL `{url}`: {problem}")]
pub struct S3ConfigError {
    /// The URL or setting as given.
    pub url: String,
    /// What is wrong with it.
    pub problem: String,
}

impl S3Config {
    /// Bucket and prefix from `s3://BUCKET[/PREFIX]` (the scheme in any case: `S3://` too,
    /// RFC 3986 section 3.1), every other setting at its default (region `us-east-1`).
    ///
    /// # Errors
    /// [`S3ConfigError`] naming `STORAGE_URL` and what is wrong (tester finding K3): white
    /// space around it, `s3:` without its two slashes (`s3:/b`), another scheme, no bucket, a
    /// bucket name with a character no bucket name has (an endpoint's `http:` put where the
    /// bucket goes), or a prefix with `.`/`..`/empty components.
    pub fn from_url(url: &str) -> Result<S3Config, S3ConfigError> {
        let error = |problem: String| S3ConfigError { url: url.to_owned(), problem };
        if url.trim() != url {
            return Err(error("STORAGE_URL starts or ends with white space".to_owned()));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            let problem = match url.get(..3) {
                Some(start) if start.eq_ignore_ascii_case("s3:") => {
                    "STORAGE_URL must start with `s3://` (two slashes), then the bucket: s3://BUCKET[/PREFIX]"
                }
                _ => "STORAGE_URL has no scheme: only s3://BUCKET[/PREFIX] is supported",
            };
            return Err(error(problem.to_owned()));
        };
        if !scheme.eq_ignore_ascii_case("s3") {
            return Err(error(format!("only s3://BUCKET[/PREFIX] is supported, not `{scheme}://`")));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(error("STORAGE_URL has no bucket name: s3://BUCKET[/PREFIX]".to_owned()));
        }
        // S3's rules allow lower-case letters, digits, `.` and `-` (older buckets and other
        // servers: upper case and `_` too); anything else is not a bucket's name.
        if let Some(c) = bucket.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
            return Err(error(format!(
                "the bucket name `{bucket}` holds {c:?}, which no bucket name has; STORAGE_URL is \
                 s3://BUCKET[/PREFIX], and the server's URL goes in AWS_ENDPOINT_URL"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return Err(error("the prefix has an empty, `.` or `..` component".to_owned()));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            region: "us-east-1".to_owned(),
            ..S3Config::default()
        })
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// What is wrong with `endpoint` (`AWS_ENDPOINT_URL`) for `config`, named in words that say
/// the setting (tester finding K3; `object_store` said "builder error" or sent every request
/// to a wrong URL): white space around it, no `http://` or `https://` scheme, or, with
/// path-style requests, a path ending in the bucket's name (the requests would go to
/// `/BUCKET/BUCKET/KEY`). A path otherwise stays (a server behind a proxy at a sub-path).
fn endpoint_problem(endpoint: &str, config: &S3Config) -> Result<(), String> {
    if endpoint.trim() != endpoint {
        return Err(format!("AWS_ENDPOINT_URL `{endpoint}` starts or ends with white space"));
    }
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err(format!(
            "AWS_ENDPOINT_URL `{endpoint}` has no scheme: write https://{endpoint} (or http://{endpoint} with \
             AWS_ALLOW_HTTP=true)"
        ));
    };
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!("AWS_ENDPOINT_URL `{endpoint}`: only http:// and https:// URLs are supported"));
    }
    let path = rest.split_once('/').map_or("", |(_, path)| path).trim_end_matches('/');
    if !config.virtual_hosted_style && !path.is_empty() && path.rsplit('/').next() == Some(config.bucket.as_str()) {
        return Err(format!(
            "AWS_ENDPOINT_URL `{endpoint}` ends with the bucket's name `{}`: give the server's URL without it \
             (the bucket is named in STORAGE_URL only)",
            config.bucket
        ));
    }
    Ok(())
}

impl S3Storage {
    /// A client for `config`'s bucket. No request is made yet (see [`S3Storage::check`]).
    ///
    /// # Errors
    /// [`S3ConfigError`] when the client cannot be built (a malformed endpoint, a CA bundle
    /// that cannot be read or holds no certificate, ...), or the private empty directory for
    /// path checks cannot be created.
    pub fn new(config: &S3Config) -> Result<S3Storage, S3ConfigError> {
        let error = |problem: String| S3ConfigError { url: config.url(), problem };
        if let Some(endpoint) = &config.endpoint {
            endpoint_problem(endpoint, config).map_err(error)?;
        }
        if let Some(endpoint) = &config.endpoint
            && endpoint.trim_start().to_ascii_lowercase().starts_with("http://")
            && !config.allow_http
        {
            // The HTTP client would refuse every request with a bare "builder error".
            return Err(error(format!(
                "AWS_ENDPOINT_URL `{endpoint}` is plain http: set AWS_ALLOW_HTTP=true to allow it, or use https://"
            )));
        }
        let timeouts = config.timeouts;
        let roots = match &config.ca_bundle {
            Some(path) => read_ca_bundle(path).map_err(error)?,
            None => Vec::new(),
        };
        // The requests `object_store` cannot make (`raw.rs`) go through a client of their own,
        // built the same way.
        let raw_client = Connector { timeouts, roots: roots.clone() }
            .connect(&ClientOptions::new().with_allow_http(config.allow_http))
            .map_err(|e| error(e.to_string()))?;
        let mut builder = AmazonS3Builder::new()
            // Connect, first answer, stalls and copies bounded as `http.rs` says; TLS trusting
            // the CA bundle too.
            .with_http_connector(Connector { timeouts, roots })
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            // A failure is retried (a refused connection, a 5xx answer) only within the request
            // timeout: a bucket that does not answer fails a request within about the request
            // timeout (503 at the API), not after object_store's default 3 minutes of retries.
            .with_retry(RetryConfig { max_retries: 3, retry_timeout: timeouts.request, ..RetryConfig::default() });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let store = builder.build().map_err(|e| error(e.to_string()))?;
        // Every request `object_store` cannot make (listings and deletes of any key, part
        // copies, conditional completions and deletes, open uploads: `raw.rs`) goes through one
        // sender, with the same bounds and TLS roots.
        let raw = Raw::new(
            raw_client,
            Arc::clone(store.credentials()),
            config.endpoint.as_deref(),
            config.virtual_hosted_style,
            &config.bucket,
            &config.region,
            timeouts.request,
        );
        let empty = tempfile::Builder::new()
            .prefix("ffmpeg-worker-s3-paths-")
            .tempdir()
            .map_err(|e| error(format!("cannot create a directory for path checks: {e}")))?;
        let mut sandbox = Sandbox::new(empty.path()).map_err(|e| error(e.to_string()))?;
        // Workers stage jobs' files there in the data directory; no job may name it, nor may
        // the files API (tester finding F17).
        sandbox.deny(crate::staging::STAGING_DIR);
        Ok(S3Storage {
            store: Arc::new(store),
            raw,
            copy_part_bytes: COPY_MAX_BYTES,
            #[cfg(test)]
            after_check: Arc::default(),
            prefix: config.prefix.clone(),
            url: config.url(),
            paths: Arc::new((sandbox, empty)),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Lists one key under the prefix: the bucket exists and the credentials may read it.
    /// Whatever keys the bucket holds (another tool's included), only the answer counts.
    ///
    /// # Errors
    /// [`StorageError::Io`] with the server's reason.
    pub async fn check(&self) -> Result<(), StorageError> {
        self.any_key(self.dir_prefix(""), &self.url).await.map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `STORAGE_URL` `url` is refused with a message holding `expected` (`Ok`: its bucket and
    /// prefix).
    #[track_caller]
    fn check(url: &str, expected: Result<(&str, &str), &str>) {
        match (S3Config::from_url(url), expected) {
            (Ok(config), Ok((bucket, prefix))) => {
                assert_eq!((config.bucket.as_str(), config.prefix.as_str()), (bucket, prefix));
            }
            (Err(e), Err(words)) => {
                let message = e.to_string();
                assert!(message.contains(words) && message.contains(url), "{url}: {message}");
            }
            (got, expected) => panic!("{url}: {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn storage_url_typos_name_the_setting_and_what_is_wrong() {
        check("s3://b", Ok(("b", "")));
        check("s3://b/media/x/", Ok(("b", "media/x")));
        check("S3://b/media", Ok(("b", "media")));
        check("s3:/b", Err("STORAGE_URL must start with `s3://` (two slashes)"));
        check("s3:b", Err("STORAGE_URL must start with `s3://` (two slashes)"));
        check("b/media", Err("STORAGE_URL has no scheme"));
        check("gs://b", Err("only s3://BUCKET[/PREFIX] is supported, not `gs://`"));
        check(" s3://b", Err("STORAGE_URL starts or ends with white space"));
        check("s3://", Err("STORAGE_URL has no bucket name"));
        check("s3://http://127.0.0.1:9000/b", Err("the bucket name `http:` holds ':'"));
        check("s3://b/a//c", Err("empty, `.` or `..` component"));
    }

    #[test]
    fn endpoint_typos_name_the_setting_and_what_is_wrong() {
        let config = S3Config::from_url("s3://media/x").unwrap();
        let check = |endpoint: &str, expected: Option<&str>| match (endpoint_problem(endpoint, &config), expected) {
            (Ok(()), None) => {}
            (Err(message), Some(words)) => assert!(message.contains(words), "{endpoint}: {message}"),
            (got, expected) => panic!("{endpoint}: {got:?}, expected {expected:?}"),
        };
        check("http://127.0.0.1:9000", None);
        check("https://s3.example.com/", None);
        check("HTTPS://s3.example.com", None);
        check("https://proxy.example.com/s3", None);
        check(
            " http://127.0.0.1:9000",
            Some("AWS_ENDPOINT_URL ` http://127.0.0.1:9000` starts or ends with white space"),
        );
        check("127.0.0.1:9000", Some("AWS_ENDPOINT_URL `127.0.0.1:9000` has no scheme"));
        check("ftp://h", Some("only http:// and https://"));
        check("http://127.0.0.1:9000/media", Some("ends with the bucket's name `media`"));
        check("http://127.0.0.1:9000/s3/media/", Some("ends with the bucket's name `media`"));
        // Virtual-hosted style: the bucket is the endpoint's to name.
        let hosted = S3Config { virtual_hosted_style: true, ..config.clone() };
        assert!(endpoint_problem("https://media.s3.example.com/media", &hosted).is_ok());
    }
}
