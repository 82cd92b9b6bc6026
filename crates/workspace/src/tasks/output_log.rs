//! A task's output log: a capped, rotated byte stream with absolute offsets.
//!
//! tmux pipes a pane's output into `kube-coder pipe-log`, which runs
//! [`run_pipe_log`] (outside this server, so output is kept while the server
//! is down). The log is two segments, `output.log` and the older
//! `output.log.1`; when the current one reaches half the cap it becomes the
//! older one. `output.offset` holds the absolute stream offset at which
//! `output.log` starts, so readers (SSE streams, tail) address bytes by a
//! position that stays valid across rotations: it is the SSE event id.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const LOG: &str = "output.log";
pub const OLD_LOG: &str = "output.log.1";
pub const OFFSET: &str = "output.offset";
/// Written when the pane's output ended (tmux closed the pipe): everything
/// the task printed is in the log.
pub const DONE: &str = "output.done";

/// Copy standard input into the log in `dir`, rotating at half of `max_bytes`.
pub fn run_pipe_log(dir: &Path, max_bytes: u64) -> io::Result<()> {
    copy_into_log(io::stdin().lock(), dir, max_bytes)
}

/// Append everything `input` yields to the log in `dir`.
pub fn copy_into_log(mut input: impl Read, dir: &Path, max_bytes: u64) -> io::Result<()> {
    let segment = (max_bytes / 2).max(4096);
    let path = dir.join(LOG);
    let mut base = read_base(dir);
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    let mut len = file.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => {
                file.flush()?;
                fs::write(dir.join(DONE), b"")?;
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if len >= segment {
            // Order matters to readers: rename first, then publish the new base.
            fs::rename(&path, dir.join(OLD_LOG))?;
            base += len;
            write_base(dir, base)?;
            file = OpenOptions::new().create(true).append(true).open(&path)?;
            len = 0;
        }
        file.write_all(&buf[..n])?;
        len += n as u64;
    }
}

fn write_base(dir: &Path, base: u64) -> io::Result<()> {
    let tmp = dir.join(".output.offset.tmp");
    fs::write(&tmp, base.to_string())?;
    fs::rename(tmp, dir.join(OFFSET))
}

fn read_base(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(OFFSET))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn open_if_exists(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes read from the log.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Absolute offset of `data[0]`; later than asked when older output was
    /// rotated away.
    pub start: u64,
    pub data: Vec<u8>,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

/// A consistent view of both segments.
struct Segments {
    base: u64,
    current: Option<File>,
    old: Option<File>,
}

fn open_segments(dir: &Path) -> io::Result<Segments> {
    // Retry if a rotation happened between the two reads of the base.
    for _ in 0..8 {
        let before = read_base(dir);
        let current = open_if_exists(&dir.join(LOG))?;
        let old = open_if_exists(&dir.join(OLD_LOG))?;
        if read_base(dir) == before {
            return Ok(Segments {
                base: before,
                current,
                old,
            });
        }
    }
    Err(io::Error::other("the log kept rotating while being read"))
}

/// The absolute offset just past the last byte written so far.
pub fn end_offset(dir: &Path) -> io::Result<u64> {
    let s = open_segments(dir)?;
    let len = match &s.current {
        Some(f) => f.metadata()?.len(),
        None => 0,
    };
    Ok(s.base + len)
}

/// Read up to `max` bytes starting at absolute offset `from`.
pub fn read_from(dir: &Path, from: u64, max: usize) -> io::Result<Chunk> {
    let s = open_segments(dir)?;
    if from < s.base {
        if let Some(mut old) = s.old {
            let old_len = old.metadata()?.len();
            let old_start = s.base.saturating_sub(old_len);
            let from = from.max(old_start);
            if from < s.base {
                let data = read_at(&mut old, from - old_start, max)?;
                if !data.is_empty() {
                    return Ok(Chunk { start: from, data });
                }
            }
        }
    }
    let from = from.max(s.base);
    match s.current {
        Some(mut f) => {
            let len = f.metadata()?.len();
            let from = from.min(s.base + len);
            let data = read_at(&mut f, from - s.base, max)?;
            Ok(Chunk { start: from, data })
        }
        None => Ok(Chunk {
            start: s.base,
            data: Vec::new(),
        }),
    }
}

fn read_at(f: &mut File, pos: u64, max: usize) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(pos))?;
    let mut data = Vec::with_capacity(max.min(64 * 1024));
    f.take(max as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// The last `lines` lines of output, as bytes (at most `max_bytes` read).
pub fn tail(dir: &Path, lines: usize, max_bytes: u64) -> io::Result<Vec<u8>> {
    let end = end_offset(dir)?;
    let mut pos = end.saturating_sub(max_bytes);
    let mut out = Vec::new();
    while pos < end {
        let chunk = read_from(dir, pos, (end - pos) as usize)?;
        if chunk.data.is_empty() {
            break;
        }
        pos = chunk.end();
        out.extend_from_slice(&chunk.data);
    }
    // Keep the last `lines` lines; a trailing newline does not open a line.
    let body = out.strip_suffix(b"\n").unwrap_or(&out);
    let mut cut = 0;
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                cut = i + 1;
                break;
            }
        }
    }
    if lines == 0 {
        return Ok(Vec::new());
    }
    Ok(out[cut..].to_vec())
}

