//! Room for a full sync's new copy: a slave builds it beside its live copy, on the same file
//! system, and the disk may not hold both.
//!
//! Below `min_free_space` a load does not start, and one under way stops, before the disk is
//! full (so the other users of that file system, and the live copy's journal, keep their
//! room). A load that stopped for want of room, or met a real ENOSPC (with the guard off),
//! tells what the copy took per item; the next attempts are refused at their start until
//! there is room for the whole copy (the master's item count times that) plus
//! `min_free_space`. A master offers the full sync again at every reconnect: without this, each
//! attempt would stream the snapshot until the disk is full again. Each case raises one
//! disk_full incident (until a full sync starts with room again: disk_recovered); the old copy
//! stays live throughout.

use super::replica::FullSync;
use super::{Engine, EngineError, free_space};
use crate::link::msg::ChunkItems;
use crate::store::StoreError;

/// A load measures the free space every this many bytes of items received.
const CHECK_EVERY_BYTES: u64 = 4 << 20;

impl Engine {
    /// Before a full sync of `items_total` items: the free space now (the load's later
    /// measures are against it), or Err when there is not room for it.
    pub(super) fn room_to_begin_full_sync(&mut self, items_total: u64) -> Result<u64, EngineError> {
        let free = free_space(self.data.root()).unwrap_or(u64::MAX);
        let min = self.opts.min_free_space;
        let need = self
            .full_sync_bytes_per_item
            .map(|per_item| (per_item * items_total as f64) as u64);
        if free < need.unwrap_or(0).saturating_add(min) {
            let why = match need {
                Some(n) => format!(
                    "the new copy of {items_total} items needs about {n} bytes (by the last attempt) plus min_free_space ({min}), and {free} bytes are free"
                ),
                None => format!("{free} bytes are free, below min_free_space ({min})"),
            };
            let msg = format!(
                "disk full: a full sync cannot start on the data directory's file system: {why}; the previous copy stays live, and the sync starts when space is freed"
            );
            self.alarm_disk_full(&msg);
            return Err(EngineError::NoSpace(msg));
        }
        if self.disk_alarm {
            self.disk_alarm = false;
            crate::incident::raise(
                crate::incident::Kind::DiskRecovered,
                format!("disk space is back ({free} bytes free): the full sync starts"),
                &[],
            );
        }
        Ok(free)
    }

    /// Queues one chunk of a full sync for its loader, checking the room left as it goes.
    /// Err: the link must close; the caller abandons the load (the old copy stays live).
    pub fn add_full_sync_chunk(
        &mut self,
        fs: &mut FullSync,
        file: String,
        items: ChunkItems,
    ) -> Result<(), EngineError> {
        if let Err(e) = fs.add(file, items) {
            if e.is_disk_full() {
                return Err(self.full_sync_out_of_room(fs, &e));
            }
            return Err(e.into());
        }
        let min = self.opts.min_free_space;
        if min == 0 || fs.bytes < fs.room_checked_at + CHECK_EVERY_BYTES {
            return Ok(());
        }
        fs.room_checked_at = fs.bytes;
        let free = free_space(self.data.root()).unwrap_or(u64::MAX);
        if free >= min {
            return Ok(());
        }
        self.note_full_sync_room(fs, free);
        let msg = format!(
            "disk full: the full sync stopped after {} of {} items: {free} bytes free on the data directory's file system, below min_free_space ({min}); the previous copy stays live, and the sync starts again when space is freed",
            fs.items, fs.items_total
        );
        self.alarm_disk_full(&msg);
        Err(EngineError::NoSpace(msg))
    }

    /// The load met ENOSPC (`e`, from the loader): remember what the copy took, raise the
    /// incident. The error for the link comes back.
    pub(super) fn full_sync_out_of_room(&mut self, fs: &FullSync, e: &StoreError) -> EngineError {
        let free = free_space(self.data.root()).unwrap_or(0);
        self.note_full_sync_room(fs, free);
        let msg = format!(
            "disk full: the full sync stopped after {} of {} items: {e}; the previous copy stays live, and the sync starts again when space is freed",
            fs.items, fs.items_total
        );
        self.alarm_disk_full(&msg);
        EngineError::NoSpace(msg)
    }

    /// What the copy took per item so far: the space it used (`free` now against the free
    /// space at its start), over the items received. The loader is a little behind the items
    /// received, so this errs low: the next attempt may still stop, and then learns more.
    fn note_full_sync_room(&mut self, fs: &FullSync, free: u64) {
        let used = fs.free_at_begin.saturating_sub(free).max(1);
        let per_item = used as f64 / fs.items.max(1) as f64;
        self.full_sync_bytes_per_item = Some(per_item);
    }

    fn alarm_disk_full(&mut self, msg: &str) {
        if self.disk_alarm {
            log::warn!("{msg}");
        } else {
            self.disk_alarm = true;
            crate::incident::raise(crate::incident::Kind::DiskFull, msg, &[]);
        }
    }
}
