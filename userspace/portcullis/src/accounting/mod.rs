//! Durable accounting: every Accounting-Request is written durably before the shard sends its
//! Accounting-Response (RFC 2866 §2: the server must not acknowledge a record it has not
//! recorded).
//!
//! One writer thread owns the files and does group commit: it takes every record queued while
//! the previous sync ran, appends them all, syncs once, then completes each record's waiter.
//! Records go to `accounting-YYYY-MM-DD.jsonl` (UTC date of receipt) as JSON lines; a new file's
//! directory entry is synced too, so a crash right after rotation loses nothing.
//!
//! What is synced per batch depends on the journal ([`journal`], on by default): with it, the
//! batch is appended to the day's file without a sync and written to the journal, which is
//! synced (two dependent disk operations instead of three); the day's files are synced at each
//! checkpoint and at shutdown, and start-up replays the journal into them after a crash.
//! Without it, the day's file is `fdatasync`ed after every batch.
//!
//! A write or sync failure completes the waiters with an error: the shard then sends no
//! response, and the NAS retransmits (it keeps the record until acknowledged).

pub mod journal;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use journal::Journal;

/// How much of a day's file may be written but not yet handed to the disk (see
/// [`start_writeback`]).
const WRITEBACK_STEP: u64 = 1 << 20;

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
    /// Creates the directory if needed, replays the journal left by an earlier run (always, if
    /// there is one: its records were acknowledged), and starts the writer thread.
    /// `journal_bytes` is the journal's size; `None` syncs the day's file after every batch and
    /// removes a journal once it has been replayed.
    pub fn start(
        dir: &Path,
        max_batch: usize,
        journal_bytes: Option<u64>,
    ) -> io::Result<(AccountingWriter, AccountingSink)> {
        std::fs::create_dir_all(dir)?;
        let journal_path = dir.join(journal::FILE_NAME);
        let journal = if journal_bytes.is_some() || journal_path.exists() {
            let (j, recovery) = Journal::open(dir, journal_bytes.unwrap_or(0))?;
            if recovery.entries > 0 {
                tracing::warn!(
                    entries = recovery.entries,
                    already_present = recovery.present,
                    rewritten = recovery.rewritten,
                    appended_at_end = recovery.appended,
                    "accounting journal replayed: the last run did not stop cleanly"
                );
            }
            if journal_bytes.is_some() {
                Some(j)
            } else {
                drop(j);
                std::fs::remove_file(&journal_path)?;
                journal::sync_dir(dir)?;
                None
            }
        } else {
            None
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("accounting".into())
            .spawn(move || writer_loop(dir, rx, max_batch.max(1), journal))?;
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
    /// Where the next append lands (the journal records it).
    len: u64,
    /// Up to here the file's pages have been handed to the disk ([`start_writeback`]).
    written_back: u64,
}

/// The writer's files and journal.
struct Files {
    dir: PathBuf,
    current: Option<OpenFile>,
    journal: Option<Journal>,
    /// Files other than `current` appended to since the last checkpoint (a change of day, or a
    /// reopen after an error): the next checkpoint syncs them too. Keyed by device and inode.
    unsynced: HashMap<(u64, u64), File>,
}

fn writer_loop(dir: PathBuf, rx: Receiver<Job>, max_batch: usize, journal: Option<Journal>) {
    let mut files = Files {
        dir,
        current: None,
        journal,
        unsynced: HashMap::new(),
    };
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
            if let Err(e) = files.write_durably(&name, &buf) {
                tracing::error!(
                    error = %e,
                    dir = %files.dir.display(),
                    "accounting write failed; the records are not acknowledged (the NAS will retransmit)"
                );
                // Reopen on the next batch: the descriptor may be unusable.
                files.set_aside();
                ok = false;
            }
            i = j;
        }
        for job in batch.drain(..) {
            let _ = job.done.send(if ok { Ok(()) } else { Err(WriteFailed) });
        }
    }
    // Every sink is gone and every record written: a clean stop leaves nothing to replay.
    if files.journal.is_some() {
        if let Err(e) = files.checkpoint() {
            tracing::error!(
                error = %e,
                "accounting files could not be synced at shutdown; the journal will be replayed at the next start"
            );
        }
    }
}

