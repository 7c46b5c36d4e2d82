//! The data directory: what lives where, and the atomic switch to a new copy of the database.
//!
//! ```text
//! DATA_DIR/
//!   hotbackup.lock       flock'ed by the running daemon
//!   node_id              this node's identity (16 random bytes, hex), made once
//!   current -> state.N   the live copy of the database:
//!   state.N/store.redb   the store
//!   state.N/journal/     the journal segments
//!   state.M.tmp/         a copy being built (full sync from a master); never read as live
//! ```
//! A full sync builds `state.M.tmp` completely and durably, renames it to `state.M`, and then
//! swaps the `current` symlink with one rename(2): a crash at any point leaves either the old
//! copy or the new one live, never a mix. [`DataDir::prepare`] removes what a crash left behind.
//! This module owns these names; nothing else spells them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "hotbackup.lock";
pub const NODE_ID_FILE: &str = "node_id";
pub const CURRENT: &str = "current";
pub const STORE_FILE: &str = "store.redb";
pub const JOURNAL_DIR: &str = "journal";
const STATE_PREFIX: &str = "state.";
const TMP_SUFFIX: &str = ".tmp";

/// A node's identity: stable across restarts and full syncs, different on every node.
pub type NodeId = [u8; 16];

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// A copy of the database being built beside the live one.
#[derive(Debug)]
pub struct NewState {
    pub dir: PathBuf,
    n: u64,
}

