//! Zip extraction with limits, all or nothing.
//!
//! An archive is checked before anything is written: entry count, declared
//! total size and compression ratios against the limits; entries with an
//! absolute path, a `..` component, or a link type are refused. Extraction
//! then counts the bytes really inflated (declared sizes can lie) against
//! the total limit, each entry's ratio, and the ratio to the archive file's
//! real size, and goes into a temp directory beside the destination,
//! renamed into place only when every entry is written; on any failure the
//! temp directory is removed.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use cap_std::fs::{OpenOptions, OpenOptionsExt};
use serde::Serialize;

use super::{io_error, sync_dir, Files, UserPath};
use crate::error::ApiError;
use crate::secrets::generate_id;

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

#[derive(Debug, Serialize)]
pub struct Extracted {
    pub dest: String,
    pub entries: usize,
    pub bytes: u64,
}

fn refuse(why: String) -> ApiError {
    ApiError::bad_request("zip_refused", why)
}

/// Extract the archive at `archive` into the new directory `dest`.
pub fn extract(files: &Files, archive: &UserPath, dest: &UserPath) -> Result<Extracted, ApiError> {
    let limits = &files.limits;
    let (file, meta) = files.open_regular(archive)?;
    // What the archive really holds bounds what it may expand to.
    let archive_len = meta.len();
    let real_cap = archive_len.max(1).saturating_mul(limits.zip_ratio);
    let mut zip = zip::ZipArchive::new(file.into_std()).map_err(|e| {
        refuse(format!(
            "`{}` is not a readable zip archive: {e}",
            archive.display()
        ))
    })?;
    if zip.len() > limits.zip_entries {
        return Err(refuse(format!(
            "the archive has {} entries; the limit is {}",
            zip.len(),
            limits.zip_entries
        )));
    }
    // Check every entry before writing anything.
    let (mut total, mut total_compressed) = (0u64, 0u64);
    for i in 0..zip.len() {
        let e = zip
            .by_index_raw(i)
            .map_err(|e| refuse(format!("entry {i}: {e}")))?;
        let name = e.name().to_string();
        let safe = e.enclosed_name().is_some()
            && Path::new(&name)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe {
            return Err(refuse(format!(
                "entry `{name}` has an absolute path or `..`"
            )));
        }
        if e.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK) {
            return Err(refuse(format!("entry `{name}` is a symbolic link")));
        }
        total = total.saturating_add(e.size());
        total_compressed = total_compressed.saturating_add(e.compressed_size());
        if e.size() > e.compressed_size().max(1).saturating_mul(limits.zip_ratio) {
            return Err(refuse(format!(
                "entry `{name}` expands more than {}:1",
                limits.zip_ratio
            )));
        }
    }
    if total > limits.zip_bytes {
        return Err(refuse(format!(
            "the archive expands to {total} bytes; the limit is {}",
            limits.zip_bytes
        )));
    }
    if total > total_compressed.max(1).saturating_mul(limits.zip_ratio) {
        return Err(refuse(format!(
            "the archive expands more than {}:1",
            limits.zip_ratio
        )));
    }

    let (parent, dest_name) = files.parent_of(dest)?;
    if parent.symlink_metadata(dest_name).is_ok() {
        return Err(io_error(dest, io::ErrorKind::AlreadyExists.into()));
    }
    let mut tmp = OsString::from(".");
    tmp.push(dest_name);
    tmp.push(format!(".kc-extract-{}", generate_id()));
    parent.create_dir(&tmp).map_err(|e| io_error(dest, e))?;
    let result = (|| {
        let out = parent.open_dir(&tmp).map_err(|e| io_error(dest, e))?;
        let mut written = 0u64;
        for i in 0..zip.len() {
            let mut e = zip
                .by_index(i)
                .map_err(|e| refuse(format!("entry {i}: {e}")))?;
            let Some(rel) = e.enclosed_name() else {
                return Err(refuse(format!(
                    "entry `{}` has an absolute path or `..`",
                    e.name()
                )));
            };
            if e.is_dir() {
                out.create_dir_all(&rel)
                    .map_err(|err| io_error(dest, err))?;
                continue;
            }
            if let Some(p) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                out.create_dir_all(p).map_err(|err| io_error(dest, err))?;
            }
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true).mode(0o644);
            let mut f = out
                .open_with(&rel, &opts)
                .map_err(|err| io_error(dest, err))?;
            // Never trust declared sizes: count what really comes out, and
            // stop at the first byte past the total limit, past the
            // entry's ratio, or past the ratio of the archive's real size.
            let name = e.name().to_string();
            let budget = [
                (limits.zip_bytes - written, Overrun::Total),
                (
                    e.compressed_size().max(1).saturating_mul(limits.zip_ratio),
                    Overrun::EntryRatio,
                ),
                (real_cap.saturating_sub(written), Overrun::ArchiveRatio),
            ];
            let (left, overrun) = budget
                .into_iter()
                .min_by_key(|(n, _)| *n)
                .unwrap_or((0, Overrun::Total));
            let n = copy_limited(&mut e, &mut f, left).map_err(|err| io_error(dest, err))?;
            if n > left {
                return Err(refuse(match overrun {
                    Overrun::Total => format!(
                        "the archive expands past the limit of {} bytes",
                        limits.zip_bytes
                    ),
                    Overrun::EntryRatio => format!(
                        "entry `{name}` expands more than {}:1 (its declared size was wrong)",
                        limits.zip_ratio
                    ),
                    Overrun::ArchiveRatio => format!(
                        "the archive expands more than {}:1 of its {archive_len} bytes",
                        limits.zip_ratio
                    ),
                }));
            }
            written += n;
            f.sync_all().map_err(|err| io_error(dest, err))?;
        }
        Ok(written)
    })();
    match result {
        Ok(bytes) => {
            parent.rename(&tmp, &parent, dest_name).map_err(|e| {
                let _ = parent.remove_dir_all(&tmp);
                io_error(dest, e)
            })?;
            sync_dir(&parent);
            Ok(Extracted {
                dest: dest.display(),
                entries: zip.len(),
                bytes,
            })
        }
        Err(e) => {
            let _ = parent.remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Which limit an entry's real output ran into.
#[derive(Clone, Copy)]
enum Overrun {
    Total,
    EntryRatio,
    ArchiveRatio,
}

/// Copy at most `limit + 1` bytes, so the caller can tell "more than limit".
fn copy_limited(r: &mut impl Read, w: &mut impl Write, limit: u64) -> io::Result<u64> {
    io::copy(&mut r.take(limit.saturating_add(1)), w)
}