impl Files {
    /// Appends `bytes` to `name` and makes them durable: through the journal, or by syncing the
    /// file when there is no journal (or the batch is larger than a journal lap).
    fn write_durably(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        // A file removed while open (by hand, or with the whole directory) would take the
        // records written to it along: write to new ones instead.
        if self
            .current
            .as_ref()
            .is_some_and(|f| journal::unlinked(&f.file))
        {
            self.set_aside();
        }
        if self.journal.as_ref().is_some_and(Journal::unlinked) {
            self.replace_journal()?;
        }
        if self.current.as_ref().map(|f| f.name.as_str()) != Some(name) {
            self.set_aside();
            let path = self.dir.join(name);
            let existed = path.exists();
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            if !existed {
                // Make the new directory entry itself durable.
                journal::sync_dir(&self.dir)?;
            }
            let len = file.metadata()?.len();
            self.current = Some(OpenFile {
                name: name.to_owned(),
                file,
                len,
                written_back: len,
            });
        }
        let Some(offset) = self.current.as_ref().map(|f| f.len) else {
            return Err(io::Error::other("no accounting file open"));
        };
        let written = self.append_durably(name, bytes, offset);
        if written.is_err() {
            // Take the batch back out of the file: it is not acknowledged, and the NAS's
            // retransmission writes it again (a partial line would also spoil the file).
            if let Some(f) = self.current.as_mut() {
                if f.file.set_len(offset).is_ok() {
                    f.len = offset;
                    f.written_back = f.written_back.min(offset);
                }
            }
        }
        written
    }

    /// Appends `bytes` to the current file at `offset` (its end) and makes them durable.
    fn append_durably(&mut self, name: &str, bytes: &[u8], offset: u64) -> io::Result<()> {
        let Some(f) = self.current.as_mut() else {
            return Err(io::Error::other("no accounting file open"));
        };
        f.file.write_all(bytes)?;
        f.len += bytes.len() as u64;
        let through_journal = self.journal.as_ref().is_some_and(|j| j.fits(name, bytes));
        if !through_journal {
            return f.file.sync_data();
        }
        if !self
            .journal
            .as_ref()
            .is_some_and(|j| j.has_room(name, bytes))
        {
            self.checkpoint()?;
        }
        let Some(j) = self.journal.as_mut() else {
            return Err(io::Error::other("no accounting journal open"));
        };
        j.append(name, offset, bytes)?;
        if let Some(f) = self.current.as_mut() {
            if f.len - f.written_back >= WRITEBACK_STEP {
                start_writeback(&f.file, f.written_back, f.len - f.written_back);
                f.written_back = f.len;
            }
        }
        Ok(())
    }

    /// Replaces a journal that was removed while open with a new one (the old one keeps
    /// serving until the new one exists: without a journal nothing is acknowledged).
    fn replace_journal(&mut self) -> io::Result<()> {
        let capacity = self.journal.as_ref().map_or(0, Journal::capacity);
        // What the old journal held becomes durable in the files first.
        self.checkpoint()?;
        let (j, _) = Journal::open(&self.dir, capacity)?;
        tracing::warn!(
            dir = %self.dir.display(),
            "the accounting journal was removed while in use; a new one was created"
        );
        self.journal = Some(j);
        Ok(())
    }

    /// Moves the current file to the set the next checkpoint syncs.
    fn set_aside(&mut self) {
        if let Some(f) = self.current.take() {
            if self.journal.is_some() {
                if let Ok(m) = f.file.metadata() {
                    use std::os::unix::fs::MetadataExt;
                    self.unsynced.insert((m.dev(), m.ino()), f.file);
                }
            }
        }
    }

    /// Syncs every file written since the last checkpoint, then records the checkpoint.
    fn checkpoint(&mut self) -> io::Result<()> {
        for f in self.unsynced.values() {
            f.sync_data()?;
        }
        if let Some(f) = &self.current {
            f.file.sync_data()?;
        }
        self.unsynced.clear();
        match self.journal.as_mut() {
            Some(j) => j.checkpoint(),
            None => Ok(()),
        }
    }
}

