//! The accounting journal: the file through which records become durable, so that the daily
//! JSON-lines files need no sync per batch.
//!
//! Why: `fdatasync` of a file that was just appended to waits for three dependent disk
//! operations: the new data, the inode (its size changed), and the cache flush. Overwriting
//! blocks that already exist, in a file whose size does not change, waits for two: the data and
//! the flush. So the writer appends each batch to the day's file *without* a sync, writes the
//! same bytes, with the file's name and the offset they went to, into this pre-zeroed journal,
//! and syncs the journal. The day's files are synced only at a checkpoint: when the journal is
//! full, and at shutdown. At start-up, before the server answers anything, every entry newer
//! than the last checkpoint is replayed into the files ([`Journal::open`]).
//!
//! Layout, little-endian:
//! - bytes 0..512 and 512..1024: two checkpoint slots, written alternately, so that a torn
//!   write of one leaves the other: magic `PCJH`, version, generation, the sequence number of
//!   the last entry the checkpoint covers, CRC-32 of those;
//! - from byte 4096: entries, each on a 4096-byte boundary (whole pages: no page is read back
//!   before it is overwritten): magic `PCJE`, sequence number, offset in the file, payload
//!   length, name length, CRC-32 of the header fields, the name and the payload; then the file
//!   name and the payload (the batch's JSON lines).
//!
//! After a checkpoint, entries are written from byte 4096 again, numbered from the checkpoint's
//! sequence + 1. A scan stops at the first entry that is not the next in sequence or whose CRC
//! does not match: an older lap's entry, a write torn by the crash, or the zeros the file was
//! extended with.
//!
//! Replay never destroys data it did not write: an entry whose bytes are already at its offset
//! is skipped; where the file is short there, or holds only the entry's own bytes and zeros
//! (what a crash leaves of unsynced appends), the entry is rewritten in place; anything else at
//! that offset (the file was edited, truncated or replaced) is left alone and the entry's
//! records are appended at the end of the file, with a warning.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The journal's file name inside the accounting directory.
pub const FILE_NAME: &str = "journal";

const BLOCK: u64 = 4096;
const SLOT: u64 = 512;
/// The journal file grows in zeroed steps of this size during its first lap.
const ZERO_STEP: u64 = 1 << 20;
const HEAD_MAGIC: [u8; 4] = *b"PCJH";
const ENTRY_MAGIC: [u8; 4] = *b"PCJE";
const VERSION: u32 = 1;
/// magic 4, version 4, generation 8, checkpoint sequence 8, CRC 4.
const HEAD_LEN: usize = 28;
/// magic 4, sequence 8, offset 8, payload length 4, name length 2, reserved 2, CRC 4.
const ENTRY_HEAD: usize = 32;
/// Longest file name an entry may carry (the daily names are 27 bytes).
const MAX_NAME: usize = 255;

/// What [`Journal::open`] did to the files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries newer than the last checkpoint.
    pub entries: u64,
    /// Of those, entries whose bytes were already in their file.
    pub present: u64,
    /// Entries written back at their offset (the file was short, cut or zero there).
    pub rewritten: u64,
    /// Entries appended at the end of their file because something else was at their offset.
    pub appended: u64,
    /// The scan ended on an entry that was not valid (as opposed to the end of the sequence).
    /// Normal after a crash during a journal write: that batch was never acknowledged.
    pub stopped_at_invalid: bool,
}

/// An open journal, positioned after its last checkpoint.
pub struct Journal {
    file: File,
    dir: PathBuf,
    /// Entries must end below this offset; then a checkpoint starts the next lap.
    capacity: u64,
    /// Where the next entry goes.
    pos: u64,
    /// The file's length: everything below it is zeros or entries.
    len: u64,
    next_seq: u64,
    generation: u64,
    buf: Vec<u8>,
    /// Tests: make [`Journal::append`] fail, as a full or failing disk would.
    #[cfg(test)]
    pub fail_appends: bool,
}

impl Journal {
    /// Opens (or creates) `dir/journal`, replays every entry newer than its last checkpoint into
    /// the files of `dir`, makes them durable, and records a checkpoint. `capacity` is the size
    /// of one lap in bytes (at least 64 KiB).
    pub fn open(dir: &Path, capacity: u64) -> io::Result<(Journal, Recovery)> {
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        lock(&file, &path)?;
        if !existed {
            sync_dir(dir)?;
        }
        let len = file.metadata()?.len();
        let (generation, checkpoint) = read_checkpoint(&file, len)?;
        let mut journal = Journal {
            file,
            dir: dir.to_path_buf(),
            capacity: capacity.max(16 * BLOCK),
            pos: BLOCK,
            len,
            next_seq: checkpoint + 1,
            generation,
            buf: Vec::new(),
            #[cfg(test)]
            fail_appends: false,
        };
        let recovery = journal.replay()?;
        journal.pos = BLOCK;
        // Also on a new file: writes the first checkpoint slot.
        journal.checkpoint()?;
        Ok((journal, recovery))
    }

