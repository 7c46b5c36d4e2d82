//! The TOML configuration of one database instance (`hotbackup serve --config FILE`).
//!
//! This module owns the file format: which keys exist, their defaults, their units, and every
//! check that can be made without touching the system (beyond resolving the `client.listen`
//! and `link.listen` host names, and reading `link.key_file`: a key that is missing, too short
//! or readable by others is a config error, at the `key_file` line). It turns the text into a
//! [`Config`] whose fields are already validated and resolved (addresses parsed, relative paths
//! made absolute, sizes in bytes, the key read), so no other module parses or second-guesses a
//! config value. Link peers stay `host:port` strings, checked but not resolved: a peer is
//! resolved each time it is dialled. It never creates files or directories, binds sockets, or
//! logs: callers decide what to do with a [`ConfigError`].
//!
//! Errors name the place in the file: `FILE:LINE:COL: MESSAGE`, where the message says what was
//! wrong and what was expected. Unknown keys are rejected (a typo must not silently become a
//! default). `etc/hotbackup/example.toml` documents every key; a test keeps it complete.
//!
//! Layout: private `Raw*` structs are what serde reads (every key optional except `data_dir`,
//! values kept with their span); `Raw*::validate` turns them into the public structs. To add a
//! key: add it to the `Raw*` struct, the public struct, its `Default`, `validate`, `KEYS` and
//! the example file. To add a section: the same, one level up.

use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::glob::glob_match;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A config file larger than this is refused: it is surely not a config file.
const MAX_FILE_LEN: u64 = MIB;

/// Longest path a Unix socket can bind to: `sun_path` minus its terminating NUL.
const MAX_UNIX_SOCKET_PATH: usize =
    size_of::<libc::sockaddr_un>() - size_of::<libc::sa_family_t>() - 1;

/// The validated configuration of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, as given (used in messages and to reload on SIGHUP).
    pub path: PathBuf,
    /// Instance name: `instance`, or the config file's stem. Only `[A-Za-z0-9_.-]`.
    pub instance: String,
    /// Directory holding the journal and the store (absolute).
    pub data_dir: PathBuf,
    /// Whether this node starts as master or slave.
    pub role: Role,
    pub client: ClientConfig,
    pub link: LinkConfig,
    pub durability: DurabilityConfig,
    pub journal: JournalConfig,
    pub store: StoreConfig,
    pub files: FilesConfig,
    pub log: LogConfig,
    pub incidents: IncidentsConfig,
    pub verify: VerifyConfig,
    pub metrics: MetricsConfig,
    pub service: ServiceConfig,
}

/// `[service]`: how the systemd units present the instance on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The service (virtual) address the master unit holds: added when it starts, removed when
    /// it stops, so clients that know one address follow a failover.
    pub address: Option<ServiceAddress>,
}

/// `address/prefix dev IFACE`, e.g. `10.77.0.100/24 dev eth0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAddress {
    pub ip: std::net::IpAddr,
    pub prefix: u8,
    pub dev: String,
}

impl ServiceAddress {
    /// Parses `ADDR/PREFIX dev IFACE`; the message says what was expected.
    pub fn parse(s: &str) -> Result<ServiceAddress, String> {
        const EXPECTED: &str = "expected \"ADDR/PREFIX dev IFACE\" like \"10.0.0.100/24 dev eth0\"";
        let words: Vec<&str> = s.split_whitespace().collect();
        let [cidr, "dev", dev] = words.as_slice() else {
            return Err(EXPECTED.to_string());
        };
        let Some((ip, prefix)) = cidr.split_once('/') else {
            return Err(format!("{EXPECTED}: the prefix length is missing"));
        };
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("{EXPECTED}: {ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{EXPECTED}: prefix length {prefix:?} is not 0..{max}"))?;
        // IFNAMSIZ is 16 with the NUL; the kernel refuses '/', ':' and whitespace in names.
        let dev_ok = !dev.is_empty()
            && dev.len() < 16
            && *dev != "."
            && *dev != ".."
            && dev
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if !dev_ok {
            return Err(format!("{EXPECTED}: {dev:?} is not an interface name"));
        }
        Ok(ServiceAddress {
            ip,
            prefix,
            dev: dev.to_string(),
        })
    }
}

impl fmt::Display for ServiceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} dev {}", self.ip, self.prefix, self.dev)
    }
}

/// `[client]`: how clients reach the server.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// TCP listen address; `None` when TCP is disabled (`listen = ""`).
    pub listen: Option<SocketAddr>,
    /// Unix socket path (absolute); `None` when there is none.
    pub unix_socket: Option<PathBuf>,
    /// Permission bits given to the Unix socket.
    pub unix_socket_mode: u32,
    /// Password clients must `AUTH` with; `None`: no password.
    pub requirepass: Option<String>,
    /// Connections beyond this are refused (>= 1).
    pub maxclients: usize,
    /// Idle clients are disconnected after this; `Duration::ZERO`: never.
    pub timeout: Duration,
    /// Largest bulk string accepted in a request (Redis `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Largest buffered request (Redis `client-query-buffer-limit`).
    pub max_request_len: usize,
    /// A port answering as a Redis Sentinel about this database (for Sentinel-mode clients
    /// that check they reached a sentinel); `None`: none.
    pub sentinel_listen: Option<SocketAddr>,
}

/// `[durability]`: when writes are acknowledged and how the journal is cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurabilityConfig {
    pub mode: DurabilityMode,
    /// Time between store checkpoints (> 0).
    pub checkpoint_interval: Duration,
    /// Journal bytes since the last checkpoint that force one (> 0).
    pub checkpoint_bytes: u64,
    /// Journal segment size, 1 MiB ..= 4 GiB.
    pub segment_size: u64,
    /// Writes are refused while the data_dir's filesystem has less free space; 0: no check.
    pub min_free_space: u64,
}

/// When a write is acknowledged to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityMode {
    /// After its journal record is on disk (fdatasync). The default.
    Fsync,
    /// Without waiting for the disk. For tests and benchmarks only: acknowledged writes can be
    /// lost on power failure or an OS crash.
    None,
}

/// `[journal]`: where journal segments go before they are removed (see
/// [`crate::journal::archive`]). At most one of the two is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory sealed segments are copied to (absolute).
    pub archive_dir: Option<PathBuf>,
    /// Shell command run for each sealed segment (`%p` path, `%f` file name, `%%`).
    pub archive_command: Option<String>,
}

/// `[store]`: the redb store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// redb page cache size in bytes.
    pub cache_size: usize,
}

/// `[files]`: which files are logged (journaled and replicated) when they are created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesConfig {
    /// Globs ([`glob_match`], case-sensitive) on file names.
    pub logged: Vec<String>,
    /// Globs that override `logged`.
    pub unlogged: Vec<String>,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LevelFilter,
}

/// `[incidents]`: who is told of incidents, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentsConfig {
    /// The notify list (see `incident::notify::Target`).
    pub notify: Vec<crate::incident::notify::Target>,
    /// Incidents of one kind told per window (>= 1); the rest are summarized.
    pub notify_burst: u32,
    pub notify_window: Duration,
    /// An exec hook or sendmail is killed after this (> 0).
    pub hook_timeout: Duration,
    /// The sendmail program `mail:` targets go through (an absolute path).
    pub sendmail: PathBuf,
}

/// `[verify]`: the canary and the online checksums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyConfig {
    /// The master writes `sys/canary` this often (`Duration::ZERO`: never).
    pub canary_interval: Duration,
    /// A canary older than this on a slave, or not acknowledged back to the master, is an
    /// incident (> canary_interval).
    pub canary_alarm: Duration,
    /// Online verify this often on a master (`Duration::ZERO`: only on `hotbackup verify`).
    pub interval: Duration,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is answered over HTTP; `None` (the default, or `listen = ""`): no
    /// endpoint.
    pub listen: Option<SocketAddr>,
}

/// `role`: what this node is when it starts. (Promote and rejoin change it at run time.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Takes writes and feeds its slaves. The default.
    #[default]
    Master,
    /// Read-only; applies what its master streams to it.
    Slave,
}

/// `[link]`: the hot-backup link between the nodes of a pair (and to cascaded slaves).
///
/// The pair's config is symmetric: each node names its own link port and its partner(s); only
/// `role` differs, and decides who dials (the master dials each peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// This node's link port, answered in every role; `None` (`listen = ""`) only for a master
    /// with no downstream.
    pub listen: Option<SocketAddr>,
    /// The partner nodes' link ports, `host:port` as written (resolved at connect time). A
    /// master dials each; a slave accepts its master only from them. Syntax-checked, no
    /// duplicates (across `peers` and `downstream`).
    pub peers: Vec<String>,
    /// Slaves this node feeds while it is itself a slave (cascading), `host:port` as written.
    pub downstream: Vec<String>,
    /// The shared secret's file (absolute); `None` when not set.
    pub key_file: Option<PathBuf>,
    /// The shared secret read from `key_file` when the config was loaded: `Some` exactly when
    /// `key_file` is.
    pub key: Option<Key>,
    /// Time between heartbeats sent to a connected peer (> 0).
    pub heartbeat_interval: Duration,
    /// A peer heard nothing from for this long is declared down (> `heartbeat_interval`).
    pub peer_timeout: Duration,
    /// First delay before a master re-dials a lost slave (> 0).
    pub reconnect_min: Duration,
    /// Largest delay between re-dials (>= `reconnect_min`).
    pub reconnect_max: Duration,
    /// Largest link frame accepted, 1 MiB ..= 1 GiB.
    pub max_frame: usize,
    /// Journal kept for a slave that is behind (> 0); past it the slave's slot is dropped and
    /// it needs a full sync.
    pub max_retained_bytes: u64,
    /// When a client's write is acknowledged, with respect to the slaves.
    pub sync: ReplicaSync,
    /// How many slaves must acknowledge a write when `sync` is not `Async` (>= 1).
    pub min_sync_slaves: usize,
    /// How long a write waits for those acknowledgements (> 0).
    pub sync_timeout: Duration,
    /// What happens when they do not come in time.
    pub on_sync_timeout: OnSyncTimeout,
    /// During a switchover, what new writes on the old master do while it hands over.
    pub switchover_writes: SwitchoverWrites,
    /// How long a switchover waits for the slave to catch up before it gives up (> 0).
    pub switchover_timeout: Duration,
}

/// `link.switchover_writes`: new writes on a master that is handing over to its slave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SwitchoverWrites {
    /// They wait (the client sees a pause), then run on the old master if the switchover is
    /// aborted, or get READONLY naming the new master. The default.
    #[default]
    Wait,
    /// They get a retryable error at once (TRYAGAIN).
    Refuse,
}

/// `link.sync`: which slave acknowledgement a client's write waits for. (Named so as not to
/// be confused with the journal's `SyncMode`, which is about the local disk.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplicaSync {
    /// Does not wait for slaves. The default.
    #[default]
    Async,
    /// Waits until slaves have received the record.
    Received,
    /// Waits until slaves have it on disk (journaled and synced).
    Durable,
    /// Waits until slaves have applied it (readers on them see it).
    Applied,
}

/// `link.on_sync_timeout`: what a master does when slaves do not acknowledge in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnSyncTimeout {
    /// Acknowledges the write anyway and raises an incident. The default.
    #[default]
    Async,
    /// Refuses writes until enough slaves acknowledge again.
    Refuse,
}

/// The link's shared secret: the contents of `link.key_file` without trailing whitespace
/// (at least [`MIN_KEY_LEN`] bytes when read from a config). Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

/// Shortest key accepted.
pub const MIN_KEY_LEN: usize = 16;
/// A key file larger than this is refused: it is surely not a key file.
const MAX_KEY_FILE_LEN: u64 = 64 * KIB;

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 7379))),
            unix_socket: None,
            unix_socket_mode: 0o660,
            requirepass: None,
            maxclients: 10_000,
            timeout: Duration::ZERO,
            max_bulk_len: (512 * MIB) as usize,
            max_request_len: GIB as usize,
            sentinel_listen: None,
        }
    }
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        DurabilityConfig {
            mode: DurabilityMode::Fsync,
            checkpoint_interval: Duration::from_secs(10),
            checkpoint_bytes: 256 * MIB,
            segment_size: 64 * MIB,
            min_free_space: 64 * MIB,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_size: (256 * MIB) as usize,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            logged: vec!["*".to_string()],
            unlogged: Vec::new(),
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 2000))),
            peers: Vec::new(),
            downstream: Vec::new(),
            key_file: None,
            key: None,
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_frame: (64 * MIB) as usize,
            max_retained_bytes: GIB,
            sync: ReplicaSync::Async,
            min_sync_slaves: 1,
            sync_timeout: Duration::from_secs(1),
            on_sync_timeout: OnSyncTimeout::Async,
            switchover_writes: SwitchoverWrites::Wait,
            switchover_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LevelFilter::Info,
        }
    }
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            notify: Vec::new(),
            notify_burst: 3,
            notify_window: Duration::from_secs(600),
            hook_timeout: Duration::from_secs(10),
            sendmail: PathBuf::from(crate::incident::notify::DEFAULT_SENDMAIL),
        }
    }
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            canary_interval: Duration::from_secs(5),
            canary_alarm: Duration::from_secs(30),
            interval: Duration::ZERO,
        }
    }
}

// Written by hand so that the password never reaches a log line.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("listen", &self.listen)
            .field("unix_socket", &self.unix_socket)
            .field(
                "unix_socket_mode",
                &format_args!("{:#o}", self.unix_socket_mode),
            )
            .field(
                "requirepass",
                &self.requirepass.as_ref().map(|_| "<redacted>"),
            )
            .field("maxclients", &self.maxclients)
            .field("timeout", &self.timeout)
            .field("max_bulk_len", &self.max_bulk_len)
            .field("max_request_len", &self.max_request_len)
            .field("sentinel_listen", &self.sentinel_listen)
            .finish()
    }
}

impl Role {
    /// The name used in the config file, logs and status: `"master"` or `"slave"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ReplicaSync {
    /// The name used in the config file: `"async"`, `"received"`, `"durable"`, `"applied"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaSync::Async => "async",
            ReplicaSync::Received => "received",
            ReplicaSync::Durable => "durable",
            ReplicaSync::Applied => "applied",
        }
    }
}

impl fmt::Display for ReplicaSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OnSyncTimeout {
    /// The name used in the config file: `"async"` or `"refuse"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnSyncTimeout::Async => "async",
            OnSyncTimeout::Refuse => "refuse",
        }
    }
}

