//! Downloads: streamed bodies with HTTP Range, validators, and headers that
//! make a browser save the file rather than render it.

use std::io::SeekFrom;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cap_std::fs::MetadataExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io::{Read, Seek};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::buffer_pool::BufferPool;
use super::{Files, UserPath};
use crate::error::ApiError;

const READ_BUF: usize = 1024 * 1024;

/// RFC 5987 attr-char: what may stay unescaped in `filename*`.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub struct Opened {
    file: std::fs::File,
    len: u64,
    mtime: SystemTime,
    name: String,
}

pub fn open(files: &Files, path: &UserPath) -> Result<Opened, ApiError> {
    let (file, meta) = files.open_regular(path)?;
    let mtime = mtime_of(&meta);
    let name = path
        .as_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    Ok(Opened {
        file: file.into_std(),
        len: meta.len(),
        mtime,
        name,
    })
}

fn mtime_of(meta: &cap_std::fs::Metadata) -> SystemTime {
    UNIX_EPOCH + Duration::new(meta.mtime().max(0) as u64, meta.mtime_nsec().max(0) as u32)
}

/// A file's ETag: its size and modification time. Downloads send it; an
/// upload's `If-Match` is checked against it (the editor's conflict check).
pub fn etag_of(meta: &cap_std::fs::Metadata) -> String {
    etag(meta.len(), mtime_of(meta))
}

fn etag(len: u64, mtime: SystemTime) -> String {
    let nanos = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{len:x}-{nanos:x}\"")
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR)
    )
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Build the response: 304 when validators match, 206 for one satisfiable
/// range, 416 for an unsatisfiable one, else 200 with the whole file.
pub async fn respond(o: Opened, req: &HeaderMap, head_only: bool) -> Result<Response, ApiError> {
    let tag = etag(o.len, o.mtime);
    let modified = httpdate::fmt_http_date(o.mtime);
    let not_modified = match header_str(req, header::IF_NONE_MATCH) {
        Some(inm) => inm.split(',').any(|t| t.trim() == tag || t.trim() == "*"),
        None => header_str(req, header::IF_MODIFIED_SINCE)
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .is_some_and(|since| {
                o.mtime
                    .duration_since(since)
                    .map(|d| d.as_secs() == 0)
                    .unwrap_or(true)
            }),
    };
    let mut headers = HeaderMap::new();
    let put = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(&mut headers, header::ETAG, &tag);
    put(&mut headers, header::LAST_MODIFIED, &modified);
    put(&mut headers, header::ACCEPT_RANGES, "bytes");
    put(&mut headers, header::CACHE_CONTROL, "private, no-cache");
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    put(
        &mut headers,
        header::CONTENT_TYPE,
        "application/octet-stream",
    );
    put(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(&mut headers, header::CONTENT_SECURITY_POLICY, "sandbox");
    put(
        &mut headers,
        header::CONTENT_DISPOSITION,
        &content_disposition(&o.name),
    );

    // A Range applies only if If-Range (when sent) still names this version.
    let if_range_ok = match header_str(req, header::IF_RANGE) {
        None => true,
        Some(v) if v.starts_with('"') || v.starts_with("W/") => v == tag,
        Some(v) => {
            httpdate::parse_http_date(v).is_ok_and(|d| httpdate::fmt_http_date(d) == modified)
        }
    };
    let mut status = StatusCode::OK;
    let (mut start, mut count) = (0u64, o.len);
    if let (Some(range), true) = (header_str(req, header::RANGE), if_range_ok) {
        match http_range_header::parse_range_header(range).map(|r| r.validate(o.len)) {
            Ok(Ok(ranges)) if ranges.len() == 1 => {
                let r = &ranges[0];
                start = *r.start();
                count = r.end() - r.start() + 1;
                status = StatusCode::PARTIAL_CONTENT;
                put(
                    &mut headers,
                    header::CONTENT_RANGE,
                    &format!("bytes {}-{}/{}", r.start(), r.end(), o.len),
                );
            }
            // Several ranges: send the whole file, as RFC 9110 allows.
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                put(
                    &mut headers,
                    header::CONTENT_RANGE,
                    &format!("bytes */{}", o.len),
                );
                let err = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the file has {} bytes", o.len),
                );
                return Ok((headers, err).into_response());
            }
            // A malformed Range header is ignored (RFC 9110 §14.2).
            Err(_) => {}
        }
    }
    put(&mut headers, header::CONTENT_LENGTH, &count.to_string());
    if head_only {
        return Ok((status, headers).into_response());
    }
    let body = Body::from_stream(ReceiverStream::new(read_in_background(
        o.file, start, count,
    )));
    Ok((status, headers, body).into_response())
}

/// Read `count` bytes from `start` on one blocking thread, handing chunks
/// to the response through a short channel: one thread hop per megabyte
/// instead of one per read, and back-pressure from the client's pace.
fn read_in_background(
    mut file: std::fs::File,
    start: u64,
    count: u64,
) -> mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        // Sequential: the kernel reads further ahead.
        let _ = rustix::fs::fadvise(
            &file,
            start,
            std::num::NonZeroU64::new(count),
            rustix::fs::Advice::Sequential,
        );
        let pool = BufferPool::default();
        let mut left = count;
        while left > 0 {
            let want = READ_BUF.min(left as usize);
            let mut buf = pool.take(want);
            // At most `want` bytes (a reused buffer has room for more), read
            // into the buffer's unzeroed room: zeroing a megabyte that the
            // read overwrites at once was a tenth of a download's time.
            match Read::take(&file, want as u64).read_to_end(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    left -= n as u64;
                    // A closed channel means the client went away.
                    if tx.blocking_send(Ok(pool.wrap(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn disposition_has_safe_fallback_and_exact_utf8_name() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        let d = content_disposition("naïve \"quote\"\r\n.txt");
        assert!(
            d.starts_with("attachment; filename=\"na_ve _quote___.txt\""),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''na%C3%AFve%20%22quote%22%0D%0A.txt"),
            "{d}"
        );
    }
}