    /// The size of one lap, bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// True if the journal file was removed while open: what is written to it is lost.
    pub fn unlinked(&self) -> bool {
        unlinked(&self.file)
    }

    /// True if an entry for `payload` can ever fit (a batch larger than a lap is synced in its
    /// file directly instead).
    pub fn fits(&self, name: &str, payload: &[u8]) -> bool {
        name.len() <= MAX_NAME
            && u32::try_from(payload.len()).is_ok()
            && BLOCK + entry_len(name, payload) <= self.capacity
    }

    /// True if the entry fits in what is left of this lap; otherwise the caller syncs the files
    /// and calls [`Journal::checkpoint`] first.
    pub fn has_room(&self, name: &str, payload: &[u8]) -> bool {
        self.pos + entry_len(name, payload) <= self.capacity
    }

    /// Writes one entry, `payload` having been written to `name` at `offset`, and syncs it: when
    /// this returns `Ok`, the payload survives a crash. On an error nothing advances; the next
    /// entry overwrites this one.
    pub fn append(&mut self, name: &str, offset: u64, payload: &[u8]) -> io::Result<()> {
        if !self.fits(name, payload) || !self.has_room(name, payload) {
            return Err(io::Error::other("accounting journal entry does not fit"));
        }
        #[cfg(test)]
        if self.fail_appends {
            return Err(io::Error::other("injected journal failure"));
        }
        let total = entry_len(name, payload);
        let name_len = u16::try_from(name.len()).map_err(io::Error::other)?;
        let payload_len = u32::try_from(payload.len()).map_err(io::Error::other)?;
        self.buf.clear();
        self.buf.extend_from_slice(&ENTRY_MAGIC);
        self.buf.extend_from_slice(&self.next_seq.to_le_bytes());
        self.buf.extend_from_slice(&offset.to_le_bytes());
        self.buf.extend_from_slice(&payload_len.to_le_bytes());
        self.buf.extend_from_slice(&name_len.to_le_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        let crc = entry_crc(&self.buf, name.as_bytes(), payload);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(payload);
        self.buf
            .resize(usize::try_from(total).map_err(io::Error::other)?, 0);
        self.extend_zeroed(self.pos + total)?;
        self.file.write_all_at(&self.buf, self.pos)?;
        // Inside the zeroed part the size does not change: data and flush only (the first lap's
        // growth steps are synced by the entry that needs them).
        self.file.sync_data()?;
        self.pos += total;
        self.next_seq += 1;
        Ok(())
    }

    /// Records that every entry written so far is durable in its file. The caller must have
    /// synced those files. The next entry goes to the start of the journal.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        let generation = self.generation + 1;
        let covered = self.next_seq - 1;
        let mut slot = [0u8; HEAD_LEN];
        slot[0..4].copy_from_slice(&HEAD_MAGIC);
        slot[4..8].copy_from_slice(&VERSION.to_le_bytes());
        slot[8..16].copy_from_slice(&generation.to_le_bytes());
        slot[16..24].copy_from_slice(&covered.to_le_bytes());
        let crc = crc32fast::hash(&slot[..24]);
        slot[24..28].copy_from_slice(&crc.to_le_bytes());
        self.extend_zeroed(BLOCK)?;
        self.file.write_all_at(&slot, (generation % 2) * SLOT)?;
        self.file.sync_data()?;
        self.generation = generation;
        self.pos = BLOCK;
        Ok(())
    }

    /// Grows the file with zeros (in [`ZERO_STEP`]s) until it is at least `upto` long.
    fn extend_zeroed(&mut self, upto: u64) -> io::Result<()> {
        if self.len >= upto {
            return Ok(());
        }
        let zeros = vec![0u8; usize::try_from(ZERO_STEP).map_err(io::Error::other)?];
        while self.len < upto {
            self.file.write_all_at(&zeros, self.len)?;
            self.len += ZERO_STEP;
        }
        Ok(())
    }