impl fmt::Display for OnSyncTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Key {
    /// A key from bytes already in hand (tests, tools). Config loading checks the length;
    /// this does not.
    pub fn from_bytes(bytes: Vec<u8>) -> Key {
        Key(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

// Written by hand so that the secret never reaches a log line.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl FilesConfig {
    /// Is a file of this name logged when created: it matches a `logged` glob and no
    /// `unlogged` glob.
    pub fn is_logged(&self, file: &str) -> bool {
        let matches = |globs: &[String]| {
            globs
                .iter()
                .any(|g| glob_match(g.as_bytes(), file.as_bytes(), false))
        };
        matches(&self.logged) && !matches(&self.unlogged)
    }
}

/// Why a config file could not be loaded.
///
/// Display is `FILE:LINE:COL: MESSAGE` for problems in the text, `FILE: MESSAGE` otherwise.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("{}: config file not found", path.display())]
    NotFound { path: PathBuf },
    /// The file could not be read. (The I/O error is part of the message, so it is not also
    /// reported as `source()`: error-chain printers would show it twice.)
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Something in the text is wrong; `line` and `column` count from 1, columns in characters.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Something is wrong that is not at one place in the text.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |error: std::io::Error| match error.kind() {
            std::io::ErrorKind::NotFound => ConfigError::NotFound {
                path: path.to_path_buf(),
            },
            _ => ConfigError::Read {
                path: path.to_path_buf(),
                error,
            },
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                message: format!(
                    "file is larger than {}: not a config file?",
                    format_size(MAX_FILE_LEN)
                ),
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]);
                let (line, column) = line_col(&prefix, valid);
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message: "invalid UTF-8: a config file must be UTF-8 text".to_string(),
                });
            }
        };
        Config::parse(&text, path)
    }

    /// Parses and validates config text. `path` is used in messages, as the default instance
    /// name (its stem), and to resolve relative paths (against its directory; when that is
    /// relative too, against the current directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source { text, path };
        let doc = DeTable::parse(text).map_err(|e| src.toml_error(&e, None))?;
        src.check_sections(&doc)?;
        let raw = RawConfig::deserialize(toml::de::Deserializer::from(doc.clone()))
            .map_err(|e| src.toml_error(&e, Some(doc.get_ref())))?;
        raw.validate(&src)
    }
}