/// Starts writing `len` bytes of a file's pages from `offset` to disk without waiting, so that a
/// checkpoint finds at most about [`WRITEBACK_STEP`] left to write instead of a journal lap's
/// worth of dirty pages (a stall of tens of ms). Best effort: the journal already holds the
/// records. Not per batch: the extra write would compete with the journal's sync.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// A writer with a 1 MiB journal and a runtime to wait on its completions.
    fn writer(dir: &Path) -> (AccountingWriter, AccountingSink, tokio::runtime::Runtime) {
        let (w, sink) = AccountingWriter::start(dir, 8, Some(1 << 20)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        (w, sink, rt)
    }

    #[test]
    fn records_are_durable_before_completion_and_split_by_day() {
        let dir = tempfile::tempdir().unwrap();
        let (w, sink, rt) = writer(dir.path());
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
        let (w, sink) = AccountingWriter::start(dir.path(), 8, Some(1 << 20)).unwrap();
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
    fn a_clean_stop_leaves_nothing_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (w, sink, rt) = writer(dir.path());
        let at = datetime!(2026-12-07 12:00:00 UTC);
        let waits: Vec<_> = (0..30)
            .map(|i| sink.submit(format!("{{\"n\":{i}}}").into_bytes(), at))
            .collect();
        for w in waits {
            rt.block_on(w).unwrap().unwrap();
        }
        drop(sink);
        w.finish();
        let (_, r) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r.entries, 0);
        let text = std::fs::read_to_string(dir.path().join(file_name_for(at))).unwrap();
        assert_eq!(text.lines().count(), 30);
    }

    #[test]
    fn without_a_journal_one_left_by_a_crash_is_replayed_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let name = file_name_for(datetime!(2026-12-07 12:00:00 UTC));
        let line = b"{\"n\":1}\n";
        {
            let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
            // Acknowledged through the journal; the append itself never reached the disk.
            j.append(&name, 0, line).unwrap();
        }
        let (w, sink) = AccountingWriter::start(dir.path(), 8, None).unwrap();
        assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), line);
        assert!(!dir.path().join(journal::FILE_NAME).exists());
        drop(sink);
        w.finish();
    }

    #[test]
    fn a_journal_removed_while_in_use_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (w, sink, rt) = writer(dir.path());
        let at = datetime!(2026-12-07 12:00:00 UTC);
        rt.block_on(sink.submit(b"{\"n\":1}".to_vec(), at))
            .unwrap()
            .unwrap();
        let path = dir.path().join(journal::FILE_NAME);
        std::fs::remove_file(&path).unwrap();
        rt.block_on(sink.submit(b"{\"n\":2}".to_vec(), at))
            .unwrap()
            .unwrap();
        assert!(path.exists(), "no new journal");
        drop(sink);
        w.finish();
        let text = std::fs::read_to_string(dir.path().join(file_name_for(at))).unwrap();
        assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n");
    }

    #[test]
    fn a_batch_that_fails_leaves_nothing_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        let mut files = Files {
            dir: dir.path().to_path_buf(),
            current: None,
            journal: Some(journal),
            unsynced: HashMap::new(),
        };
        let name = file_name_for(datetime!(2026-12-07 12:00:00 UTC));
        files.write_durably(&name, b"{\"n\":1}\n").unwrap();
        files.journal.as_mut().unwrap().fail_appends = true;
        assert!(files.write_durably(&name, b"{\"n\":2}\n").is_err());
        // What the writer loop does after a failure.
        files.set_aside();
        files.journal.as_mut().unwrap().fail_appends = false;
        // The NAS retransmits record 2 with record 3.
        files
            .write_durably(&name, b"{\"n\":2}\n{\"n\":3}\n")
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        assert_eq!(text, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    }

    #[test]
    fn file_names_use_the_utc_date() {
        assert_eq!(
            file_name_for(datetime!(2026-03-04 05:06:07 UTC)),
            "accounting-2026-03-04.jsonl"
        );
    }
}