    /// Applies every entry after the checkpoint, in sequence, then syncs the files it touched.
    fn replay(&mut self) -> io::Result<Recovery> {
        let mut recovery = Recovery::default();
        let mut files: HashMap<String, File> = HashMap::new();
        let mut created = false;
        let mut pos = BLOCK;
        let mut head = [0u8; ENTRY_HEAD];
        loop {
            if pos + ENTRY_HEAD as u64 > self.len {
                break;
            }
            self.file.read_exact_at(&mut head, pos)?;
            if head[0..4] != ENTRY_MAGIC || le_u64(&head[4..12]) != self.next_seq {
                recovery.stopped_at_invalid = head != [0u8; ENTRY_HEAD] && !is_older(&head);
                break;
            }
            let offset = le_u64(&head[12..20]);
            let payload_len = u64::from(le_u32(&head[20..24]));
            let name_len = u64::from(u16::from_le_bytes([head[24], head[25]]));
            let body_len = name_len + payload_len;
            if name_len == 0
                || name_len > MAX_NAME as u64
                || pos + ENTRY_HEAD as u64 + body_len > self.len
            {
                recovery.stopped_at_invalid = true;
                break;
            }
            let mut body = vec![0u8; usize::try_from(body_len).map_err(io::Error::other)?];
            self.file
                .read_exact_at(&mut body, pos + ENTRY_HEAD as u64)?;
            let (name, payload) =
                body.split_at(usize::try_from(name_len).map_err(io::Error::other)?);
            if entry_crc(&head[..28], name, payload) != le_u32(&head[28..32]) {
                recovery.stopped_at_invalid = true;
                break;
            }
            let Some(name) = std::str::from_utf8(name)
                .ok()
                .filter(|n| plain_file_name(n))
            else {
                recovery.stopped_at_invalid = true;
                break;
            };
            let file = match files.get(name) {
                Some(f) => f,
                None => {
                    let path = self.dir.join(name);
                    created |= !path.exists();
                    let f = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)?;
                    files.entry(name.to_owned()).or_insert(f)
                }
            };
            recovery.entries += 1;
            match apply(file, offset, payload)? {
                Applied::Present => recovery.present += 1,
                Applied::Rewritten => recovery.rewritten += 1,
                Applied::Appended => {
                    recovery.appended += 1;
                    tracing::warn!(
                        file = name,
                        offset,
                        "accounting journal: the file holds other bytes where these records were \
                         written (edited, truncated or replaced?); the records were appended at \
                         its end"
                    );
                }
            }
            self.next_seq += 1;
            pos += entry_len(name, payload);
        }
        for f in files.values() {
            f.sync_data()?;
        }
        if created {
            sync_dir(&self.dir)?;
        }
        Ok(recovery)
    }
}

/// What replaying one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Present,
    Rewritten,
    Appended,
}

fn apply(file: &File, offset: u64, payload: &[u8]) -> io::Result<Applied> {
    let len = file.metadata()?.len();
    let end = offset + payload.len() as u64;
    if len > offset || (len == offset && !payload.is_empty()) {
        let have = len.min(end) - offset;
        let mut existing = vec![0u8; usize::try_from(have).map_err(io::Error::other)?];
        file.read_exact_at(&mut existing, offset)?;
        let prefix = &payload[..existing.len()];
        if existing.len() == payload.len() && existing == payload {
            return Ok(Applied::Present);
        }
        // Each byte is the record's own or a zero: what a crash leaves of unsynced appends
        // (blocks whose data never reached the disk read back as zeros).
        if existing.iter().zip(prefix).all(|(&e, &p)| e == p || e == 0) {
            file.write_all_at(payload, offset)?;
            return Ok(Applied::Rewritten);
        }
    }
    // Something else is at the offset, or the file is shorter than the offset: append.
    let mut at = len;
    if len > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, len - 1)?;
        if last[0] != b'\n' {
            file.write_all_at(b"\n", len)?;
            at += 1;
        }
    }
    file.write_all_at(payload, at)?;
    Ok(Applied::Appended)
}

/// Bytes an entry takes in the journal, whole blocks.
fn entry_len(name: &str, payload: &[u8]) -> u64 {
    let raw = (ENTRY_HEAD + name.len() + payload.len()) as u64;
    raw.div_ceil(BLOCK) * BLOCK
}

fn entry_crc(head_without_crc: &[u8], name: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head_without_crc);
    h.update(name);
    h.update(payload);
    h.finalize()
}

/// An entry header of an earlier lap: valid magic but an older sequence number. Seeing one is
/// the normal end of the scan.
fn is_older(head: &[u8; ENTRY_HEAD]) -> bool {
    head[0..4] == ENTRY_MAGIC
}