// ---------------------------------------------------------------------------------------------
// What serde reads. Every key but data_dir is optional; values that need checks serde cannot do
// keep their span so that the error points at them.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    instance: Option<Spanned<String>>,
    data_dir: Spanned<String>,
    role: Option<Spanned<String>>,
    #[serde(default)]
    client: RawClient,
    #[serde(default)]
    link: RawLink,
    #[serde(default)]
    durability: RawDurability,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    files: RawFiles,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    incidents: RawIncidents,
    #[serde(default)]
    verify: RawVerify,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    service: RawService,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawClient {
    listen: Option<Spanned<String>>,
    unix_socket: Option<Spanned<String>>,
    unix_socket_mode: Option<Spanned<String>>,
    requirepass: Option<String>,
    maxclients: Option<Spanned<u64>>,
    timeout: Option<Interval>,
    max_bulk_len: Option<Spanned<Size>>,
    max_request_len: Option<Spanned<Size>>,
    sentinel_listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLink {
    listen: Option<Spanned<String>>,
    peers: Option<Spanned<Vec<Spanned<String>>>>,
    downstream: Option<Spanned<Vec<Spanned<String>>>>,
    key_file: Option<Spanned<String>>,
    heartbeat_interval: Option<Spanned<Interval>>,
    peer_timeout: Option<Spanned<Interval>>,
    reconnect_min: Option<Spanned<Interval>>,
    reconnect_max: Option<Spanned<Interval>>,
    max_frame: Option<Spanned<Size>>,
    max_retained_bytes: Option<Spanned<Size>>,
    sync: Option<Spanned<String>>,
    min_sync_slaves: Option<Spanned<u64>>,
    sync_timeout: Option<Spanned<Interval>>,
    on_sync_timeout: Option<Spanned<String>>,
    switchover_writes: Option<Spanned<String>>,
    switchover_timeout: Option<Spanned<Interval>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawDurability {
    mode: Option<Spanned<String>>,
    checkpoint_interval: Option<Spanned<Interval>>,
    checkpoint_bytes: Option<Spanned<Size>>,
    segment_size: Option<Spanned<Size>>,
    min_free_space: Option<Size>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawJournal {
    archive_dir: Option<Spanned<String>>,
    archive_command: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    cache_size: Option<Spanned<Size>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawFiles {
    logged: Option<Vec<String>>,
    unlogged: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawIncidents {
    notify: Option<Vec<Spanned<String>>>,
    notify_burst: Option<Spanned<u64>>,
    notify_window: Option<Spanned<Interval>>,
    hook_timeout: Option<Spanned<Interval>>,
    sendmail: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawVerify {
    canary_interval: Option<Spanned<Interval>>,
    canary_alarm: Option<Spanned<Interval>>,
    interval: Option<Spanned<Interval>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawService {
    address: Option<Spanned<String>>,
}

impl RawService {
    fn validate(self, src: &Source<'_>) -> Result<ServiceConfig, ConfigError> {
        let mut c = ServiceConfig::default();
        if let Some(a) = self.address.as_ref().filter(|a| !a.get_ref().is_empty()) {
            c.address = Some(
                ServiceAddress::parse(a.get_ref())
                    .map_err(|m| src.invalid(a.span(), "service.address", m))?,
            );
        }
        Ok(c)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// The keys of each table, top level first. Only used to hint where a misplaced key belongs;
/// a test checks it against the structs above.
const KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "instance",
            "data_dir",
            "role",
            "client",
            "link",
            "durability",
            "journal",
            "store",
            "files",
            "log",
            "incidents",
            "verify",
            "metrics",
            "service",
        ],
    ),
    (
        "client",
        &[
            "listen",
            "unix_socket",
            "unix_socket_mode",
            "requirepass",
            "maxclients",
            "timeout",
            "max_bulk_len",
            "max_request_len",
            "sentinel_listen",
        ],
    ),
    (
        "link",
        &[
            "listen",
            "peers",
            "downstream",
            "key_file",
            "heartbeat_interval",
            "peer_timeout",
            "reconnect_min",
            "reconnect_max",
            "max_frame",
            "max_retained_bytes",
            "sync",
            "min_sync_slaves",
            "sync_timeout",
            "on_sync_timeout",
            "switchover_writes",
            "switchover_timeout",
        ],
    ),
    (
        "durability",
        &[
            "mode",
            "checkpoint_interval",
            "checkpoint_bytes",
            "segment_size",
            "min_free_space",
        ],
    ),
    ("journal", &["archive_dir", "archive_command"]),
    ("store", &["cache_size"]),
    ("files", &["logged", "unlogged"]),
    ("log", &["level"]),
    (
        "incidents",
        &[
            "notify",
            "notify_burst",
            "notify_window",
            "hook_timeout",
            "sendmail",
        ],
    ),
    ("verify", &["canary_interval", "canary_alarm", "interval"]),
    ("metrics", &["listen"]),
    ("service", &["address"]),
];

impl RawConfig {
    fn validate(self, src: &Source<'_>) -> Result<Config, ConfigError> {
        let instance = match &self.instance {
            Some(name) => {
                check_instance_name(name.get_ref())
                    .map_err(|m| src.invalid(name.span(), "instance", m))?;
                name.get_ref().clone()
            }
            None => {
                let stem = src.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                check_instance_name(stem).map_err(|m| ConfigError::File {
                    path: src.path.to_path_buf(),
                    message: format!(
                        "no `instance` key, and the file name does not give a valid one: {m}"
                    ),
                })?;
                stem.to_string()
            }
        };
        let data_dir = src.resolve_path(&self.data_dir, "data_dir")?;
        let role = match &self.role {
            Some(role) => match role.get_ref().as_str() {
                "master" => Role::Master,
                "slave" => Role::Slave,
                _ => {
                    return Err(src.invalid(
                        role.span(),
                        "role",
                        "expected \"master\" or \"slave\"",
                    ));
                }
            },
            None => Role::default(),
        };
        let client = self.client.validate(src)?;
        // The role's span, for link errors caused by it (only a written role can be "slave").
        let role_span = self.role.as_ref().map_or(0..0, |r| r.span());
        let link = self.link.validate(src, role, role_span)?;
        Ok(Config {
            path: src.path.to_path_buf(),
            instance,
            data_dir,
            role,
            client,
            link,
            durability: self.durability.validate(src)?,
            journal: self.journal.validate(src)?,
            store: self.store.validate(src)?,
            files: self.files.validate(),
            log: self.log.validate(src)?,
            incidents: self.incidents.validate(src)?,
            verify: self.verify.validate(src)?,
            metrics: self.metrics.validate(src)?,
            service: self.service.validate(src)?,
        })
    }
}

impl RawClient {
    fn validate(self, src: &Source<'_>) -> Result<ClientConfig, ConfigError> {
        let mut c = ClientConfig::default();
        if let Some(listen) = &self.listen {
            c.listen = resolve_listen(
                listen.get_ref(),
                "expected host:port like \"127.0.0.1:7379\", or \"\" to disable TCP",
            )
            .map_err(|m| src.invalid(listen.span(), "client.listen", m))?;
        }
        if let Some(listen) = &self.sentinel_listen {
            c.sentinel_listen = resolve_listen(
                listen.get_ref(),
                "expected host:port like \"127.0.0.1:27379\", or \"\" for none",
            )
            .map_err(|m| src.invalid(listen.span(), "client.sentinel_listen", m))?;
        }
        // unix_socket = "" is the same as no unix_socket, as listen = "" disables TCP.
        if let Some(path) = self
            .unix_socket
            .as_ref()
            .filter(|p| !p.get_ref().is_empty())
        {
            let resolved = src.resolve_path(path, "client.unix_socket")?;
            let len = resolved.as_os_str().len();
            if len > MAX_UNIX_SOCKET_PATH {
                return Err(src.invalid(
                    path.span(),
                    "client.unix_socket",
                    format!(
                        "the path {} is {len} bytes long; a Unix socket path can have at most \
                         {MAX_UNIX_SOCKET_PATH}",
                        resolved.display()
                    ),
                ));
            }
            c.unix_socket = Some(resolved);
        }
        if c.listen.is_none() && c.unix_socket.is_none() {
            // Only reachable with listen = "" written in the file.
            let span = self.listen.as_ref().map_or(0..0, |l| l.span());
            return Err(src.invalid(
                span,
                "client.listen",
                "TCP is disabled and there is no client.unix_socket: clients could not connect",
            ));
        }
        if let Some(mode) = &self.unix_socket_mode {
            c.unix_socket_mode = parse_mode(mode.get_ref()).ok_or_else(|| {
                src.invalid(
                    mode.span(),
                    "client.unix_socket_mode",
                    "expected permission bits as an octal string like \"0660\"",
                )
            })?;
        }
        c.requirepass = match self.requirepass {
            // As in Redis, an empty password means no password.
            Some(pass) if !pass.is_empty() => Some(pass),
            _ => c.requirepass,
        };
        if let Some(n) = &self.maxclients {
            if *n.get_ref() == 0 {
                return Err(src.invalid(n.span(), "client.maxclients", "expected at least 1"));
            }
            c.maxclients = usize::try_from(*n.get_ref()).unwrap_or(usize::MAX);
        }
        if let Some(t) = self.timeout {
            c.timeout = t.0;
        }
        if let Some(v) = &self.max_bulk_len {
            c.max_bulk_len = src.size_in(v, "client.max_bulk_len", KIB, u64::MAX)?;
        }
        if let Some(v) = &self.max_request_len {
            c.max_request_len = src.size_in(v, "client.max_request_len", MIB, u64::MAX)?;
        }
        Ok(c)
    }
}

impl RawLink {
    fn validate(
        self,
        src: &Source<'_>,
        role: Role,
        role_span: Range<usize>,
    ) -> Result<LinkConfig, ConfigError> {
        let mut l = LinkConfig::default();
        if let Some(listen) = &self.listen {
            l.listen = resolve_listen(
                listen.get_ref(),
                "expected host:port like \"0.0.0.0:2000\", or \"\" for no link listener",
            )
            .map_err(|m| src.invalid(listen.span(), "link.listen", m))?;
        }
        // Node addresses already seen, for duplicates across peers and downstream.
        let mut seen = Vec::new();
        if let Some(peers) = &self.peers {
            l.peers = src.node_list(peers.get_ref(), "link.peers", &mut seen)?;
        }
        if let Some(downstream) = &self.downstream {
            l.downstream = src.node_list(downstream.get_ref(), "link.downstream", &mut seen)?;
        }
        if let Some(listen) = l.listen {
            if let Some((key, _, span)) = seen.iter().find(|(_, node, _)| node.is_self(listen)) {
                return Err(src.invalid(
                    span.clone(),
                    key,
                    format!("this is this node's own link.listen address ({listen})"),
                ));
            }
        }
        // key_file = "" is the same as no key_file, as for client.unix_socket.
        let key_file = self.key_file.as_ref().filter(|p| !p.get_ref().is_empty());
        if let Some(path) = key_file {
            l.key_file = Some(src.resolve_path(path, "link.key_file")?);
        }
        for (key, value) in [
            ("link.heartbeat_interval", &self.heartbeat_interval),
            ("link.reconnect_min", &self.reconnect_min),
            ("link.sync_timeout", &self.sync_timeout),
        ] {
            if let Some(t) = value.as_ref().filter(|t| t.get_ref().0.is_zero()) {
                return Err(src.invalid(t.span(), key, "expected more than 0"));
            }
        }
        let duration = |value: &Option<Spanned<Interval>>, default: Duration| {
            value.as_ref().map_or(default, |t| t.get_ref().0)
        };
        l.heartbeat_interval = duration(&self.heartbeat_interval, l.heartbeat_interval);
        l.peer_timeout = duration(&self.peer_timeout, l.peer_timeout);
        l.reconnect_min = duration(&self.reconnect_min, l.reconnect_min);
        l.reconnect_max = duration(&self.reconnect_max, l.reconnect_max);
        l.sync_timeout = duration(&self.sync_timeout, l.sync_timeout);
        if let Some(v) = &self.max_frame {
            l.max_frame = src.size_in(v, "link.max_frame", MIB, GIB)?;
        }
        if let Some(v) = &self.max_retained_bytes {
            l.max_retained_bytes = src.size_in(v, "link.max_retained_bytes", 1, u64::MAX)?;
        }
        if let Some(sync) = &self.sync {
            l.sync = match sync.get_ref().as_str() {
                "async" => ReplicaSync::Async,
                "received" => ReplicaSync::Received,
                "durable" => ReplicaSync::Durable,
                "applied" => ReplicaSync::Applied,
                _ => {
                    return Err(src.invalid(
                        sync.span(),
                        "link.sync",
                        "expected \"async\", \"received\", \"durable\" or \"applied\"",
                    ));
                }
            };
        }
        if let Some(n) = &self.min_sync_slaves {
            if *n.get_ref() == 0 {
                return Err(src.invalid(n.span(), "link.min_sync_slaves", "expected at least 1"));
            }
            l.min_sync_slaves = usize::try_from(*n.get_ref()).unwrap_or(usize::MAX);
        }
        if let Some(policy) = &self.on_sync_timeout {
            l.on_sync_timeout = match policy.get_ref().as_str() {
                "async" => OnSyncTimeout::Async,
                "refuse" => OnSyncTimeout::Refuse,
                _ => {
                    return Err(src.invalid(
                        policy.span(),
                        "link.on_sync_timeout",
                        "expected \"async\" or \"refuse\"",
                    ));
                }
            };
        }
        if let Some(w) = &self.switchover_writes {
            l.switchover_writes = match w.get_ref().as_str() {
                "wait" => SwitchoverWrites::Wait,
                "refuse" => SwitchoverWrites::Refuse,
                _ => {
                    return Err(src.invalid(
                        w.span(),
                        "link.switchover_writes",
                        "expected \"wait\" or \"refuse\"",
                    ));
                }
            };
        }
        if let Some(t) = &self.switchover_timeout {
            if t.get_ref().0.is_zero() {
                return Err(src.invalid(
                    t.span(),
                    "link.switchover_timeout",
                    "expected a duration > 0",
                ));
            }
            l.switchover_timeout = t.get_ref().0;
        }
        self.check_together(src, &l, role, role_span)?;
        // Last, once everything in the text is known to be right: read the key.
        if let (Some(path), Some(written)) = (&l.key_file, key_file) {
            l.key =
                Some(load_key(path).map_err(|m| src.invalid(written.span(), "link.key_file", m))?);
        }
        Ok(l)
    }

    /// The checks between keys. Each error points at a key that is written in the file: the
    /// defaults are consistent, so one of the keys involved is.
    fn check_together(
        &self,
        src: &Source<'_>,
        l: &LinkConfig,
        role: Role,
        role_span: Range<usize>,
    ) -> Result<(), ConfigError> {
        let span_of = |v: &Option<Spanned<Vec<Spanned<String>>>>| v.as_ref().map(|v| v.span());
        let needs_key = "link.key_file (the pair's shared secret: the nodes of a link \
                         authenticate each other with it)";
        if l.key_file.is_none() {
            if role == Role::Slave {
                return Err(src.invalid(role_span, "role", format!("a slave needs {needs_key}")));
            }
            for (key, list, span) in [
                ("link.peers", &l.peers, span_of(&self.peers)),
                ("link.downstream", &l.downstream, span_of(&self.downstream)),
            ] {
                if let (false, Some(span)) = (list.is_empty(), span) {
                    return Err(src.invalid(span, key, format!("a link needs {needs_key}")));
                }
            }
        }
        if role == Role::Slave && l.peers.is_empty() {
            let span = span_of(&self.peers).unwrap_or(role_span.clone());
            let key = if self.peers.is_some() {
                "link.peers"
            } else {
                "role"
            };
            return Err(src.invalid(
                span,
                key,
                "a slave needs its master's link address in link.peers: it accepts a master \
                 only from its peers",
            ));
        }
        if let (None, Some(listen)) = (l.listen, &self.listen) {
            let why = if role == Role::Slave {
                Some("a slave must listen: its master connects to it")
            } else if !l.downstream.is_empty() {
                Some(
                    "a node with link.downstream must listen: it feeds them while it is a \
                     slave, and a slave's master connects to it",
                )
            } else {
                None
            };
            if let Some(why) = why {
                return Err(src.invalid(
                    listen.span(),
                    "link.listen",
                    format!("{why} (\"\" is only allowed for a master with no link.downstream)"),
                ));
            }
        }
        if l.peer_timeout <= l.heartbeat_interval {
            return Err(match (&self.peer_timeout, &self.heartbeat_interval) {
                (Some(t), _) => src.invalid(
                    t.span(),
                    "link.peer_timeout",
                    format!(
                        "expected more than link.heartbeat_interval ({}), found {}",
                        format_duration(l.heartbeat_interval),
                        format_duration(l.peer_timeout)
                    ),
                ),
                (None, h) => src.invalid(
                    h.as_ref().map_or(0..0, |h| h.span()),
                    "link.heartbeat_interval",
                    format!(
                        "expected less than link.peer_timeout ({}), found {}",
                        format_duration(l.peer_timeout),
                        format_duration(l.heartbeat_interval)
                    ),
                ),
            });
        }
        if l.reconnect_min > l.reconnect_max {
            return Err(match (&self.reconnect_min, &self.reconnect_max) {
                (Some(t), _) => src.invalid(
                    t.span(),
                    "link.reconnect_min",
                    format!(
                        "expected at most link.reconnect_max ({}), found {}",
                        format_duration(l.reconnect_max),
                        format_duration(l.reconnect_min)
                    ),
                ),
                (None, t) => src.invalid(
                    t.as_ref().map_or(0..0, |t| t.span()),
                    "link.reconnect_max",
                    format!(
                        "expected at least link.reconnect_min ({}), found {}",
                        format_duration(l.reconnect_min),
                        format_duration(l.reconnect_max)
                    ),
                ),
            });
        }
        let slaves = l.peers.len() + l.downstream.len();
        if l.sync != ReplicaSync::Async && l.min_sync_slaves > slaves {
            let (key, span) = match (&self.min_sync_slaves, &self.sync) {
                (Some(n), _) => ("link.min_sync_slaves", n.span()),
                (None, s) => ("link.sync", s.as_ref().map_or(0..0, |s| s.span())),
            };
            let named = match slaves {
                0 => "no node".to_string(),
                1 => "only 1 node".to_string(),
                n => format!("only {n} nodes"),
            };
            return Err(src.invalid(
                span,
                key,
                format!(
                    "with link.sync = \"{}\", a write waits for {} slave{} \
                     (link.min_sync_slaves), but link.peers and link.downstream name {named}: \
                     writes could never be acknowledged",
                    l.sync,
                    l.min_sync_slaves,
                    if l.min_sync_slaves == 1 { "" } else { "s" },
                ),
            ));
        }
        Ok(())
    }
}

impl RawDurability {
    fn validate(self, src: &Source<'_>) -> Result<DurabilityConfig, ConfigError> {
        let mut d = DurabilityConfig::default();
        if let Some(mode) = &self.mode {
            d.mode = match mode.get_ref().as_str() {
                "fsync" => DurabilityMode::Fsync,
                "none" => DurabilityMode::None,
                _ => {
                    return Err(src.invalid(
                        mode.span(),
                        "durability.mode",
                        "expected \"fsync\" or \"none\"",
                    ));
                }
            };
        }
        if let Some(t) = &self.checkpoint_interval {
            if t.get_ref().0.is_zero() {
                return Err(src.invalid(
                    t.span(),
                    "durability.checkpoint_interval",
                    "expected more than 0",
                ));
            }
            d.checkpoint_interval = t.get_ref().0;
        }
        if let Some(v) = &self.checkpoint_bytes {
            d.checkpoint_bytes = src.size_in(v, "durability.checkpoint_bytes", 1, u64::MAX)?;
        }
        if let Some(v) = &self.segment_size {
            d.segment_size = src.size_in(v, "durability.segment_size", MIB, 4 * GIB)?;
        }
        if let Some(v) = self.min_free_space {
            d.min_free_space = v.0;
        }
        Ok(d)
    }
}

impl RawJournal {
    fn validate(self, src: &Source<'_>) -> Result<JournalConfig, ConfigError> {
        let mut j = JournalConfig::default();
        // "" means none, for both.
        let dir = self.archive_dir.filter(|d| !d.get_ref().is_empty());
        let cmd = self
            .archive_command
            .filter(|c| !c.get_ref().trim().is_empty());
        if let Some(d) = &dir {
            j.archive_dir = Some(src.resolve_path(d, "journal.archive_dir")?);
        }
        if let Some(c) = &cmd {
            if dir.is_some() {
                return Err(src.invalid(
                    c.span(),
                    "journal.archive_command",
                    "archive_dir is set too: set one of archive_dir and archive_command",
                ));
            }
            let text = c.get_ref();
            if !text.contains("%p") && !text.contains("%f") {
                return Err(src.invalid(
                    c.span(),
                    "journal.archive_command",
                    "expected a command naming the segment with %p (its path) or %f (its file name), like \"cp %p /archive/%f\"",
                ));
            }
            j.archive_command = Some(text.clone());
        }
        Ok(j)
    }
}

impl RawStore {
    fn validate(self, src: &Source<'_>) -> Result<StoreConfig, ConfigError> {
        let mut s = StoreConfig::default();
        if let Some(v) = &self.cache_size {
            s.cache_size = src.size_in(v, "store.cache_size", 0, u64::MAX)?;
        }
        Ok(s)
    }
}

impl RawFiles {
    fn validate(self) -> FilesConfig {
        let mut f = FilesConfig::default();
        if let Some(globs) = self.logged {
            f.logged = globs;
        }
        if let Some(globs) = self.unlogged {
            f.unlogged = globs;
        }
        f
    }
}

impl RawLog {
    fn validate(self, src: &Source<'_>) -> Result<LogConfig, ConfigError> {
        let mut l = LogConfig::default();
        if let Some(level) = &self.level {
            l.level = match level.get_ref().to_ascii_lowercase().as_str() {
                "error" => LevelFilter::Error,
                "warn" => LevelFilter::Warn,
                "info" => LevelFilter::Info,
                "debug" => LevelFilter::Debug,
                "trace" => LevelFilter::Trace,
                _ => {
                    return Err(src.invalid(
                        level.span(),
                        "log.level",
                        "expected \"error\", \"warn\", \"info\", \"debug\" or \"trace\"",
                    ));
                }
            };
        }
        Ok(l)
    }
}

impl RawIncidents {
    fn validate(self, src: &Source<'_>) -> Result<IncidentsConfig, ConfigError> {
        let mut c = IncidentsConfig::default();
        for t in self.notify.iter().flatten() {
            let target = crate::incident::notify::Target::parse(t.get_ref())
                .map_err(|m| src.invalid(t.span(), "incidents.notify", m))?;
            c.notify.push(target);
        }
        if let Some(n) = &self.notify_burst {
            if *n.get_ref() == 0 || *n.get_ref() > 1000 {
                return Err(src.invalid(n.span(), "incidents.notify_burst", "expected 1 to 1000"));
            }
            c.notify_burst = *n.get_ref() as u32;
        }
        for (v, key, slot) in [
            (
                &self.notify_window,
                "incidents.notify_window",
                &mut c.notify_window,
            ),
            (
                &self.hook_timeout,
                "incidents.hook_timeout",
                &mut c.hook_timeout,
            ),
        ] {
            if let Some(v) = v {
                if v.get_ref().0.is_zero() {
                    return Err(src.invalid(v.span(), key, "expected a duration > 0"));
                }
                *slot = v.get_ref().0;
            }
        }
        if let Some(p) = &self.sendmail {
            let text = p.get_ref();
            if !text.starts_with('/') || text.contains('\0') {
                return Err(src.invalid(
                    p.span(),
                    "incidents.sendmail",
                    format!(
                        "expected the absolute path of a sendmail program (e.g. \"/usr/sbin/sendmail\"), found {text:?}"
                    ),
                ));
            }
            c.sendmail = PathBuf::from(text);
        }
        Ok(c)
    }
}

impl RawVerify {
    fn validate(self, src: &Source<'_>) -> Result<VerifyConfig, ConfigError> {
        let mut c = VerifyConfig::default();
        if let Some(v) = &self.canary_interval {
            c.canary_interval = v.get_ref().0;
        }
        if let Some(v) = &self.interval {
            c.interval = v.get_ref().0;
        }
        if let Some(v) = &self.canary_alarm {
            if v.get_ref().0 <= c.canary_interval {
                return Err(src.invalid(
                    v.span(),
                    "verify.canary_alarm",
                    format!(
                        "expected more than canary_interval ({:?})",
                        c.canary_interval
                    ),
                ));
            }
            c.canary_alarm = v.get_ref().0;
        } else if c.canary_alarm <= c.canary_interval {
            c.canary_alarm = c.canary_interval * 3;
        }
        Ok(c)
    }
}

impl RawMetrics {
    fn validate(self, src: &Source<'_>) -> Result<MetricsConfig, ConfigError> {
        let mut c = MetricsConfig::default();
        if let Some(listen) = &self.listen {
            c.listen = resolve_listen(
                listen.get_ref(),
                "expected host:port like \"127.0.0.1:9187\", or \"\" for no endpoint",
            )
            .map_err(|m| src.invalid(listen.span(), "metrics.listen", m))?;
        }
        Ok(c)
    }
}

fn check_instance_name(name: &str) -> Result<(), String> {
    let valid_bytes = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if name.is_empty() || !valid_bytes || name == "." || name == ".." {
        return Err(format!(
            "{name:?} is not a valid instance name: expected letters, digits, '_', '.' and '-' \
             (and not \".\" or \"..\")"
        ));
    }
    Ok(())
}

/// `""` is none; otherwise `host:port`, a host name being resolved now (first address).
/// `expected` ends the message of an error.
fn resolve_listen(text: &str, expected: &str) -> Result<Option<SocketAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Ok(Some(addr)),
            None => Err(format!("{text:?} resolves to no address; {expected}")),
        },
        Err(e) => Err(format!("cannot use {text:?}: {e}; {expected}")),
    }
}

/// The address of another node, `host:port`, checked but not resolved (the node may be down,
/// or its name may point elsewhere by the time it is dialled).
#[derive(Debug, PartialEq, Eq)]
enum NodeAddr {
    /// An IP address.
    Ip(SocketAddr),
    /// A host name, lower-cased (DNS names are case-insensitive).
    Name(String, u16),
}

const NODE_EXPECTED: &str = "expected \"host:port\" like \"b.example:2000\", \"10.0.0.2:2000\" \
                             or \"[fd00::2]:2000\"";

impl NodeAddr {
    fn parse(text: &str) -> Result<NodeAddr, String> {
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("{text:?} has no port; {NODE_EXPECTED}"));
        };
        if host.is_empty() {
            return Err(format!("{text:?} has no host; {NODE_EXPECTED}"));
        }
        let number = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten();
        let port = match number {
            Some(port) if port != 0 => port,
            _ => {
                return Err(format!(
                    "{text:?}: the port {port:?} is not a port number from 1 to 65535"
                ));
            }
        };
        if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            return match inside.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => Ok(NodeAddr::Ip(SocketAddr::from((ip, port)))),
                Err(_) => Err(format!(
                    "{text:?}: {inside:?} is not an IPv6 address; {NODE_EXPECTED}"
                )),
            };
        }
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(format!(
                "{text:?}: write an IPv6 address in brackets, like \"[fd00::2]:2000\""
            ));
        }
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Ok(NodeAddr::Ip(SocketAddr::from((ip, port))));
        }
        let name_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            && !host.starts_with(['-', '.'])
            && !host.contains("..");
        if !name_ok {
            return Err(format!(
                "{text:?}: {host:?} is not a host name or IP address; {NODE_EXPECTED}"
            ));
        }
        Ok(NodeAddr::Name(host.to_ascii_lowercase(), port))
    }

    /// Is this surely the node listening on `listen`? (Only IP addresses can tell: the same
    /// address, or a loopback one when `listen` is on every interface: `0.0.0.0` covers IPv4
    /// only, `[::]` both, as Linux binds it dual-stack by default.)
    fn is_self(&self, listen: SocketAddr) -> bool {
        let NodeAddr::Ip(addr) = self else {
            return false;
        };
        let every_interface = match listen {
            SocketAddr::V4(l) => l.ip().is_unspecified() && addr.is_ipv4(),
            SocketAddr::V6(l) => l.ip().is_unspecified(),
        };
        *addr == listen
            || (addr.port() == listen.port() && every_interface && addr.ip().is_loopback())
    }
}

