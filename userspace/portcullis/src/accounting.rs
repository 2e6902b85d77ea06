//! Durable accounting: every Accounting-Request is written and `fdatasync`ed before the shard
//! sends its Accounting-Response (RFC 2866 §2: the server must not acknowledge a record it has
//! not recorded).
//!
//! One writer thread owns the files and does group commit: it takes every record queued while
//! the previous sync ran, appends them all, syncs once, then completes each record's waiter.
//! Records go to `accounting-YYYY-MM-DD.jsonl` (UTC date of receipt) as JSON lines; a new file's
//! directory entry is synced too, so a crash right after rotation loses nothing.
//!
//! A write or sync failure completes the waiters with an error: the shard then sends no
//! response, and the NAS retransmits (it keeps the record until acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// Completion of one record: `Ok` once it is on stable storage.
pub type Durable = oneshot::Receiver<Result<(), WriteFailed>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("accounting record could not be written durably")]
pub struct WriteFailed;

struct Job {
    line: Vec<u8>,
    at: OffsetDateTime,
    done: oneshot::Sender<Result<(), WriteFailed>>,
}

/// Handle for submitting records; cloneable across shards.
#[derive(Clone)]
pub struct AccountingSink {
    tx: Sender<Job>,
}

impl AccountingSink {
    /// Queues one JSON line (without the trailing newline). The returned receiver resolves when
    /// the line is durable, or with an error if it could not be written.
    pub fn submit(&self, line: Vec<u8>, at: OffsetDateTime) -> Durable {
        let (done, rx) = oneshot::channel();
        if let Err(crossbeam_channel::SendError(job)) = self.tx.send(Job { line, at, done }) {
            let _ = job.done.send(Err(WriteFailed));
        }
        rx
    }
}

/// The writer thread; dropping every [`AccountingSink`] and calling [`AccountingWriter::finish`]
/// flushes and stops it.
pub struct AccountingWriter {
    thread: Option<JoinHandle<()>>,
}

impl AccountingWriter {
    /// Creates the directory if needed and starts the writer thread.
    pub fn start(dir: &Path, max_batch: usize) -> io::Result<(AccountingWriter, AccountingSink)> {
        std::fs::create_dir_all(dir)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("accounting".into())
            .spawn(move || writer_loop(dir, rx, max_batch.max(1)))?;
        Ok((
            AccountingWriter {
                thread: Some(thread),
            },
            AccountingSink { tx },
        ))
    }

    /// Waits until every queued record is written and synced. All sinks must be dropped first,
    /// or this waits for them.
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Name of the file a record received at `at` goes to.
pub fn file_name_for(at: OffsetDateTime) -> String {
    let d = at.date();
    format!(
        "accounting-{:04}-{:02}-{:02}.jsonl",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

struct OpenFile {
    name: String,
    file: File,
}

fn writer_loop(dir: PathBuf, rx: Receiver<Job>, max_batch: usize) {
    let mut current: Option<OpenFile> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    // Blocks until a record arrives; ends when every sink is dropped and the queue is empty.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        // Records of one batch may straddle midnight: write each day's records to its file.
        let mut ok = true;
        let mut i = 0;
        while i < batch.len() {
            // The file name is the date's: compare dates, and format the name once per run of
            // one day's records rather than twice per record.
            let day = batch[i].at.date();
            let name = file_name_for(batch[i].at);
            let mut j = i;
            buf.clear();
            while j < batch.len() && batch[j].at.date() == day {
                buf.extend_from_slice(&batch[j].line);
                buf.push(b'\n');
                j += 1;
            }
            if let Err(e) = write_durably(&dir, &mut current, &name, &buf) {
                tracing::error!(
                    error = %e,
                    dir = %dir.display(),
                    "accounting write failed; the records are not acknowledged (the NAS will retransmit)"
                );
                // Reopen on the next batch: the descriptor may be unusable.
                current = None;
                ok = false;
            }
            i = j;
        }
        for job in batch.drain(..) {
            let _ = job.done.send(if ok { Ok(()) } else { Err(WriteFailed) });
        }
    }
}

fn write_durably(
    dir: &Path,
    current: &mut Option<OpenFile>,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    if current.as_ref().map(|f| f.name.as_str()) != Some(name) {
        let path = dir.join(name);
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if !existed {
            // Make the new directory entry itself durable.
            File::open(dir)?.sync_all()?;
        }
        *current = Some(OpenFile {
            name: name.to_owned(),
            file,
        });
    }
    let Some(f) = current.as_mut() else {
        return Err(io::Error::other("no accounting file open"));
    };
    f.file.write_all(bytes)?;
    f.file.sync_data()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn records_are_durable_before_completion_and_split_by_day() {
        let dir = tempfile::tempdir().unwrap();
        let (w, sink) = AccountingWriter::start(dir.path(), 8).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let d1 = datetime!(2026-11-21 23:59:59.9 UTC);
        let d2 = datetime!(2026-11-22 00:00:00.1 UTC);
        let waits: Vec<_> = (0..20)
            .map(|i| {
                let at = if i < 10 { d1 } else { d2 };
                sink.submit(format!("{{\"n\":{i}}}").into_bytes(), at)
            })
            .collect();
        for w in waits {
            rt.block_on(w).unwrap().unwrap();
        }
        // Completion means the bytes are in the file now, not later.
        let a = std::fs::read_to_string(dir.path().join("accounting-2026-11-21.jsonl")).unwrap();
        let b = std::fs::read_to_string(dir.path().join("accounting-2026-11-22.jsonl")).unwrap();
        assert_eq!(a.lines().count(), 10);
        assert_eq!(b.lines().count(), 10);
        assert!(a.starts_with("{\"n\":0}\n"));
        assert!(b.ends_with("{\"n\":19}\n"));
        drop(sink);
        w.finish();
    }

    #[test]
    fn write_failure_is_reported_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (w, sink) = AccountingWriter::start(dir.path(), 8).unwrap();
        // Make the target file name a directory: opening it for append fails.
        let at = datetime!(2026-01-02 03:04:05 UTC);
        std::fs::create_dir(dir.path().join(file_name_for(at))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(sink.submit(b"{}".to_vec(), at)).unwrap();
        assert_eq!(r, Err(WriteFailed));
        drop(sink);
        w.finish();
    }

    #[test]
    fn file_names_use_the_utc_date() {
        assert_eq!(
            file_name_for(datetime!(2026-03-04 05:06:07 UTC)),
            "accounting-2026-03-04.jsonl"
        );
    }
}