/// The newest valid checkpoint slot: (generation, last sequence covered); (0, 0) if none.
fn read_checkpoint(file: &File, len: u64) -> io::Result<(u64, u64)> {
    let mut best = (0, 0);
    for slot in 0..2 {
        let at = slot * SLOT;
        if at + HEAD_LEN as u64 > len {
            continue;
        }
        let mut b = [0u8; HEAD_LEN];
        file.read_exact_at(&mut b, at)?;
        if b[0..4] != HEAD_MAGIC || le_u32(&b[4..8]) != VERSION {
            continue;
        }
        if crc32fast::hash(&b[..24]) != le_u32(&b[24..28]) {
            continue;
        }
        let generation = le_u64(&b[8..16]);
        if generation > best.0 {
            best = (generation, le_u64(&b[16..24]));
        }
    }
    Ok(best)
}

/// A name of a file directly inside the accounting directory.
fn plain_file_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// Takes the journal for this process: two servers writing one accounting directory would
/// overwrite each other's entries. The lock goes with the descriptor.
fn lock(file: &File, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only takes the descriptor (open for the call's duration) and flags.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another process (is a second Portcullis using this accounting directory?)",
                path.display()
            ),
        ));
    }
    Err(e)
}

/// True if the open file no longer has a name (it was deleted, or its directory was).
pub fn unlinked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().map_or(true, |m| m.nlink() == 0)
}