/// Reads the link's shared secret. The message of an error names the file and what is wrong.
fn load_key(path: &Path) -> Result<Key, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let shown = path.display();
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused, not read).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("the key file {shown} does not exist"),
            _ => format!("cannot read the key file {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!("the key file {shown} is {what}"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the key file {shown} can be accessed by group or others (mode {mode:04o}); \
             a key must be readable by its owner only: chmod 600 {shown}"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(format!(
            "the key file {shown} is larger than {}: not a key file?",
            format_size(MAX_KEY_FILE_LEN)
        ));
    }
    let len = bytes.trim_ascii_end().len();
    if len < MIN_KEY_LEN {
        return Err(format!(
            "the key in {shown} is {len} byte{} long (without trailing whitespace); a key must \
             have at least {MIN_KEY_LEN}",
            if len == 1 { "" } else { "s" }
        ));
    }
    bytes.truncate(len);
    Ok(Key(bytes))
}

/// Octal permission bits: `"0660"`, `"660"`, `"0o660"`; at most 0o777.
fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|&m| m <= 0o777)
}

// ---------------------------------------------------------------------------------------------
// Value types whose Deserialize validates, so that errors carry the value's span.

/// A number of bytes: a non-negative integer, or a string like `"512MiB"`, `"64 KiB"`, `"1gb"`.
///
/// Units are case-insensitive and all binary: `k`/`kb`/`kib` = 1024, `m`/`mb`/`mib`,
/// `g`/`gb`/`gib`, `t`/`tb`/`tib`; `b` or no unit = bytes. (Redis reads `1k` as 1000 and `1kb`
/// as 1024; here both are 1024, so a size never depends on which spelling was used.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Size(u64);

const SIZE_EXPECTED: &str = "expected bytes as an integer or a string like \"64MiB\"";

/// What was wrong with a size or duration string.
#[derive(Debug, PartialEq)]
enum BadNumber {
    Syntax,
    TooLarge,
}

/// Splits `"64 KiB"` into `(64, "kib")`: digits, optional blanks, a lower-cased unit.
fn split_number(text: &str) -> Result<(u64, String), BadNumber> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(BadNumber::Syntax);
    }
    let n = digits.parse::<u64>().map_err(|_| BadNumber::TooLarge)?;
    Ok((n, unit.trim_start().to_ascii_lowercase()))
}

impl Size {
    fn parse(text: &str) -> Result<Size, BadNumber> {
        let (n, unit) = split_number(text)?;
        let multiplier = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => KIB,
            "m" | "mb" | "mib" => MIB,
            "g" | "gb" | "gib" => GIB,
            "t" | "tb" | "tib" => TIB,
            _ => return Err(BadNumber::Syntax),
        };
        n.checked_mul(multiplier)
            .map(Size)
            .ok_or(BadNumber::TooLarge)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes as an integer or a string like \"64MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {v}: {SIZE_EXPECTED}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Size, E> {
                Err(E::custom(format!("invalid size {v}: {SIZE_EXPECTED}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(|e| match e {
                    BadNumber::Syntax => E::custom(format!("invalid size {v:?}: {SIZE_EXPECTED}")),
                    BadNumber::TooLarge => E::custom(format!(
                        "invalid size {v:?}: too large, the maximum is 16EiB - 1"
                    )),
                })
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A span of time: integer seconds, or a string like `"250ms"`, `"10s"`, `"5m"`, `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interval(Duration);

const INTERVAL_EXPECTED: &str =
    "expected seconds as an integer or a string like \"250ms\", \"10s\", \"5m\", \"1h\"";

impl Interval {
    fn parse(text: &str) -> Result<Interval, BadNumber> {
        let (n, unit) = split_number(text)?;
        let secs = |factor: u64| n.checked_mul(factor).ok_or(BadNumber::TooLarge);
        let duration = match unit.as_str() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(secs(60)?),
            "h" => Duration::from_secs(secs(3600)?),
            _ => return Err(BadNumber::Syntax),
        };
        Ok(Interval(duration))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntervalVisitor;
        impl Visitor<'_> for IntervalVisitor {
            type Value = Interval;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds as an integer or a string like \"10s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Interval, E> {
                Ok(Interval(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interval, E> {
                u64::try_from(v)
                    .map(|v| Interval(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("invalid duration {v}: {INTERVAL_EXPECTED}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interval, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: {INTERVAL_EXPECTED}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Interval, E> {
                Interval::parse(v).map_err(|e| match e {
                    BadNumber::Syntax => {
                        E::custom(format!("invalid duration {v:?}: {INTERVAL_EXPECTED}"))
                    }
                    BadNumber::TooLarge => E::custom(format!("invalid duration {v:?}: too large")),
                })
            }
        }
        deserializer.deserialize_any(IntervalVisitor)
    }
}

/// `1073741824` → `"1GiB"`; sizes that are not a whole number of a unit stay in bytes.
fn format_size(bytes: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    match bytes {
        1 => "1 byte".to_string(),
        _ => format!("{bytes} bytes"),
    }
}

/// `Duration::from_millis(1500)` → `"1500ms"`, 5 s → `"5s"`, 2 min → `"2m"`: the largest whole
/// unit, as written in the file.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{d:?}");
    }
    for (unit, name) in [(3_600_000, "h"), (60_000, "m"), (1000, "s")] {
        if ms >= unit && ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    match ms {
        0 => "0s".to_string(),
        _ => format!("{ms}ms"),
    }
}

// ---------------------------------------------------------------------------------------------
// Turning spans and toml errors into ConfigError.

/// The text being parsed and where it came from.
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn error_at(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// `invalid value for KEY: WHAT`, at `span`.
    fn invalid(&self, span: Range<usize>, key: &str, what: impl fmt::Display) -> ConfigError {
        self.error_at(span, format!("invalid value for {key}: {what}"))
    }

    /// Directory that relative paths in the file are resolved against.
    fn base_dir(&self) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new(""));
        if dir.is_absolute() {
            return dir.to_path_buf();
        }
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(dir),
            Err(_) => dir.to_path_buf(),
        }
    }

    /// A path value, resolved against the config file's directory. `.` components and repeated
    /// slashes are dropped; `..` is kept (removing it is only correct without symlinks).
    fn resolve_path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let text = value.get_ref();
        let problem = if text.is_empty() {
            Some("expected a path, found \"\"")
        } else if text.contains('\0') {
            Some("a path cannot contain a NUL character")
        } else if text == "~" || text.starts_with("~/") {
            Some("`~` is not expanded: write the path in full, or relative to the config file")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(self.invalid(value.span(), key, problem));
        }
        Ok(self.base_dir().join(text).components().collect())
    }

    /// A list of other nodes' link addresses (`key` = `link.peers` or `link.downstream`),
    /// kept as written. `seen` holds the addresses of the lists read before, to refuse one
    /// listed twice; this list's are added to it (with their key and span).
    fn node_list(
        &self,
        list: &[Spanned<String>],
        key: &str,
        seen: &mut Vec<(String, NodeAddr, Range<usize>)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut nodes = Vec::with_capacity(list.len());
        for (i, node) in list.iter().enumerate() {
            let here = format!("{key}[{i}]");
            let addr =
                NodeAddr::parse(node.get_ref()).map_err(|m| self.invalid(node.span(), &here, m))?;
            if let Some((other, _, _)) = seen.iter().find(|(_, a, _)| *a == addr) {
                return Err(self.invalid(
                    node.span(),
                    &here,
                    format!("{:?} is already listed, as {other}", node.get_ref()),
                ));
            }
            seen.push((here, addr, node.span()));
            nodes.push(node.get_ref().clone());
        }
        Ok(nodes)
    }

    /// A size in `min..=max`, converted to `T` (`u64` or `usize`).
    fn size_in<T: TryFrom<u64>>(
        &self,
        value: &Spanned<Size>,
        key: &str,
        min: u64,
        max: u64,
    ) -> Result<T, ConfigError> {
        let n = value.get_ref().0;
        let found = format_size(n);
        if n < min || n > max {
            let range = if max == u64::MAX {
                format!("at least {}", format_size(min))
            } else {
                format!("{} to {}", format_size(min), format_size(max))
            };
            return Err(self.invalid(
                value.span(),
                key,
                format!("expected {range}, found {found}"),
            ));
        }
        T::try_from(n).map_err(|_| {
            self.invalid(
                value.span(),
                key,
                format!("{found} is too large for this machine"),
            )
        })
    }

    /// Sections must be tables. (serde would also accept an array for a struct, filling the
    /// fields in order: `[[client]]` or `client = ["x"]` would not be an error.)
    fn check_sections(&self, doc: &Spanned<DeTable<'_>>) -> Result<(), ConfigError> {
        for (section, _) in KEYS.iter().skip(1) {
            if let Some(value) = doc.get_ref().get(*section) {
                let found = match value.get_ref() {
                    DeValue::Table(_) => continue,
                    DeValue::Array(_) => "an array",
                    DeValue::String(_) => "a string",
                    DeValue::Integer(_) => "an integer",
                    DeValue::Float(_) => "a float",
                    DeValue::Boolean(_) => "a boolean",
                    DeValue::Datetime(_) => "a date-time",
                };
                return Err(self.invalid(
                    value.span(),
                    section,
                    format!("expected a table ([{section}]), found {found}"),
                ));
            }
        }
        Ok(())
    }

    /// Rewrites a toml/serde error into our message style, at its position. `doc` is the
    /// parsed document, used to name the key at the error's span (absent for syntax errors,
    /// whose messages need no key).
    fn toml_error(&self, error: &toml::de::Error, doc: Option<&DeTable<'_>>) -> ConfigError {
        let message = error.message().trim_end();
        let Some(span) = error.span() else {
            return ConfigError::File {
                path: self.path.to_path_buf(),
                message: message.to_string(),
            };
        };
        let locate = |want: Want| doc.and_then(|doc| locate(doc, &span, want, &mut Vec::new()));

        let message = if let Some(rest) = message.strip_prefix("unknown field `") {
            let (key, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
            let key = key.trim_end_matches('`');
            let section = locate(Want::Key).and_then(|mut path| {
                path.pop();
                (!path.is_empty()).then(|| path.join("."))
            });
            unknown_key_message(key, section.as_deref(), expected)
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            let key = rest.trim_end_matches('`');
            match locate(Want::Table) {
                Some(path) => format!("missing required key `{key}` in [{}]", path.join(".")),
                None => format!("missing required key `{key}`"),
            }
        } else if let Some(rest) = message
            .strip_prefix("invalid type: ")
            .or_else(|| message.strip_prefix("invalid value: "))
        {
            let what = match rest.rsplit_once(", expected ") {
                Some((found, expected)) => format!(
                    "expected {}, found {}",
                    humanize_expected(expected),
                    humanize_found(found)
                ),
                None => rest.to_string(),
            };
            match locate(Want::Value) {
                Some(path) => format!("invalid value for {}: {what}", path.join(".")),
                None => format!("invalid value: {what}"),
            }
        } else if message.starts_with("unknown variant ") || message.starts_with("invalid length ")
        {
            match locate(Want::Value) {
                Some(path) => format!("invalid value for {}: {message}", path.join(".")),
                None => message.to_string(),
            }
        } else if message == "duplicate key" {
            match self.text.get(span.clone()) {
                Some(key) if !key.is_empty() => format!("duplicate key `{key}`"),
                _ => message.to_string(),
            }
        } else {
            // TOML syntax errors, and our own value types' messages, are complete already.
            message.to_string()
        };
        self.error_at(span, message)
    }
}

fn unknown_key_message(key: &str, section: Option<&str>, expected: &str) -> String {
    let place = match section {
        Some(section) => format!("in [{section}]"),
        None => "at top level".to_string(),
    };
    // serde says "expected `a`", "expected `a` or `b`" or "expected one of `a`, `b`, `c`".
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let mut message = match names.as_slice() {
        [] => format!("unknown key `{key}` {place}"),
        [only] => format!("unknown key `{key}` {place}, expected `{only}`"),
        names => format!(
            "unknown key `{key}` {place}, expected one of: {}",
            names.join(", ")
        ),
    };
    let here = section.unwrap_or("");
    let elsewhere = KEYS
        .iter()
        .find(|(table, keys)| *table != here && keys.contains(&key));
    match elsewhere {
        Some(("", _)) => message.push_str(&format!(
            " (`{key}` is a top-level key: put it before the first [section])"
        )),
        Some((table, _)) => message.push_str(&format!(" (`{key}` belongs in [{table}])")),
        None => {}
    }
    message
}

fn humanize_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_string(),
        "a sequence" => "an array".to_string(),
        s if s.starts_with("struct ") => "a table".to_string(),
        s => s.to_string(),
    }
}

fn humanize_found(found: &str) -> String {
    match found {
        "map" => "a table".to_string(),
        "sequence" => "an array".to_string(),
        s => s.to_string(),
    }
}

/// What a span names: a key, a value, or a table (the span of its `[header]` or `{...}`).
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Key,
    Value,
    Table,
}