impl NewState {
    pub fn store_path(&self) -> PathBuf {
        self.dir.join(STORE_FILE)
    }
    pub fn journal_dir(&self) -> PathBuf {
        self.dir.join(JOURNAL_DIR)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn state_number(name: &str) -> Option<u64> {
    name.strip_prefix(STATE_PREFIX)?.parse().ok()
}

impl DataDir {
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the daemon lock (non-blocking). Err(None) when another process holds it.
    pub fn lock(&self) -> Result<File, Option<io::Error>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCK_FILE))
            .map_err(Some)?;
        // SAFETY: flock on a valid open descriptor owned by `file`; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(None);
        }
        Ok(file)
    }

    /// Creates the layout if needed (moving a pre-0.1 flat layout into `state.1`), and removes
    /// copies a crash left unfinished or unused. Call with the lock held.
    pub fn prepare(&self) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        let current = self.root.join(CURRENT);
        if fs::symlink_metadata(&current).is_err() {
            let first = self.root.join(format!("{STATE_PREFIX}1"));
            fs::create_dir_all(&first)?;
            // An older flat layout: store and journal directly in the data directory.
            for name in [STORE_FILE, JOURNAL_DIR] {
                let old = self.root.join(name);
                if old.exists() {
                    fs::rename(&old, first.join(name))?;
                }
            }
            sync_dir(&first)?;
            self.point_current_to(&format!("{STATE_PREFIX}1"))?;
        }
        let live = self.live_state_name()?;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STATE_PREFIX) && name != live {
                log::info!("removing {name}: a copy of the database that is not live");
                fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }

    /// Name of the state directory `current` points to.
    fn live_state_name(&self) -> io::Result<String> {
        let target = fs::read_link(self.root.join(CURRENT))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if state_number(&name).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} points to {}, not to a state directory",
                    self.root.join(CURRENT).display(),
                    target.display()
                ),
            ));
        }
        Ok(name)
    }

    /// The live state directory, resolved (a later switch does not move what was opened here).
    pub fn live(&self) -> io::Result<PathBuf> {
        Ok(self.root.join(self.live_state_name()?))
    }

    /// Paths of the live copy, through the symlink (for offline tools).
    pub fn store_path(&self) -> PathBuf {
        self.root.join(CURRENT).join(STORE_FILE)
    }
    pub fn journal_dir(&self) -> PathBuf {
        self.root.join(CURRENT).join(JOURNAL_DIR)
    }

    /// This node's identity, made on first use.
    pub fn node_id(&self) -> io::Result<NodeId> {
        let path = self.root.join(NODE_ID_FILE);
        if let Ok(mut f) = File::open(&path) {
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            return parse_hex_id(text.trim()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not hold a node id", path.display()),
                )
            });
        }
        let id: NodeId =
            crate::store::random_db_id().map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = self.root.join(format!("{NODE_ID_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(hex(&id).as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.root)?;
        Ok(id)
    }

    /// Starts a new copy beside the live one (`state.M.tmp`, empty).
    pub fn new_state(&self) -> io::Result<NewState> {
        let mut n = 0;
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let base = name.strip_suffix(TMP_SUFFIX).unwrap_or(&name);
            if let Some(k) = state_number(base) {
                n = n.max(k);
            }
        }
        let n = n + 1;
        let dir = self.root.join(format!("{STATE_PREFIX}{n}{TMP_SUFFIX}"));
        fs::create_dir_all(dir.join(JOURNAL_DIR))?;
        Ok(NewState { dir, n })
    }

    /// Makes a finished copy the live one, atomically, and removes the old one. The caller
    /// has made the copy's files durable and closed everything of the old copy.
    pub fn switch_to(&self, state: NewState) -> io::Result<PathBuf> {
        let name = format!("{STATE_PREFIX}{}", state.n);
        let dir = self.root.join(&name);
        sync_dir(&state.dir.join(JOURNAL_DIR))?;
        sync_dir(&state.dir)?;
        fs::rename(&state.dir, &dir)?;
        sync_dir(&self.root)?;
        let old = self.live_state_name().ok();
        self.point_current_to(&name)?;
        if let Some(old) = old {
            if old != name {
                let _ = fs::remove_dir_all(self.root.join(old));
            }
        }
        Ok(dir)
    }

    /// Abandons a copy being built.
    pub fn discard(&self, state: NewState) {
        let _ = fs::remove_dir_all(&state.dir);
    }

    /// Points `current` at `name` with one rename(2) of a fresh symlink.
    fn point_current_to(&self, name: &str) -> io::Result<()> {
        let tmp = self.root.join(format!("{CURRENT}{TMP_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)?;
        fs::rename(&tmp, self.root.join(CURRENT))?;
        sync_dir(&self.root)
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hex_id(s: &str) -> Option<NodeId> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        id[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_creates_the_layout_and_keeps_the_node_id() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::new(tmp.path());
        d.prepare().unwrap();
        assert_eq!(d.live().unwrap(), tmp.path().join("state.1"));
        let id = d.node_id().unwrap();
        assert_eq!(d.node_id().unwrap(), id);
        d.prepare().unwrap();
        assert_eq!(d.live().unwrap(), tmp.path().join("state.1"));
    }

    #[test]
    fn a_flat_layout_moves_into_state_1() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STORE_FILE), b"store").unwrap();
        fs::create_dir(tmp.path().join(JOURNAL_DIR)).unwrap();
        fs::write(tmp.path().join(JOURNAL_DIR).join("x"), b"j").unwrap();
        let d = DataDir::new(tmp.path());
        d.prepare().unwrap();
        assert_eq!(fs::read(d.store_path()).unwrap(), b"store");
        assert_eq!(fs::read(d.journal_dir().join("x")).unwrap(), b"j");
    }

    #[test]
    fn switch_is_atomic_and_leftovers_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir::new(tmp.path());
        d.prepare().unwrap();
        fs::write(d.store_path(), b"old").unwrap();
        // An unfinished copy left by a crash is removed at the next prepare.
        let abandoned = d.new_state().unwrap();
        fs::write(abandoned.store_path(), b"half").unwrap();
        d.prepare().unwrap();
        assert!(!abandoned.dir.exists());
        assert_eq!(fs::read(d.store_path()).unwrap(), b"old");
        // A finished copy becomes live; the old one goes.
        let new = d.new_state().unwrap();
        fs::write(new.store_path(), b"new").unwrap();
        let live = d.switch_to(new).unwrap();
        assert_eq!(d.live().unwrap(), live);
        assert_eq!(fs::read(d.store_path()).unwrap(), b"new");
        assert!(!tmp.path().join("state.1").exists());
    }

    #[test]
    fn hex_ids_round_trip() {
        let id = [0xab; 16];
        assert_eq!(parse_hex_id(&hex(&id)), Some(id));
        assert_eq!(parse_hex_id("xyz"), None);
    }
}