/// Terminal output as plain text: escape sequences removed, `\r\n` as `\n`,
/// and a line redrawn after a bare `\r` shows only its last drawing.
pub fn to_plain_text(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // Carriage returns first: the stripper drops them, losing redraws.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let last = line.rsplit(|b| *b == b'\r').next().unwrap_or(line);
        out.push_str(&String::from_utf8_lossy(&strip_ansi_escapes::strip(last)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Simulate the writer's effect directly: three rotations of 10 bytes.
        let mut expected = Vec::new();
        let mut base = 0u64;
        for round in 0..3u8 {
            let seg: Vec<u8> = (0..10).map(|i| b'a' + round * 10 % 26 + i).collect();
            if round > 0 {
                fs::rename(d.join(LOG), d.join(OLD_LOG)).unwrap();
                base += 10;
                write_base(d, base).unwrap();
            }
            fs::write(d.join(LOG), &seg).unwrap();
            expected.extend_from_slice(&seg);
        }
        assert_eq!(end_offset(d).unwrap(), 30);
        // Offset 0..10 was rotated away: reading starts at the oldest kept byte.
        let c = read_from(d, 0, 100).unwrap();
        assert_eq!(c.start, 10);
        assert_eq!(c.data, expected[10..20]);
        let c = read_from(d, 25, 100).unwrap();
        assert_eq!(c.start, 25);
        assert_eq!(c.data, expected[25..30]);
        // Past the end: nothing, positioned at the end.
        let c = read_from(d, 99, 100).unwrap();
        assert_eq!((c.start, c.data.len()), (30, 0));
    }

    /// Yields the input in pieces, as a pipe does.
    struct Pieces<'a>(&'a [u8], usize);
    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn writer_caps_rotates_and_keeps_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input: Vec<u8> = (0..20000u32).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(!d.join(DONE).exists());
        copy_into_log(Pieces(&input, 3000), d, 8192).unwrap();
        // The end of the input is announced once everything is written.
        assert!(d.join(DONE).exists());
        assert_eq!(end_offset(d).unwrap(), 20000);
        let kept =
            fs::metadata(d.join(LOG)).unwrap().len() + fs::metadata(d.join(OLD_LOG)).unwrap().len();
        assert!(kept <= 2 * (4096 + 3000), "kept {kept}");
        // Whatever is kept is the true tail of the stream at its true offsets.
        let mut pos = 0;
        let mut first = None;
        loop {
            let c = read_from(d, pos, 1000).unwrap();
            if c.data.is_empty() {
                break;
            }
            first.get_or_insert(c.start);
            assert_eq!(c.data, input[c.start as usize..c.end() as usize]);
            pos = c.end();
        }
        assert_eq!(pos, 20000);
        assert_eq!(first.unwrap(), 20000 - kept);
        // A second writer (a restarted pipe) continues the same stream.
        copy_into_log(Pieces(b"tail", 10), d, 8192).unwrap();
        assert_eq!(end_offset(d).unwrap(), 20004);
    }

    #[test]
    fn tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOG), b"one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(tail(dir.path(), 2, 1 << 20).unwrap(), b"three\nfour\n");
        assert_eq!(
            tail(dir.path(), 10, 1 << 20).unwrap(),
            b"one\ntwo\nthree\nfour\n"
        );
        assert_eq!(tail(dir.path(), 0, 1 << 20).unwrap(), b"");
    }

    #[test]
    fn plain_text_strips_escapes_and_redraws() {
        let raw = b"\x1b[1;32mgreen\x1b[0m\r\nprogress 10%\rprogress 100%\r\n\x1b]0;title\x07done";
        assert_eq!(to_plain_text(raw), "green\nprogress 100%\ndone");
    }
}