/// The dotted path (`client.listen`, `files.logged[1]`) of the entry at `span`.
fn locate(
    table: &DeTable<'_>,
    span: &Range<usize>,
    want: Want,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if want == Want::Key && key.span() == *span {
            return Some(path.clone());
        }
        if let Some(found) = locate_value(value, span, want, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

fn locate_value(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    want: Want,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    match value.get_ref() {
        DeValue::Table(table) => {
            if let Some(found) = locate(table, span, want, path) {
                return Some(found);
            }
            if want != Want::Key && value.span() == *span {
                return Some(path.clone());
            }
        }
        DeValue::Array(array) => {
            let key = path.pop().unwrap_or_default();
            for (i, item) in array.iter().enumerate() {
                path.push(format!("{key}[{i}]"));
                let found = locate_value(item, span, want, path);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            path.push(key);
            if want == Want::Value && value.span() == *span {
                return Some(path.clone());
            }
        }
        _ => {
            if want == Want::Value && value.span() == *span {
                return Some(path.clone());
            }
        }
    }
    None
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..]
        .chars()
        .filter(|&c| c != '\u{feff}')
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/hotbackup/db1.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(PATH))
    }

    fn ok(text: &str) -> Config {
        match parse(text) {
            Ok(config) => config,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// The error message for `text`, which must fail.
    fn err(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `body` placed after a valid `data_dir` line (so errors are on line 2 and later).
    fn err_in(body: &str) -> String {
        err(&format!("data_dir = \"/d\"\n{body}"))
    }

    #[test]
    fn service_address_is_parsed_and_checked() {
        let c = ok("data_dir = \"/d\"\n[service]\naddress = \"10.77.0.100/24 dev vA\"\n");
        let a = c.service.address.expect("an address");
        assert_eq!(a.to_string(), "10.77.0.100/24 dev vA");
        assert_eq!(a.prefix, 24);
        assert_eq!(a.dev, "vA");
        let c = ok("data_dir = \"/d\"\n[service]\naddress = \"fd00::64/64 dev eth0\"\n");
        assert_eq!(c.service.address.map(|a| a.prefix), Some(64));
        assert_eq!(ok("data_dir = \"/d\"\n").service.address, None);
        assert_eq!(
            ok("data_dir = \"/d\"\n[service]\naddress = \"\"\n")
                .service
                .address,
            None
        );
        for (bad, why) in [
            ("10.77.0.100 dev vA", "the prefix length is missing"),
            ("10.77.0.100/33 dev vA", "is not 0..32"),
            ("10.77.0.300/24 dev vA", "is not an IP address"),
            ("10.77.0.100/24 vA", "expected"),
            ("10.77.0.100/24 dev a/b", "is not an interface name"),
            (
                "10.77.0.100/24 dev abcdefghijklmnop",
                "is not an interface name",
            ),
        ] {
            let e = err_in(&format!("[service]\naddress = \"{bad}\"\n"));
            assert!(
                e.starts_with("/etc/hotbackup/db1.toml:3:11: invalid value for service.address"),
                "{bad}: {e}"
            );
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn minimal_file_gets_every_default() {
        let c = ok("data_dir = \"/var/lib/hotbackup/db1\"\n");
        assert_eq!(c.path, Path::new(PATH));
        assert_eq!(c.instance, "db1");
        assert_eq!(c.data_dir, Path::new("/var/lib/hotbackup/db1"));
        assert_eq!(c.client.listen, Some("127.0.0.1:7379".parse().unwrap()));
        assert_eq!(c.client.unix_socket, None);
        assert_eq!(c.client.unix_socket_mode, 0o660);
        assert_eq!(c.client.requirepass, None);
        assert_eq!(c.client.maxclients, 10_000);
        assert_eq!(c.client.timeout, Duration::ZERO);
        assert_eq!(c.client.max_bulk_len, 512 << 20);
        assert_eq!(c.client.max_request_len, 1 << 30);
        assert_eq!(c.durability.mode, DurabilityMode::Fsync);
        assert_eq!(c.durability.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.durability.checkpoint_bytes, 256 << 20);
        assert_eq!(c.durability.segment_size, 64 << 20);
        assert_eq!(c.durability.min_free_space, 64 << 20);
        assert_eq!(c.store.cache_size, 256 << 20);
        assert_eq!(c.files.logged, ["*"]);
        assert!(c.files.unlogged.is_empty());
        assert_eq!(c.log.level, LevelFilter::Info);
        assert_eq!(c.client, ClientConfig::default());
        assert_eq!(c.durability, DurabilityConfig::default());
        assert_eq!(c.role, Role::Master);
        let l = &c.link;
        assert_eq!(l.listen, Some("0.0.0.0:2000".parse().unwrap()));
        assert!(l.peers.is_empty());
        assert!(l.downstream.is_empty());
        assert_eq!(l.key_file, None);
        assert_eq!(l.key, None);
        assert_eq!(l.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(l.peer_timeout, Duration::from_secs(5));
        assert_eq!(l.reconnect_min, Duration::from_millis(100));
        assert_eq!(l.reconnect_max, Duration::from_secs(5));
        assert_eq!(l.max_frame, 64 << 20);
        assert_eq!(l.max_retained_bytes, 1 << 30);
        assert_eq!(l.sync, ReplicaSync::Async);
        assert_eq!(l.min_sync_slaves, 1);
        assert_eq!(l.sync_timeout, Duration::from_secs(1));
        assert_eq!(l.on_sync_timeout, OnSyncTimeout::Async);
        assert_eq!(l.switchover_writes, SwitchoverWrites::Wait);
        assert_eq!(l.switchover_timeout, Duration::from_secs(10));
        assert_eq!(c.link, LinkConfig::default());
    }

    #[test]
    fn every_key_is_parsed() {
        let keys = KeyDir::new();
        let c = ok(&r#"
instance = "main-1.a_b"
data_dir = "/srv/db"
role = "slave"
[link]
listen = "10.1.2.3:2100"
peers = ["a.example:2000", "10.0.0.2:2001", "[fd00::2]:2002"]
downstream = ["c_1.example.net:2003"]
key_file = "KEY"
heartbeat_interval = "200ms"
peer_timeout = 3
reconnect_min = "1s"
reconnect_max = "1m"
max_frame = "1GiB"
max_retained_bytes = "10 GiB"
sync = "durable"
min_sync_slaves = 2
sync_timeout = "250ms"
on_sync_timeout = "refuse"
switchover_writes = "refuse"
switchover_timeout = "3s"
[client]
listen = "[::1]:6000"
unix_socket = "/run/hb.sock"
unix_socket_mode = "0600"
requirepass = "s3cret"
maxclients = 5
timeout = "5m"
max_bulk_len = "1KiB"
max_request_len = "2 MiB"
[durability]
mode = "none"
checkpoint_interval = "250ms"
checkpoint_bytes = 1000
segment_size = "1g"
min_free_space = 0
[store]
cache_size = "16mb"
[files]
logged = ["acct/*", "main"]
unlogged = ["*/tmp*"]
[log]
level = "debug"
"#
        .replace("KEY", &keys.good.display().to_string()));
        assert_eq!(c.instance, "main-1.a_b");
        assert_eq!(c.role, Role::Slave);
        let l = &c.link;
        assert_eq!(l.listen, Some("10.1.2.3:2100".parse().unwrap()));
        assert_eq!(
            l.peers,
            ["a.example:2000", "10.0.0.2:2001", "[fd00::2]:2002"]
        );
        assert_eq!(l.downstream, ["c_1.example.net:2003"]);
        assert_eq!(l.key_file.as_deref(), Some(keys.good.as_path()));
        assert_eq!(
            l.key.as_ref().map(Key::as_bytes),
            Some(KeyDir::GOOD_KEY.as_bytes())
        );
        assert_eq!(l.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(l.peer_timeout, Duration::from_secs(3));
        assert_eq!(l.reconnect_min, Duration::from_secs(1));
        assert_eq!(l.reconnect_max, Duration::from_secs(60));
        assert_eq!(l.max_frame, 1 << 30);
        assert_eq!(l.max_retained_bytes, 10 << 30);
        assert_eq!(l.sync, ReplicaSync::Durable);
        assert_eq!(l.min_sync_slaves, 2);
        assert_eq!(l.sync_timeout, Duration::from_millis(250));
        assert_eq!(l.on_sync_timeout, OnSyncTimeout::Refuse);
        assert_eq!(l.switchover_writes, SwitchoverWrites::Refuse);
        assert_eq!(l.switchover_timeout, Duration::from_secs(3));
        assert_eq!(c.data_dir, Path::new("/srv/db"));
        assert_eq!(c.client.listen, Some("[::1]:6000".parse().unwrap()));
        assert_eq!(c.client.unix_socket, Some(PathBuf::from("/run/hb.sock")));
        assert_eq!(c.client.unix_socket_mode, 0o600);
        assert_eq!(c.client.requirepass.as_deref(), Some("s3cret"));
        assert_eq!(c.client.maxclients, 5);
        assert_eq!(c.client.timeout, Duration::from_secs(300));
        assert_eq!(c.client.max_bulk_len, 1024);
        assert_eq!(c.client.max_request_len, 2 << 20);
        assert_eq!(c.durability.mode, DurabilityMode::None);
        assert_eq!(c.durability.checkpoint_interval, Duration::from_millis(250));
        assert_eq!(c.durability.checkpoint_bytes, 1000);
        assert_eq!(c.durability.segment_size, 1 << 30);
        assert_eq!(c.durability.min_free_space, 0);
        assert_eq!(c.store.cache_size, 16 << 20);
        assert_eq!(c.files.logged, ["acct/*", "main"]);
        assert_eq!(c.files.unlogged, ["*/tmp*"]);
        assert_eq!(c.log.level, LevelFilter::Debug);
    }

    #[test]
    fn tables_may_be_inline_or_dotted() {
        let c = ok("data_dir = \"/d\"\nclient = { maxclients = 7 }\nlog.level = \"warn\"\n");
        assert_eq!(c.client.maxclients, 7);
        assert_eq!(c.log.level, LevelFilter::Warn);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = ok("data_dir = \"../data/./db1\"\n[client]\nunix_socket = \"run//db1.sock\"\n");
        assert_eq!(c.data_dir, Path::new("/etc/hotbackup/../data/db1"));
        assert_eq!(
            c.client.unix_socket,
            Some(PathBuf::from("/etc/hotbackup/run/db1.sock"))
        );
    }

    #[test]
    fn relative_config_path_resolves_against_the_current_directory() {
        let c = Config::parse("data_dir = \"db\"\n", Path::new("etc/x.toml")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.data_dir, cwd.join("etc/db"));
        assert_eq!(c.path, Path::new("etc/x.toml"));
        assert_eq!(c.instance, "x");
    }

    #[test]
    fn empty_listen_disables_tcp_when_a_unix_socket_is_set() {
        let c = ok("data_dir = \"/d\"\n[client]\nlisten = \"\"\nunix_socket = \"/run/s\"\n");
        assert_eq!(c.client.listen, None);
        let e = err_in("[client]\nlisten = \"\"\n");
        assert_eq!(
            e,
            "/etc/hotbackup/db1.toml:3:10: invalid value for client.listen: TCP is disabled and \
             there is no client.unix_socket: clients could not connect"
        );
        let e = err_in("[client]\nlisten = \"\"\nunix_socket = \"\"\n");
        assert!(
            e.contains(":3:10: invalid value for client.listen: TCP is disabled"),
            "{e}"
        );
    }

    #[test]
    fn listen_host_names_are_resolved() {
        let c = ok("data_dir = \"/d\"\n[client]\nlisten = \"localhost:7000\"\n");
        let addr = c.client.listen.unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 7000);
    }

    #[test]
    fn empty_requirepass_means_no_password() {
        let c = ok("data_dir = \"/d\"\n[client]\nrequirepass = \"\"\n");
        assert_eq!(c.client.requirepass, None);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = ok("data_dir = \"/d\"\n[client]\nrequirepass = \"hunter2\"\n");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn instance_defaults_to_the_file_stem() {
        let c = Config::parse("data_dir = \"/d\"\n", Path::new("/etc/hotbackup/x.y.toml")).unwrap();
        assert_eq!(c.instance, "x.y");
        let e = Config::parse("data_dir = \"/d\"\n", Path::new("/etc/my db.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/my db.toml: no `instance` key, and the file name does not give a valid one: \
             \"my db\" is not a valid instance name: expected letters, digits, '_', '.' and '-' \
             (and not \".\" or \"..\")"
        );
        // An explicit instance makes the file name irrelevant.
        let c = Config::parse(
            "instance = \"a\"\ndata_dir = \"/d\"\n",
            Path::new("/my db.toml"),
        );
        assert_eq!(c.unwrap().instance, "a");
    }

    #[test]
    fn unknown_key_in_a_section() {
        assert_eq!(
            err_in("[client]\nlisten = \"127.0.0.1:1\"\n  listn = 1\n"),
            "/etc/hotbackup/db1.toml:4:3: unknown key `listn` in [client], expected one of: \
             listen, unix_socket, unix_socket_mode, requirepass, maxclients, timeout, \
             max_bulk_len, max_request_len, sentinel_listen"
        );
    }

    #[test]
    fn unknown_key_at_top_level() {
        assert_eq!(
            err("data_dir = \"/d\"\ndatadir = 1\n"),
            "/etc/hotbackup/db1.toml:2:1: unknown key `datadir` at top level, expected one of: \
             instance, data_dir, role, client, link, durability, journal, store, files, log, \
             incidents, verify, metrics, service"
        );
        assert_eq!(
            err("data_dir = \"/d\"\n[clinet]\n"),
            "/etc/hotbackup/db1.toml:2:2: unknown key `clinet` at top level, expected one of: \
             instance, data_dir, role, client, link, durability, journal, store, files, log, \
             incidents, verify, metrics, service"
        );
    }

    #[test]
    fn unknown_key_in_every_section() {
        for (section, keys) in KEYS.iter().skip(1) {
            let e = err_in(&format!("[{section}]\nbogus = 1\n"));
            let expected = match keys {
                [only] => format!("expected `{only}`"),
                _ => format!("expected one of: {}", keys.join(", ")),
            };
            assert_eq!(
                e,
                format!(
                    "/etc/hotbackup/db1.toml:3:1: unknown key `bogus` in [{section}], {expected}"
                )
            );
        }
    }

    /// The names an unknown-key message lists as expected.
    fn listed_keys(message: &str) -> Vec<String> {
        if let Some((_, list)) = message.split_once("expected one of: ") {
            list.split(", ").map(str::to_string).collect()
        } else if let Some((_, only)) = message.split_once("expected `") {
            vec![only.trim_end_matches('`').to_string()]
        } else {
            Vec::new()
        }
    }

    #[test]
    fn keys_table_matches_the_structs() {
        // The unknown-key message lists the struct's fields: compare them with KEYS.
        for (section, keys) in KEYS {
            let e = if section.is_empty() {
                err("data_dir = \"/d\"\nbogus = 1\n")
            } else {
                err_in(&format!("[{section}]\nbogus = 1\n"))
            };
            assert_eq!(
                listed_keys(&e),
                *keys,
                "KEYS entry for [{section}] is stale"
            );
        }
        // And no table is missing from KEYS (so check_sections checks every table).
        let top = listed_keys(&err("data_dir = \"/d\"\nbogus = 1\n"));
        for name in top {
            let is_table = err_in(&format!("{name} = 5\n")).contains("expected a table");
            assert!(
                !is_table || KEYS.iter().any(|(s, _)| *s == name),
                "[{name}] is missing from KEYS"
            );
        }
    }

    #[test]
    fn misplaced_keys_get_a_hint() {
        assert_eq!(
            err_in("level = \"info\"\n"),
            "/etc/hotbackup/db1.toml:2:1: unknown key `level` at top level, expected one of: \
             instance, data_dir, role, client, link, durability, journal, store, files, log, \
             incidents, verify, metrics, service (`level` belongs in [log])"
        );
        let e = err("data_dir = \"/d\"\n[client]\ninstance = \"x\"\n");
        assert!(
            e.ends_with("(`instance` is a top-level key: put it before the first [section])"),
            "{e}"
        );
    }

    #[test]
    fn unknown_subtable_and_inline_keys() {
        let e = err_in("[client.extra]\n");
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:2:9: unknown key `extra` in [client]"),
            "{e}"
        );
        let e = err_in("client = { listn = 1 }\n");
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:2:12: unknown key `listn` in [client]"),
            "{e}"
        );
        let e = err_in("client.listn = 1\n");
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:2:8: unknown key `listn` in [client]"),
            "{e}"
        );
    }

    #[test]
    fn missing_data_dir() {
        assert_eq!(
            err("[client]\n"),
            "/etc/hotbackup/db1.toml:1:1: missing required key `data_dir`"
        );
    }

    #[test]
    fn bad_data_dir() {
        assert_eq!(
            err("data_dir = \"\"\n"),
            "/etc/hotbackup/db1.toml:1:12: invalid value for data_dir: expected a path, found \"\""
        );
        assert_eq!(
            err("data_dir = 5\n"),
            "/etc/hotbackup/db1.toml:1:12: invalid value for data_dir: expected a string, found \
             integer `5`"
        );
        assert!(err("data_dir = \"~/db\"\n").contains("`~` is not expanded"));
        assert!(err("data_dir = \"a\\u0000b\"\n").contains("NUL"));
    }

    #[test]
    fn bad_instance_name() {
        assert_eq!(
            err("instance = \"db/1\"\ndata_dir = \"/d\"\n"),
            "/etc/hotbackup/db1.toml:1:12: invalid value for instance: \"db/1\" is not a valid \
             instance name: expected letters, digits, '_', '.' and '-' (and not \".\" or \"..\")"
        );
        for bad in ["", ".", "..", "é"] {
            let e = err(&format!("instance = \"{bad}\"\ndata_dir = \"/d\"\n"));
            assert!(e.contains("is not a valid instance name"), "{e}");
        }
    }

    #[test]
    fn bad_size() {
        assert_eq!(
            err_in("[durability]\nsegment_size = \"12 parsecs\"\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid size \"12 parsecs\": expected bytes as an \
             integer or a string like \"64MiB\""
        );
        assert_eq!(
            err_in("[store]\ncache_size = -1\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid size -1: expected bytes as an integer or a \
             string like \"64MiB\""
        );
        assert!(err_in("[store]\ncache_size = 1.5\n").contains(":3:14: invalid size 1.5: "));
        assert_eq!(
            err_in("[store]\ncache_size = \"99999999TiB\"\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid size \"99999999TiB\": too large, the maximum \
             is 16EiB - 1"
        );
        assert_eq!(
            err_in("[store]\ncache_size = true\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid value for store.cache_size: expected bytes as \
             an integer or a string like \"64MiB\", found boolean `true`"
        );
    }

    #[test]
    fn sizes_out_of_range() {
        assert_eq!(
            err_in("[client]\nmax_bulk_len = 512\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid value for client.max_bulk_len: expected at \
             least 1KiB, found 512 bytes"
        );
        assert_eq!(
            err_in("[client]\nmax_request_len = \"1023KiB\"\n"),
            "/etc/hotbackup/db1.toml:3:19: invalid value for client.max_request_len: expected at \
             least 1MiB, found 1023KiB"
        );
        assert_eq!(
            err_in("[durability]\nsegment_size = \"8GiB\"\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid value for durability.segment_size: expected \
             1MiB to 4GiB, found 8GiB"
        );
        assert!(err_in("[durability]\nsegment_size = \"1023k\"\n").contains("1MiB to 4GiB"));
        assert!(
            err_in("[durability]\ncheckpoint_bytes = 0\n")
                .contains("expected at least 1 byte, found 0 bytes")
        );
        let c = ok("data_dir = \"/d\"\n[durability]\nsegment_size = \"4GiB\"\n");
        assert_eq!(c.durability.segment_size, 4 << 30);
    }

    #[test]
    fn bad_duration() {
        assert_eq!(
            err_in("[client]\ntimeout = \"10 parsecs\"\n"),
            "/etc/hotbackup/db1.toml:3:11: invalid duration \"10 parsecs\": expected seconds as \
             an integer or a string like \"250ms\", \"10s\", \"5m\", \"1h\""
        );
        assert!(err_in("[client]\ntimeout = -5\n").contains(":3:11: invalid duration -5: "));
        assert_eq!(
            err_in("[durability]\ncheckpoint_interval = \"0ms\"\n"),
            "/etc/hotbackup/db1.toml:3:23: invalid value for durability.checkpoint_interval: \
             expected more than 0"
        );
    }

    #[test]
    fn bad_mode() {
        assert_eq!(
            err_in("[durability]\nmode = \"fsnc\"\n"),
            "/etc/hotbackup/db1.toml:3:8: invalid value for durability.mode: expected \"fsync\" or \
             \"none\""
        );
        assert_eq!(
            err_in("[durability]\nmode = 1\n"),
            "/etc/hotbackup/db1.toml:3:8: invalid value for durability.mode: expected a string, \
             found integer `1`"
        );
    }

    #[test]
    fn bad_listen_address() {
        assert_eq!(
            err_in("[client]\nlisten = \"127.0.0.1\"\n"),
            "/etc/hotbackup/db1.toml:3:10: invalid value for client.listen: cannot use \
             \"127.0.0.1\": invalid socket address; expected host:port like \"127.0.0.1:7379\", \
             or \"\" to disable TCP"
        );
        let e = err_in("[client]\nlisten = \"127.0.0.1:99999\"\n");
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:3:10: invalid value for client.listen: "),
            "{e}"
        );
    }

    #[test]
    fn bad_unix_socket() {
        let long = format!("/run/{}.sock", "s".repeat(120));
        let e = err_in(&format!("[client]\nunix_socket = \"{long}\"\n"));
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:3:15: invalid value for client.unix_socket: ")
                && e.ends_with("is 130 bytes long; a Unix socket path can have at most 107"),
            "{e}"
        );
        for mode in ["\"abc\"", "\"0999\"", "\"01777\"", "\"\"", "660"] {
            let e = err_in(&format!("[client]\nunix_socket_mode = {mode}\n"));
            assert!(
                e.contains(":3:20: invalid value for client.unix_socket_mode: "),
                "{e}"
            );
        }
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("660"), Some(0o660));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("0777"), Some(0o777));
    }

    #[test]
    fn bad_counts_and_levels() {
        assert_eq!(
            err_in("[client]\nmaxclients = 0\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid value for client.maxclients: expected at least 1"
        );
        assert_eq!(
            err_in("[client]\nmaxclients = \"many\"\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid value for client.maxclients: expected a \
             non-negative integer, found string \"many\""
        );
        assert_eq!(
            err_in("[client]\nmaxclients = -3\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid value for client.maxclients: expected a \
             non-negative integer, found integer `-3`"
        );
        assert_eq!(
            err_in("[log]\nlevel = \"loud\"\n"),
            "/etc/hotbackup/db1.toml:3:9: invalid value for log.level: expected \"error\", \
             \"warn\", \"info\", \"debug\" or \"trace\""
        );
        assert_eq!(
            ok("data_dir = \"/d\"\nlog.level = \"TRACE\"\n").log.level,
            LevelFilter::Trace
        );
    }

    #[test]
    fn bad_types_name_the_key() {
        assert_eq!(
            err_in("[files]\nlogged = [\"a\", 3]\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid value for files.logged[1]: expected a string, \
             found integer `3`"
        );
        assert_eq!(
            err_in("[files]\nlogged = \"a*\"\n"),
            "/etc/hotbackup/db1.toml:3:10: invalid value for files.logged: expected an array, \
             found string \"a*\""
        );
        assert_eq!(
            err_in("client = 5\n"),
            "/etc/hotbackup/db1.toml:2:10: invalid value for client: expected a table ([client]), \
             found an integer"
        );
        assert_eq!(
            err_in("[[client]]\nlisten = \"127.0.0.1:1\"\n"),
            "/etc/hotbackup/db1.toml:2:1: invalid value for client: expected a table ([client]), \
             found an array"
        );
        assert!(err_in("log = []\n").contains("invalid value for log: expected a table"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = err("data_dir = \"/d\"\n[client]\nlisten = \n");
        assert!(e.starts_with("/etc/hotbackup/db1.toml:3:"), "{e}");
        assert_eq!(
            err("data_dir = \"/d\"\ndata_dir = \"/e\"\n"),
            "/etc/hotbackup/db1.toml:2:1: duplicate key `data_dir`"
        );
        let e = err("data_dir = \"/d\n");
        assert!(e.starts_with("/etc/hotbackup/db1.toml:1:"), "{e}");
    }

    #[test]
    fn columns_count_characters_and_skip_a_bom() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("\u{feff}x", 3), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
        let e = err("\u{feff}data_dir = \"/d\"\nbogus = 1\n");
        assert!(e.starts_with("/etc/hotbackup/db1.toml:2:1: "), "{e}");
    }

    #[test]
    fn size_strings() {
        let cases = [
            ("0", 0),
            ("1024", 1024),
            ("512MiB", 512 << 20),
            ("64 KiB", 64 << 10),
            ("1gb", 1 << 30),
            ("10MB", 10 << 20),
            ("1g", 1 << 30),
            ("1k", 1024),
            ("3b", 3),
            ("2T", 2 << 40),
            (" 7 kib ", 7 << 10),
        ];
        for (text, bytes) in cases {
            assert_eq!(Size::parse(text), Ok(Size(bytes)), "{text}");
        }
        for bad in ["", "MiB", "-1", "1.5GiB", "1 2MiB", "12 parsecs", "1KiBs"] {
            assert_eq!(Size::parse(bad), Err(BadNumber::Syntax), "{bad}");
        }
        for big in ["16777216TiB", "18446744073709551616"] {
            assert_eq!(Size::parse(big), Err(BadNumber::TooLarge), "{big}");
        }
        assert_eq!(Size::parse("18446744073709551615"), Ok(Size(u64::MAX)));
    }

    #[test]
    fn duration_strings() {
        let cases = [
            ("0", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("10s", Duration::from_secs(10)),
            ("10", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("2 H", Duration::from_secs(7200)),
        ];
        for (text, duration) in cases {
            assert_eq!(Interval::parse(text), Ok(Interval(duration)), "{text}");
        }
        for bad in ["", "s", "-1s", "1.5s", "1d", "10 parsecs"] {
            assert_eq!(Interval::parse(bad), Err(BadNumber::Syntax), "{bad}");
        }
        for big in ["99999999999999999999", "9999999999999999999h"] {
            assert_eq!(Interval::parse(big), Err(BadNumber::TooLarge), "{big}");
        }
        let c = ok("data_dir = \"/d\"\n[client]\ntimeout = 30\n");
        assert_eq!(c.client.timeout, Duration::from_secs(30));
    }

    #[test]
    fn format_size_picks_the_largest_whole_unit() {
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_size(512), "512 bytes");
        assert_eq!(format_size(1024), "1KiB");
        assert_eq!(format_size(1536), "1536 bytes");
        assert_eq!(format_size(3 << 30), "3GiB");
        assert_eq!(format_size(5 << 40), "5TiB");
    }

    #[test]
    fn logged_files_follow_the_globs() {
        let default = FilesConfig::default();
        assert!(default.is_logged("main"));
        assert!(default.is_logged("acct/orders"));
        let f = FilesConfig {
            logged: vec!["acct/*".into(), "main".into()],
            unlogged: vec!["*/tmp*".into(), "acct/[xy]".into()],
        };
        assert!(f.is_logged("acct/orders"));
        assert!(f.is_logged("main"));
        assert!(!f.is_logged("Main"));
        assert!(!f.is_logged("other"));
        assert!(!f.is_logged("acct/tmp1"));
        assert!(!f.is_logged("acct/x"));
        assert!(f.is_logged("acct/z"));
        let none = FilesConfig {
            logged: Vec::new(),
            unlogged: Vec::new(),
        };
        assert!(!none.is_logged("main"));
    }

    #[test]
    fn load_reports_missing_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert_eq!(
            Config::load(&missing).unwrap_err().to_string(),
            format!("{}: config file not found", missing.display())
        );
        let e = Config::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read: ", dir.path().display())),
            "{e}"
        );

        let binary = dir.path().join("bin.toml");
        std::fs::write(&binary, b"data_dir = \"/d\"\nx = \"\xff\"\n").unwrap();
        assert_eq!(
            Config::load(&binary).unwrap_err().to_string(),
            format!(
                "{}:2:6: invalid UTF-8: a config file must be UTF-8 text",
                binary.display()
            )
        );

        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_LEN as usize + 1]).unwrap();
        let e = Config::load(&big).unwrap_err().to_string();
        assert!(
            e.ends_with("file is larger than 1MiB: not a config file?"),
            "{e}"
        );
    }

    #[test]
    fn load_reads_and_resolves_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db7.toml");
        std::fs::write(&path, "data_dir = \"data\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.instance, "db7");
        assert_eq!(c.data_dir, dir.path().join("data"));
    }

    fn example(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("etc/hotbackup")
            .join(name)
    }

    /// The line of example.toml naming the key file. The file at that path does not exist
    /// here, so the tests read the example with the path replaced by one of [`KeyDir`]'s.
    const EXAMPLE_KEY_LINE: &str = "key_file = \"/etc/hotbackup/example.key\"\n";

    #[test]
    fn example_config_parses_and_sets_every_key() {
        let path = example("example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(EXAMPLE_KEY_LINE));
        let keys = KeyDir::new();
        let with_key = text.replace(
            EXAMPLE_KEY_LINE,
            &format!("key_file = {:?}\n", keys.good.display().to_string()),
        );
        let c = Config::parse(&with_key, &path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.instance, "example");
        assert_eq!(c.data_dir, Path::new("/var/lib/hotbackup/example"));
        assert_eq!(c.role, Role::Master);
        assert_eq!(c.link.peers, ["b.example:2000"]);
        assert_eq!(c.link.key_file.as_deref(), Some(keys.good.as_path()));
        assert!(c.link.key.is_some());
        // Apart from what the example has to set, its link values are the defaults it says.
        let defaults = LinkConfig {
            peers: c.link.peers.clone(),
            key_file: c.link.key_file.clone(),
            key: c.link.key.clone(),
            ..LinkConfig::default()
        };
        assert_eq!(c.link, defaults);

        // Every key appears in the example (so each one is documented there).
        let doc: toml::Table = toml::from_str(&text).unwrap();
        for (section, keys) in KEYS {
            for key in *keys {
                let table = if section.is_empty() {
                    Some(&doc)
                } else {
                    doc.get(*section).and_then(|v| v.as_table())
                };
                let is_section = KEYS.iter().any(|(s, _)| s == key);
                assert!(
                    is_section || table.is_some_and(|t| t.contains_key(*key)),
                    "example.toml does not set [{section}] {key}"
                );
            }
        }
    }

    #[test]
    fn metrics_listen_is_parsed_and_checked() {
        assert_eq!(ok("data_dir = \"/d\"\n").metrics.listen, None);
        let c = ok("data_dir = \"/d\"\n[metrics]\nlisten = \"127.0.0.1:9187\"\n");
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
        let c = ok("data_dir = \"/d\"\n[metrics]\nlisten = \"\"\n");
        assert_eq!(c.metrics, MetricsConfig::default());
        let e = err_in("[metrics]\nlisten = \"no-port\"\n");
        assert!(e.starts_with("/etc/hotbackup/db1.toml:3:10: "), "{e}");
        assert!(e.contains("127.0.0.1:9187"), "{e}");
        assert_eq!(
            err_in("[metrics]\nlisen = \"127.0.0.1:1\"\n"),
            "/etc/hotbackup/db1.toml:3:1: unknown key `lisen` in [metrics], expected `listen`"
        );
    }

    #[test]
    fn journal_archive_keys_are_checked() {
        let c = ok("data_dir = \"/d\"\n[journal]\narchive_dir = \"arch\"\n");
        assert!(
            c.journal
                .archive_dir
                .as_ref()
                .is_some_and(|d| d.ends_with("arch") && d.is_absolute())
        );
        assert_eq!(c.journal.archive_command, None);
        let c = ok(
            "data_dir = \"/d\"\n[journal]\narchive_command = \"cp %p /a/%f\"\narchive_dir = \"\"\n",
        );
        assert_eq!(c.journal.archive_command.as_deref(), Some("cp %p /a/%f"));
        assert_eq!(c.journal.archive_dir, None);
        let e = Config::parse(
            "data_dir = \"/d\"\n[journal]\narchive_dir = \"/a\"\narchive_command = \"cp %p /b\"\n",
            Path::new("/etc/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/x.toml:4:"), "{e}");
        assert!(
            e.contains("set one of archive_dir and archive_command"),
            "{e}"
        );
        let e = Config::parse(
            "data_dir = \"/d\"\n[journal]\narchive_command = \"cp /x /y\"\n",
            Path::new("/etc/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/x.toml:3:"), "{e}");
        assert!(e.contains("%p"), "{e}");
        let e = Config::parse(
            "data_dir = \"/d\"\n[journal]\narchive = \"x\"\n",
            Path::new("/etc/x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/etc/x.toml:3:"), "{e}");
    }

    #[test]
    fn local_config_parses() {
        let path = example("local.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(c.instance, "local");
        assert!(c.data_dir.ends_with("etc/hotbackup/../../target/local/db"));
        assert!(c.data_dir.starts_with(root));
        assert_eq!(c.client.listen, Some("127.0.0.1:7379".parse().unwrap()));
        let socket = c.client.unix_socket.unwrap();
        assert!(
            socket.ends_with("target/local/hotbackup.sock"),
            "{socket:?}"
        );
        // A single node: master, and no hot-backup port taken.
        assert_eq!(c.role, Role::Master);
        assert_eq!(c.link.listen, None);
        assert!(c.link.peers.is_empty());
        assert_eq!(c.link.key, None);
    }

    // ---- [link] and role ----------------------------------------------------------------

    /// Key files in a temporary directory: `good` (mode 0600, [`Self::GOOD_KEY`] plus a
    /// newline), and whatever a test adds with [`Self::write`].
    struct KeyDir {
        dir: tempfile::TempDir,
        good: PathBuf,
    }

    impl KeyDir {
        const GOOD_KEY: &str = "0123456789abcdef-pair-secret";

        fn new() -> KeyDir {
            let dir = tempfile::tempdir().unwrap();
            let good = dir.path().join("good.key");
            let keys = KeyDir { dir, good };
            keys.write("good.key", &format!("{}\n", Self::GOOD_KEY), 0o600);
            keys
        }

        fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
            use std::os::unix::fs::PermissionsExt;
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }
    }

    /// `data_dir`, then `body` with `KEY` replaced by the good key file's path.
    fn with_key(keys: &KeyDir, body: &str) -> String {
        format!("data_dir = \"/d\"\n{body}").replace("KEY", &keys.good.display().to_string())
    }

    #[test]
    fn a_pair_of_nodes_with_a_key() {
        let keys = KeyDir::new();
        let c = ok(&with_key(
            &keys,
            "role = \"slave\"\n[link]\npeers = [\"a:2000\"]\nkey_file = \"KEY\"\n",
        ));
        assert_eq!(c.role, Role::Slave);
        assert_eq!(c.link.peers, ["a:2000"]);
        assert_eq!(c.link.key, Some(Key::from_bytes(KeyDir::GOOD_KEY.into())));
        assert_eq!(c.role.to_string(), "slave");
        assert_eq!(Role::Master.to_string(), "master");
        assert_eq!(ReplicaSync::Applied.to_string(), "applied");
        assert_eq!(OnSyncTimeout::Refuse.to_string(), "refuse");
    }

    #[test]
    fn relative_key_file_resolves_against_the_config_directory() {
        let keys = KeyDir::new();
        let config = keys.dir.path().join("db2.toml");
        std::fs::write(
            &config,
            "data_dir = \"d\"\n[link]\npeers = [\"b:2000\"]\nkey_file = \"good.key\"\n",
        )
        .unwrap();
        let c = Config::load(&config).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.link.key_file.as_deref(), Some(keys.good.as_path()));
        assert!(c.link.key.is_some());
    }

    #[test]
    fn the_key_is_the_file_without_trailing_whitespace() {
        let keys = KeyDir::new();
        let path = keys.write("k", "  sixteen-bytes-key \t\r\n\n", 0o400);
        assert_eq!(load_key(&path).unwrap().as_bytes(), b"  sixteen-bytes-key");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let keys = KeyDir::new();
        let c = ok(&with_key(
            &keys,
            "[link]\npeers = [\"a:2000\"]\nkey_file = \"KEY\"\n",
        ));
        let debug = format!("{c:?}");
        assert!(!debug.contains(KeyDir::GOOD_KEY), "{debug}");
        assert!(!debug.contains("48, 49, 50"), "{debug}");
        assert!(debug.contains("key: Some(Key(<redacted>))"), "{debug}");
    }

    #[test]
    fn key_file_readable_by_others_is_refused_with_a_chmod_hint() {
        let keys = KeyDir::new();
        let path = keys.write("open.key", "0123456789abcdef0123\n", 0o644);
        let shown = path.display();
        assert_eq!(
            err_in(&format!(
                "[link]\npeers = [\"a:2000\"]\nkey_file = \"{shown}\"\n"
            )),
            format!(
                "/etc/hotbackup/db1.toml:4:12: invalid value for link.key_file: the key file \
                 {shown} can be accessed by group or others (mode 0644); a key must be \
                 readable by its owner only: chmod 600 {shown}"
            )
        );
        let path = keys.write("group.key", "0123456789abcdef0123\n", 0o640);
        assert!(load_key(&path).unwrap_err().contains("(mode 0640)"));
        let path = keys.write("other-w.key", "0123456789abcdef0123\n", 0o602);
        assert!(load_key(&path).unwrap_err().contains("chmod 600"));
    }

    #[test]
    fn short_key_is_refused() {
        let keys = KeyDir::new();
        // 15 bytes, and trailing whitespace does not count.
        let path = keys.write("short.key", "0123456789abcde   \n\n", 0o600);
        let shown = path.display();
        assert_eq!(
            err_in(&format!(
                "[link]\npeers = [\"a:2000\"]\nkey_file = \"{shown}\"\n"
            )),
            format!(
                "/etc/hotbackup/db1.toml:4:12: invalid value for link.key_file: the key in \
                 {shown} is 15 bytes long (without trailing whitespace); a key must have at \
                 least 16"
            )
        );
        let empty = keys.write("empty.key", "\n", 0o600);
        assert!(
            load_key(&empty)
                .unwrap_err()
                .contains("is 0 bytes long (without trailing whitespace)")
        );
        let sixteen = keys.write("16.key", "0123456789abcdef", 0o600);
        assert_eq!(load_key(&sixteen).unwrap().as_bytes().len(), 16);
    }

    #[test]
    fn missing_key_file_is_refused() {
        let keys = KeyDir::new();
        let path = keys.dir.path().join("nope.key");
        let shown = path.display();
        assert_eq!(
            err_in(&format!(
                "role = \"slave\"\n[link]\npeers = [\"a:2000\"]\nkey_file = \"{shown}\"\n"
            )),
            format!(
                "/etc/hotbackup/db1.toml:5:12: invalid value for link.key_file: the key file \
                 {shown} does not exist"
            )
        );
    }

    #[test]
    fn key_file_must_be_a_regular_file() {
        let keys = KeyDir::new();
        let shown = keys.dir.path().display();
        assert_eq!(
            err_in(&format!(
                "[link]\npeers = [\"a:2000\"]\nkey_file = \"{shown}\"\n"
            )),
            format!(
                "/etc/hotbackup/db1.toml:4:12: invalid value for link.key_file: the key file \
                 {shown} is a directory"
            )
        );
        // A FIFO is refused without waiting for a writer.
        let fifo = keys.dir.path().join("fifo.key");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            load_key(&fifo).unwrap_err(),
            format!("the key file {} is not a regular file", fifo.display())
        );
        let big = keys.write("big.key", &"k".repeat(64 * 1024 + 1), 0o600);
        assert!(
            load_key(&big)
                .unwrap_err()
                .ends_with("is larger than 64KiB: not a key file?")
        );
    }

    #[test]
    fn slave_without_key_file_is_refused() {
        assert_eq!(
            err_in("role = \"slave\"\n[link]\npeers = [\"a:2000\"]\n"),
            "/etc/hotbackup/db1.toml:2:8: invalid value for role: a slave needs link.key_file \
             (the pair's shared secret: the nodes of a link authenticate each other with it)"
        );
        // key_file = "" is no key file.
        let e = err_in("role = \"slave\"\n[link]\npeers = [\"a:2000\"]\nkey_file = \"\"\n");
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:2:8: invalid value for role: "),
            "{e}"
        );
    }

    #[test]
    fn peers_or_downstream_without_key_file_are_refused() {
        assert_eq!(
            err_in("[link]\npeers = [\"a:2000\"]\n"),
            "/etc/hotbackup/db1.toml:3:9: invalid value for link.peers: a link needs \
             link.key_file (the pair's shared secret: the nodes of a link authenticate each \
             other with it)"
        );
        assert_eq!(
            err_in("[link]\npeers = []\ndownstream = [\"c:2000\"]\n"),
            "/etc/hotbackup/db1.toml:4:14: invalid value for link.downstream: a link needs \
             link.key_file (the pair's shared secret: the nodes of a link authenticate each \
             other with it)"
        );
        // A single master needs no key.
        let c = ok("data_dir = \"/d\"\n[link]\npeers = []\n");
        assert_eq!(c.link.key, None);
    }

    #[test]
    fn slave_needs_its_master_among_the_peers() {
        let keys = KeyDir::new();
        assert_eq!(
            err(&with_key(
                &keys,
                "role = \"slave\"\n[link]\nkey_file = \"KEY\"\n"
            )),
            "/etc/hotbackup/db1.toml:2:8: invalid value for role: a slave needs its master's \
             link address in link.peers: it accepts a master only from its peers"
        );
        let e = err(&with_key(
            &keys,
            "role = \"slave\"\n[link]\npeers = []\nkey_file = \"KEY\"\n",
        ));
        assert!(
            e.starts_with("/etc/hotbackup/db1.toml:4:9: invalid value for link.peers: a slave"),
            "{e}"
        );
    }

    #[test]
    fn peer_timeout_must_exceed_the_heartbeat() {
        assert_eq!(
            err_in("[link]\nheartbeat_interval = \"2s\"\npeer_timeout = \"2000ms\"\n"),
            "/etc/hotbackup/db1.toml:4:16: invalid value for link.peer_timeout: expected more \
             than link.heartbeat_interval (2s), found 2s"
        );
        assert_eq!(
            err_in("[link]\npeer_timeout = \"500ms\"\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid value for link.peer_timeout: expected more \
             than link.heartbeat_interval (1s), found 500ms"
        );
        // With peer_timeout left at its default, the heartbeat is the one that is wrong.
        assert_eq!(
            err_in("[link]\nheartbeat_interval = \"1m\"\n"),
            "/etc/hotbackup/db1.toml:3:22: invalid value for link.heartbeat_interval: expected \
             less than link.peer_timeout (5s), found 1m"
        );
        assert_eq!(
            err_in("[link]\nheartbeat_interval = 0\n"),
            "/etc/hotbackup/db1.toml:3:22: invalid value for link.heartbeat_interval: expected \
             more than 0"
        );
    }

    #[test]
    fn reconnect_bounds_must_be_in_order() {
        assert_eq!(
            err_in("[link]\nreconnect_min = \"10s\"\nreconnect_max = \"2s\"\n"),
            "/etc/hotbackup/db1.toml:3:17: invalid value for link.reconnect_min: expected at \
             most link.reconnect_max (2s), found 10s"
        );
        assert_eq!(
            err_in("[link]\nreconnect_max = \"50ms\"\n"),
            "/etc/hotbackup/db1.toml:3:17: invalid value for link.reconnect_max: expected at \
             least link.reconnect_min (100ms), found 50ms"
        );
        assert_eq!(
            err_in("[link]\nreconnect_min = \"0s\"\n"),
            "/etc/hotbackup/db1.toml:3:17: invalid value for link.reconnect_min: expected more \
             than 0"
        );
        let c = ok("data_dir = \"/d\"\n[link]\nreconnect_min = \"5s\"\n");
        assert_eq!(c.link.reconnect_min, c.link.reconnect_max);
    }

    #[test]
    fn empty_listen_only_for_a_master_without_downstream() {
        let keys = KeyDir::new();
        assert_eq!(
            err(&with_key(
                &keys,
                "role = \"slave\"\n[link]\nlisten = \"\"\npeers = [\"a:1\"]\nkey_file = \"KEY\"\n"
            )),
            "/etc/hotbackup/db1.toml:4:10: invalid value for link.listen: a slave must listen: \
             its master connects to it (\"\" is only allowed for a master with no \
             link.downstream)"
        );
        assert_eq!(
            err(&with_key(
                &keys,
                "[link]\nlisten = \"\"\ndownstream = [\"c:1\"]\nkey_file = \"KEY\"\n"
            )),
            "/etc/hotbackup/db1.toml:3:10: invalid value for link.listen: a node with \
             link.downstream must listen: it feeds them while it is a slave, and a slave's \
             master connects to it (\"\" is only allowed for a master with no \
             link.downstream)"
        );
        let c = ok("data_dir = \"/d\"\n[link]\nlisten = \"\"\n");
        assert_eq!(c.link.listen, None);
    }

    #[test]
    fn sync_modes_need_enough_slaves() {
        assert_eq!(
            err_in("[link]\nsync = \"durable\"\n"),
            "/etc/hotbackup/db1.toml:3:8: invalid value for link.sync: with link.sync = \
             \"durable\", a write waits for 1 slave (link.min_sync_slaves), but link.peers and \
             link.downstream name no node: writes could never be acknowledged"
        );
        let keys = KeyDir::new();
        assert_eq!(
            err(&with_key(
                &keys,
                "[link]\npeers = [\"a:1\"]\nkey_file = \"KEY\"\nsync = \"applied\"\n\
                 min_sync_slaves = 2\n"
            )),
            "/etc/hotbackup/db1.toml:6:19: invalid value for link.min_sync_slaves: with \
             link.sync = \"applied\", a write waits for 2 slaves (link.min_sync_slaves), but \
             link.peers and link.downstream name only 1 node: writes could never be \
             acknowledged"
        );
        // Peers and downstream both count; in async mode the count does not matter.
        let c = ok(&with_key(
            &keys,
            "[link]\npeers = [\"a:1\"]\ndownstream = [\"b:1\"]\nkey_file = \"KEY\"\n\
             sync = \"received\"\nmin_sync_slaves = 2\n",
        ));
        assert_eq!(c.link.sync, ReplicaSync::Received);
        let c = ok("data_dir = \"/d\"\n[link]\nmin_sync_slaves = 3\n");
        assert_eq!(c.link.min_sync_slaves, 3);
        assert_eq!(
            err_in("[link]\nmin_sync_slaves = 0\n"),
            "/etc/hotbackup/db1.toml:3:19: invalid value for link.min_sync_slaves: expected at \
             least 1"
        );
    }

    #[test]
    fn bad_link_enums_and_sizes() {
        assert_eq!(
            err("role = \"primary\"\ndata_dir = \"/d\"\n"),
            "/etc/hotbackup/db1.toml:1:8: invalid value for role: expected \"master\" or \
             \"slave\""
        );
        assert_eq!(
            err_in("[link]\nsync = \"sync\"\n"),
            "/etc/hotbackup/db1.toml:3:8: invalid value for link.sync: expected \"async\", \
             \"received\", \"durable\" or \"applied\""
        );
        assert_eq!(
            err_in("[link]\nswitchover_writes = \"later\"\n"),
            "/etc/hotbackup/db1.toml:3:21: invalid value for link.switchover_writes: expected \
             \"wait\" or \"refuse\""
        );
        assert_eq!(
            err_in("[link]\non_sync_timeout = \"wait\"\n"),
            "/etc/hotbackup/db1.toml:3:19: invalid value for link.on_sync_timeout: expected \
             \"async\" or \"refuse\""
        );
        assert_eq!(
            err_in("[link]\nmax_frame = \"2GiB\"\n"),
            "/etc/hotbackup/db1.toml:3:13: invalid value for link.max_frame: expected 1MiB to \
             1GiB, found 2GiB"
        );
        assert_eq!(
            err_in("[link]\nmax_frame = \"512KiB\"\n"),
            "/etc/hotbackup/db1.toml:3:13: invalid value for link.max_frame: expected 1MiB to \
             1GiB, found 512KiB"
        );
        assert_eq!(
            err_in("[link]\nmax_retained_bytes = 0\n"),
            "/etc/hotbackup/db1.toml:3:22: invalid value for link.max_retained_bytes: expected \
             at least 1 byte, found 0 bytes"
        );
        assert_eq!(
            err_in("[link]\nsync_timeout = \"0ms\"\n"),
            "/etc/hotbackup/db1.toml:3:16: invalid value for link.sync_timeout: expected more \
             than 0"
        );
        assert_eq!(
            err_in("[link]\nlisten = \"2000\"\n"),
            "/etc/hotbackup/db1.toml:3:10: invalid value for link.listen: cannot use \"2000\": \
             invalid socket address; expected host:port like \"0.0.0.0:2000\", or \"\" for no \
             link listener"
        );
        assert_eq!(
            err_in("[link]\npeers = [\"a:1\", 2]\n"),
            "/etc/hotbackup/db1.toml:3:17: invalid value for link.peers[1]: expected a string, \
             found integer `2`"
        );
        assert_eq!(
            err_in("[link]\ndownstream = \"a:1\"\n"),
            "/etc/hotbackup/db1.toml:3:14: invalid value for link.downstream: expected an \
             array, found string \"a:1\""
        );
        assert_eq!(
            err_in("link = 1\n"),
            "/etc/hotbackup/db1.toml:2:8: invalid value for link: expected a table ([link]), \
             found an integer"
        );
        assert!(err_in("peers = []\n").ends_with("(`peers` belongs in [link])"));
    }

    #[test]
    fn peer_addresses_are_checked_not_resolved() {
        let keys = KeyDir::new();
        let c = ok(&with_key(
            &keys,
            "[link]\npeers = [\"no-such-host.invalid:2000\", \"[::1]:1\", \"10.0.0.1:65535\"]\n\
             key_file = \"KEY\"\n",
        ));
        assert_eq!(c.link.peers[0], "no-such-host.invalid:2000");
        let cases = [
            (
                "b.example",
                "\"b.example\" has no port; expected \"host:port\"",
            ),
            (":2000", "\":2000\" has no host; expected"),
            (
                "b:0",
                "\"b:0\": the port \"0\" is not a port number from 1 to 65535",
            ),
            ("b:65536", "the port \"65536\" is not a port number"),
            ("b:+20", "the port \"+20\" is not a port number"),
            ("b:", "the port \"\" is not a port number"),
            (
                "::1:2000",
                "write an IPv6 address in brackets, like \"[fd00::2]:2000\"",
            ),
            ("[fd00::x]:2000", "\"fd00::x\" is not an IPv6 address"),
            (
                "fd00::x:2000",
                "\"fd00::x\" is not a host name or IP address",
            ),
            ("a b:2000", "\"a b\" is not a host name or IP address"),
            (
                "http://b:2000",
                "\"http://b\" is not a host name or IP address",
            ),
            (".b:2000", "\".b\" is not a host name or IP address"),
        ];
        for (bad, message) in cases {
            let e = err_in(&format!("[link]\npeers = [\"a:1\", {bad:?}]\n"));
            let at = "/etc/hotbackup/db1.toml:3:17: invalid value for link.peers[1]: ";
            assert!(e.starts_with(at) && e.contains(message), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_is_listed_once() {
        assert_eq!(
            err_in("[link]\npeers = [\"B.example:2000\", \"b.EXAMPLE:2000\"]\n"),
            "/etc/hotbackup/db1.toml:3:28: invalid value for link.peers[1]: \"b.EXAMPLE:2000\" \
             is already listed, as link.peers[0]"
        );
        assert_eq!(
            err_in("[link]\npeers = [\"[fd00::1]:2000\"]\ndownstream = [\"[fd00:0::1]:2000\"]\n"),
            "/etc/hotbackup/db1.toml:4:15: invalid value for link.downstream[0]: \
             \"[fd00:0::1]:2000\" is already listed, as link.peers[0]"
        );
        // Same host, other port: another node.
        let keys = KeyDir::new();
        let c = ok(&with_key(
            &keys,
            "[link]\npeers = [\"b:2000\", \"b:2001\"]\nkey_file = \"KEY\"\n",
        ));
        assert_eq!(c.link.peers.len(), 2);
    }

    #[test]
    fn a_node_is_not_its_own_peer() {
        assert_eq!(
            err_in("[link]\nlisten = \"127.0.0.1:2001\"\npeers = [\"127.0.0.1:2001\"]\n"),
            "/etc/hotbackup/db1.toml:4:10: invalid value for link.peers[0]: this is this \
             node's own link.listen address (127.0.0.1:2001)"
        );
        let e = err_in("[link]\ndownstream = [\"127.0.0.2:2000\"]\n");
        assert!(
            e.contains(":3:15: invalid value for link.downstream[0]: this is this node's own"),
            "{e}"
        );
        let e = err_in("[link]\nlisten = \"[::]:2000\"\ndownstream = [\"127.0.0.1:2000\"]\n");
        assert!(
            e.contains("this is this node's own link.listen address ([::]:2000)"),
            "{e}"
        );
        // 0.0.0.0 does not listen on IPv6; another port is another node.
        let self_like = |listen: &str, node: &str| {
            NodeAddr::parse(node)
                .unwrap()
                .is_self(listen.parse().unwrap())
        };
        assert!(!self_like("0.0.0.0:2000", "[::1]:2000"));
        assert!(!self_like("0.0.0.0:2000", "127.0.0.1:2001"));
        assert!(!self_like("10.0.0.1:2000", "127.0.0.1:2000"));
        assert!(!self_like("127.0.0.1:2000", "localhost:2000"));
        assert!(self_like("[::]:2000", "[::1]:2000"));
        assert!(self_like("[fd00::1]:2000", "[fd00:0::1]:2000"));
    }

    #[test]
    fn durations_are_shown_as_written() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn example_config_as_installed_lacks_only_its_key() {
        // As shipped, example.toml names /etc/hotbackup/example.key, which is made at install
        // time: loading it must fail on that file and on nothing else (the key is read last).
        let key = Path::new("/etc/hotbackup/example.key");
        if key.exists() {
            return;
        }
        let path = example("example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text
            .lines()
            .position(|l| format!("{l}\n") == EXAMPLE_KEY_LINE)
            .unwrap()
            + 1;
        assert_eq!(
            Config::load(&path).unwrap_err().to_string(),
            format!(
                "{}:{line}:12: invalid value for link.key_file: the key file \
                 /etc/hotbackup/example.key does not exist",
                path.display()
            )
        );
    }

    /// Copies the local pair's configs next to a fresh 0600 `local.key` (which is not in git),
    /// and loads them from there.
    fn local_pair() -> (tempfile::TempDir, Config, Config) {
        let keys = KeyDir::new();
        let key = keys.write("local.key", "local-pair-secret-0123456789\n", 0o600);
        let load = |name: &str| {
            let copy = keys.dir.path().join(name);
            std::fs::copy(example(name), &copy).unwrap();
            let c = Config::load(&copy).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.link.key_file.as_deref(), Some(key.as_path()));
            assert_eq!(
                c.link.key.as_ref().map(Key::as_bytes),
                Some(&b"local-pair-secret-0123456789"[..])
            );
            c
        };
        let master = load("local-master.toml");
        let slave = load("local-slave.toml");
        (keys.dir, master, slave)
    }

    #[test]
    fn local_pair_configs_parse_and_point_at_each_other() {
        let (dir, m, s) = local_pair();
        let addr = |text: &str| Some(text.parse::<SocketAddr>().unwrap());
        assert_eq!(
            (m.instance.as_str(), m.role),
            ("local-master", Role::Master)
        );
        assert_eq!((s.instance.as_str(), s.role), ("local-slave", Role::Slave));
        assert_eq!(m.data_dir, dir.path().join("../../target/local/master"));
        assert_eq!(s.data_dir, dir.path().join("../../target/local/slave"));
        assert_eq!(m.client.listen, addr("127.0.0.1:7379"));
        assert_eq!(s.client.listen, addr("127.0.0.1:7380"));
        assert_eq!(
            m.client.unix_socket,
            Some(dir.path().join("../../target/local/master.sock"))
        );
        assert_eq!(
            s.client.unix_socket,
            Some(dir.path().join("../../target/local/slave.sock"))
        );
        assert_eq!(m.link.listen, addr("127.0.0.1:2001"));
        assert_eq!(s.link.listen, addr("127.0.0.1:2002"));
        assert_eq!(m.link.peers, ["127.0.0.1:2002"]);
        assert_eq!(s.link.peers, ["127.0.0.1:2001"]);
        assert_eq!(m.metrics.listen, addr("127.0.0.1:9187"));
        assert_eq!(s.metrics.listen, addr("127.0.0.1:9188"));
        assert_eq!(m.log.level, LevelFilter::Info);
        assert_eq!(s.log.level, LevelFilter::Info);
        // Apart from role, addresses and paths, the two are configured alike.
        let rest = |c: &Config| {
            let mut link = c.link.clone();
            (link.listen, link.peers) = (None, Vec::new());
            (link, c.durability.clone(), c.store.clone(), c.files.clone())
        };
        assert_eq!(rest(&m), rest(&s));
    }

    #[test]
    fn local_pair_configs_refuse_a_missing_or_open_key() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("local-slave.toml");
        std::fs::copy(example("local-slave.toml"), &copy).unwrap();
        let e = Config::load(&copy).unwrap_err().to_string();
        let key = dir.path().join("local.key");
        assert!(
            e.ends_with(&format!("the key file {} does not exist", key.display())),
            "{e}"
        );
        std::fs::write(&key, "local-pair-secret-0123456789\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = Config::load(&copy).unwrap_err().to_string();
        let hint = format!(
            "(mode 0664); a key must be readable by its owner only: chmod 600 {}",
            key.display()
        );
        assert!(e.ends_with(&hint), "{e}");
    }

    #[test]
    fn incidents_sendmail_defaults_and_must_be_an_absolute_path() {
        let c = ok("data_dir = \"/d\"\n");
        assert_eq!(c.incidents.sendmail, PathBuf::from("/usr/sbin/sendmail"));
        let c = ok("data_dir = \"/d\"\n[incidents]\nsendmail = \"/opt/mta/bin/sendmail\"\n");
        assert_eq!(c.incidents.sendmail, PathBuf::from("/opt/mta/bin/sendmail"));
        assert_eq!(
            err_in("[incidents]\nnotify = [\"mail:ops@example.com\"]\nsendmail = \"sendmail\"\n"),
            "/etc/hotbackup/db1.toml:4:12: invalid value for incidents.sendmail: expected the \
             absolute path of a sendmail program (e.g. \"/usr/sbin/sendmail\"), found \"sendmail\""
        );
    }
}
