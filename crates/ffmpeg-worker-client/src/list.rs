//! Listing jobs page by page: [`ListQuery`], [`Page`], [`NextPage`] (`GET /jobs` and its
//! `Link: <...>; rel="next"` header, RFC 8288).

use ffmpeg_worker_api::{JobResponse, JobStatusWire};
use reqwest::Method;
use reqwest::header::{self, HeaderMap};
use url::Url;

use crate::client::decode;
use crate::{Client, ClientError};

/// Which jobs to list (`GET /jobs?status=...&limit=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only jobs with one of these statuses (sent as one comma-separated `status`); empty: all.
    pub statuses: Vec<JobStatusWire>,
    /// Jobs per page, 1 to 1000; `None`: the server's default (100).
    pub limit: Option<u32>,
}

/// One page of jobs, oldest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The jobs of the page, in submission order.
    pub jobs: Vec<JobResponse>,
    /// Where the next page is, when there is one.
    pub next: Option<NextPage>,
}

/// The next page of a listing: the server's `rel="next"` link, resolved against the request's
/// URL. Opaque; pass it to [`Client::next_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextPage(Url);

impl NextPage {
    /// The page's URL.
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl Client {
    /// The first page of jobs matching `query` (`GET /jobs`).
    ///
    /// # Errors
    /// An out-of-range limit is [`ClientError::Problem`] with status 422.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, ClientError> {
        let mut url = self.endpoint(&["jobs"]);
        if !query.statuses.is_empty() || query.limit.is_some() {
            let mut pairs = url.query_pairs_mut();
            if !query.statuses.is_empty() {
                let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
                pairs.append_pair("status", &statuses.join(","));
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.page(url).await
    }

    /// The page after one that [`Client::list`] or this method returned.
    ///
    /// # Errors
    /// As [`Client::list`]; a cursor the server no longer accepts is a 422.
    pub async fn next_page(&self, next: &NextPage) -> Result<Page, ClientError> {
        self.page(next.0.clone()).await
    }

    /// Every job matching `query`, following the pages to the end (`query.limit` is the page
    /// size). Stops, rather than loops, if the server ever links back to a page already read.
    ///
    /// # Errors
    /// As [`Client::list`], for any page.
    pub async fn list_all(&self, query: &ListQuery) -> Result<Vec<JobResponse>, ClientError> {
        let mut page = self.list(query).await?;
        let mut jobs = std::mem::take(&mut page.jobs);
        let mut seen = Vec::new();
        while let Some(next) = page.next.take().filter(|n| !seen.contains(n)) {
            seen.push(next.clone());
            page = self.next_page(&next).await?;
            jobs.append(&mut page.jobs);
        }
        Ok(jobs)
    }

    async fn page(&self, url: Url) -> Result<Page, ClientError> {
        let response = self.send(Method::GET, &url, None).await?;
        // Relative links resolve against the URL answered (after any redirect).
        let next = next_link(response.headers()).and_then(|target| response.url().join(&target).ok()).map(NextPage);
        let jobs = decode(url, response).await?;
        Ok(Page { jobs, next })
    }
}

/// The target of the `rel="next"` link of the `Link` headers, unresolved.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::LINK).iter().filter_map(|v| v.to_str().ok()).find_map(parse_next_link).map(str::to_owned)
}

/// The target of the first link of one `Link` header value whose `rel` holds `next`. A value
/// holds links separated by commas (RFC 8288: `<target>; param=value, <target>; ...`); a target
/// may hold commas itself (`status=completed,failed`), so links are split only at a comma
/// outside `<...>` and quoted strings.
fn parse_next_link(value: &str) -> Option<&str> {
    links(value).into_iter().find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|param| {
            let Some((name, rel)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && rel.trim().trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
        });
        is_next.then_some(target)
    })
}

/// The links of a `Link` header value: split at each comma outside `<...>` and `"..."`.
fn links(value: &str) -> Vec<&str> {
    let (mut links, mut start) = (Vec::new(), 0);
    let (mut in_target, mut in_quotes, mut escaped) = (false, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' if !in_target => in_quotes = !in_quotes,
            '<' if !in_quotes => in_target = true,
            '>' if !in_quotes => in_target = false,
            ',' if !in_target && !in_quotes => {
                links.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    links.push(&value[start..]);
    links
}

#[cfg(test)]
mod tests {
    use super::parse_next_link;

    #[test]
    fn next_links() {
        for (header, expected) in [
            ("</jobs?limit=2&cursor=5>; rel=\"next\"", Some("/jobs?limit=2&cursor=5")),
            ("</jobs?cursor=5>; rel=next", Some("/jobs?cursor=5")),
            ("</a>; rel=\"prev\", </b>; rel=\"next last\"", Some("/b")),
            ("</a>; rel=\"prev\"", None),
            // A comma inside the target (a list of statuses) or a quoted parameter is not a
            // separator between links.
            (
                "</jobs?limit=2&cursor=2&status=cancelled,queued>; rel=\"next\"",
                Some("/jobs?limit=2&cursor=2&status=cancelled,queued"),
            ),
            ("</a,b>; rel=\"prev\", </c?s=x,y>; title=\"a, \\\"b\\\", <c>\"; rel=next", Some("/c?s=x,y")),
            ("garbage", None),
            ("", None),
        ] {
            assert_eq!(parse_next_link(header), expected, "{header}");
        }
    }
}