/// Makes the directory's entries (a new file's name) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    const NAME: &str = "accounting-2026-12-07.jsonl";

    fn batch(i: usize) -> Vec<u8> {
        // Batches of different lengths, several lines each.
        (0..1 + i % 4)
            .map(|k| {
                format!(
                    "{{\"batch\":{i},\"line\":{k},\"pad\":\"{}\"}}\n",
                    "x".repeat(i * 7 % 50)
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    /// Does what the writer does for each batch: append without a sync, then journal it
    /// (checkpointing, after syncing the file, when the lap is full). Returns the file's content.
    fn write(dir: &Path, j: &mut Journal, batches: std::ops::Range<usize>) -> Vec<u8> {
        let path = dir.join(NAME);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for i in batches {
            let b = batch(i);
            let offset = f.metadata().unwrap().len();
            f.write_all(&b).unwrap();
            if !j.has_room(NAME, &b) {
                f.sync_data().unwrap();
                j.checkpoint().unwrap();
            }
            j.append(NAME, offset, &b).unwrap();
        }
        std::fs::read(&path).unwrap()
    }

    /// The state a crash leaves: the journal as written, the file as given.
    fn crash_state(dir: &Path, journal: &[u8], file: &[u8]) {
        std::fs::write(dir.join(FILE_NAME), journal).unwrap();
        std::fs::write(dir.join(NAME), file).unwrap();
    }

    fn read(dir: &Path) -> Vec<u8> {
        std::fs::read(dir.join(NAME)).unwrap()
    }

    #[test]
    fn every_cut_of_the_unsynced_file_is_restored_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(r, Recovery::default());
        let full = write(dir.path(), &mut j, 0..6);
        drop(j); // no checkpoint: a crash
        let journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        for cut in (0..full.len()).step_by(5).chain([full.len()]) {
            crash_state(dir.path(), &journal, &full[..cut]);
            let (j, r) = Journal::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(read(dir.path()), full, "file cut at {cut}");
            assert_eq!(r.entries, 6);
            assert_eq!(r.present + r.rewritten, 6, "cut at {cut}: {r:?}");
            assert_eq!(r.appended, 0);
            assert!(!r.stopped_at_invalid);
            assert_eq!(r.rewritten + r.appended > 0, cut < full.len());
            drop(j);
            // The replay ended with a checkpoint: nothing is replayed twice.
            let (_, again) = Journal::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(again.entries, 0);
        }
    }

    #[test]
    fn zeros_left_where_appends_were_lost_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        let full = write(dir.path(), &mut j, 0..6);
        drop(j);
        let journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        // The file's size reached the disk but some of its data did not.
        let mut damaged = full.clone();
        damaged[40..full.len() - 30].fill(0);
        crash_state(dir.path(), &journal, &damaged);
        let (_, r) = Journal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(read(dir.path()), full);
        assert!(r.rewritten >= 4, "{r:?}");
        assert_eq!(r.appended, 0);
    }

    #[test]
    fn other_bytes_at_an_offset_are_kept_and_the_records_appended_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        let full = write(dir.path(), &mut j, 0..3);
        drop(j);
        let journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        // Someone replaced the file while the server was down; no trailing newline either.
        crash_state(dir.path(), &journal, b"{\"edited\":true}");
        let (_, r) = Journal::open(dir.path(), 1 << 20).unwrap();
        let mut expected = b"{\"edited\":true}\n".to_vec();
        expected.extend_from_slice(&full);
        assert_eq!(read(dir.path()), expected);
        assert_eq!(r.appended, 3);
    }

    #[test]
    fn a_torn_entry_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        write(dir.path(), &mut j, 0..4);
        let last_entry = j.pos - BLOCK;
        drop(j);
        let mut journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        // One byte of the last entry's payload did not make it.
        let at = usize::try_from(last_entry).unwrap() + ENTRY_HEAD + NAME.len() + 3;
        journal[at] ^= 0x20;
        crash_state(dir.path(), &journal, b"");
        let (_, r) = Journal::open(dir.path(), 1 << 20).unwrap();
        let expected: Vec<u8> = (0..3).flat_map(batch).collect();
        assert_eq!(read(dir.path()), expected);
        assert_eq!(r.entries, 3);
        assert!(r.stopped_at_invalid);
    }

    #[test]
    fn after_laps_only_entries_after_the_last_checkpoint_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        // 64 KiB: 15 entries of one block each per lap.
        let (mut j, _) = Journal::open(dir.path(), 64 * 1024).unwrap();
        let full = write(dir.path(), &mut j, 0..40);
        let after_checkpoint = (j.pos - BLOCK) / BLOCK;
        assert!(after_checkpoint > 0 && after_checkpoint < 15);
        drop(j);
        let journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(
            journal.len() as u64,
            ZERO_STEP,
            "the journal grew by one step only"
        );
        // The file was synced at the checkpoint; what came after is lost.
        let synced: usize = (0..40 - after_checkpoint as usize)
            .map(|i| batch(i).len())
            .sum();
        crash_state(dir.path(), &journal, &full[..synced]);
        let (_, r) = Journal::open(dir.path(), 64 * 1024).unwrap();
        assert_eq!(read(dir.path()), full);
        assert_eq!(r.entries, after_checkpoint);
        assert_eq!(r.rewritten, after_checkpoint);
    }

    #[test]
    fn a_torn_checkpoint_falls_back_to_the_other_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 64 * 1024).unwrap();
        let full = write(dir.path(), &mut j, 0..20);
        let newest = usize::try_from((j.generation % 2) * SLOT).unwrap();
        drop(j);
        let mut journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        journal[newest + 10] ^= 1;
        crash_state(dir.path(), &journal, &full);
        // The older checkpoint's entries were overwritten by the newer lap, whose first entry
        // does not follow it: nothing is replayed, nothing changes.
        let (_, r) = Journal::open(dir.path(), 64 * 1024).unwrap();
        assert_eq!(read(dir.path()), full);
        assert_eq!(r.appended + r.rewritten, 0, "{r:?}");
    }

    #[test]
    fn a_damaged_journal_never_writes_anything_but_the_records_in_order() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        let full = write(dir.path(), &mut j, 0..12);
        let used = usize::try_from(j.pos).unwrap();
        drop(j);
        let journal = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let mut damaged = journal.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..used);
                if rng.gen_bool(0.5) {
                    damaged[at] ^= 1 << rng.gen_range(0..8);
                } else {
                    let end = (at + rng.gen_range(1..5000)).min(used);
                    damaged[at..end].fill(0);
                }
            }
            let cut = rng.gen_range(0..=full.len());
            crash_state(dir.path(), &damaged, &full[..cut]);
            let (_, r) = Journal::open(dir.path(), 1 << 20).unwrap();
            let now = read(dir.path());
            assert!(
                now.len() >= cut && full.starts_with(&now),
                "round {round}: {r:?}, {} bytes of {}, cut at {cut}",
                now.len(),
                full.len()
            );
            assert_eq!(r.appended, 0, "round {round}");
        }
    }

    #[test]
    fn a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_j, _) = Journal::open(dir.path(), 1 << 20).unwrap();
        let Err(e) = Journal::open(dir.path(), 1 << 20) else {
            panic!("opened twice");
        };
        assert!(e.to_string().contains("in use by another process"), "{e}");
    }

    #[test]
    fn entries_are_checked_before_they_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 64 * 1024).unwrap();
        let big = vec![b'x'; 64 * 1024];
        assert!(!j.fits(NAME, &big));
        assert!(j.append(NAME, 0, &big).is_err());
        assert!(!j.fits(&"n".repeat(MAX_NAME + 1), b"{}\n"));
        assert!(j.fits(NAME, b"{}\n"));
    }
}
